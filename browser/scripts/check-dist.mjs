// Recompiles src/ into a temporary directory and fails when the committed
// dist/switchboard.js or dist/switchboard.d.ts differ from it (the server embeds
// and the npm package ships the committed files, so they must match the source).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-dist-'));
try {
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json'), '--outDir', out], { stdio: 'inherit' });
  let stale = 0;
  for (const name of ['switchboard.js', 'switchboard.d.ts']) {
    const fresh = fs.readFileSync(path.join(out, name), 'utf8');
    const committedPath = path.join(root, 'dist', name);
    const committed = fs.existsSync(committedPath) ? fs.readFileSync(committedPath, 'utf8') : null;
    if (fresh !== committed) {
      console.error(`browser/dist/${name} is not the compiled browser/src: run \`npm run build\` in browser/ and commit it`);
      stale++;
    }
  }
  if (stale) process.exit(1);
  console.log('browser/dist matches browser/src');
} finally {
  fs.rmSync(out, { recursive: true, force: true });
}
