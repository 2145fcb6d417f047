// The process exits by itself after stop()/close(): every threadsafe function
// and pending promise of the addon is released (no process.exit anywhere).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const child = fileURLToPath(new URL('./fixtures/exit-child.mjs', import.meta.url));

function run(mode) {
  const p = spawn(process.execPath, [child, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  return { p, output: () => out };
}

test('after stop() and close() the process exits on its own', async () => {
  const { p, output } = run('stop');
  const timer = setTimeout(() => p.kill('SIGKILL'), 20000);
  const [code, signal] = await once(p, 'exit');
  clearTimeout(timer);
  assert.equal(signal, null, `killed: the process did not exit by itself\n${output()}`);
  assert.equal(code, 0, output());
  assert.match(output(), /ready\nstopped\n/);
});

test('while a server runs, the process stays alive (the control case)', async () => {
  const { p, output } = run('keep');
  await new Promise((resolve) => {
    const check = () => (output().includes('ready') ? resolve() : setTimeout(check, 20));
    check();
  });
  const exited = once(p, 'exit');
  const stillAlive = await Promise.race([
    exited.then(() => false),
    new Promise((r) => setTimeout(() => r(true), 1500)),
  ]);
  p.kill('SIGKILL');
  await exited;
  assert.equal(stillAlive, true, 'a running server keeps the process alive, as a listening socket does');
});

test('the process exits by itself every time (30 runs, 6 at once)', async () => {
  const failures = [];
  for (let batch = 0; batch < 5; batch++) {
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        const { p, output } = run('stop');
        const timer = setTimeout(() => p.kill('SIGKILL'), 30000);
        const [code, signal] = await once(p, 'exit');
        clearTimeout(timer);
        if (code !== 0 || signal !== null || !/ready\nstopped\n/.test(output())) {
          failures.push({ code, signal, output: output().slice(-300) });
        }
      }),
    );
  }
  assert.deepEqual(failures, [], `${failures.length} of 30 runs did not exit cleanly`);
});
