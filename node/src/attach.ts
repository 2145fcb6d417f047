// Attach mode: the same hub served on the application's own `http.Server`
// (Express, Fastify, plain `http`), so the app keeps one port. The `ws`
// package does the WebSocket framing; this file does what the Rust transport
// does around the hub: admission (path, origin, per-IP and global limits,
// draining), the read side (text frames into `handleText`, violations close
// the connection), the write side (one outbox batch at a time, written and
// flushed before the next is taken, so the hub's outbound bound holds), the
// heartbeat, and the close handshake.
import type { IncomingMessage, Server as PlainHttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';

import { WebSocketServer, type WebSocket } from 'ws';

import { SUBPROTOCOL } from './constants';
import type native from './native';

/** An `http.Server` or an `https.Server` (then clients connect with `wss://`). */
export type HttpServer = PlainHttpServer | HttpsServer;

export interface AttachOptions {
  /** Upgrade path to serve (default: the server's `path` option). */
  path?: string;
}

interface AttachConfig {
  path: string;
  maxMessageBytes: number;
  maxConns: number;
  maxConnsPerIp: number;
  heartbeatMs: number;
  heartbeatTimeoutMs: number;
  allowedOrigins: string[];
  drainTimeoutMs: number;
}

/** How long to wait for the client's close frame after ours (as the Rust transport). */
const CLOSE_GRACE_MS = 2000;

const STATUS_TEXT: Record<number, string> = {
  401: 'Unauthorized',
  403: 'Forbidden',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

/** One attached socket and its hub connection. */
interface Peer {
  ws: WebSocket;
  conn: native.NativeConnection;
  ip: string;
  lastHeard: number;
  /** When the current batch started being written (a stuck write drops the socket). */
  writeStarted: number | null;
  /** A close was sent (by us) or received: no more frames go into the hub. */
  closing: boolean;
}

/** The attachment of a server's hub to one `http.Server`. */
export class Attachment {
  readonly path: string;
  readonly #native: native.NativeServer;
  readonly #http: HttpServer;
  readonly #cfg: AttachConfig;
  readonly #wss: WebSocketServer;
  readonly #peers = new Set<Peer>();
  readonly #perIp = new Map<string, number>();
  readonly #onUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  readonly #heartbeat: NodeJS.Timeout;
  readonly #detach: () => void;
  #closing: Promise<void> | null = null;
  #allClosed: (() => void) | null = null;

  /** @internal Use `server.attach()`. */
  constructor(n: native.NativeServer, http: HttpServer, options: AttachOptions, detach: () => void) {
    this.#native = n;
    this.#http = http;
    this.#detach = detach;
    this.#cfg = JSON.parse(n.attachConfig()) as AttachConfig;
    this.path = options.path ?? this.#cfg.path;
    if (typeof this.path !== 'string' || !this.path.startsWith('/')) {
      throw Object.assign(new Error('`path` must start with "/"'), { code: 'config' });
    }
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.#cfg.maxMessageBytes,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    this.#onUpgrade = (req, socket, head) => this.#upgrade(req, socket, head);
    http.on('upgrade', this.#onUpgrade);
    // One timer for every socket: pings, and drops the silent or stuck ones.
    const tick = Math.max(50, Math.min(this.#cfg.heartbeatMs, this.#cfg.heartbeatTimeoutMs) / 2);
    let nextPing = Date.now() + this.#cfg.heartbeatMs;
    this.#heartbeat = setInterval(() => {
      const now = Date.now();
      const ping = now >= nextPing;
      if (ping) nextPing = now + this.#cfg.heartbeatMs;
      for (const p of this.#peers) {
        const silent = now - p.lastHeard >= this.#cfg.heartbeatMs + this.#cfg.heartbeatTimeoutMs;
        const stuck = p.writeStarted !== null && now - p.writeStarted >= this.#cfg.heartbeatTimeoutMs;
        if (silent || stuck) {
          // No close frame: the session is away and can resume (as a network cut).
          p.ws.terminate();
        } else if (ping && !p.closing) {
          p.ws.ping();
        }
      }
    }, tick);
    this.#heartbeat.unref();
  }

  /** `ws://HOST:PORT/PATH` (`wss://` on an https server) once it listens. */
  get url(): string | null {
    const a = this.#http.address();
    if (!a || typeof a === 'string') return null;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    const scheme = typeof (this.#http as HttpsServer).setSecureContext === 'function' ? 'wss' : 'ws';
    return `${scheme}://${host}:${a.port}${this.path}`;
  }

  get connectionCount(): number {
    return this.#peers.size;
  }

  #refuse(socket: Duplex, status: number): void {
    const extra = status === 401 ? 'WWW-Authenticate: Bearer\r\n' : '';
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nConnection: close\r\n${extra}Content-Type: text/plain\r\nContent-Length: 19\r\n\r\nconnection refused\n`,
    );
    socket.destroy();
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (path !== this.path) return; // another handler's upgrade
    socket.on('error', () => socket.destroy());
    if (this.#closing || this.#native.draining) return this.#refuse(socket, 503);
    // Admission, in the protocol's order: origin, per-IP, global.
    const origin = req.headers.origin;
    if (this.#cfg.allowedOrigins.length > 0 && origin !== undefined && !this.#cfg.allowedOrigins.includes(origin)) {
      return this.#refuse(socket, 403);
    }
    const ip = normalizeIp(req.socket.remoteAddress ?? '');
    const n = this.#perIp.get(ip) ?? 0;
    if (this.#cfg.maxConnsPerIp > 0 && n >= this.#cfg.maxConnsPerIp) return this.#refuse(socket, 429);
    if (this.#cfg.maxConns > 0 && this.#peers.size >= this.#cfg.maxConns) return this.#refuse(socket, 503);
    this.#perIp.set(ip, n + 1);
    let admitted = false;
    socket.once('close', () => {
      if (!admitted) this.#release(ip);
    });
    const request: native.HandshakeRequest = {
      query: q < 0 ? undefined : url.slice(q + 1),
      authorization: req.headers.authorization,
      origin,
      ip,
      path,
    };
    const upgrade = (auth: native.HandshakeAuth | null) => {
      if (socket.destroyed) return;
      this.#wss.handleUpgrade(req, socket, head, (ws) => {
        admitted = true;
        this.#open(ws, request, auth);
      });
    };
    if (!this.#native.authRequired) return upgrade(null);
    // As the own listener: a refused token is HTTP 401 before the upgrade.
    this.#native.authenticateHandshake(request).then(
      (auth) => (auth.refused ? this.#refuse(socket, 401) : upgrade(auth)),
      () => this.#refuse(socket, 503),
    );
  }

  #release(ip: string): void {
    const n = (this.#perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.#perIp.delete(ip);
    else this.#perIp.set(ip, n);
  }

  #open(ws: WebSocket, request: native.HandshakeRequest, auth: native.HandshakeAuth | null): void {
    const ip = request.ip as string;
    const conn = this.#native.connect(request, auth);
    const peer: Peer = { ws, conn, ip, lastHeard: Date.now(), writeStarted: null, closing: false };
    this.#peers.add(peer);
    const heard = () => {
      peer.lastHeard = Date.now();
    };
    ws.on('message', (data, isBinary) => {
      heard();
      if (peer.closing) return;
      if (isBinary) {
        conn.close(1003);
        return;
      }
      conn.handleText(data.toString());
    });
    ws.on('ping', heard);
    ws.on('pong', heard);
    ws.on('error', (err: Error & { code?: string }) => {
      // `ws` closes the socket itself after a framing error; tell the hub why
      // first, so the membership ends as with the Rust transport.
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') conn.close(1009);
      else conn.close(1002);
    });
    ws.on('close', (code: number) => {
      peer.closing = true;
      // 1006: no close frame (a network cut): the session waits for a resume.
      conn.finish(code === 1006 ? null : code);
      this.#peers.delete(peer);
      this.#release(ip);
      if (this.#peers.size === 0) this.#allClosed?.();
    });
    void this.#writeLoop(peer);
  }

  /** Takes one outbox batch at a time, writes it, waits for the flush. */
  async #writeLoop(p: Peer): Promise<void> {
    const { ws, conn } = p;
    for (;;) {
      let batch: native.OutboxBatch;
      try {
        batch = await conn.next();
      } catch {
        ws.terminate();
        return;
      }
      if (ws.readyState !== ws.OPEN) return;
      if (batch.frames) {
        p.writeStarted = Date.now();
        const flushed = new Promise<boolean>((resolve) => {
          const frames = batch.frames as string[];
          for (let i = 0; i < frames.length; i++) {
            const last = i === frames.length - 1;
            ws.send(frames[i], last ? (err) => resolve(!err) : undefined);
          }
        });
        if (!(await flushed)) return;
        p.writeStarted = null;
        continue;
      }
      // A close the hub asked for (kick 4403, drain 1001, slow consumer 1008, …).
      p.closing = true;
      ws.close(batch.closeCode ?? 1011, batch.closeReason ?? '');
      setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
      return;
    }
  }

  /**
   * Stops taking upgrades and waits until every socket closed (the hub's
   * drain asked them to), up to the drain timeout; the rest are cut.
   * `server.stop()` calls this.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#http.off('upgrade', this.#onUpgrade);
      if (this.#peers.size > 0) {
        await new Promise<void>((resolve) => {
          this.#allClosed = resolve;
          setTimeout(resolve, this.#cfg.drainTimeoutMs).unref();
        });
      }
      for (const p of this.#peers) p.ws.terminate();
      clearInterval(this.#heartbeat);
      this.#wss.close();
      this.#detach();
    })();
    return this.#closing;
  }
}

/** `::ffff:127.0.0.1` → `127.0.0.1`. */
function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}
