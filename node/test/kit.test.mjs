// Attach mode is an adapter of the core's connection kit: the per-IP limit is
// keyed on the client address after trusted proxies (as on the own port),
// refusals are counted in the metrics the app mounts (`httpHandler()`), and an
// attach-only server with `redisUrl` is a cluster node.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { Client, Server } from '../esm/index.mjs';
import { FAST, FAST_CLIENT, waitFor } from './helpers.mjs';

/** A raw upgrade from `localAddress` with extra headers: resolves with the status. */
function upgrade(port, localAddress, headers) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    let got = '';
    s.on('error', reject);
    s.on('data', (d) => {
      got += d.toString('latin1');
      const end = got.indexOf('\r\n');
      if (end >= 0) resolve({ status: Number(got.slice(9, 12)), socket: s });
    });
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    s.write(
      `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
    );
  });
}

async function appWith(server) {
  const handler = server.httpHandler();
  const app = http.createServer((req, res) => handler(req, res));
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  server.attach(app, { path: '/ws' });
  return app;
}

test('kit: per-IP limit after trusted proxies, refusals in /metrics', async () => {
  const server = await Server.start({ ...FAST, listen: null, maxConnsPerIp: 1, trustedProxies: ['127.0.0.2'] });
  const app = await appWith(server);
  const port = app.address().port;
  const held = [];
  for (const client of ['198.51.100.1', '198.51.100.2']) {
    const r = await upgrade(port, '127.0.0.2', { 'X-Forwarded-For': client });
    assert.equal(r.status, 101, `forwarded client ${client}`);
    held.push(r.socket);
  }
  const again = await upgrade(port, '127.0.0.2', { 'X-Forwarded-For': '198.51.100.1' });
  assert.equal(again.status, 429, 'the same forwarded client, over its limit');
  const fwd = await upgrade(port, '127.0.0.2', { Forwarded: 'for="198.51.100.2"' });
  assert.equal(fwd.status, 429, 'RFC 7239 Forwarded names the client too');
  const untrusted = await upgrade(port, '127.0.0.3', { 'X-Forwarded-For': '198.51.100.9' });
  assert.equal(untrusted.status, 101);
  held.push(untrusted.socket);
  const spoofed = await upgrade(port, '127.0.0.3', { 'X-Forwarded-For': '198.51.100.10' });
  assert.equal(spoofed.status, 429, 'a spoofed header from an untrusted peer does not help');
  await waitFor(() => server.connectionCount === 3, 5000, 'three connections');

  const metrics = await new Promise((resolve, reject) => {
    http.get(`http://127.0.0.1:${port}/metrics`, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], body }));
    }).on('error', reject);
  });
  assert.equal(metrics.status, 200);
  assert.match(metrics.type, /openmetrics/);
  assert.match(metrics.body, /switchboard_handshakes_refused_total\{reason="per_ip"\} 3/);
  for (const s of held) s.destroy();
  await server.stop();
  app.close();
});

test('kit: attach-only servers with redisUrl form a cluster', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-redis-'));
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const redisPort = probe.address().port;
  probe.close();
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  try {
    const options = { ...FAST, listen: null, redisUrl: `redis://127.0.0.1:${redisPort}` };
    const sa = await Server.start(options);
    const sb = await Server.start(options);
    const appA = await appWith(sa);
    const appB = await appWith(sb);
    const alice = await Client.connect(`ws://127.0.0.1:${appA.address().port}/ws`, { ...FAST_CLIENT, userId: 'alice' });
    const bob = await Client.connect(`ws://127.0.0.1:${appB.address().port}/ws`, { ...FAST_CLIENT, userId: 'bob' });
    await alice.join('span');
    let info;
    await waitFor(async () => {
      info = await bob.join('span');
      if (info.users.includes('alice')) return true;
      await bob.leave('span');
      return false;
    }, 10000, 'the room spanning both nodes');
    const got = bob.next('offer');
    await alice.sendOffer('bob', { sdp: 'across nodes' });
    const offer = await got;
    assert.equal(offer.from, 'alice');
    assert.deepEqual(offer.sdp, { sdp: 'across nodes' });
    assert.match(sa.endpoint('/metrics').body, /switchboard_cluster_redis_up 1/);
    await alice.close();
    await bob.close();
    await sa.stop();
    await sb.stop();
    appA.close();
    appB.close();
  } finally {
    redis.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kit: listener options without a listener are a config error', async () => {
  for (const extra of [{ tls: { cert: 'cert.pem', key: 'key.pem' } }, { demo: true }, { serveClient: true }]) {
    await assert.rejects(Server.start({ listen: null, ...extra }), (e) => e.code === 'config', JSON.stringify(extra));
  }
});
