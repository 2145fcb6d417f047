// The operator API and the admin page on the app's own http.Server
// (`httpHandler()` next to attach mode): the same answers as the binary's.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { test } from 'node:test';

import { Server } from '../esm/index.mjs';
import { FAST, RawClient } from './helpers.mjs';

const KEY = 'node-api-key-0123456789';

function request(port, method, path, { key, body } = {}) {
  return new Promise((resolve, reject) => {
    const headers = key ? { authorization: `Bearer ${key}` } : {};
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let json = null;
        try {
          json = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode, json, text });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('the operator API and /admin through httpHandler(), with attach mode', async () => {
  const server = await Server.start({ ...FAST, listen: null, apiKey: KEY });
  const handler = server.httpHandler();
  const app = http.createServer((req, res) => handler(req, res));
  server.attach(app, { path: '/ws' });
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const port = app.address().port;
  const alice = await RawClient.open(`ws://127.0.0.1:${port}/ws`);
  alice.send({ type: 'join', roomId: 'ops', userId: 'alice' });
  await alice.next('room-info');

  assert.equal((await request(port, 'GET', '/api/v1/info')).status, 401);
  const info = await request(port, 'GET', '/api/v1/info', { key: KEY });
  assert.equal(info.json.connections, 1);
  const room = await request(port, 'GET', '/api/v1/rooms/ops', { key: KEY });
  assert.deepEqual(room.json.members.map((m) => m.userId), ['alice']);
  const sent = await request(port, 'POST', '/api/v1/rooms/ops/users/alice/send', { key: KEY, body: '{"type":"notice","n":1}' });
  assert.deepEqual(sent.json, { delivered: 1 });
  assert.equal((await alice.next('notice')).n, 1);
  const bad = await request(port, 'POST', '/api/v1/rooms/ops/broadcast', { key: KEY, body: '{oops' });
  assert.deepEqual([bad.status, bad.json.error.code], [400, 'invalid-json']);
  const big = await request(port, 'POST', '/api/v1/rooms/ops/broadcast', { key: KEY, body: 'x'.repeat(200_000) });
  assert.equal(big.status, 413);
  const admin = await request(port, 'GET', '/admin');
  assert.equal(admin.status, 200);
  assert.match(admin.text, /admin\.js/);
  const kicked = await request(port, 'POST', '/api/v1/rooms/ops/users/alice/kick', { key: KEY });
  assert.equal(kicked.status, 200);
  assert.equal((await alice.waitClosed()).code, 4403);
  await server.stop();
  app.close();
});
