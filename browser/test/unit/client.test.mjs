// Unit tests of the browser client's connection logic with a fake WebSocket and
// mock timers: sends and replies, the bounded outbox, backoff with full jitter,
// the heartbeat, resume and replay de-duplication, re-join after resume-failed,
// rate-limit pauses, terminal close codes, close(), and sessions across reloads.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';

import { SignalingClient, SignalingError, backoffCeiling } from '../../dist/switchboard.js';
import { FakeWebSocket, MemoryStorage } from './fake-websocket.mjs';

const URL = 'ws://127.0.0.1:9/ws';
const flush = () => new Promise((r) => setImmediate(r));

async function client(options = {}) {
  const events = [];
  const c = new SignalingClient(URL, { WebSocket: FakeWebSocket, storage: null, ...options });
  c.on('*', (e) => events.push(e));
  await flush(); // the first connection starts on a microtask
  return { c, events, types: () => events.map((e) => e.type) };
}

/** A client with an established session `s1` in room `r` as `alice`. */
async function joined(options = {}) {
  const t = await client({ userId: 'alice', ...options });
  FakeWebSocket.last.accept('s1');
  const join = t.c.join('r');
  const ws = FakeWebSocket.last;
  const id = ws.sentOf('join')[0].id;
  ws.receive({ type: 'ack', id, seq: 1 });
  ws.receive({ type: 'room-info', roomId: 'r', users: [], peers: [], you: { userId: 'alice' }, seq: 2 });
  await join;
  return { ...t, ws };
}

beforeEach(() => {
  FakeWebSocket.reset();
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 });
});

afterEach(() => {
  mock.timers.reset();
  mock.restoreAll();
});

describe('sending', () => {
  test('join resolves with room-info; sends resolve on their ack', async () => {
    const { c, types } = await client({ userId: 'alice', displayName: 'Alice' });
    const ws = FakeWebSocket.last;
    assert.deepEqual(ws.protocols, ['webrtc-signaling']);
    assert.equal(c.state, 'connecting');
    ws.accept('s1');
    assert.equal(c.connected, true);
    assert.equal(c.sessionId, 's1');
    const join = c.join('room-1');
    const sentJoin = ws.sentOf('join')[0];
    assert.deepEqual({ ...sentJoin, id: 0 }, { type: 'join', roomId: 'room-1', userId: 'alice', displayName: 'Alice', id: 0 });
    ws.receive({ type: 'ack', id: sentJoin.id, seq: 1 });
    ws.receive({ type: 'room-info', roomId: 'room-1', users: ['bob'], peers: [{ userId: 'bob', polite: true }], you: { userId: 'alice' }, seq: 2 });
    const info = await join;
    assert.deepEqual(info.users, ['bob']);
    assert.deepEqual(c.rooms, ['room-1']);

    const offer = c.sendOffer('bob', { type: 'offer', sdp: 'v=0' });
    const sent = ws.sentOf('offer')[0];
    assert.deepEqual(sent.sdp, { type: 'offer', sdp: 'v=0' });
    assert.equal(sent.to, 'bob');
    let settled = false;
    offer.then(() => (settled = true));
    await flush();
    assert.equal(settled, false, 'not before the ack');
    ws.receive({ type: 'ack', id: sent.id, seq: 3 });
    await offer;
    assert.equal(c.pending, 0);
    assert.deepEqual(types().slice(0, 3), ['connecting', 'open', 'connected']);
    assert.ok(!types().includes('ack'), 'acks are the client\'s own business');
  });

  test('messages sent before the connection are queued and written in order', async () => {
    const { c } = await client({ userId: 'alice' });
    const sends = [c.chat('one'), c.send('bob', { n: 2 }), c.sendCandidate('bob', { candidate: 'x' })];
    assert.equal(c.pending, 3);
    const ws = FakeWebSocket.last;
    ws.accept('s1');
    assert.deepEqual(ws.appSent().map((m) => m.type), ['chat', 'message', 'candidate']);
    const ids = ws.appSent().map((m) => m.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'ids increase');
    ids.forEach((id, i) => ws.receive({ type: 'ack', id, seq: i + 1 }));
    await Promise.all(sends);
  });

  test('the outbox is bounded: queue-full at once, nothing queued; too big is refused', async () => {
    const { c } = await client({ queueMaxMessages: 2, maxMessageBytes: 300 });
    c.chat('a');
    c.chat('b');
    await assert.rejects(c.chat('c'), (e) => e instanceof SignalingError && e.code === 'queue-full');
    assert.equal(c.pending, 2);
    await assert.rejects(c.chat('x'.repeat(400)), { code: 'message-too-big' });
    const ws = FakeWebSocket.last;
    ws.accept('s1');
    ws.receive({ type: 'ack', id: ws.appSent()[0].id, seq: 1 });
    assert.equal(c.pending, 1);
    c.chat('d'); // accepted again: a slot was freed
    assert.equal(c.pending, 2);
  });

  test('the byte bound counts UTF-8 bytes', async () => {
    const { c } = await client({ queueMaxBytes: 200 });
    c.chat('é'.repeat(60)); // ~150 bytes of JSON
    await assert.rejects(c.chat('é'.repeat(30)), { code: 'queue-full' });
    assert.equal(c.pending, 1);
  });

  test("a server error with ref rejects that send; unhandled failures stay silent", async () => {
    const { c, ws } = await joined();
    const p = c.sendOffer('nobody', 'v=0');
    ws.receive({ type: 'error', code: 'peer-not-found', message: 'no such peer', ref: ws.sentOf('offer')[0].id, seq: 3 });
    await assert.rejects(p, (e) => e.code === 'peer-not-found' && e.message === 'no such peer');
    c.sendOffer('nobody', 'v=0'); // never awaited: no unhandled rejection
    ws.receive({ type: 'error', code: 'peer-not-found', message: 'x', ref: ws.sentOf('offer')[1].id, seq: 4 });
    await flush();
  });

  test('sendJson refuses what only the client may send; other types (app types) are the server\'s to judge', async () => {
    const { c, ws } = await joined();
    await assert.rejects(c.sendJson({ type: 'resume' }), { code: 'invalid-message' });
    await assert.rejects(c.sendJson({ type: 'join' }), { code: 'invalid-message' });
    await assert.rejects(c.sendJson({ type: 7 }), { code: 'invalid-message' });
    const hangup = c.sendJson({ type: 'hangup', to: 'bob', reason: 'bye' });
    const sent = ws.sentOf('hangup')[0];
    assert.deepEqual([sent.to, sent.reason], ['bob', 'bye']);
    ws.receive({ type: 'ack', id: sent.id, seq: 3 });
    assert.equal(await hangup, null);
    const bogus = c.sendJson({ type: 'bogus' });
    ws.receive({ type: 'error', code: 'unknown-type', message: 'unknown message type', ref: ws.sentOf('bogus')[0].id, seq: 4 });
    await assert.rejects(bogus, { code: 'unknown-type' });
    // App-type messages from peers are events under their own name.
    const got = [];
    c.on('hangup', (e) => got.push(e));
    ws.receive({ type: 'hangup', from: 'bob', roomId: 'r', seq: 5 });
    assert.deepEqual(got.map((e) => e.from), ['bob']);
  });

  test('at most maxInFlight messages are unacknowledged on the wire', async () => {
    const { c, ws } = await joined({ maxInFlight: 2 });
    for (let i = 0; i < 5; i++) c.send(null, i);
    assert.deepEqual(ws.sentOf('message').map((m) => m.data), [0, 1]);
    ws.receive({ type: 'ack', id: ws.sentOf('message')[0].id, seq: 3 });
    assert.deepEqual(ws.sentOf('message').map((m) => m.data), [0, 1, 2]);
  });

  test('rate-limited: writes pause, then every unacknowledged message is written again', async () => {
    const { c, ws } = await joined({ rateLimitPauseMs: 1000 });
    c.send(null, 'a');
    c.send(null, 'b');
    ws.receive({ type: 'error', code: 'rate-limited', message: 'slow down', seq: 3 });
    c.send(null, 'c');
    assert.deepEqual(ws.sentOf('message').map((m) => m.data), ['a', 'b'], 'nothing during the pause');
    mock.timers.tick(1000);
    assert.deepEqual(ws.sentOf('message').map((m) => m.data), ['a', 'b', 'a', 'b', 'c']);
    const [a1, , a2] = ws.sentOf('message');
    assert.equal(a1.id, a2.id, 'the same id: the server de-duplicates');
  });

  test('a throwing handler does not break the client', async () => {
    const errors = [];
    mock.method(console, 'error', (e) => errors.push(e));
    const { c } = await client();
    c.on('connected', () => {
      throw new Error('boom');
    });
    let after = false;
    c.on('connected', () => (after = true));
    FakeWebSocket.last.accept('s1');
    assert.ok(after);
    assert.ok(c.connected);
  });
});

describe('reconnecting', () => {
  test('backoff ceilings double up to the maximum', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map((a) => backoffCeiling(a, 1000, 30000)), [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    assert.equal(backoffCeiling(1000, 1000, 30000), 30000);
  });

  test('lost connections retry after a random delay in [0, ceiling] (full jitter)', async () => {
    let r = 0.5;
    mock.method(Math, 'random', () => r);
    const { c, events } = await client({ reconnectBaseMs: 1000, reconnectMaxMs: 4000 });
    FakeWebSocket.last.accept('s1');
    const delays = [];
    for (const [attempt, rand] of [[1, 0.5], [2, 0.999], [3, 0.25], [4, 0.999]]) {
      r = rand;
      FakeWebSocket.last.drop();
      const ev = events.filter((e) => e.type === 'reconnecting').at(-1);
      assert.equal(ev.attempt, attempt);
      delays.push(ev.delayMs);
      const before = FakeWebSocket.instances.length;
      mock.timers.tick(ev.delayMs - 1);
      assert.equal(FakeWebSocket.instances.length, before, 'not before the delay');
      mock.timers.tick(1);
      assert.equal(FakeWebSocket.instances.length, before + 1);
      assert.equal(events.at(-1).type, 'connecting');
      assert.equal(events.at(-1).attempt, attempt);
      assert.equal(c.state, 'reconnecting');
    }
    // Ceilings 1000, 2000, 4000, 4000 (capped): the delay spans the whole window.
    assert.deepEqual(delays, [500, 1998, 1000, 3996]);
  });

  test('a connection that stayed up resets the attempt counter', async () => {
    mock.method(Math, 'random', () => 0);
    const { events } = await client({ stableAfterMs: 5000 });
    FakeWebSocket.last.accept('s1');
    FakeWebSocket.last.drop();
    mock.timers.tick(0);
    FakeWebSocket.last.drop(); // failed before any session
    mock.timers.tick(0);
    assert.equal(events.filter((e) => e.type === 'reconnecting').at(-1).attempt, 2);
    FakeWebSocket.last.accept('s1');
    FakeWebSocket.last.receive({ type: 'resumed', sessionId: 's1', replayed: 0 });
    mock.timers.tick(6000);
    FakeWebSocket.last.receive({ type: 'pong', seq: 1 });
    FakeWebSocket.last.drop();
    assert.equal(events.filter((e) => e.type === 'reconnecting').at(-1).attempt, 1);
  });

  test('heartbeat: a ping every interval; silence past interval + timeout closes with 4000 and reconnects', async () => {
    const { events, ws } = await joined({ heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 500 });
    mock.timers.tick(1000);
    assert.equal(ws.sentOf('ping').length, 1);
    mock.timers.tick(400); // 1400 ms of silence
    ws.receive({ type: 'pong', seq: 3 }); // life: the deadline moves
    mock.timers.tick(1400);
    assert.equal(ws.closedWith, null, 'alive: a frame came 1400 ms ago');
    mock.timers.tick(100);
    assert.equal(ws.closedWith?.code, 4000);
    assert.equal(events.at(-1).type, 'reconnecting');
    assert.equal(events.at(-1).code, 4000);
  });

  test('draining: the next attempt waits a random time up to retryAfterMs', async () => {
    mock.method(Math, 'random', () => 0.999);
    const { events, ws } = await joined({ reconnectBaseMs: 100, reconnectMaxMs: 100 });
    ws.receive({ type: 'draining', retryAfterMs: 5000, seq: 3 });
    ws.drop(1001, 'Server shutting down');
    assert.equal(events.at(-1).type, 'reconnecting');
    assert.equal(events.at(-1).delayMs, Math.floor(0.999 * 5001), 'drawn from [0, 5000], not from the 100 ms backoff');
  });

  test('kicked (4403) and taken over (4409) are final', async () => {
    for (const code of [4403, 4409]) {
      FakeWebSocket.reset();
      const { c, events, ws } = await joined();
      const p = c.chat('late');
      ws.drop(code, 'bye');
      assert.equal(events.at(-1).type, 'closed');
      assert.equal(events.at(-1).code, code);
      await assert.rejects(p, { code: 'closed' });
      mock.timers.tick(60000);
      assert.equal(FakeWebSocket.instances.length, 1, 'no reconnect');
      await assert.rejects(c.chat('after'), { code: 'closed' });
    }
  });

  test('maxReconnectAttempts: reconnect-failed, then closed', async () => {
    mock.method(Math, 'random', () => 0);
    const { events } = await client({ maxReconnectAttempts: 2 });
    FakeWebSocket.last.drop();
    mock.timers.tick(0);
    FakeWebSocket.last.drop();
    mock.timers.tick(0);
    FakeWebSocket.last.drop();
    assert.deepEqual(events.slice(-2).map((e) => e.type), ['reconnect-failed', 'closed']);
    assert.equal(events.at(-2).attempts, 2);
    assert.equal(FakeWebSocket.instances.length, 3);
  });

  test('a connection attempt that gets no session in time is abandoned', async () => {
    const { events } = await client({ connectTimeoutMs: 2000 });
    FakeWebSocket.last.open(); // but no `connected`
    mock.timers.tick(2000);
    assert.ok(FakeWebSocket.last.closedWith);
    assert.equal(events.at(-1).type, 'reconnecting');
  });

  test('a token goes in a bearer. subprotocol; after a failed handshake it goes as a message, whose refusal is final', async () => {
    mock.method(Math, 'random', () => 0);
    const { events } = await client({ token: 'secret.JWT-x_y' });
    await flush();
    let ws = FakeWebSocket.last;
    assert.deepEqual(ws.protocols, ['webrtc-signaling', 'bearer.secret.JWT-x_y']);
    // The browser reports a refused upgrade (HTTP 401) as a failure before open.
    ws.drop(1006);
    mock.timers.tick(0);
    await flush();
    ws = FakeWebSocket.last;
    assert.deepEqual(ws.protocols, ['webrtc-signaling']);
    ws.open();
    assert.deepEqual(ws.sent[0], { type: 'auth', token: 'secret.JWT-x_y' });
    ws.drop(4401, 'bad token');
    assert.equal(events.at(-1).type, 'closed');
  });

  test('a token a subprotocol can not carry, or tokenIn: message, goes as the first message', async () => {
    for (const [token, extra] of [['has space', {}], ['plain', { tokenIn: 'message' }]]) {
      FakeWebSocket.reset();
      const { c } = await client({ token, ...extra });
      await flush();
      const ws = FakeWebSocket.last;
      assert.deepEqual(ws.protocols, ['webrtc-signaling']);
      ws.open();
      assert.deepEqual(ws.sent[0], { type: 'auth', token });
      await c.close();
    }
    assert.throws(() => new SignalingClient('ws://x/ws', { WebSocket: FakeWebSocket, tokenIn: 'header' }), TypeError);
  });

  test('encoding msgpack offers the MessagePack subprotocol and speaks binary once selected', async () => {
    const { c } = await client({ encoding: 'msgpack' });
    await flush();
    const ws = FakeWebSocket.last;
    assert.deepEqual(ws.protocols, ['webrtc-signaling.msgpack']);
    assert.equal(ws.binaryType, 'arraybuffer');
    ws.protocol = 'webrtc-signaling.msgpack';
    ws.binary = true;
    ws.accept();
    const joining = c.join('r');
    const join = ws.sentOf('join')[0];
    assert.equal(join.roomId, 'r');
    ws.receive({ type: 'room-info', roomId: 'r', users: [], peers: [], you: { userId: 'u' }, seq: 1 });
    assert.equal((await joining).roomId, 'r');
    assert.ok(ws.rawSent.every((f) => f instanceof Uint8Array), 'every frame binary');
    assert.throws(() => new SignalingClient('ws://x/ws', { WebSocket: FakeWebSocket, encoding: 'cbor' }), TypeError);
    await c.close();
  });

  test('a token provider is asked on every attempt and may replace a refused token', async () => {
    mock.method(Math, 'random', () => 0);
    let n = 0;
    const { c, events } = await client({ token: async () => `t${++n}` });
    await flush();
    FakeWebSocket.last.open();
    FakeWebSocket.last.drop(4401, 'expired');
    mock.timers.tick(0);
    await flush();
    assert.equal(FakeWebSocket.instances.length, 2);
    // The first attempt opened: the refreshed token goes in the subprotocol again.
    assert.deepEqual(FakeWebSocket.last.protocols, ['webrtc-signaling', 'bearer.t2']);
    FakeWebSocket.last.open();
    assert.deepEqual(FakeWebSocket.last.sent, []);
    assert.ok(!events.some((e) => e.type === 'closed'));
    await c.close();
  });
});

describe('resume', () => {
  test('resume with lastSeq; replayed duplicates dropped; unacknowledged messages retransmitted with their ids', async () => {
    mock.method(Math, 'random', () => 0);
    const { c, events, ws } = await joined();
    ws.receive({ type: 'message', from: 'bob', data: 1, seq: 3 });
    const pending = c.send('bob', 'hello');
    const written = ws.sentOf('message')[0];
    ws.drop();
    const queued = c.send('bob', 'while away');
    mock.timers.tick(0);
    const ws2 = FakeWebSocket.last;
    ws2.accept('s-new');
    assert.deepEqual(ws2.sent.at(-1), { type: 'resume', sessionId: 's1', resumeToken: 't-s1', lastSeq: 3 });
    assert.equal(ws2.sentOf('message').length, 0, 'nothing before the resume answer');
    ws2.receive({ type: 'resumed', sessionId: 's1', replayed: 2 });
    assert.equal(c.sessionId, 's1');
    assert.deepEqual(ws2.sentOf('message').map((m) => [m.id, m.data]), [[written.id, 'hello'], [written.id + 1, 'while away']]);
    // Replay from before what we had, then new messages.
    ws2.receive({ type: 'message', from: 'bob', data: 1, seq: 3 });
    ws2.receive({ type: 'message', from: 'bob', data: 2, seq: 4 });
    const delivered = events.filter((e) => e.type === 'message').map((e) => e.data);
    assert.deepEqual(delivered, [1, 2], 'each message once');
    ws2.receive({ type: 'ack', id: written.id, seq: 5 });
    ws2.receive({ type: 'ack', id: written.id + 1, seq: 6 });
    await Promise.all([pending, queued]);
    const resumed = events.find((e) => e.type === 'resumed');
    assert.equal(resumed.restored, false);
  });

  test('acks are cumulative: after ackEvery messages or ackDelayMs', async () => {
    const { ws } = await joined({ ackEvery: 4, ackDelayMs: 100 });
    mock.timers.tick(100);
    assert.deepEqual(ws.sentOf('ack').map((a) => a.seq), [2], 'the join exchange, after the delay');
    for (let s = 3; s <= 6; s++) ws.receive({ type: 'message', from: 'bob', data: s, seq: s });
    assert.deepEqual(ws.sentOf('ack').map((a) => a.seq), [2, 6], 'at once after 4');
    ws.receive({ type: 'message', from: 'bob', data: 7, seq: 7 });
    mock.timers.tick(99);
    assert.equal(ws.sentOf('ack').length, 2);
    mock.timers.tick(1);
    assert.deepEqual(ws.sentOf('ack').map((a) => a.seq), [2, 6, 7]);
  });

  test('resume-failed: rooms re-joined first, written messages fail, queued ones follow, then rejoined', async () => {
    mock.method(Math, 'random', () => 0);
    const { c, events, ws } = await joined();
    const written = c.sendOffer('bob', 'stale offer');
    ws.drop();
    const queued = c.chat('queued while away');
    mock.timers.tick(0);
    const ws2 = FakeWebSocket.last;
    ws2.accept('s2');
    ws2.receive({ type: 'error', code: 'resume-failed', message: 'unknown session', seq: 1 });
    await assert.rejects(written, { code: 'resume-failed' });
    assert.equal(c.sessionId, 's2');
    const app = ws2.appSent().filter((m) => m.type !== 'resume');
    assert.deepEqual(app.map((m) => m.type), ['join', 'chat'], 'the re-join goes first; the stale offer is not resent');
    assert.equal(app[0].userId, 'alice');
    assert.equal(app[0].roomId, 'r');
    ws2.receive({ type: 'ack', id: app[0].id, seq: 2 });
    ws2.receive({ type: 'room-info', roomId: 'r', users: ['bob'], peers: [{ userId: 'bob', polite: true }], you: { userId: 'alice' }, seq: 3 });
    const tail = events.slice(-2).map((e) => e.type);
    assert.deepEqual(tail, ['room-info', 'rejoined']);
    assert.deepEqual(events.at(-1).rooms, ['r']);
    ws2.receive({ type: 'ack', id: app[1].id, seq: 4 });
    await queued;
    assert.deepEqual(c.rooms, ['r']);
  });
});

describe('auth', () => {
  test('a refused token during a resume keeps the old session for the next attempt', async () => {
    mock.method(Math, 'random', () => 0);
    let n = 0;
    // The token as a message: the server answers a refused one after the upgrade.
    const { c } = await client({ token: () => `t${++n}`, tokenIn: 'message' });
    await flush();
    FakeWebSocket.last.accept('s1');
    FakeWebSocket.last.drop();
    mock.timers.tick(0);
    await flush();
    const ws = FakeWebSocket.last;
    ws.accept('s-fresh');
    assert.equal(ws.sentOf('resume')[0].sessionId, 's1');
    ws.receive({ type: 'error', code: 'unauthorized', message: 'token expired' });
    ws.drop(4401, 'token expired');
    mock.timers.tick(0);
    await flush();
    const ws3 = FakeWebSocket.last;
    ws3.accept('s-fresh-2');
    assert.deepEqual(ws3.sent.map((m) => m.type), ['auth', 'resume']);
    assert.equal(ws3.sentOf('resume')[0].sessionId, 's1', 'still the old session');
    assert.equal(ws3.sent[0].token, 't3');
    await c.close();
  });
});

describe('close and reload', () => {
  test('close() writes what is queued, waits for its ack, closes with 1000; later sends fail', async () => {
    const { c, events, ws } = await joined();
    const p = c.chat('last words');
    const closing = c.close();
    assert.equal(ws.closedWith, null, 'waits for the ack');
    ws.receive({ type: 'ack', id: ws.sentOf('chat')[0].id, seq: 3 });
    await closing;
    await p;
    assert.equal(ws.closedWith.code, 1000);
    assert.equal(events.at(-1).type, 'closed');
    assert.equal(c.state, 'closed');
    await assert.rejects(c.chat('too late'), { code: 'closed' });
    assert.equal(FakeWebSocket.instances.length, 1);
  });

  test('close() gives up waiting after closeTimeoutMs and rejects what is pending', async () => {
    const { c, ws } = await joined({ closeTimeoutMs: 500 });
    const p = c.chat('never acked');
    const closing = c.close();
    mock.timers.tick(500);
    await closing;
    await assert.rejects(p, { code: 'closed' });
    assert.equal(ws.closedWith.code, 1000);
  });

  test('close() while waiting to reconnect stops for good', async () => {
    const { c, ws } = await joined();
    ws.drop();
    await c.close();
    mock.timers.tick(120000);
    assert.equal(FakeWebSocket.instances.length, 1);
  });

  test('a reloaded page resumes the stored session and keeps the server-assigned user id', async () => {
    const storage = new MemoryStorage();
    const first = await client({ storage });
    FakeWebSocket.last.accept('s1');
    const ws = FakeWebSocket.last;
    first.c.join('r');
    ws.receive({ type: 'ack', id: ws.sentOf('join')[0].id, seq: 1 });
    ws.receive({ type: 'room-info', roomId: 'r', users: [], peers: [], you: { userId: 'u-42' }, seq: 2 });
    ws.receive({ type: 'chat', roomId: 'r', from: 'x', content: 'hi', seq: 3 });
    assert.equal(first.c.userId, 'u-42');
    // The page goes away without close() (a reload); a new page starts.
    const second = await client({ storage });
    assert.equal(second.c.userId, 'u-42');
    assert.deepEqual(second.c.rooms, ['r']);
    const ws2 = FakeWebSocket.last;
    ws2.accept('s-fresh');
    assert.deepEqual(ws2.sent.at(-1), { type: 'resume', sessionId: 's1', resumeToken: 't-s1', lastSeq: 3 });
    ws2.receive({ type: 'resumed', sessionId: 's1', replayed: 0 });
    assert.equal(second.events.find((e) => e.type === 'resumed').restored, true);
    assert.equal(second.c.sessionId, 's1');
  });

  test('a reloaded page whose session ended re-joins its rooms with the same user id', async () => {
    const storage = new MemoryStorage();
    storage.setItem(`switchboard:${URL}`, JSON.stringify({ userId: 'u-7', sessionId: 'old', resumeToken: 'tok', lastSeq: 9, rooms: ['r'] }));
    const { c, events } = await client({ storage });
    const ws = FakeWebSocket.last;
    ws.accept('s-new');
    ws.receive({ type: 'error', code: 'resume-failed', message: 'gone', seq: 1 });
    const join = ws.sentOf('join')[0];
    assert.equal(join.userId, 'u-7');
    ws.receive({ type: 'room-info', roomId: 'r', users: [], peers: [], you: { userId: 'u-7' }, seq: 2 });
    assert.deepEqual(events.at(-1), { type: 'rejoined', rooms: ['r'] });
    assert.equal(c.sessionId, 's-new');
    assert.equal(JSON.parse(storage.getItem(`switchboard:${URL}`)).sessionId, 's-new');
  });

  test('a stored session of another user is ignored; close() forgets the session but not the user', async () => {
    const storage = new MemoryStorage();
    storage.setItem(`switchboard:${URL}`, JSON.stringify({ userId: 'bob', sessionId: 'old', resumeToken: 'tok', lastSeq: 9, rooms: ['r'] }));
    const { c } = await client({ storage, userId: 'alice' });
    const ws = FakeWebSocket.last;
    ws.accept('s1');
    assert.equal(ws.sentOf('resume').length, 0);
    await c.close();
    assert.deepEqual(JSON.parse(storage.getItem(`switchboard:${URL}`)), { userId: 'alice' });
  });
});
