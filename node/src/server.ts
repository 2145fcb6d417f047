// `Server`: the Node face of the Rust server — options, start/stop, the typed
// EventEmitter and `events()` iterator over hub events, host operations, and
// the attach mode (see attach.ts).

import type { IncomingMessage, ServerResponse } from 'node:http';

import { Attachment, type AttachOptions, type HttpServer } from './attach';
import { call, configError, invalidArgument, reportListenerError, settle } from './errors';
import { TypedEmitter } from './emitter';
import {
  SERVER_EVENT_NAMES,
  type PeerInfo,
  type RoomSummary,
  type ServerEvent,
  type ServerEventMap,
} from './events';
import native = require('./native');

/** What the auth hook is asked. */
/** A plain HTTP answer of the core (`/metrics`, `/health`, `/ready`). */
export interface HttpReply {
  status: number;
  contentType: string;
  body: string;
}

export interface AuthRequest {
  /** The token the client presented (`?token=`, `Authorization: Bearer`, or an `auth` message). */
  token: string | null;
  origin: string | null;
  /** Client IP (after trusted-proxy resolution). */
  ip: string | null;
  path: string;
}

/** Who a connection is, as the auth hook decides. */
export interface Identity {
  /** The userId the connection speaks as; a `join` under another one is `forbidden`. */
  userId: string;
  /** Rooms it may join: exact ids or `prefix*` patterns (absent: any room). */
  rooms?: string[];
  /** Host data attached to the peer (its `metadata` unless the join sets one). */
  metadata?: unknown;
  /** When the credential expires (a `Date` or ms since the epoch). */
  expiresAt?: Date | number;
}

/** `(request) => identity | null`; may be async. `null` (or a throw) refuses. */
export type AuthHook = (request: AuthRequest) => Identity | null | undefined | Promise<Identity | null | undefined>;

/** How clients authenticate (off when absent). Exactly one kind. */
export type AuthOptions =
  | { tokens: Record<string, string> }
  | {
      jwt: {
        /** HS256 shared secret. */
        secret?: string;
        /** PEM public key (RS256 or ES256, following the key type). */
        publicKey?: string;
        audience?: string;
        issuer?: string;
        /** Clock skew allowed on `exp`/`nbf` (default 30 000). */
        leewayMs?: number;
      };
    }
  | { hook: AuthHook };

/**
 * Every option of the server. Names follow the `switchboard` CLI flags
 * (`--max-conns-per-ip` → `maxConnsPerIp`); durations are milliseconds; `0`
 * turns a count limit off where the CLI says so.
 */
export interface ServerOptions {
  /** `host:port` to bind (port 0: any free port). Default `127.0.0.1:8080`. `null`: no listener of its own (attach mode only). */
  listen?: string | null;
  /** WebSocket upgrade path. Default `/ws`. */
  path?: string;
  /** Largest accepted message (default 65536); bigger frames close with 1009. */
  maxMessageBytes?: number;
  /** Server-wide connections (default 10000, 0 = unlimited); past it HTTP 503. */
  maxConns?: number;
  /** Connections per client IP (default 20, 0 = unlimited); past it HTTP 429. */
  maxConnsPerIp?: number;
  /** Sockets per client IP waiting for their upgrade decision, own port only (default 8, 0 = unlimited); past it HTTP 429 at once. */
  maxPendingPerIp?: number;
  /** The same server-wide (default 1024, 0 = unlimited); past it HTTP 503 at once. */
  maxPending?: number;
  /** New connections per second per client IP (default 20, 0 = off); past it HTTP 429 with Retry-After. */
  connRatePerIp?: number;
  /** Burst of new connections per client IP (default 40). */
  connBurstPerIp?: number;
  /** IPv6 clients count per prefix of this many bits (default 64). */
  ipv6Prefix?: number;
  /** Peers per room (default 0 = unlimited); past it `room-full`. */
  maxRoomSize?: number;
  /** Rooms one session may be in (default 16). */
  maxRoomsPerSession?: number;
  /** Largest member `metadata` a client may join with, bytes (default 4096); past it `invalid-message`. */
  maxMetadataBytes?: number;
  /** Away sessions (connection lost, resumable) per client IP (default 32, 0 = unlimited); past it the IP's oldest ends (`user-left` `evicted`). */
  maxAwayPerIp?: number;
  /** Away sessions per authenticated user (default 8, 0 = unlimited); past it the user's oldest ends (`user-left` `evicted`). */
  maxAwayPerUser?: number;
  /** Away sessions server-wide (default 10000, 0 = unlimited); past it the oldest ends. */
  maxAwaySessions?: number;
  /** Replay bytes all away sessions may hold together (default 268435456, 0 = unlimited). */
  awayReplayBudgetBytes?: number;
  /** Token bucket burst per connection (default 50). */
  rateLimitBurst?: number;
  /** Sustained messages/s per connection (default 20, 0 = off). */
  rateLimitRps?: number;
  /** WebSocket ping interval (default 30000). */
  heartbeatMs?: number;
  /** Silence allowed past the interval (default 10000). */
  heartbeatTimeoutMs?: number;
  /** How long a lost session can resume (default 20000). */
  resumeWindowMs?: number;
  /** Unacknowledged messages kept per session (default 256). */
  replayBufferMessages?: number;
  /** … and bytes (default 262144). */
  replayBufferBytes?: number;
  /** Outbound queue per connection (default 1048576); past it close 1008. */
  outboundQueueBytes?: number;
  /**
   * Bytes all outbound queues may hold together (default 268435456, 0 = unlimited); while over it, a relayed
   * message to a reader behind by more than 1/64 of its queue is refused to its sender (`rate-limited`).
   */
  outboundBudgetBytes?: number;
  /** Browser origins allowed to connect (default: all, with a warning). */
  allowedOrigins?: string[];
  /** Longest wait for an HTTP request head (default 10000). */
  handshakeTimeoutMs?: number;
  /** Longest time writing one HTTP answer to a client that does not read, own port only (default 10000). */
  httpWriteTimeoutMs?: number;
  /** Longest graceful drain in `stop()` (default 10000). */
  drainTimeoutMs?: number;
  /** Reconnect hint sent in `draining` (default 5000). */
  drainRetryAfterMs?: number;
  /** Events buffered for JS; a listener further behind loses the oldest (default 1024). */
  eventBuffer?: number;
  /** Authentication (default: off). */
  auth?: AuthOptions;
  /** With auth on: how long a connection may wait before its `auth` message; also the auth hook's timeout (default 5000). */
  authTimeoutMs?: number;
  /** Serve `wss://` with these PEM files. */
  tls?: { cert: string; key: string };
  /** Proxies (CIDRs or addresses) whose `X-Forwarded-For` / `X-Real-IP` are believed. */
  trustedProxies?: string[];
  /** TURN REST credentials handed out in `room-info`. */
  turn?: { secret: string; urls: string[]; ttlSeconds?: number };
  /** Cluster mode: the Redis backplane (`redis://[user:password@]host:port[/db]`, or `rediss://` for TLS). */
  redisUrl?: string;
  /** Cluster mode over `rediss://`: the CA (PEM file) of Redis' certificate (default: the system's roots). */
  redisCaCert?: string;
  /** Serve the demo call page at `/` (and the browser client). */
  demo?: boolean;
  /** Serve the browser client at `/switchboard.js`. */
  serveClient?: boolean;
  /** The application's own message types (`hangup`, `mute`, …), relayed like `message`. */
  appTypes?: string[];
  /** Turns on the operator API (`/api/v1`, docs/API.md) and the admin page (`/admin`); served by `httpHandler()`. */
  apiKey?: string;
}

const COUNT_OPTIONS = [
  'maxMessageBytes',
  'maxConns',
  'maxConnsPerIp',
  'maxPendingPerIp',
  'maxPending',
  'connRatePerIp',
  'connBurstPerIp',
  'ipv6Prefix',
  'maxRoomSize',
  'maxRoomsPerSession',
  'maxMetadataBytes',
  'maxAwayPerIp',
  'maxAwayPerUser',
  'maxAwaySessions',
  'awayReplayBudgetBytes',
  'rateLimitBurst',
  'rateLimitRps',
  'heartbeatMs',
  'heartbeatTimeoutMs',
  'resumeWindowMs',
  'replayBufferMessages',
  'replayBufferBytes',
  'outboundQueueBytes',
  'outboundBudgetBytes',
  'handshakeTimeoutMs',
  'httpWriteTimeoutMs',
  'drainTimeoutMs',
  'drainRetryAfterMs',
  'eventBuffer',
  'authTimeoutMs',
] as const;
const OTHER_OPTIONS = [
  'listen',
  'path',
  'allowedOrigins',
  'auth',
  'tls',
  'trustedProxies',
  'turn',
  'redisUrl',
  'redisCaCert',
  'demo',
  'serveClient',
  'appTypes',
  'apiKey',
] as const;
const KNOWN_OPTIONS = new Set<string>([...COUNT_OPTIONS, ...OTHER_OPTIONS]);

/** Checks the options' shape (the core checks their values). */
export function checkOptions(kind: string, options: object, known: Set<string>): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw configError(`${kind} options must be an object`);
  }
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw configError(`unknown ${kind} option \`${key}\``);
  }
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

/** Maps the public options onto the native ones; returns the auth hook separately. */
function toNative(o: ServerOptions): { options: native.ServerOptions; hook: AuthHook | null } {
  checkOptions('server', o, KNOWN_OPTIONS);
  const out: native.ServerOptions = {};
  for (const k of COUNT_OPTIONS) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'number') throw configError(`\`${k}\` must be a number`);
    out[k] = v;
  }
  const listen = o.listen === undefined ? '127.0.0.1:8080' : o.listen;
  if (listen !== null && typeof listen !== 'string') throw configError('`listen` must be "host:port" or null');
  if (listen !== null) out.listen = listen;
  for (const k of ['path', 'redisUrl', 'redisCaCert', 'apiKey'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'string') throw configError(`\`${k}\` must be a string`);
    out[k] = o[k];
  }
  for (const k of ['allowedOrigins', 'trustedProxies', 'appTypes'] as const) {
    if (o[k] === undefined) continue;
    if (!isStringArray(o[k])) throw configError(`\`${k}\` must be an array of strings`);
    out[k] = o[k];
  }
  for (const k of ['demo', 'serveClient'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'boolean') throw configError(`\`${k}\` must be a boolean`);
    out[k] = o[k];
  }
  if (o.tls !== undefined) {
    if (typeof o.tls?.cert !== 'string' || typeof o.tls?.key !== 'string') {
      throw configError('`tls` needs `cert` and `key` (PEM file paths)');
    }
    out.tls = { cert: o.tls.cert, key: o.tls.key };
  }
  if (o.turn !== undefined) {
    const t = o.turn;
    if (typeof t?.secret !== 'string' || !isStringArray(t?.urls)) {
      throw configError('`turn` needs `secret` and `urls`');
    }
    if (t.ttlSeconds !== undefined && typeof t.ttlSeconds !== 'number') throw configError('`turn.ttlSeconds` must be a number');
    out.turn = { secret: t.secret, urls: t.urls, ttlSeconds: t.ttlSeconds };
  }
  let hook: AuthHook | null = null;
  if (o.auth !== undefined) {
    const a = o.auth as Record<string, unknown>;
    const kinds = Object.keys(a ?? {});
    if (kinds.length !== 1) throw configError('`auth` takes exactly one of `tokens`, `jwt` or `hook`');
    if ('tokens' in a) {
      const t = a.tokens as Record<string, unknown>;
      if (!t || typeof t !== 'object' || !Object.values(t).every((u) => typeof u === 'string')) {
        throw configError('`auth.tokens` must map tokens to userIds (strings)');
      }
      out.authTokens = t as Record<string, string>;
    } else if ('jwt' in a) {
      const j = a.jwt as Record<string, unknown>;
      checkOptions('auth.jwt', j, new Set(['secret', 'publicKey', 'audience', 'issuer', 'leewayMs']));
      out.jwt = j as native.JwtOptions;
    } else if ('hook' in a) {
      if (typeof a.hook !== 'function') throw configError('`auth.hook` must be a function');
      hook = a.hook as AuthHook;
    } else {
      throw configError('`auth` takes exactly one of `tokens`, `jwt` or `hook`');
    }
  }
  return { options: out, hook };
}

/**
 * The auth hook as the core calls it: JSON in, identity JSON (or null) out,
 * never rejecting: a throw refuses the connection and is reported.
 */
function wrapAuthHook(hook: AuthHook): (request: string) => Promise<string | null> {
  return async (request: string) => {
    try {
      const id = await hook(JSON.parse(request) as AuthRequest);
      if (id === null || id === undefined) return null;
      if (typeof id !== 'object' || typeof id.userId !== 'string' || id.userId === '') {
        throw new TypeError('the auth hook must return { userId: string, ... } or null');
      }
      const expiresAt = id.expiresAt instanceof Date ? id.expiresAt.getTime() : id.expiresAt;
      return JSON.stringify({ userId: id.userId, rooms: id.rooms, metadata: id.metadata, expiresAt });
    } catch (err) {
      reportListenerError('the auth hook', err);
      return null;
    }
  };
}

function messageText(message: unknown): string {
  if (message === null || typeof message !== 'object' || Array.isArray(message)) {
    throw invalidArgument('a message must be an object with a string `type`');
  }
  return JSON.stringify(message);
}

function checkString(name: string, v: unknown): asserts v is string {
  if (typeof v !== 'string') throw invalidArgument(`\`${name}\` must be a string`);
}

/**
 * A running signaling server. Start it with `Server.start(options)`; it keeps
 * the process alive until `stop()`, like a listening `http.Server`.
 *
 * Events are the hub's, named by the protocol `type` (`user-joined`, `offer`,
 * …). Only the events that have listeners (or an open `events()` iterator)
 * cross from Rust into JS.
 */
export class Server extends TypedEmitter<ServerEventMap> {
  readonly #native: native.NativeServer;
  readonly #attachments = new Set<Attachment>();
  #pumping = false;
  #stopping: Promise<void> | null = null;
  #kept: Promise<unknown>;

  private constructor(n: native.NativeServer) {
    super();
    this.#native = n;
    // Pending until stop(): keeps the process alive while the server runs.
    this.#kept = n.waitReleased();
    this.on('newListener', (name: string | symbol) => this.#listenersChanged(name, 1));
    this.on('removeListener', (name: string | symbol) => this.#listenersChanged(name, 0));
  }

  /** Starts a server (binds its port unless `listen: null`). */
  static async start(options: ServerOptions = {}): Promise<Server> {
    const { options: opts, hook } = toNative(options);
    const n = await settle(native.startServer(opts, hook ? wrapAuthHook(hook) : null));
    return new Server(n);
  }

  /** `ws://HOST:PORT/PATH` of the own listener; `null` with `listen: null`. */
  get url(): string | null {
    return this.#native.url;
  }

  /** Open WebSocket connections (own listener and attached: one count in the core). */
  get connectionCount(): number {
    return this.#native.connectionCount;
  }

  /**
   * The core's plain HTTP endpoints for the app to mount: `/metrics`
   * (OpenMetrics; refused handshakes counted), `/health`, `/ready`. `null` for
   * another path. `httpHandler()` wraps this for `http`/Express.
   */
  endpoint(path: string): HttpReply | null {
    const reply = this.#native.endpoint(path);
    return reply === null ? null : (JSON.parse(reply) as HttpReply);
  }

  /**
   * A request handler for `http.createServer` or Express that answers the
   * core's endpoints (`/metrics`, `/health`, `/ready`; with `apiKey`, the
   * operator API under `/api/v1` and the admin page `/admin`) and calls
   * `next()` (or answers 404 without one) for any other path.
   */
  httpHandler(): (req: IncomingMessage, res: ServerResponse, next?: () => void) => void {
    return (req, res, next) => {
      const [path, query] = (req.url ?? '/').split('?', 2);
      if (path === '/api/v1' || path.startsWith('/api/v1/')) return this.#api(req, res, path, query ?? null);
      const reply = req.method === 'GET' || req.method === 'HEAD' ? this.endpoint(path) : null;
      if (reply === null) {
        if (next) return next();
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      res.writeHead(reply.status, { 'content-type': reply.contentType });
      res.end(req.method === 'HEAD' ? undefined : reply.body);
    };
  }

  /** One operator API request: the body (bounded) goes to the kit, its answer back. */
  #api(req: IncomingMessage, res: ServerResponse, path: string, query: string | null): void {
    const answer = (body: Buffer) => {
      const reply = JSON.parse(
        this.#native.api(req.method ?? 'GET', path, query, req.headers.authorization ?? null, body),
      ) as HttpReply;
      res.writeHead(reply.status, { 'content-type': reply.contentType });
      res.end(reply.body);
    };
    // Only a request with the key has its body read: anyone else is answered now.
    if (!this.#native.apiAuthorized(req.headers.authorization ?? null)) {
      answer(Buffer.alloc(0));
      req.resume();
      return;
    }
    const limit = this.#native.apiBodyLimit;
    if (Number(req.headers['content-length'] ?? 0) > limit) {
      const body = JSON.stringify({ error: { code: 'message-too-big', message: 'the body exceeds the message size limit' } });
      res.writeHead(413, { 'content-type': 'application/json', connection: 'close' }).end(body);
      req.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      // A body without (or with a lying) Content-Length: refused at the bound too.
      if (size > limit) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => answer(Buffer.concat(chunks)));
  }

  /** Events lost because listeners fell more than `eventBuffer` events behind. */
  get missedEvents(): number {
    return this.#native.missedEvents;
  }

  /** Every event from now on, until `stop()`. */
  events(): AsyncIterableIterator<ServerEvent> {
    return this.iterate(() => this.#updateSubscription());
  }

  /** Sends a message (an object with a string `type`) to one peer of a room. */
  async send(roomId: string, userId: string, message: object): Promise<void> {
    checkString('roomId', roomId);
    checkString('userId', userId);
    const text = messageText(message);
    call(() => this.#native.send(roomId, userId, text));
  }

  /** Sends a message to every peer of a room; resolves with how many got it. */
  async broadcast(roomId: string, message: object): Promise<number> {
    checkString('roomId', roomId);
    const text = messageText(message);
    return call(() => this.#native.broadcast(roomId, text));
  }

  /** Removes a peer: the others get `user-left` (`kicked`), its connection closes with 4403. */
  async kick(roomId: string, userId: string): Promise<void> {
    checkString('roomId', roomId);
    checkString('userId', userId);
    call(() => this.#native.kick(roomId, userId));
  }

  /**
   * Puts a connected user into a room, as if it had sent `join` (`room-info`
   * to it, `user-joined` to the others). Rejects with `peer-not-found` when no
   * connection carries `userId`, and with the join's own errors.
   */
  async join(userId: string, roomId: string): Promise<void> {
    checkString('userId', userId);
    checkString('roomId', roomId);
    call(() => this.#native.join(userId, roomId));
  }

  /** Takes a user out of a room (`user-left` with `leave`); it stays connected. */
  async leave(userId: string, roomId: string): Promise<void> {
    checkString('userId', userId);
    checkString('roomId', roomId);
    call(() => this.#native.leave(userId, roomId));
  }

  /** Every room with its peers, sorted by id. */
  rooms(): RoomSummary[] {
    return JSON.parse(this.#native.rooms()) as RoomSummary[];
  }

  /** The peers of one room in join order (`[]` for an unknown room). */
  peers(roomId: string): PeerInfo[] {
    checkString('roomId', roomId);
    return JSON.parse(this.#native.peers(roomId)) as PeerInfo[];
  }

  /**
   * Serves this same hub on an existing `http.Server` (Express, Fastify, …):
   * WebSocket upgrades on `options.path` (default: the server's `path`) are
   * handled here, other upgrades are left alone. Returns the attachment;
   * `stop()` closes it too.
   */
  attach(httpServer: HttpServer, options: AttachOptions = {}): Attachment {
    if (this.#stopping) throw new Error('the server is stopped');
    if (!httpServer || typeof httpServer.on !== 'function') throw invalidArgument('attach() needs an http.Server');
    const a = new Attachment(this.#native, httpServer, options, () => this.#attachments.delete(a));
    this.#attachments.add(a);
    return a;
  }

  /**
   * Graceful drain, then stop: every client gets `draining` and a 1001 close
   * (they reconnect elsewhere), waiting up to `drainTimeoutMs`; then the
   * listener, the attachments, the event stream and the auth hook are
   * released, so the process can exit. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      try {
        await Promise.all([
          settle(this.#native.shutdown()),
          ...[...this.#attachments].map((a) => a.close()),
        ]);
      } finally {
        this.#native.release();
        await this.#kept;
      }
    })();
    return this.#stopping;
  }

  override toString(): string {
    return `Server(${this.url ?? 'attach-only'})`;
  }

  // ---- event pump ----

  #listenersChanged(name: string | symbol, _delta: number): void {
    // Protocol names, and any other name: an app type (`appTypes`).
    if (typeof name !== 'string' || name.startsWith('__') || name === 'newListener' || name === 'removeListener') return;
    // `newListener` fires before the listener is added, `removeListener` after.
    setImmediate(() => this.#updateSubscription());
    if (_delta > 0) this.#updateSubscription(name);
  }

  protected override iteratorsChanged(): void {
    this.#updateSubscription();
  }

  /** Tells the native side which events to send; starts the pump on first need. */
  #updateSubscription(adding?: string): void {
    if (this.#stopping) return;
    let kinds: string[] | null;
    if (this.iteratorCount > 0) {
      kinds = null;
    } else {
      const names = new Set<string>([...SERVER_EVENT_NAMES, ...(this.eventNames().filter((n) => typeof n === 'string') as string[])]);
      kinds = [...names].filter((n) => n === adding || this.listenerCount(n) > 0);
      if (kinds.length === 0 && !this.#pumping) return;
    }
    if (!this.#pumping) {
      this.#pumping = true;
      this.#native.subscribe(kinds);
      void this.#pump();
    } else {
      this.#native.setEventFilter(kinds);
    }
  }

  #pump(): Promise<void> {
    return this.pump('server', () => settle(this.#native.nextEvents()));
  }
}
