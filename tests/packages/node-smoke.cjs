// Smoke test of the installed npm packages (run by scripts/test-packages.sh in
// an empty project that installed the two tarballs, with no cargo on the PATH):
// the addon comes from the platform package, not from a build; a server starts
// without a port, attaches to the app's http server, a client joins through it
// and relays an offer, everything stops, and the process exits by itself.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { Server, Client } = require('switchboard');

const main = path.dirname(require.resolve('switchboard/package.json'));
assert.deepEqual(fs.readdirSync(path.join(main, 'native')).filter((f) => f.endsWith('.node')), [], 'no addon in the main package');
const platform = path.dirname(require.resolve('switchboard-linux-x64-gnu/package.json'));
assert.ok(fs.existsSync(path.join(platform, 'switchboard.linux-x64-gnu.node')), 'the addon is in the platform package');

(async () => {
  const app = http.createServer((req, res) => res.end('app'));
  await new Promise((ok) => app.listen(0, '127.0.0.1', ok));
  const signaling = await Server.start({ listen: null, path: '/ws', allowedOrigins: ['http://app.test'] });
  signaling.attach(app, { path: '/ws' });
  const url = `ws://127.0.0.1:${app.address().port}/ws`;
  const ann = await Client.connect(url, { userId: 'ann' });
  const bob = await Client.connect(url, { userId: 'bob' });
  await ann.join('room-1');
  await bob.join('room-1');
  const offer = new Promise((ok) => bob.once('offer', ok));
  await ann.sendOffer('bob', { type: 'offer', sdp: 'v=0' });
  const got = await offer;
  assert.equal(got.from, 'ann');
  assert.deepEqual(got.sdp, { type: 'offer', sdp: 'v=0' });
  await ann.close();
  await bob.close();
  await signaling.stop();
  await new Promise((ok) => app.close(ok));
  console.log('node packages: ok');
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
