// `npm install /path/to/node` from another project builds and installs the
// package (its install script: native addon + TypeScript), and both entry
// points (require and import) work from there. Skipped builds are not an
// option: the cargo build is incremental after the suite's own build.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const pkg = fileURLToPath(new URL('..', import.meta.url));

test('npm install ./node from another project, then require and import', { timeout: 600000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-install-'));
  try {
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    // The outer `npm test` environment must not leak into this npm run.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
    const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', pkg], { cwd: dir, env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const installed = join(dir, 'node_modules', 'switchboard');
    assert.equal(realpathSync(installed), realpathSync(pkg));
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    assert.ok(manifest.dependencies.switchboard, 'recorded in the app package.json');

    const script = `
      const { Server, Client, SwitchboardError, version } = require('switchboard');
      (async () => {
        const esm = await import('switchboard');
        if (esm.Server !== Server) throw new Error('ESM and CommonJS must share classes');
        const s = await Server.start({ listen: '127.0.0.1:0', allowedOrigins: ['http://x'] });
        const c = await Client.connect(s.url, { userId: 'x' });
        const info = await c.join('r');
        await c.close();
        await s.stop();
        console.log(JSON.stringify({ version, room: info.roomId, err: typeof SwitchboardError }));
      })();`;
    const run = spawnSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8', timeout: 60000 });
    assert.equal(run.status, 0, run.stdout + run.stderr);
    const out = JSON.parse(run.stdout.trim());
    assert.equal(out.room, 'r');
    assert.equal(out.version, JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).version);
    assert.equal(out.err, 'function');

    // The browser subpath resolves to the browser client's ES module when it was built.
    const browser = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', "const m = await import('switchboard/browser'); console.log(typeof m.SignalingClient)"],
      { cwd: dir, encoding: 'utf8' },
    );
    if (existsSync(join(pkg, 'browser', 'switchboard.js'))) {
      assert.equal(browser.status, 0, browser.stderr);
      assert.equal(browser.stdout.trim(), 'function');
      assert.equal(browser.stderr, '', 'loads as an ES module without warnings');
    } else {
      assert.notEqual(browser.status, 0, 'no browser build, no browser entry');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the ESM entry exports the same names as the CommonJS entry', async () => {
  const esm = await import('../esm/index.mjs');
  const { createRequire } = await import('node:module');
  const cjs = createRequire(import.meta.url)('../dist/index.js');
  const names = (o) => Object.keys(o).filter((k) => k !== 'default' && k !== '__esModule').sort();
  assert.deepEqual(names(esm), names(cjs));
});
