// End-to-end tests in headless Chromium: real WebRTC calls set up through the
// Switchboard server with the shipped browser client and PerfectNegotiation —
// two pages with media and a data channel, a three-page mesh, a page reload, a
// cut connection with no message lost, glare, and the demo page.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  launchBrowser,
  median,
  openTestPage,
  repoRoot,
  startProxy,
  startServer,
  timings,
  waitConnected,
  waitInPage,
} from './harness.mjs';

let server;
let browser;
let roomCounter = 0;
const newRoom = (name) => `${name}-${process.pid}-${++roomCounter}`;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (timings.length) {
    const fmt = (x) => `${x.toFixed(0)} ms`;
    console.log(
      `join → connected call (RTCPeerConnection connected + data channel open), ${timings.length} samples: ` +
        `median ${fmt(median(timings))}, min ${fmt(Math.min(...timings))}, max ${fmt(Math.max(...timings))}`,
    );
  }
});

/** Opens a test page and starts a participant in it. */
async function participant(room, { userId, srv = server, url = srv.wsUrl, media = true, clientOptions } = {}) {
  const page = await openTestPage(browser, srv);
  const joined = await page.evaluate((config) => window.sb.start(config), { url, userId, room, media, clientOptions });
  return { page, userId: joined.userId, peersAtJoin: joined.peers };
}

/** Records how long the page took from its join() to a connected call with `peerId`. */
async function recordTiming(page, peerId) {
  const ms = await page.evaluate((id) => window.sb.timing.connectedAt[id] - window.sb.timing.joinAt, peerId);
  assert.ok(Number.isFinite(ms) && ms >= 0, `a timing for ${peerId}`);
  timings.push(ms);
  return ms;
}

async function dcRoundTrip(a, b, text) {
  await a.page.evaluate(([id, t]) => window.sb.sendDc(id, t), [b.userId, `${text} from ${a.userId}`]);
  await b.page.evaluate(([id, t]) => window.sb.sendDc(id, t), [a.userId, `${text} from ${b.userId}`]);
  await waitInPage(b.page, ([id, t]) => window.sb.dcReceived[id]?.includes(t), [a.userId, `${text} from ${a.userId}`], { what: `"${text}" at ${b.userId}` });
  await waitInPage(a.page, ([id, t]) => window.sb.dcReceived[id]?.includes(t), [b.userId, `${text} from ${b.userId}`], { what: `"${text}" at ${a.userId}` });
}

/** `aId` joins through a TCP proxy (which the test can cut or stall), `bId` directly; resolves once their call is up. */
async function proxiedPair(srv, room, [aId, bId], options = {}) {
  const proxy = await startProxy(srv.port);
  const a = await participant(room, { ...options, srv, userId: aId, url: `ws://127.0.0.1:${proxy.port}${srv.wsPath}` });
  const b = await participant(room, { ...options, srv, userId: bId });
  await waitConnected(a.page, bId);
  await waitConnected(b.page, aId);
  return { proxy, a, b };
}

async function closeAll(...participants) {
  for (const p of participants) await p?.page.close();
}

describe('browser client in Chromium', { timeout: 120000 }, () => {
  test('two pages: data channel both ways and inbound RTP from the fake camera and microphone', async () => {
    const room = newRoom('pair');
    const alice = await participant(room, { userId: 'alice' });
    const bob = await participant(room, { userId: 'bob' });
    try {
      assert.deepEqual(bob.peersAtJoin, ['alice']);
      await waitConnected(alice.page, 'bob');
      const bobState = await waitConnected(bob.page, 'alice');
      assert.equal(bobState.polite, true, 'the later joiner is polite');
      const ms = await recordTiming(bob.page, 'alice');
      console.log(`two pages: bob's join → connected call in ${ms.toFixed(0)} ms`);

      await dcRoundTrip(alice, bob, 'hello');
      for (const [p, peer] of [[alice, 'bob'], [bob, 'alice']]) {
        const s = await waitInPage(
          p.page,
          async (id) => {
            const st = await window.sb.peerState(id);
            return st.inboundKinds.includes('video') && st.inboundKinds.includes('audio') && st.inboundPackets > 20 ? st : null;
          },
          peer,
          { what: `inbound RTP at ${p.userId}` },
        );
        assert.ok(s.inboundPackets > 20, `${p.userId} receives RTP packets (${s.inboundPackets})`);
      }
      const loopback = await alice.page.evaluate(() => window.__loopback);
      assert.ok(loopback.rewritten > 0, 'candidates were signaled through the server and rewritten to 127.0.0.1');
    } finally {
      await closeAll(alice, bob);
    }
  });

  test('three pages form a mesh', async () => {
    const room = newRoom('mesh');
    const people = [];
    try {
      for (const userId of ['ann', 'ben', 'cat']) people.push(await participant(room, { userId, media: false }));
      const [ann, ben, cat] = people;
      assert.deepEqual(cat.peersAtJoin.sort(), ['ann', 'ben']);
      for (const p of people) {
        for (const q of people) if (p !== q) await waitConnected(p.page, q.userId);
        assert.deepEqual((await p.page.evaluate(() => window.sb.peers())).sort(), people.filter((q) => q !== p).map((q) => q.userId).sort());
      }
      await recordTiming(cat.page, 'ann');
      await recordTiming(cat.page, 'ben');
      await dcRoundTrip(ann, ben, 'ab');
      await dcRoundTrip(ben, cat, 'bc');
      await dcRoundTrip(cat, ann, 'ca');
    } finally {
      await closeAll(...people);
    }
  });

  test('a reloaded page keeps its identity and the call is re-established', async () => {
    const room = newRoom('reload');
    const host = await participant(room, { userId: 'host' });
    // No user id: the server assigns one, and the reloaded page must keep it.
    const guest = await participant(room, {});
    try {
      const guestId = guest.userId;
      assert.match(guestId, /\S/);
      await waitConnected(host.page, guestId);
      await waitConnected(guest.page, 'host');
      await dcRoundTrip(host, guest, 'before');
      const mark = await host.page.evaluate(() => window.sb.events.length);

      await guest.page.reload();
      await guest.page.waitForFunction(() => window.sb?.restarted !== undefined);
      const after = await guest.page.evaluate(async () => {
        await window.sb.restarted;
        return { userId: window.sb.client.userId, events: window.sb.events.map((e) => e.type) };
      });
      assert.equal(after.userId, guestId, 'the same user id after the reload');

      await waitConnected(host.page, guestId);
      await waitConnected(guest.page, 'host');
      await recordTiming(guest.page, 'host');
      await dcRoundTrip(host, { ...guest, userId: guestId }, 'after');

      // Per the protocol: the reloading tab closes its socket (1001), which ends
      // the membership (user-left `closed`), or the socket dies without a close
      // and the re-join takes the identity over (user-left `replaced`); either way
      // user-joined follows. Or the session resumes, and nobody is told anything.
      const seen = await host.page.evaluate((m) => window.sb.events.slice(m), mark);
      const left = seen.findIndex((e) => e.type === 'user-left' && e.userId === guestId);
      const joined = seen.findIndex((e) => e.type === 'user-joined' && e.userId === guestId);
      const resumed = after.events.includes('resumed');
      if (resumed) {
        assert.equal(left, -1, 'a resumed session is not announced');
      } else {
        assert.ok(left >= 0, `host saw user-left for the reloaded guest: ${JSON.stringify(seen)}`);
        assert.ok(['closed', 'replaced'].includes(seen[left].reason), `reason ${seen[left].reason}`);
        assert.ok(joined > left, 'then user-joined');
        assert.equal(seen.filter((e) => e.type === 'user-joined' && e.userId === guestId).length, 1, 'joined once');
      }
      console.log(`reload: host saw ${resumed ? 'a resume' : `user-left (${seen[left].reason}) then user-joined`}`);
    } finally {
      await closeAll(host, guest);
    }
  });

  test('a cut connection resumes without losing a message, and the call survives', async () => {
    const { proxy, a, b } = await proxiedPair(server, newRoom('cut'), ['a', 'b']);
    const N = 30;
    try {
      const ufragBefore = (await b.page.evaluate(() => window.sb.peerState('a'))).remoteUfrag;

      // Cut a's connection, and refuse new ones for a while.
      proxy.refuse(true);
      proxy.cut();
      await waitInPage(a.page, () => window.sb.events.some((e) => e.type === 'reconnecting'), null, { what: 'a noticing the cut' });
      // While a is away: b's messages are acknowledged (buffered for a), a's are queued.
      await b.page.evaluate((n) => Promise.all(Array.from({ length: n }, (_, i) => window.sb.client.send('a', { n: i, from: 'b' }))), N);
      const aSends = a.page.evaluate((n) => Promise.all(Array.from({ length: n }, (_, i) => window.sb.client.send('b', { n: i, from: 'a' }))), N);
      assert.ok((await a.page.evaluate(() => window.sb.client.pending)) >= N, 'a queues while offline');
      proxy.refuse(false);

      await aSends; // every one acknowledged after the resume
      await waitInPage(a.page, (n) => window.sb.messages.length >= n, N, { what: "b's messages at a" });
      await waitInPage(b.page, (n) => window.sb.messages.length >= n, N, { what: "a's messages at b" });
      // Give duplicates a chance to show up before counting.
      await new Promise((r) => setTimeout(r, 500));
      const atA = await a.page.evaluate(() => window.sb.messages);
      const atB = await b.page.evaluate(() => window.sb.messages);
      assert.deepEqual(atA.map((m) => m.n), Array.from({ length: N }, (_, i) => i), 'a got each of b\'s messages once, in order');
      assert.deepEqual(atB.map((m) => m.n), Array.from({ length: N }, (_, i) => i), 'b got each of a\'s messages once, in order');

      const aEvents = await a.page.evaluate(() => window.sb.events);
      const resumed = aEvents.find((e) => e.type === 'resumed');
      assert.ok(resumed, 'a resumed its session');
      assert.ok(resumed.replayed >= N, `the server replayed b's messages (${resumed.replayed})`);
      assert.ok(!aEvents.some((e) => e.type === 'rejoined'), 'no re-join');
      const bEvents = await b.page.evaluate(() => window.sb.events);
      assert.ok(!bEvents.some((e) => e.type === 'user-left'), 'b never saw a leave');

      // ICE was restarted after the resume, and the call is up.
      const s = await waitInPage(
        b.page,
        async (before) => {
          const st = await window.sb.peerState('a');
          return st && st.remoteUfrag !== before && st.connectionState === 'connected' && st.signalingState === 'stable' ? st : null;
        },
        ufragBefore,
        { what: 'an ICE restart from a' },
      );
      assert.equal(s.dcState, 'open');
      assert.ok((await a.page.evaluate(() => window.sb.peerState('b'))).iceRestarts >= 1);
      await dcRoundTrip(a, b, 'after the cut');
    } finally {
      await closeAll(a, b);
      await proxy.close();
    }
  });

  test('a session that expired while away is re-joined (rejoined) and the call is renegotiated', async () => {
    // A server of its own with a short resume window.
    const shortWindow = await startServer(['--resume-window-ms', '800']);
    const room = newRoom('expire');
    const { proxy, a, b } = await proxiedPair(shortWindow, room, ['a', 'b'], { media: false });
    try {
      proxy.refuse(true);
      proxy.cut();
      // The window passes: b is told a left for good.
      await waitInPage(b.page, () => window.sb.events.some((e) => e.type === 'user-left' && e.userId === 'a' && e.reason === 'timeout'), null, { what: 'user-left (timeout) at b' });
      await waitInPage(b.page, () => window.sb.peers().length === 0, null, { what: 'b closing its connection to a' });
      const queued = a.page.evaluate(() => window.sb.client.send('b', { n: 'queued while away' }));
      proxy.refuse(false);

      await waitInPage(a.page, () => window.sb.events.some((e) => e.type === 'rejoined'), null, { what: 'rejoined at a' });
      const aEvents = await a.page.evaluate(() => window.sb.events);
      assert.ok(aEvents.some((e) => e.type === 'error' && e.code === 'resume-failed'), 'the server refused the resume');
      assert.deepEqual(aEvents.find((e) => e.type === 'rejoined').rooms, [room]);
      assert.ok(!aEvents.some((e) => e.type === 'resumed'), 'no resume: the session was gone');
      await queued; // never written on the lost session: sent after the re-join
      await waitInPage(b.page, () => window.sb.messages.some((m) => m.n === 'queued while away'), null, { what: 'the queued message at b' });
      await waitInPage(b.page, () => window.sb.events.some((e) => e.type === 'user-joined' && e.userId === 'a'), null, { what: 'user-joined at b' });
      await waitConnected(a.page, 'b');
      await waitConnected(b.page, 'a');
      await dcRoundTrip(a, b, 'after the re-join');
    } finally {
      await closeAll(a, b);
      await proxy.close();
      await shortWindow.stop();
    }
  });

  test('glare: both sides offer at once and the call still connects', async () => {
    const { proxy, a: first, b: second } = await proxiedPair(server, newRoom('glare'), ['first', 'second'], { media: false });
    try {
      // Hold first's signaling, so both offers are out before either arrives.
      proxy.stall();
      await first.page.evaluate(() => window.sb.renegotiate('second'));
      await second.page.evaluate(() => window.sb.renegotiate('first'));
      for (const [p, peer] of [[first, 'second'], [second, 'first']]) {
        await waitInPage(p.page, async (id) => (await window.sb.peerState(id)).signalingState === 'have-local-offer', peer, { what: `an offer out at ${p.userId}` });
      }
      proxy.release();

      const f = await waitConnected(first.page, 'second');
      const s = await waitConnected(second.page, 'first');
      assert.equal(f.polite, false, 'the first joiner is impolite');
      assert.equal(s.polite, true);
      assert.ok(f.collisions >= 1 && s.collisions >= 1, `both saw the collision (${f.collisions}, ${s.collisions})`);
      assert.ok(f.ignoredOffers >= 1, 'the impolite side ignored the incoming offer');
      assert.ok(s.rollbacks >= 1, 'the polite side rolled its own offer back');
      // Both renegotiations completed: each side's new transceiver is negotiated on both.
      for (const p of [first, second]) {
        const mids = await p.page.evaluate((id) => window.sb.negotiation.get(id).getTransceivers().filter((t) => t.mid !== null).length, p === first ? 'second' : 'first');
        assert.ok(mids >= 2, `${p.userId}: both new transceivers negotiated (${mids} m-lines)`);
      }
      await dcRoundTrip(first, second, 'after glare');
    } finally {
      await closeAll(first, second);
      await proxy.close();
    }
  });

  test('a MessagePack page and a JSON page call each other', async () => {
    const room = newRoom('msgpack');
    const packed = await participant(room, { userId: 'packed', media: false, clientOptions: { encoding: 'msgpack' } });
    const plain = await participant(room, { userId: 'plain', media: false });
    try {
      await waitConnected(packed.page, 'plain');
      await waitConnected(plain.page, 'packed');
      await dcRoundTrip(packed, plain, 'over msgpack signaling');
      // The server selected the MessagePack subprotocol for one page only.
      const protocols = await Promise.all([packed, plain].map((p) => p.page.evaluate(() => window.sb.client.ws?.protocol)));
      assert.deepEqual(protocols, ['webrtc-signaling.msgpack', 'webrtc-signaling']);
    } finally {
      await closeAll(packed, plain);
    }
  });

  test('with auth on, the token goes in a subprotocol (then in a message after a refusal); a wrong one is refused for good', async () => {
    const authServer = await startServer(['--auth-tokens', 'tok-ann:ann,tok-bo:bo']);
    const room = newRoom('auth');
    const people = [];
    try {
      for (const token of ['tok-ann', 'tok-bo']) people.push(await participant(room, { srv: authServer, media: false, clientOptions: { token } }));
      assert.deepEqual(people.map((p) => p.userId), ['ann', 'bo'], 'the user ids come from the tokens');
      await waitConnected(people[0].page, 'bo');
      await waitConnected(people[1].page, 'ann');

      const intruder = await openTestPage(browser, authServer);
      people.push({ page: intruder });
      const outcome = await intruder.evaluate((config) => window.sb.start(config).catch((e) => ({ error: e.code })), {
        url: authServer.wsUrl,
        room,
        media: false,
        clientOptions: { token: 'forged' },
      });
      assert.deepEqual(outcome, { error: 'closed' });
      const closed = await intruder.evaluate(() => window.sb.events.find((e) => e.type === 'closed'));
      assert.equal(closed.code, 4401);
      assert.ok(!(await people[0].page.evaluate(() => window.sb.events.some((e) => e.type === 'user-joined' && e.userId !== 'bo'))));
    } finally {
      await closeAll(...people);
      await authServer.stop();
    }
  });

  test('the demo page: two participants in a video call with chat (screenshot saved)', async () => {
    const room = newRoom('demo');
    const pages = [];
    try {
      for (const name of ['Ada', 'Grace']) {
        const page = await browser.context.newPage();
        page.on('pageerror', (e) => console.log(`[demo error] ${e.message}`));
        await page.goto(`${server.httpOrigin}/`);
        await page.getByLabel('Room name').fill(room);
        await page.getByLabel('Your name').fill(name);
        await page.getByRole('button', { name: 'Join' }).click();
        pages.push(page);
      }
      for (const page of pages) {
        await page.waitForFunction(() => document.querySelectorAll('.tile[data-state="connected"]').length === 1, null, { timeout: 30000 });
        await page.waitForFunction(() => [...document.querySelectorAll('.tile video')].every((v) => v.readyState >= 2 && v.videoWidth > 0), null, { timeout: 30000 });
        assert.equal(await page.locator('#count').textContent(), '2');
        assert.equal(await page.locator('#status').getAttribute('data-state'), 'connected');
      }
      await pages[0].getByRole('textbox', { name: 'Message' }).fill('Hello from Ada');
      await pages[0].getByRole('button', { name: 'Send' }).click();
      await pages[1].getByText('Hello from Ada').waitFor();
      assert.match(await pages[1].locator('#participants').textContent(), /Ada/);

      const out = path.join(repoRoot, 'target', 'e2e');
      fs.mkdirSync(out, { recursive: true });
      const file = path.join(out, 'demo-two-participants.png');
      await pages[1].screenshot({ path: file, fullPage: true });
      assert.ok(fs.statSync(file).size > 10000);
      console.log(`demo page screenshot: ${path.relative(repoRoot, file)}`);
    } finally {
      for (const p of pages) await p.close();
    }
  });
});
