// Every example runs: the quickstart of docs/NODE.md, the auth-hook server,
// the Express app in attach mode, the bot client, and the TypeScript example
// (type-checked with `tsc --noEmit`, then compiled and run).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { test } from 'node:test';

import { Client } from '../esm/index.mjs';
import { FAST_CLIENT, startServer, waitFor } from './helpers.mjs';

const pkg = fileURLToPath(new URL('..', import.meta.url));

/** Spawns an example; resolves with the process and its first line matching `ready`. */
async function spawnExample(file, args, ready) {
  const p = spawn(process.execPath, [join(pkg, 'examples', file), ...args], { cwd: pkg, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  const match = await waitFor(() => ready.exec(out) ?? (p.exitCode !== null && Promise.reject(new Error(out))), 20000, `${file} to start`);
  return { p, match, output: () => out };
}

async function stopExample(p) {
  p.kill('SIGTERM');
  const [code] = await once(p, 'exit');
  return code;
}

test('examples/quickstart.mjs: the API at a glance runs to its end and the process exits', () => {
  const run = spawnSync(process.execPath, [join(pkg, 'examples', 'quickstart.mjs')], { cwd: pkg, encoding: 'utf8', timeout: 30000 });
  assert.equal(run.status, 0, run.stdout + run.stderr);
  const lines = run.stdout.trim().split('\n');
  assert.match(lines[0], /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
  for (const line of [
    'bob joined room-1', // the user-joined listener
    'alice joined room-1',
    'answer: answer to v=0 alice', // bob's offer listener answered
    'broadcast to 2',
    "peers: [ 'bob', 'alice' ] rooms: 1",
    'alice joined stage', // host-side join
    "bob was kicked; alice saw [ 'bob' ] at her join",
  ]) {
    assert.ok(lines.includes(line), `${line} in:\n${run.stdout}`);
  }
});

test('examples/auth-server.mjs: hook admits known tokens, welcomes, refuses others', async () => {
  const { p, match, output } = await spawnExample('auth-server.mjs', ['--listen', '127.0.0.1:0'], /listening on (ws:\S+)/);
  const url = match[1];
  const alice = await Client.connect(url, { token: 'token-alice', ...FAST_CLIENT });
  const welcome = alice.next('message'); // the host's welcome
  const info = await alice.join('blue-standup');
  assert.equal(info.you.userId, 'alice');
  const w = await welcome;
  assert.equal(w.from, 'host');
  assert.deepEqual(w.data, { welcome: 'hello alice' });
  await assert.rejects(alice.join('red-room'), (e) => e.code === 'forbidden');
  await assert.rejects(Client.connect(url, { token: 'token-mallory' }), (e) => e.code === 'unauthorized');
  await alice.close();
  await waitFor(() => output().includes('alice left blue-standup (closed)'), 5000, 'the user-left log');
  assert.equal(await stopExample(p), 0, output());
});

test('examples/express-app.mjs: Express routes and signaling on one port', async () => {
  const { p, match, output } = await spawnExample('express-app.mjs', ['--port', '0'], /listening on (http:\/\/\S+) /);
  const base = match[1];
  const ws = `${base.replace('http://', 'ws://')}/ws`;
  const a = await Client.connect(ws, { userId: 'a', ...FAST_CLIENT });
  const b = await Client.connect(ws, { userId: 'b', ...FAST_CLIENT });
  await a.join('lobby');
  await b.join('lobby');
  const rooms = await (await fetch(`${base}/rooms`)).json();
  assert.deepEqual(rooms[0].peers.map((x) => x.userId), ['a', 'b']);
  const metrics = await fetch(`${base}/metrics`);
  assert.match(metrics.headers.get('content-type'), /openmetrics/);
  assert.match(await metrics.text(), /switchboard_connections 2/);
  const announced = b.next('message');
  const res = await fetch(`${base}/rooms/lobby/announce`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'standup in 5' }),
  });
  assert.deepEqual(await res.json(), { delivered: 2 });
  assert.deepEqual((await announced).data, { announcement: 'standup in 5' });
  const offer = b.next('offer');
  await a.sendOffer('b', { sdp: 'x' });
  assert.equal((await offer).from, 'a');
  const draining = a.next('draining');
  const code = stopExample(p);
  await draining;
  assert.equal(await code, 0, output());
  await a.close();
  await b.close();
});

test('examples/bot.mjs: answers offers and echoes chat', async () => {
  const server = await startServer();
  const { p, output } = await spawnExample('bot.mjs', [server.url, 'room-9', 'bot'], /joined room-9/);
  const me = await Client.connect(server.url, { userId: 'me', ...FAST_CLIENT });
  const info = await me.join('room-9');
  assert.deepEqual(info.users, ['bot']);
  const answer = me.next('answer');
  await me.sendOffer('bot', { type: 'offer', sdp: 'v=0 me' });
  const a = await answer;
  assert.equal(a.from, 'bot');
  assert.equal(a.sdp.sdp, 'answer-to:v=0 me');
  const echo = new Promise((resolve) => me.on('chat', (m) => m.from === 'bot' && resolve(m)));
  await me.chat('ping');
  assert.equal((await echo).content, 'echo: ping');
  const left = me.next('user-left');
  assert.equal(await stopExample(p), 0, output());
  assert.equal((await left).reason, 'closed');
  await me.close();
  await server.stop();
});

test('examples/typescript: tsc --noEmit passes, and the compiled example runs', () => {
  const tsc = join(pkg, 'node_modules', '.bin', 'tsc');
  const project = join(pkg, 'examples', 'typescript', 'tsconfig.json');
  const check = spawnSync(tsc, ['--noEmit', '-p', project], { cwd: pkg, encoding: 'utf8' });
  assert.equal(check.status, 0, check.stdout + check.stderr);
  const build = spawnSync(tsc, ['-p', project], { cwd: pkg, encoding: 'utf8' });
  assert.equal(build.status, 0, build.stdout + build.stderr);
  const run = spawnSync(process.execPath, [join(pkg, '.ts-example-out', 'server.js')], { cwd: pkg, encoding: 'utf8', timeout: 30000 });
  assert.equal(run.status, 0, run.stdout + run.stderr);
  const result = JSON.parse(run.stdout.trim().split('\n').at(-1));
  assert.deepEqual(result.peers, ['alice']);
  assert.equal(result.from, 'bob');
  assert.deepEqual(result.seen, ['alice joined demo (polite: false)', 'bob joined demo (polite: false)', 'offer bob -> alice in demo', 'peer-not-found']);
});

test('a type error in user code is caught by the package types', () => {
  // The control case of the check above: a wrong event field must not compile.
  const tsc = join(pkg, 'node_modules', '.bin', 'tsc');
  const bad = spawnSync(
    tsc,
    ['-p', join(pkg, 'test', 'fixtures', 'tsconfig.json')],
    { cwd: pkg, encoding: 'utf8' },
  );
  assert.notEqual(bad.status, 0);
  assert.match(bad.stdout, /userName/);
});
