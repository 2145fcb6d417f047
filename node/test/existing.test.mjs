// Existing clients on attach mode (the app's own http.Server): plain `ws`
// clients with the room in the URL (`?room=` on `/`, `/signaling/{roomId}/{userId}`
// whose first frame is an offer), app message types, a MessagePack client
// calling a JSON one, and the host putting users into rooms.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { test } from 'node:test';

import WebSocket from 'ws';

import { Client, Server, SwitchboardError } from '../esm/index.mjs';
import { FAST, FAST_CLIENT, RawClient } from './helpers.mjs';

async function attached(options, path) {
  const server = await Server.start({ ...FAST, listen: null, ...options });
  const app = http.createServer((req, res) => res.writeHead(404).end());
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const attachment = server.attach(app, { path });
  const base = `ws://127.0.0.1:${app.address().port}`;
  return { server, app, attachment, base };
}

test('rooms from the URL: ?room= on the root, and /signaling/{roomId}/{userId}', async () => {
  const { server, app, base } = await attached({ appTypes: ['hangup'] }, '/,/signaling/{roomId}/{userId}');
  const chat = await RawClient.open(`${base}/?room=general&userId=ann`);
  assert.equal((await chat.next('room-info')).roomId, 'general', 'joined at connect, no join sent');
  const alice = await RawClient.open(`${base}/signaling/r1/alice`);
  await alice.next('room-info');
  // Bob's first frame is an offer: he is in r1 before it is read.
  const bob = new RawClient(new WebSocket(`${base}/signaling/r1/bob`));
  await once(bob.ws, 'open');
  bob.send({ type: 'offer', to: 'alice', sdp: { type: 'offer', sdp: 'v=0' } });
  const offer = await alice.next('offer');
  assert.equal(offer.from, 'bob');
  assert.equal(offer.roomId, 'r1');
  // An app type, relayed with `from`; unlisted types keep unknown-type.
  bob.send({ type: 'hangup', to: 'alice', id: 'h' });
  assert.equal((await alice.next('hangup')).from, 'bob');
  await bob.next('ack', (m) => m.id === 'h');
  bob.send({ type: 'mute', to: 'alice' });
  assert.equal((await bob.next('error')).code, 'unknown-type');
  // Bad URL fields are 400 (unknown paths are left to the app's own upgrade handlers).
  await assert.rejects(RawClient.open(`${base}/?room=`), (e) => e.status === 400);
  assert.equal(server.attachments?.length ?? 1, 1);
  assert.throws(() => server.attach(http.createServer(), { path: '/a/{room}' }), (e) => e.code === 'config');
  for (const c of [chat, alice, bob]) c.close();
  await server.stop();
  app.close();
});

test('a MessagePack client and a JSON client call each other; the host moves users', async () => {
  const { server, app, base } = await attached({ appTypes: ['mute'] }, '/ws');
  const packed = await Client.connect(`${base}/ws`, { userId: 'mp', encoding: 'msgpack', ...FAST_CLIENT });
  await packed.join('r');
  const raw = await RawClient.open(`${base}/ws`);
  raw.send({ type: 'join', roomId: 'r', userId: 'js' });
  await raw.next('room-info');
  const muted = new Promise((resolve) => packed.on('mute', resolve));
  raw.send({ type: 'mute', to: 'mp', track: 'audio' });
  const m = await muted;
  assert.equal(m.from, 'js');
  assert.equal(m.track, 'audio');
  await packed.sendOffer('js', { type: 'offer', sdp: 'v=0' });
  assert.equal((await raw.next('offer')).from, 'mp');
  await packed.sendJson({ type: 'mute', to: 'js', track: 'video' });
  assert.equal((await raw.next('mute')).track, 'video');
  // A raw binary frame on the JSON connection closes it with 1003.
  const other = await RawClient.open(`${base}/ws`);
  other.ws.send(Buffer.from([1, 2]));
  assert.equal((await other.waitClosed()).code, 1003);

  await server.join('js', 'stage');
  assert.equal((await raw.next('room-info', (x) => x.roomId === 'stage')).roomId, 'stage');
  await server.join('mp', 'stage');
  const joined = await raw.next('user-joined', (x) => x.roomId === 'stage');
  assert.equal(joined.userId, 'mp');
  await server.leave('mp', 'stage');
  assert.equal((await raw.next('user-left', (x) => x.roomId === 'stage')).reason, 'leave');
  await assert.rejects(server.join('ghost', 'stage'), (e) => e instanceof SwitchboardError && e.code === 'peer-not-found');
  await packed.close();
  raw.close();
  await server.stop();
  app.close();
});
