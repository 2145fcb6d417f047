// Server: start/stop, hub events, routing between Node clients and plain `ws`
// clients, host operations (send, broadcast, kick, rooms, peers), errors.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';

import { Client, Server, SwitchboardError } from '../esm/index.mjs';
import { FAST_CLIENT, RawClient, record, startServer, waitFor } from './helpers.mjs';

test('start and stop: url, empty state, stop is idempotent', async () => {
  const server = await startServer();
  assert.match(server.url, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
  assert.deepEqual(server.rooms(), []);
  assert.deepEqual(server.peers('nope'), []);
  assert.equal(server.connectionCount, 0);
  const raw = await RawClient.open(server.url);
  await waitFor(() => server.connectionCount === 1, 5000, 'one connection');
  await Promise.all([server.stop(), server.stop()]);
  // Every client got `draining`, then the 1001 close.
  assert.equal((await raw.next('draining')).type, 'draining');
  assert.equal((await raw.waitClosed()).code, 1001);
  await assert.rejects(RawClient.open(server.url), (e) => e.code === 'ECONNREFUSED');
});

test('join, offer, leave between two Node clients: client and server events', async () => {
  const server = await startServer();
  const seen = record(server, 'user-joined', 'user-left', 'offer');
  const alice = await Client.connect(server.url, { userId: 'alice', ...FAST_CLIENT });
  const bob = await Client.connect(server.url, { userId: 'bob', ...FAST_CLIENT });
  const info = await alice.join('room-1');
  assert.equal(info.type, 'room-info');
  assert.equal(info.roomId, 'room-1');
  assert.deepEqual(info.users, []);
  const joined = alice.next('user-joined');
  const bobInfo = await bob.join('room-1');
  assert.deepEqual(bobInfo.users, ['alice']);
  assert.equal(bobInfo.peers[0].polite, true);
  const j = await joined;
  assert.equal(j.userId, 'bob');
  assert.equal(j.polite, false);

  const offer = bob.next('offer');
  await alice.sendOffer('bob', { type: 'offer', sdp: 'v=0' });
  const o = await offer;
  assert.equal(o.from, 'alice');
  assert.equal(o.roomId, 'room-1');
  assert.deepEqual(o.sdp, { type: 'offer', sdp: 'v=0' });

  const answer = alice.next('answer');
  await bob.sendAnswer('alice', { type: 'answer', sdp: 'v=0' });
  assert.equal((await answer).from, 'bob');
  const cand = alice.next('candidate');
  await bob.sendCandidate('alice', null);
  assert.equal((await cand).candidate, null);

  const left = alice.next('user-left');
  await bob.leave('room-1');
  assert.equal((await left).reason, 'leave');

  await waitFor(() => seen.some((e) => e.type === 'user-left'), 5000, 'server user-left');
  assert.deepEqual(
    seen.filter((e) => e.type === 'user-joined').map((e) => e.userId),
    ['alice', 'bob'],
  );
  const serverOffer = seen.find((e) => e.type === 'offer');
  assert.equal(serverOffer.from, 'alice');
  assert.equal(serverOffer.to, 'bob');
  await alice.close();
  await bob.close();
  assert.equal(alice.closed, true);
  await server.stop();
});

test('a Node client and a plain ws client relay to each other', async () => {
  const server = await startServer();
  const node = await Client.connect(server.url, { userId: 'node', ...FAST_CLIENT });
  await node.join('mixed');
  const raw = await RawClient.open(server.url);
  raw.send({ type: 'join', roomId: 'mixed', userId: 'browser' });
  const info = await raw.next('room-info');
  assert.deepEqual(info.users, ['node']);
  // Node → ws
  await node.sendOffer('browser', { type: 'offer', sdp: 'from-node' });
  const offer = await raw.next('offer');
  assert.equal(offer.from, 'node');
  assert.equal(offer.sdp.sdp, 'from-node');
  // ws → Node, with an unknown extra field kept
  const answer = node.next('answer');
  raw.send({ type: 'answer', to: 'node', sdp: { type: 'answer', sdp: 'from-ws' }, extra: 42 });
  const a = await answer;
  assert.equal(a.from, 'browser');
  assert.equal(a.extra, 42);
  // message to the room and chat
  const msg = raw.next('message');
  await node.send(null, { hello: 'room' });
  assert.deepEqual((await msg).data, { hello: 'room' });
  const chatBack = node.next('chat');
  await node.chat('hi all');
  assert.equal((await raw.next('chat')).content, 'hi all');
  assert.equal((await chatBack).from, 'node');
  raw.close();
  assert.equal((await node.next('user-left')).reason, 'closed');
  await node.close();
  await server.stop();
});

test('send, broadcast and kick from the host', async () => {
  const server = await startServer();
  const a = await RawClient.open(server.url);
  const b = await RawClient.open(server.url);
  a.send({ type: 'join', roomId: 'r', userId: 'a', displayName: 'Ann' });
  await a.next('room-info');
  b.send({ type: 'join', roomId: 'r', userId: 'b', metadata: { role: 'x' } });
  await b.next('room-info');

  await server.send('r', 'a', { type: 'notice', text: 'just you' });
  assert.equal((await a.next('notice')).text, 'just you');
  assert.equal(await server.broadcast('r', { type: 'notice', text: 'all' }), 2);
  assert.equal((await a.next('notice')).text, 'all');
  assert.equal((await b.next('notice')).text, 'all');

  const rooms = server.rooms();
  assert.equal(rooms.length, 1);
  assert.deepEqual(rooms[0].peers.map((p) => p.userId), ['a', 'b']);
  const peers = server.peers('r');
  assert.equal(peers[0].displayName, 'Ann');
  assert.deepEqual(peers[1].metadata, { role: 'x' });
  assert.equal(peers[0].connected, true);

  const kicked = once(server, 'user-left');
  await server.kick('r', 'b');
  assert.equal((await kicked)[0].reason, 'kicked');
  assert.equal((await b.waitClosed()).code, 4403);
  assert.equal((await a.next('user-left')).reason, 'kicked');
  assert.deepEqual(server.peers('r').map((p) => p.userId), ['a']);
  await server.stop();
});

test('errors carry err.code: protocol codes and binding codes', async () => {
  const server = await startServer({ maxRoomSize: 1 });
  const alice = await Client.connect(server.url, { userId: 'alice', ...FAST_CLIENT });
  await alice.join('solo');
  const isCode = (code) => (e) => {
    assert.ok(e instanceof Error, 'an Error');
    assert.ok(e instanceof SwitchboardError);
    assert.equal(e.code, code, e.message);
    return true;
  };
  await assert.rejects(alice.sendOffer('nobody', 'sdp'), isCode('peer-not-found'));
  const bob = await Client.connect(server.url, { userId: 'bob', ...FAST_CLIENT });
  await assert.rejects(bob.join('solo'), isCode('room-full'));
  await assert.rejects(bob.sendOffer('alice', 'x'), isCode('not-in-room'));
  await assert.rejects(bob.sendJson({ type: 'bogus' }), isCode('unknown-type'));
  await assert.rejects(alice.sendOffer(42, 'x'), isCode('invalid-argument'));
  await assert.rejects(alice.send('bob', undefined), isCode('invalid-argument'));
  // Host operations.
  await assert.rejects(server.send('no-room', 'x', { type: 't' }), isCode('not-in-room'));
  await assert.rejects(server.send('solo', 'ghost', { type: 't' }), isCode('peer-not-found'));
  await assert.rejects(server.send('solo', 'alice', { no: 'type' }), isCode('invalid-message'));
  await assert.rejects(server.send('solo', 'alice', [1]), isCode('invalid-argument'));
  await assert.rejects(server.kick('solo', 'ghost'), isCode('peer-not-found'));
  await assert.rejects(
    server.send('solo', 'alice', { type: 't', big: 'x'.repeat(70000) }),
    isCode('message-too-big'),
  );
  // Options.
  await assert.rejects(Server.start({ listne: '127.0.0.1:0' }), isCode('config'));
  await assert.rejects(Server.start({ listen: '127.0.0.1:0', maxConns: -1 }), isCode('config'));
  // The per-user away cap and the outbound budget reach the native options.
  for (const key of ['maxAwayPerUser', 'outboundBudgetBytes']) {
    await assert.rejects(Server.start({ listen: '127.0.0.1:0', [key]: -1 }), (e) => {
      const native = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      return isCode('config')(e) && e.message.includes(native);
    });
  }
  await (await Server.start({ listen: '127.0.0.1:0', maxAwayPerUser: 2, outboundBudgetBytes: 1 << 24 })).stop();
  await assert.rejects(Server.start({ listen: '127.0.0.1:0', path: 'ws' }), isCode('config'));
  await assert.rejects(
    Server.start({ listen: '127.0.0.1:0', auth: { tokens: {}, hook: () => null } }),
    isCode('config'),
  );
  const port = new URL(server.url).port;
  await assert.rejects(Server.start({ listen: `127.0.0.1:${port}` }), isCode('io'));
  await assert.rejects(Client.connect('http://x'), isCode('config'));
  await assert.rejects(Client.connect(server.url, { heartbeatIntervalMs: 'soon' }), isCode('config'));
  // Closed.
  await alice.close();
  await assert.rejects(alice.chat('late'), isCode('closed'));
  await bob.close();
  await server.stop();
  await assert.rejects(Client.connect(server.url), (e) => ['io', 'websocket'].includes(e.code));
});

test('events() iterates hub events until stop()', async () => {
  const server = await startServer();
  const it = server.events();
  const got = [];
  const reading = (async () => {
    for await (const e of it) got.push(e);
  })();
  const raw = await RawClient.open(server.url);
  raw.send({ type: 'join', roomId: 'it', userId: 'u1' });
  await raw.next('room-info');
  await waitFor(() => got.some((e) => e.type === 'user-joined'), 5000, 'user-joined via events()');
  await server.stop();
  await reading; // the iterator ended with stop()
  const types = got.map((e) => e.type);
  assert.ok(types.includes('connected'));
  assert.ok(types.includes('user-joined'));
  assert.equal(got.find((e) => e.type === 'user-joined').roomId, 'it');
});

test('a throwing or rejecting listener never crashes the process', async () => {
  const server = await startServer();
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  server.on('user-joined', () => {
    throw new Error('sync boom');
  });
  server.on('user-joined', async () => {
    throw new Error('async boom');
  });
  const after = [];
  server.on('user-joined', (e) => after.push(e.userId));
  const client = await Client.connect(server.url, { userId: 'c', ...FAST_CLIENT });
  client.on('room-info', () => {
    throw new Error('client boom');
  });
  await client.join('boom');
  await waitFor(() => after.length === 1, 5000, 'the third listener');
  await waitFor(() => warnings.length >= 3, 5000, 'three warnings');
  assert.ok(warnings.every((w) => w.name === 'SwitchboardListenerError'));
  assert.ok(warnings.some((w) => w.message.includes('sync boom')));
  assert.ok(warnings.some((w) => w.message.includes('async boom')));
  assert.ok(warnings.some((w) => w.message.includes('client boom')));
  // Still working afterwards.
  assert.equal((await client.join('boom2')).roomId, 'boom2');
  process.off('warning', onWarning);
  await client.close();
  await server.stop();
});

test('only events with listeners cross into JS; events() gets them all', async () => {
  const server = await startServer();
  const offers = [];
  const candidates = [];
  server.on('offer', (e) => offers.push(e));
  const a = await RawClient.open(server.url);
  const b = await RawClient.open(server.url);
  a.send({ type: 'join', roomId: 'f', userId: 'a' });
  await a.next('room-info');
  b.send({ type: 'join', roomId: 'f', userId: 'b' });
  await b.next('room-info');
  b.send({ type: 'candidate', to: 'a', candidate: { n: 1 } });
  b.send({ type: 'offer', to: 'a', sdp: { n: 2 } });
  await a.next('candidate');
  await a.next('offer');
  await waitFor(() => offers.length === 1, 5000, 'the offer event');
  // A candidate listener added now sees later candidates, not earlier ones.
  server.on('candidate', (e) => candidates.push(e));
  await new Promise((r) => setImmediate(r));
  b.send({ type: 'candidate', to: 'a', candidate: { n: 3 } });
  await a.next('candidate');
  await waitFor(() => candidates.length === 1, 5000, 'the candidate event');
  assert.deepEqual(candidates[0].candidate, { n: 3 });
  const it = server.events();
  b.send({ type: 'chat', content: 'to all' });
  const first = await it.next();
  assert.equal(first.value.type, 'chat');
  await it.return();
  await server.stop();
});
