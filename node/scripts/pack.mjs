#!/usr/bin/env node
// Packs what `npm publish` would publish, the napi-rs way: the main package
// `switchboard` (TypeScript layer, loader, browser client; no binary) with an
// optional dependency on every declared platform package, and the platform
// package of this machine (`switchboard-linux-x64-gnu`) holding the release
// addon built by scripts/build.mjs. The other platform packages are declared
// in npm/ and packed where a machine for them builds their addon. The napi-rs
// loader (native/index.js) picks the platform package at require time. The
// source build (the `install` script, scripts/build.mjs) stays in the checkout:
// the published manifest has no install script, so installing runs nothing.
// Usage: node scripts/pack.mjs <out-dir>  → <out-dir>/*.tgz (names on stdout).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = resolve(process.argv[2] ?? join(pkg, '..', 'target', 'packages', 'npm'));
const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'));
const fail = (m) => {
  process.stderr.write(`pack: ${m}\n`);
  process.exit(1);
};

const platforms = readdirSync(join(pkg, 'npm')).map((dir) => ({
  dir,
  manifest: JSON.parse(readFileSync(join(pkg, 'npm', dir, 'package.json'), 'utf8')),
}));
const here = platforms.filter((p) => existsSync(join(pkg, 'native', p.manifest.main)));
if (here.length !== 1) fail(`expected one built addon in native/ (run \`npm install\` in node/), found ${here.length}`);
if (!existsSync(join(pkg, 'dist', 'index.js'))) fail('dist/ is not built (run `npm install` in node/)');

rmSync(out, { recursive: true, force: true });
const stage = join(out, 'stage');
const pack = (dir) => execFileSync('npm', ['pack', '--silent', '--pack-destination', out], { cwd: dir, encoding: 'utf8' }).trim();

// The platform package: its manifest from npm/<platform>/, the addon stripped of
// debug info (the release profile keeps it for the Rust benches and backtraces).
const [platform] = here;
const platformStage = join(stage, platform.dir);
cpSync(join(pkg, 'npm', platform.dir), platformStage, { recursive: true });
const addon = join(platformStage, platform.manifest.main);
cpSync(join(pkg, 'native', platform.manifest.main), addon);
execFileSync('strip', ['--strip-debug', addon]);
if (platform.manifest.version !== manifest.version) fail(`${platform.dir} is at ${platform.manifest.version}, the package at ${manifest.version}`);
const tarballs = [pack(platformStage)];

// The main package: the `files` of package.json, minus any addon binary, with
// the platform packages as optional dependencies at exactly this version.
const mainStage = join(stage, 'main');
mkdirSync(mainStage, { recursive: true });
const files = manifest.files.filter((f) => f !== 'scripts');
for (const entry of [...files, 'README.md']) {
  if (!existsSync(join(pkg, entry))) continue;
  mkdirSync(dirname(join(mainStage, entry)), { recursive: true });
  cpSync(join(pkg, entry), join(mainStage, entry), { recursive: true });
}
const published = { ...manifest };
delete published.devDependencies;
delete published.scripts; // install (the source build), build and test belong to the checkout
published.files = files;
published.optionalDependencies = Object.fromEntries(platforms.map((p) => [p.manifest.name, manifest.version]));
writeFileSync(join(mainStage, 'package.json'), `${JSON.stringify(published, null, 2)}\n`);
tarballs.push(pack(mainStage));

rmSync(stage, { recursive: true, force: true });
for (const t of tarballs) console.log(join(out, t));
