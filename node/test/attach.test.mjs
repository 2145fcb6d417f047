// Attach mode: the hub served on an existing http.Server through `ws`, tested
// with real `ws` clients and Node clients, side by side with the own listener.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { test } from 'node:test';

import { Client, Server } from '../esm/index.mjs';
import { FAST, FAST_CLIENT, RawClient, startServer, waitFor } from './helpers.mjs';

async function httpServer() {
  const h = http.createServer((req, res) => {
    res.end(`app route ${req.url}`);
  });
  h.listen(0, '127.0.0.1');
  await once(h, 'listening');
  return h;
}

test('attach: one hub on the own port and on an http server', async () => {
  const server = await startServer();
  const h = await httpServer();
  const attachment = server.attach(h, { path: '/signal' });
  assert.match(attachment.url, /^ws:\/\/127\.0\.0\.1:\d+\/signal$/);
  // The app's own routes keep working on the same port.
  const res = await fetch(attachment.url.replace('ws://', 'http://').replace('/signal', '/hello'));
  assert.equal(await res.text(), 'app route /hello');

  const joined = [];
  server.on('user-joined', (e) => joined.push(e.userId));
  const viaAttach = await RawClient.open(attachment.url);
  assert.equal(viaAttach.ws.protocol, 'webrtc-signaling');
  viaAttach.send({ type: 'join', roomId: 'one-hub', userId: 'attached', id: 1 });
  assert.deepEqual((await viaAttach.next('room-info')).users, []);
  assert.equal((await viaAttach.next('ack')).id, 1);
  const viaPort = await Client.connect(server.url, { userId: 'native', ...FAST_CLIENT });
  const info = await viaPort.join('one-hub');
  assert.deepEqual(info.users, ['attached']);
  assert.equal((await viaAttach.next('user-joined')).userId, 'native');

  await viaPort.sendOffer('attached', { sdp: 'o' });
  const offer = await viaAttach.next('offer');
  assert.equal(offer.from, 'native');
  assert.equal(typeof offer.seq, 'number');
  const answered = viaPort.next('answer');
  viaAttach.send({ type: 'answer', to: 'native', sdp: { sdp: 'a' } });
  assert.equal((await answered).from, 'attached');
  await waitFor(() => joined.length === 2, 5000, 'both user-joined events');
  assert.equal(server.connectionCount, 2);

  // Errors behave as on the own port.
  viaAttach.send('{not json');
  assert.equal((await viaAttach.next('error')).code, 'invalid-json');
  viaAttach.send({ type: 'offer', to: 'ghost', sdp: {}, id: 'x' });
  const err = await viaAttach.next('error', (m) => m.ref === 'x');
  assert.equal(err.code, 'peer-not-found');

  // Host operations reach attached peers.
  await server.send('one-hub', 'attached', { type: 'notice' });
  await viaAttach.next('notice');
  const left = viaPort.next('user-left');
  await server.kick('one-hub', 'attached');
  assert.equal((await viaAttach.waitClosed()).code, 4403);
  assert.equal((await left).reason, 'kicked');

  await viaPort.close();
  await server.stop();
  h.close();
});

test('attach-only server (listen: null) with a Node client, and a graceful stop', async () => {
  const server = await Server.start({ ...FAST, listen: null });
  assert.equal(server.url, null);
  const h = await httpServer();
  const a = server.attach(h); // default path: the server's `path`
  assert.equal(a.path, '/ws');
  const alice = await Client.connect(a.url, { userId: 'alice', ...FAST_CLIENT });
  const bob = await Client.connect(a.url, { userId: 'bob', ...FAST_CLIENT });
  await alice.join('r');
  await bob.join('r');
  const got = bob.next('message');
  await alice.send('bob', { n: 1 });
  assert.deepEqual((await got).data, { n: 1 });

  const draining = alice.next('draining');
  await server.stop();
  assert.equal((await draining).type, 'draining');
  assert.equal(server.connectionCount, 0);
  // After stop the upgrade handler is gone; the app's http server still serves.
  const res = await fetch(a.url.replace('ws://', 'http://'));
  assert.equal(res.status, 200);
  await alice.close();
  await bob.close();
  h.close();
});

test('attach: protocol violations, admission and resume through a cut', async () => {
  const server = await startServer({ maxMessageBytes: 1024, maxConnsPerIp: 2 });
  const h = await httpServer();
  const a = server.attach(h, { path: '/ws' });

  // Binary frame → 1003; oversized frame → 1009.
  const bin = await RawClient.open(a.url);
  bin.ws.send(Buffer.from([1, 2, 3]));
  assert.equal((await bin.waitClosed()).code, 1003);
  const big = await RawClient.open(a.url);
  big.send({ type: 'chat', content: 'x'.repeat(2000) });
  assert.equal((await big.waitClosed()).code, 1009);

  // Origin allow-list (403) and per-IP limit (429), before the upgrade.
  await assert.rejects(RawClient.open(a.url, { origin: 'http://evil.example' }), (e) => e.status === 403);
  const c1 = await RawClient.open(a.url, { origin: 'http://allowed.example' });
  const c2 = await RawClient.open(a.url);
  await assert.rejects(RawClient.open(a.url), (e) => e.status === 429);

  // Resume: c1 joins, its TCP connection is cut, c2 sends while c1 is away,
  // c1 resumes on a new socket and gets the message exactly once.
  c1.send({ type: 'join', roomId: 'cut', userId: 'c1' });
  await c1.next('room-info');
  c2.send({ type: 'join', roomId: 'cut', userId: 'c2' });
  await c2.next('room-info');
  await c1.next('user-joined');
  c1.ws._socket.destroy(); // a network cut: no close frame
  await waitFor(() => server.peers('cut').find((p) => p.userId === 'c1')?.connected === false, 5000, 'c1 away');
  c2.send({ type: 'offer', to: 'c1', sdp: { n: 'while-away' }, id: 7 });
  assert.equal((await c2.next('ack')).id, 7);
  const back = await RawClient.open(a.url);
  back.send({
    type: 'resume',
    sessionId: c1.connected.sessionId,
    resumeToken: c1.connected.resumeToken,
    lastSeq: c1.lastSeq,
  });
  assert.equal((await back.next('resumed')).sessionId, c1.connected.sessionId);
  const replayed = await back.next('offer');
  assert.deepEqual(replayed.sdp, { n: 'while-away' });
  assert.equal(replayed.from, 'c2');
  assert.equal(back.messages.filter((m) => m.type === 'offer').length, 0, 'delivered once');
  assert.deepEqual(server.peers('cut').map((p) => [p.userId, p.connected]), [['c1', true], ['c2', true]]);
  back.close();
  c2.close();
  await server.stop();
  h.close();
});

test('attach on an https server: wss:// with the app certificate', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    const h = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) });
    h.listen(0, '127.0.0.1');
    await once(h, 'listening');
    const server = await Server.start({ ...FAST, listen: null });
    const a = server.attach(h);
    assert.match(a.url, /^wss:\/\/127\.0\.0\.1:\d+\/ws$/);
    const raw = await RawClient.open(a.url, { rejectUnauthorized: false });
    raw.send({ type: 'join', roomId: 'tls', userId: 't' });
    assert.equal((await raw.next('room-info')).roomId, 'tls');
    raw.close();
    await server.stop();
    h.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('attach: a connection storm from one IP is answered 429 with Retry-After, charged at admission', async () => {
  const server = await startServer({ connRatePerIp: 1, connBurstPerIp: 2 });
  const h = await httpServer();
  const a = server.attach(h, { path: '/ws' });
  const c1 = await RawClient.open(a.url);
  const c2 = await RawClient.open(a.url);
  await assert.rejects(RawClient.open(a.url), (e) => e.status === 429 && e.headers['retry-after'] === '1');
  c1.ws.close();
  c2.ws.close();
  await server.stop();
  h.close();
});
