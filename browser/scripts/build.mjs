// Builds the shipped browser module: `dist/switchboard.js` is src/switchboard.ts
// bundled with its one dependency (@msgpack/msgpack, for the MessagePack
// subprotocol) into a single ES module, so that the server can serve it as one
// file and a page can import it without a bundler; `dist/switchboard.d.ts` are
// the declarations tsc emits. `build(outDir)` is also what check-dist compares.
// The server embeds the same bundle from `core/assets/switchboard.js` (a crate
// packs only files under its own directory), so the default build writes it
// there too.
import { execFileSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildSync } from 'esbuild';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The copy of the bundle that the Rust core embeds and serves at /switchboard.js. */
export const embeddedCopy = path.join(root, '..', 'core', 'assets', 'switchboard.js');

export function build(outDir = path.join(root, 'dist')) {
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  // Type-checks everything; emits only the declarations.
  execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json'), '--emitDeclarationOnly', '--outDir', outDir], {
    stdio: 'inherit',
  });
  buildSync({
    entryPoints: [path.join(root, 'src', 'switchboard.ts')],
    outfile: path.join(outDir, 'switchboard.js'),
    bundle: true,
    format: 'esm',
    target: 'es2022',
    platform: 'browser',
    legalComments: 'inline',
    banner: { js: '// The Switchboard browser client. Bundles @msgpack/msgpack (ISC license, https://github.com/msgpack/msgpack-javascript).' },
    logLevel: 'warning',
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  build();
  copyFileSync(path.join(root, 'dist', 'switchboard.js'), embeddedCopy);
}
