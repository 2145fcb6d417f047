#!/usr/bin/env node
// Builds the package from source: the native addon (cargo, through the napi-rs
// CLI, which also writes the loader `native/index.js` and its types
// `native/index.d.ts`), then the TypeScript layer (`tsc` → `dist/`), then copies
// the browser client (`../browser/dist`) to `browser/` when it exists.
// Runs as the package's `install` script, so `npm install` inside `node/` and
// `npm install /path/to/switchboard/node` from any project both build it.
// Flags: `--debug` (dev profile, faster to build), `--skip-native`.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(pkg, '..');
const args = new Set(process.argv.slice(2));
const say = (m) => process.stderr.write(`switchboard: ${m}\n`);

function run(cmd, argv, env = process.env) {
  const r = spawnSync(cmd, argv, { cwd: pkg, stdio: 'inherit', env });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    say(`\`${cmd} ${argv.join(' ')}\` failed (exit ${r.status})`);
    process.exit(r.status ?? 1);
  }
}

const crate = join(repo, 'bindings', 'node', 'Cargo.toml');
if (!existsSync(crate)) {
  say(`the native addon builds from the Switchboard repository, but ${crate} is missing`);
  process.exit(1);
}

// Installed as a linked folder (`npm install ../switchboard/node`), npm does not
// install this package's own dependencies: do it here, build tools included.
// The outer npm's `npm_*` variables (prefix, command, …) must not leak into it.
const bin = (name) => join(pkg, 'node_modules', '.bin', name);
if (!existsSync(bin('napi')) || !existsSync(bin('tsc')) || !existsSync(join(pkg, 'node_modules', 'ws'))) {
  say('installing build dependencies in node/');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  run(npm, ['install', '--ignore-scripts', '--include=dev', '--no-audit', '--no-fund', '--prefix', pkg], env);
}

if (!args.has('--skip-native')) {
  const started = Date.now();
  say(`building the native addon (cargo, ${args.has('--debug') ? 'debug' : 'release'}; a first release build takes several minutes)`);
  run(bin('napi'), [
    'build',
    '--platform',
    ...(args.has('--debug') ? [] : ['--release']),
    '--manifest-path', crate,
    '--package-json-path', join(pkg, 'package.json'),
    '--output-dir', join(pkg, 'native'),
    '--js', 'index.js',
    '--dts', 'index.d.ts',
  ]);
  say(`native addon built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

say('compiling the TypeScript layer');
run(bin('tsc'), ['-p', join(pkg, 'tsconfig.json')]);

// The browser client (another part of the repository) ships as `switchboard/browser`.
const browserDist = join(repo, 'browser', 'dist');
const files = ['switchboard.js', 'switchboard.d.ts'];
if (files.every((f) => existsSync(join(browserDist, f)))) {
  mkdirSync(join(pkg, 'browser'), { recursive: true });
  for (const f of files) copyFileSync(join(browserDist, f), join(pkg, 'browser', f));
  // The browser client is an ES module; this package is CommonJS by default.
  writeFileSync(join(pkg, 'browser', 'package.json'), '{ "type": "module" }\n');
  say('copied the browser client to browser/');
} else {
  say('browser/dist not built yet: `switchboard/browser` is not available in this build');
}
