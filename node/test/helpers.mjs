// Test helpers: a server with test-friendly limits, a raw `ws` client that
// records every message, a cuttable TCP proxy, and waiting with timeouts.
import net from 'node:net';
import { once } from 'node:events';

import WebSocket from 'ws';

import { Server } from '../esm/index.mjs';

/** Options for tests: no rate limit, fast heartbeats and resume window. */
export const FAST = {
  listen: '127.0.0.1:0',
  path: '/ws',
  rateLimitRps: 0,
  maxConnsPerIp: 0,
  heartbeatMs: 1000,
  heartbeatTimeoutMs: 1000,
  resumeWindowMs: 5000,
  drainTimeoutMs: 2000,
  allowedOrigins: ['http://allowed.example'],
};

export async function startServer(extra = {}) {
  return Server.start({ ...FAST, ...extra });
}

/** Client options for tests: quick reconnects. */
export const FAST_CLIENT = { reconnectBaseMs: 50, reconnectMaxMs: 200, heartbeatIntervalMs: 500, heartbeatTimeoutMs: 500 };

/** Resolves when `pred()` is truthy (polled), rejects after `ms`. */
export async function waitFor(pred, ms = 5000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A plain `ws` client that parses and records every message. */
export class RawClient {
  static async open(url, options = {}) {
    const ws = new WebSocket(url, 'webrtc-signaling', options);
    const c = new RawClient(ws);
    await Promise.race([
      once(ws, 'open'),
      once(ws, 'unexpected-response').then(([, res]) => {
        throw Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, headers: res.headers });
      }),
    ]);
    c.connected = await c.next('connected');
    return c;
  }

  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.closed = null;
    /** Highest `seq` received (what a `resume` names as `lastSeq`). */
    this.lastSeq = 0;
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (typeof m.seq === 'number') this.lastSeq = Math.max(this.lastSeq, m.seq);
      this.messages.push(m);
    });
    ws.on('close', (code, reason) => (this.closed = { code, reason: reason.toString() }));
    ws.on('error', () => {});
  }

  send(msg) {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  /** The first recorded message of this type (and matching `pred`) not yet taken. */
  async next(type, pred = () => true, ms = 5000) {
    const i = await waitFor(() => {
      const j = this.messages.findIndex((m) => m.type === type && pred(m));
      return j >= 0 ? j + 1 : 0;
    }, ms, `a '${type}' message`);
    return this.messages.splice(i - 1, 1)[0];
  }

  async waitClosed(ms = 5000) {
    return waitFor(() => this.closed, ms, 'the close');
  }

  close() {
    this.ws.close(1000);
  }
}

/** A TCP proxy to `target` (host:port) whose connections can be cut at once. */
export async function startProxy(targetUrl) {
  const { hostname, port } = new URL(targetUrl.replace('ws://', 'http://'));
  const sockets = new Set();
  let holding = false;
  const server = net.createServer((client) => {
    if (holding) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(port), hostname);
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream).pipe(client);
    const gone = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', gone).on('close', gone);
    upstream.on('error', gone).on('close', gone);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = new URL(targetUrl);
  url.port = String(server.address().port);
  return {
    url: url.toString(),
    /**
     * Destroys every proxied connection (a network cut: no close frame). With
     * `hold`, new connections are dropped too until `release()`, so a test can
     * see the state while the client is away, however fast it reconnects.
     */
    cut({ hold = false } = {}) {
      holding = hold;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    release() {
      holding = false;
    },
    close() {
      this.cut();
      server.close();
    },
  };
}

/** Collects every event of `emitter` named `name`. */
export function record(emitter, ...names) {
  const out = [];
  for (const n of names) emitter.on(n, (e) => out.push(e));
  return out;
}
