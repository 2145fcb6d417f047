// The docs/BROWSER.md example (test/e2e/page/quickstart.js) in headless
// Chromium, on a server of its own: bob is a test-page participant in room-1;
// the example page (alice) gets camera and microphone, joins, has the
// negotiation helper open a connection to bob with her tracks, chats, closes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { launchBrowser, openTestPage, startServer, waitInPage } from './harness.mjs';

const pageDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'page');

let server;
let browser;

before(async () => {
  // Its own server (extra arguments start one): the example's room-1 is shared with no other test.
  server = await startServer(['--path', '/ws']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('docs/BROWSER.md: the example joins, offers its tracks to the peer, chats, closes', { timeout: 60000 }, async () => {
  const bob = await openTestPage(browser, server);
  await bob.evaluate((config) => window.sb.start(config), { url: server.wsUrl, userId: 'bob', room: 'room-1', media: true });

  const alice = await browser.context.newPage();
  const errors = [];
  alice.on('pageerror', (e) => errors.push(e.message));
  await alice.route(`${server.httpOrigin}/e2e/**`, (route) => {
    const file = path.join(pageDir, path.basename(new URL(route.request().url()).pathname));
    const type = file.endsWith('.js') ? 'text/javascript' : 'text/html';
    route.fulfill({ status: 200, contentType: type, body: fs.readFileSync(file) });
  });
  await alice.goto(`${server.httpOrigin}/e2e/quickstart.html`);
  const result = await waitInPage(alice, () => window.quickstart?.done && window.quickstart, undefined, { what: 'the example to finish' });
  assert.deepEqual(errors, []);

  // join() resolved with room-info naming bob; the helper opened a connection
  // to him with the camera and microphone tracks.
  assert.equal(result.info.type, 'room-info');
  assert.deepEqual(result.info.peers.map((p) => p.userId), ['bob']);
  assert.deepEqual(result.calls, [{ peerId: 'bob', tracks: 2 }]);
  // bob got the chat line, then saw alice leave when she closed.
  await waitInPage(bob, () => window.sb.events.some((e) => e.type === 'chat' && e.from === 'alice'), undefined, { what: "alice's chat" });
  await waitInPage(bob, () => window.sb.events.some((e) => e.type === 'user-left' && e.userId === 'alice'), undefined, { what: 'alice leaving' });
  await alice.close();
  await bob.close();
});
