// Attach mode: the same hub served on the application's own `http.Server`
// (Express, Fastify, plain `http`), so the app keeps one port. This file is an
// adapter of the core's connection kit and decides nothing: the request facts
// (socket peer, URL, every header) go to the kit, which admits or refuses
// (origin, per-IP after trusted proxies, capacity, draining, handshake token)
// and selects the subprotocol; `ws` does the framing; frames go into the kit,
// outbox batches come out (one at a time, written and flushed before the next
// is taken, so the hub's outbound bound holds); the kit's liveness clock says
// when to ping and when to give up on a socket.
import type { IncomingMessage, Server as PlainHttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';

import { WebSocketServer, type WebSocket } from 'ws';

import { call, configError } from './errors';
import type native from './native';

/** An `http.Server` or an `https.Server` (then clients connect with `wss://`). */
export type HttpServer = PlainHttpServer | HttpsServer;

export interface AttachOptions {
  /**
   * Upgrade paths to serve, comma-separated: fixed paths (`/ws`, `/`) or
   * templates whose `{roomId}`/`{userId}` segments join that room at connect
   * (default: the server's `path` option).
   */
  path?: string;
}

interface AttachConfig {
  path: string;
  maxMessageBytes: number;
  tickMs: number;
  drainTimeoutMs: number;
}

/** How long to wait for the client's close frame after ours (as the Rust transport). */
const CLOSE_GRACE_MS = 2000;
/** Where an upgrade's admission waits for `ws` to complete the handshake. */
const ADMISSION = Symbol('switchboard.admission');

type AdmittedRequest = IncomingMessage & { [ADMISSION]?: native.Admission };

/** One attached socket and its hub connection. */
interface Peer {
  ws: WebSocket;
  conn: native.NativeConnection;
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
    if (typeof this.path !== 'string') throw configError('`path` must be a string');
    const paths = this.path;
    call(() => n.matchPath(paths, '/')); // a bad entry is a config error now, not at the first upgrade
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.#cfg.maxMessageBytes,
      perMessageDeflate: false,
      clientTracking: false,
      // The kit chose it at admission.
      handleProtocols: (_offered, req) => (req as AdmittedRequest)[ADMISSION]?.subprotocol ?? false,
    });
    this.#onUpgrade = (req, socket, head) => this.#upgrade(req, socket, head);
    http.on('upgrade', this.#onUpgrade);
    // One timer for every socket; the kit says, per socket, ping, drop or nothing.
    this.#heartbeat = setInterval(() => {
      for (const p of this.#peers) {
        const action = p.conn.tick();
        // No close frame on drop: the session is away and can resume (as a network cut).
        if (action === 'drop') p.ws.terminate();
        else if (action === 'ping' && !p.closing) p.ws.ping();
      }
    }, this.#cfg.tickMs);
    this.#heartbeat.unref();
  }

  /** `ws://HOST:PORT/PATH` (`wss://` on an https server) once it listens. */
  get url(): string | null {
    const a = this.#http.address();
    if (!a || typeof a === 'string') return null;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    const scheme = typeof (this.#http as HttpsServer).setSecureContext === 'function' ? 'wss' : 'ws';
    // The first fixed entry (every entry a template: the root).
    const fixed = this.path.split(',').map((p) => p.trim()).find((p) => !p.includes('{'));
    return `${scheme}://${host}:${a.port}${fixed ?? '/'}`;
  }

  /** Sockets open on this attachment. */
  get connectionCount(): number {
    return this.#peers.size;
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    if (!this.#native.matchPath(this.path, q < 0 ? target : target.slice(0, q))) return; // another handler's upgrade
    socket.on('error', () => socket.destroy());
    const facts = { peer: req.socket.remoteAddress, target, headers: req.rawHeaders, paths: this.path };
    this.#native.admit(facts).then(
      (admission) => {
        if (admission.status !== 101) return writeRefusal(socket, admission);
        if (socket.destroyed) return admission.release();
        (req as AdmittedRequest)[ADMISSION] = admission;
        this.#wss.handleUpgrade(req, socket, head, (ws) => {
          const conn = admission.open();
          if (conn) this.#open(ws, conn);
          else ws.terminate();
        });
        // `ws` answered the handshake itself (a malformed upgrade) without calling back.
        if (socket.destroyed) admission.release();
      },
      () => socket.destroy(),
    );
  }

  #open(ws: WebSocket, conn: native.NativeConnection): void {
    const peer: Peer = { ws, conn, closing: false };
    this.#peers.add(peer);
    const heard = () => conn.heard();
    ws.on('message', (data, isBinary) => {
      if (peer.closing) return;
      // Binary: MessagePack on its subprotocol, a 1003 close on JSON (the kit decides).
      if (isBinary) conn.handleBinary(data as Buffer);
      else conn.handleText(data.toString());
    });
    ws.on('ping', heard);
    ws.on('pong', heard);
    ws.on('error', (err: Error & { code?: string }) => {
      // `ws` closes the socket itself after a framing error; the kit learns why
      // first, so membership ends as with the Rust transport.
      conn.violation(err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 1009 : 1002);
    });
    ws.on('close', (code: number) => {
      peer.closing = true;
      // 1006: no close frame (a network cut): the session waits for a resume.
      conn.finish(code === 1006 ? null : code);
      this.#peers.delete(peer);
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
      const frames: (string | Buffer)[] | null | undefined = batch.frames ?? batch.binaryFrames;
      if (frames) {
        conn.writing();
        const flushed = new Promise<boolean>((resolve) => {
          for (let i = 0; i < frames.length; i++) {
            const last = i === frames.length - 1;
            ws.send(frames[i], last ? (err) => resolve(!err) : undefined);
          }
        });
        if (!(await flushed)) return;
        conn.written();
        continue;
      }
      // A close the kit asked for (kick 4403, drain 1001, slow consumer 1008, …).
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

/** Writes the kit's refusal (status, headers, body) and closes the socket. */
function writeRefusal(socket: Duplex, a: native.Admission): void {
  const body = Buffer.from(a.body);
  let head = `HTTP/1.1 ${a.status} ${a.reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n`;
  const h = a.headers;
  for (let i = 0; i + 1 < h.length; i += 2) head += `${h[i]}: ${h[i + 1]}\r\n`;
  socket.end(Buffer.concat([Buffer.from(`${head}\r\n`), body]));
  socket.destroy();
}
