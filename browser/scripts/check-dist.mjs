// Rebuilds src/ (scripts/build.mjs) into a temporary directory and fails when
// the committed dist/switchboard.js or dist/switchboard.d.ts, or the server's
// embedded copy core/assets/switchboard.js, differ from it (the server embeds
// and the npm package ships the committed files, so they must match the source).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { build, embeddedCopy, root } from './build.mjs';

const out = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-dist-'));
try {
  build(out);
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
  const embedded = fs.existsSync(embeddedCopy) ? fs.readFileSync(embeddedCopy, 'utf8') : null;
  if (embedded !== fs.readFileSync(path.join(out, 'switchboard.js'), 'utf8')) {
    console.error('core/assets/switchboard.js (the copy the server embeds) is not the compiled browser/src: run `npm run build` in browser/ and commit it');
    stale++;
  }
  if (stale) process.exit(1);
  console.log('browser/dist and core/assets/switchboard.js match browser/src');
} finally {
  fs.rmSync(out, { recursive: true, force: true });
}
