// End-to-end harness: the Switchboard server under test, headless Debian Chromium
// (playwright-core) with a fresh profile that keeps WebRTC on 127.0.0.1, the test
// page routes, and a TCP proxy that can cut or stall a page's connection.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../../..');
const pageDir = path.join(here, 'page');

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/**
 * The flags the issue prescribes, with one merged --disable-features (Chromium
 * honours only the last). LocalNetworkAccessChecks: the test page is answered by
 * Playwright's router, so Chromium can not tell that it came from 127.0.0.1 and
 * would treat its WebSocket to 127.0.0.1 as a public page reaching a local one.
 */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--disable-background-networking',
  '--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks',
  '--no-proxy-server',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
];

/**
 * The server under test: SWITCHBOARD_URL when the script started one, else the
 * debug binary started here on 127.0.0.1 port 0 with --demo.
 */
export async function startServer(extraArgs = []) {
  if (process.env.SWITCHBOARD_URL && extraArgs.length === 0) {
    return { wsUrl: process.env.SWITCHBOARD_URL, ...origins(process.env.SWITCHBOARD_URL), stop: async () => {} };
  }
  const bin = process.env.SWITCHBOARD_BIN || path.join(repoRoot, 'target/debug/switchboard');
  fs.mkdirSync(path.join(repoRoot, 'target', 'e2e'), { recursive: true });
  const log = fs.openSync(path.join(repoRoot, 'target', 'e2e', 'extra-server.log'), 'a');
  const child = spawn(bin, ['--listen', '127.0.0.1:0', '--demo', ...extraArgs], { stdio: ['ignore', 'pipe', log] });
  fs.closeSync(log);
  const wsUrl = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (ws:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`switchboard exited with ${code}: ${out}`)));
  });
  return {
    wsUrl,
    ...origins(wsUrl),
    stop: () =>
      new Promise((resolve) => {
        // A graceful drain takes at most the drain timeout (10 s); never hang on it.
        const kill = setTimeout(() => {
          console.log('warning: the server did not stop 12 s after SIGTERM; killing it');
          child.kill('SIGKILL');
        }, 12000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

function origins(wsUrl) {
  const u = new URL(wsUrl);
  return { httpOrigin: `http://${u.host}`, port: Number(u.port), wsPath: u.pathname };
}

/** Chromium with a fresh profile whose WebRTC policy binds ICE sockets to 0.0.0.0. */
export async function launchBrowser() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-'));
  fs.mkdirSync(path.join(profile, 'Default'));
  fs.writeFileSync(
    path.join(profile, 'Default', 'Preferences'),
    JSON.stringify({ webrtc: { ip_handling_policy: 'default_public_and_private_interfaces' } }),
  );
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
  });
  await context.addInitScript({ path: path.join(pageDir, 'loopback.js') });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Opens the e2e test page on the server's origin: /e2e/* is answered from
 * test/e2e/page, everything else (/switchboard.js) by the server under test.
 */
export async function openTestPage(browser, server) {
  const page = await browser.context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') console.log(`[page ${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`[page error] ${e.message}`));
  await page.route(`${server.httpOrigin}/e2e/**`, (route) => {
    const name = new URL(route.request().url()).pathname.replace(/^\/e2e\//, '') || 'index.html';
    const file = path.join(pageDir, path.basename(name));
    const type = file.endsWith('.js') ? 'text/javascript' : 'text/html';
    route.fulfill({ status: 200, contentType: type, body: fs.readFileSync(file) });
  });
  await page.goto(`${server.httpOrigin}/e2e/index.html`);
  await page.waitForFunction(() => window.sb !== undefined);
  return page;
}

/** Polls `fn` in the page until it returns a truthy value. */
export async function waitInPage(page, fn, arg, { timeout = 30000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await page.evaluate(fn, arg);
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until the call with `peerId` is connected with its data channel open, and returns its state. */
export async function waitConnected(page, peerId, opts = {}) {
  return waitInPage(
    page,
    async (id) => {
      const s = await window.sb.peerState(id);
      return s && s.connectionState === 'connected' && s.dcState === 'open' && s.signalingState === 'stable' ? s : null;
    },
    peerId,
    { what: `a connected call with ${peerId}`, ...opts },
  );
}

/**
 * A TCP proxy on 127.0.0.1 in front of the server: `cut()` resets every
 * connection through it (no WebSocket close frame: the server keeps the session
 * away, the client sees 1006), `refuse()` resets new ones, `stall()`/`release()`
 * stop and restart forwarding.
 */
export async function startProxy(targetPort) {
  const pairs = new Set();
  let stalled = false;
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    const forward = (from, to) => {
      from.on('data', (d) => to.write(d));
      from.on('error', () => {});
      from.on('close', () => {
        to.destroy();
        pairs.delete(pair);
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    if (stalled) {
      client.pause();
      upstream.pause();
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    get connections() {
      return pairs.size;
    },
    cut() {
      for (const { client, upstream } of pairs) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      pairs.clear();
    },
    /** While on, new connections are reset at once (the server looks unreachable). */
    refuse(on) {
      refusing = on;
    },
    stall() {
      stalled = true;
      for (const { client, upstream } of pairs) {
        client.pause();
        upstream.pause();
      }
    },
    release() {
      stalled = false;
      for (const { client, upstream } of pairs) {
        client.resume();
        upstream.resume();
      }
    },
    close: () =>
      new Promise((r) => {
        for (const { client, upstream } of pairs) {
          client.destroy();
          upstream.destroy();
        }
        server.close(r);
      }),
  };
}

/** Join-to-connected-call durations measured in the run (ms), printed at the end. */
export const timings = [];

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
}
