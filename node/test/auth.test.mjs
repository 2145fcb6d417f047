// Authentication: the async JS auth hook awaited by the core (allow, deny,
// timeout, throw), on the own listener and in attach mode; static tokens; JWT.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { once } from 'node:events';
import { test } from 'node:test';

import { Client } from '../esm/index.mjs';
import { FAST_CLIENT, RawClient, startServer, waitFor } from './helpers.mjs';

const isCode = (code) => (e) => {
  assert.ok(e instanceof Error);
  assert.equal(e.code, code, e.message);
  return true;
};

/** A hook: `good-*` tokens admit `*` (after an await), `slow` never answers, `boom` throws. */
function makeHook(calls) {
  return async (req) => {
    calls.push(req);
    await new Promise((r) => setTimeout(r, 5));
    if (req.token === 'slow') return new Promise(() => {});
    if (req.token === 'boom') throw new Error('hook exploded');
    if (req.token?.startsWith('good-')) {
      return { userId: req.token.slice(5), metadata: { plan: 'pro' }, rooms: ['team-*'] };
    }
    return null;
  };
}

async function withAttachment(server) {
  const h = http.createServer((req, res) => res.end());
  h.listen(0, '127.0.0.1');
  await once(h, 'listening');
  return { h, a: server.attach(h) };
}

test('auth hook: allow, deny, timeout and throw — own listener and attach mode', async () => {
  const calls = [];
  const server = await startServer({ auth: { hook: makeHook(calls) }, authTimeoutMs: 300 });
  const { h, a } = await withAttachment(server);
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);

  for (const url of [server.url, a.url]) {
    // Allow: the hook's identity is the user; its rooms claim is enforced.
    const alice = await Client.connect(url, { token: 'good-alice', ...FAST_CLIENT });
    const info = await alice.join('team-1');
    assert.equal(info.you.userId, 'alice');
    assert.deepEqual(info.you.metadata, { plan: 'pro' });
    await assert.rejects(alice.join('elsewhere'), isCode('forbidden'));
    await alice.close();
    const last = calls.at(-1);
    assert.equal(last.token, 'good-alice');
    assert.equal(last.path, '/ws');
    assert.equal(last.ip, '127.0.0.1');

    // Deny (HTTP 401 before the upgrade).
    await assert.rejects(Client.connect(url, { token: 'bad', ...FAST_CLIENT }), isCode('unauthorized'));
    // Timeout: the core stops waiting after authTimeoutMs and refuses.
    const started = Date.now();
    await assert.rejects(Client.connect(url, { token: 'slow', ...FAST_CLIENT }), isCode('unauthorized'));
    assert.ok(Date.now() - started < 5000);
    // A throwing hook refuses and is reported, the process lives on.
    await assert.rejects(Client.connect(url, { token: 'boom', ...FAST_CLIENT }), isCode('unauthorized'));
  }
  await waitFor(() => warnings.filter((w) => /hook exploded/.test(w.message)).length === 2, 5000, 'warnings');

  // A raw `ws` client with `?token=`, and the first-message `auth` flow.
  const raw = await RawClient.open(`${a.url}?token=good-carol`);
  raw.send({ type: 'join', roomId: 'team-x' });
  assert.equal((await raw.next('room-info')).you.userId, 'carol');
  raw.close();
  await assert.rejects(RawClient.open(`${server.url}?token=nope`), (e) => e.status === 401);
  await assert.rejects(RawClient.open(`${a.url}?token=nope`), (e) => e.status === 401);
  const late = await RawClient.open(a.url);
  late.send({ type: 'auth', token: 'good-dave', id: 1 });
  assert.equal((await late.next('ack')).id, 1);
  late.send({ type: 'join', roomId: 'team-y' });
  assert.equal((await late.next('room-info')).you.userId, 'dave');
  late.close();

  process.off('warning', onWarning);
  await server.stop();
  h.close();
});

test('static tokens and JWT', async () => {
  const tokens = await startServer({ auth: { tokens: { 'tok-a': 'ann' } } });
  const ann = await Client.connect(tokens.url, { token: 'tok-a', ...FAST_CLIENT });
  assert.equal((await ann.join('r')).you.userId, 'ann');
  await ann.close();
  await assert.rejects(Client.connect(tokens.url, { token: 'tok-x' }), isCode('unauthorized'));
  await tokens.stop();

  const secret = 'a-test-secret-of-enough-length-123';
  const jwt = await startServer({ auth: { jwt: { secret, audience: 'sb' } } });
  const sign = (claims, key = secret) => {
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const data = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
    return `${data}.${crypto.createHmac('sha256', key).update(data).digest('base64url')}`;
  };
  const exp = Math.floor(Date.now() / 1000) + 600;
  const bea = await Client.connect(jwt.url, { token: sign({ sub: 'bea', exp, aud: 'sb' }), ...FAST_CLIENT });
  assert.equal((await bea.join('r')).you.userId, 'bea');
  await bea.close();
  await assert.rejects(
    Client.connect(jwt.url, { token: sign({ sub: 'eve', exp, aud: 'sb' }, 'wrong-key-wrong-key-wrong-key-00') }),
    isCode('unauthorized'),
  );
  await assert.rejects(
    Client.connect(jwt.url, { token: sign({ sub: 'old', exp: exp - 7200, aud: 'sb' }) }),
    isCode('unauthorized'),
  );
  await jwt.stop();
});
