// Client: reconnect and resume through a real TCP cut (a proxy that drops every
// connection), messages queued while offline, and the token provider.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Client } from '../esm/index.mjs';
import { FAST_CLIENT, record, startProxy, startServer, waitFor } from './helpers.mjs';

test('reconnect and resume through a connection cut: nothing lost, nothing doubled', async (t) => {
  const server = await startServer();
  const proxy = await startProxy(server.url);
  const clients = [];
  // Also after a failed assertion: open clients would keep the process alive.
  t.after(async () => {
    for (const c of clients) await c.close();
    proxy.close();
    await server.stop();
  });
  let asked = 0;
  const alice = await Client.connect(proxy.url, {
    userId: 'alice',
    ...FAST_CLIENT,
    // Asked before every connection attempt.
    tokenProvider: async () => `token-${++asked}`,
  });
  clients.push(alice);
  const bob = await Client.connect(server.url, { userId: 'bob', ...FAST_CLIENT });
  clients.push(bob);
  const events = record(alice, 'reconnecting', 'resumed', 'offer', 'rejoined');
  const bobGot = record(bob, 'answer');
  await alice.join('r');
  await bob.join('r');
  const session = alice.sessionId;
  assert.ok(session);

  // Alice stays offline until both sends below are made.
  proxy.cut({ hold: true });
  await waitFor(() => server.peers('r').find((p) => p.userId === 'alice')?.connected === false, 5000, 'alice away');
  // Bob sends while Alice is away (buffered by the server), Alice sends while
  // offline (queued by her client).
  await bob.sendOffer('alice', { sdp: 'while-away' });
  const queued = alice.sendAnswer('bob', { sdp: 'queued-offline' });
  // Awaited below; if a step before that fails, closing alice rejects it, and
  // that is not a second failure to report.
  queued.catch(() => {});
  proxy.release();

  await waitFor(() => events.some((e) => e.type === 'resumed'), 10000, 'resumed');
  await queued;
  await waitFor(() => events.some((e) => e.type === 'offer') && bobGot.length === 1, 5000, 'both messages');
  await new Promise((r) => setTimeout(r, 300)); // a duplicate would arrive now
  assert.ok(events.some((e) => e.type === 'reconnecting'));
  assert.equal(events.filter((e) => e.type === 'offer').length, 1);
  assert.deepEqual(events.find((e) => e.type === 'offer').sdp, { sdp: 'while-away' });
  assert.equal(bobGot.length, 1);
  assert.deepEqual(bobGot[0].sdp, { sdp: 'queued-offline' });
  assert.ok(!events.some((e) => e.type === 'rejoined'), 'resumed, not re-joined');
  assert.equal(alice.sessionId, session);
  assert.equal(alice.connected, true);
  assert.ok(asked >= 2, 'the token provider was asked again for the reconnect');
  assert.deepEqual(alice.rooms, ['r']);
});

test('a server restart ends in resume-failed, then rejoined with the rooms', async () => {
  let server = await startServer();
  const port = new URL(server.url).port;
  const alice = await Client.connect(server.url, { userId: 'alice', ...FAST_CLIENT });
  const events = record(alice, 'rejoined', 'draining');
  await alice.join('lobby');
  await server.stop();
  server = await startServer({ listen: `127.0.0.1:${port}` });
  await waitFor(() => events.some((e) => e.type === 'rejoined'), 10000, 'rejoined');
  assert.deepEqual(events.find((e) => e.type === 'rejoined').rooms, ['lobby']);
  await waitFor(() => server.peers('lobby').length === 1, 5000, 'alice back in the lobby');
  assert.equal(server.peers('lobby')[0].userId, 'alice');
  await alice.close();
  await server.stop();
});

test('a failing token provider fails the connect with a code, without crashing', async () => {
  const server = await startServer();
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  await assert.rejects(
    Client.connect(server.url, {
      tokenProvider: () => {
        throw new Error('no token today');
      },
    }),
    (e) => e instanceof Error && e.code === 'config',
  );
  await waitFor(() => warnings.length === 1, 5000, 'the warning');
  assert.match(warnings[0].message, /no token today/);
  process.off('warning', onWarning);
  await server.stop();
});
