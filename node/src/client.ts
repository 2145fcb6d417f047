// `Client`: the Node face of the Rust client — connect, join/leave, signaling
// sends that resolve on the server's acknowledgement, a typed EventEmitter and
// `events()` iterator, reconnect and resume handled by the core.
import { configError, fromNative, invalidArgument, reportListenerError, settle } from './errors';
import { TypedEmitter } from './emitter';
import type { ClientEvent, ClientEventMap, Json, RoomInfo } from './events';
import { checkOptions } from './server';
import native = require('./native');

/** Options of `Client.connect()`. Durations are milliseconds. */
export interface ClientOptions {
  /** The userId sent with every `join` (default: one the server assigns, then reused). */
  userId?: string;
  /** A fixed token, sent as `Authorization: Bearer …` on every connection. */
  token?: string;
  /** Asked before every connection attempt, so an expiring token is refreshed. */
  tokenProvider?: () => string | Promise<string>;
  displayName?: string;
  /** Any JSON, sent with every `join`. */
  metadata?: Json;
  /** Subprotocol to offer (default `webrtc-signaling`; `null` offers none). */
  subprotocol?: string | null;
  /** `'json'` (default) or `'msgpack'`: MessagePack binary frames (`webrtc-signaling.msgpack`). */
  encoding?: 'json' | 'msgpack';
  /** Reconnect backoff: attempt n waits a random time up to min(max, base·2^(n-1)) (defaults 1000 / 30000). */
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  /** Give up after this many reconnect attempts in a row (default: never; 0: never reconnect). */
  maxReconnectAttempts?: number | null;
  /** A connection up this long resets the attempt counter (default 10000). */
  stableAfterMs?: number;
  /** A JSON `ping` this often (default 15000). */
  heartbeatIntervalMs?: number;
  /** Silence past the interval before reconnecting (default 10000). */
  heartbeatTimeoutMs?: number;
  /** Bound on one connection attempt (default 10000). */
  connectTimeoutMs?: number;
  /** Outbox bound: messages not yet acknowledged (default 256) … */
  queueMaxMessages?: number;
  /** … and their bytes (default 1048576); past it a send fails with `queue-full`. */
  queueMaxBytes?: number;
  /** Messages written and not yet acknowledged at once (default 32). */
  maxInFlight?: number;
  /** Largest message the client sends (default 65536). */
  maxMessageBytes?: number;
  /** Events buffered for JS; a listener further behind loses the oldest (default 1024). */
  eventCapacity?: number;
}

const NUMBER_OPTIONS = [
  'reconnectBaseMs',
  'reconnectMaxMs',
  'stableAfterMs',
  'heartbeatIntervalMs',
  'heartbeatTimeoutMs',
  'connectTimeoutMs',
  'queueMaxMessages',
  'queueMaxBytes',
  'maxInFlight',
  'maxMessageBytes',
  'eventCapacity',
] as const;
const KNOWN = new Set<string>([
  ...NUMBER_OPTIONS,
  'userId',
  'token',
  'tokenProvider',
  'displayName',
  'metadata',
  'subprotocol',
  'encoding',
  'maxReconnectAttempts',
]);

function toNative(o: ClientOptions): native.ClientOptions {
  checkOptions('client', o, KNOWN);
  const out: native.ClientOptions = {};
  for (const k of NUMBER_OPTIONS) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'number') throw configError(`\`${k}\` must be a number`);
    out[k] = o[k];
  }
  for (const k of ['userId', 'token', 'displayName', 'encoding'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'string') throw configError(`\`${k}\` must be a string`);
    out[k] = o[k];
  }
  if (o.metadata !== undefined) out.metadata = JSON.stringify(o.metadata);
  if (o.subprotocol !== undefined) {
    if (o.subprotocol !== null && typeof o.subprotocol !== 'string') throw configError('`subprotocol` must be a string or null');
    out.subprotocol = o.subprotocol ?? '';
  }
  if (o.maxReconnectAttempts !== undefined && o.maxReconnectAttempts !== null) {
    if (typeof o.maxReconnectAttempts !== 'number') throw configError('`maxReconnectAttempts` must be a number or null');
    out.maxReconnectAttempts = o.maxReconnectAttempts;
  }
  if (o.tokenProvider !== undefined && typeof o.tokenProvider !== 'function') {
    throw configError('`tokenProvider` must be a function');
  }
  return out;
}

/** The token provider as the core calls it: never rejects (a throw fails that attempt). */
function wrapTokenProvider(p: () => string | Promise<string>): (arg: string) => Promise<string | null> {
  return async () => {
    try {
      const token = await p();
      if (typeof token !== 'string') throw new TypeError('the token provider must return a string');
      return token;
    } catch (err) {
      reportListenerError('the token provider', err);
      return null;
    }
  };
}

function jsonArg(name: string, v: unknown): string {
  if (v === undefined || typeof v === 'function' || typeof v === 'symbol' || typeof v === 'bigint') {
    throw invalidArgument(`\`${name}\` must be a JSON value`);
  }
  return JSON.stringify(v);
}

function str(name: string, v: unknown): string {
  if (typeof v !== 'string') throw invalidArgument(`\`${name}\` must be a string`);
  return v;
}

/** Wraps a synchronous native send: argument errors become rejections too. */
function send<T>(f: () => Promise<T>): Promise<T> {
  try {
    return settle(f());
  } catch (err) {
    return Promise.reject(fromNative(err));
  }
}

/**
 * A signaling client that survives the network: it reconnects with backoff,
 * resumes its session and delivers every message exactly once while the
 * server's resume buffer holds (see the README's "Rust client" section).
 *
 * Each send is queued when the method is called (call order is wire order)
 * and resolves when the server acknowledged it, or rejects with the server's
 * error (`err.code`, e.g. `peer-not-found`) or `closed`. The client keeps the
 * process alive until it is closed.
 */
export class Client extends TypedEmitter<ClientEventMap> {
  readonly #native: native.NativeClient;
  #closing: Promise<void> | null = null;
  readonly #ended: Promise<void>;

  private constructor(n: native.NativeClient) {
    super();
    this.#native = n;
    this.#ended = this.#pump();
  }

  /** Connects; resolves once the server's `connected` arrived (the first attempt is not retried). */
  static async connect(url: string, options: ClientOptions = {}): Promise<Client> {
    if (typeof url !== 'string') throw invalidArgument('`url` must be a string');
    const opts = toNative(options);
    const provider = options.tokenProvider ? wrapTokenProvider(options.tokenProvider) : null;
    return new Client(await settle(native.connectClient(url, opts, provider)));
  }

  /** Joins a room; resolves with its `room-info` (`users`, `peers`, `you`, …). */
  join(roomId: string): Promise<RoomInfo> {
    return send(() => this.#native.join(str('roomId', roomId))).then((t) => JSON.parse(t) as RoomInfo);
  }

  /** Leaves one room, or every room without an argument. */
  leave(roomId?: string): Promise<void> {
    return send(() => this.#native.leave(roomId === undefined ? null : str('roomId', roomId))).then(() => undefined);
  }

  /** Sends an SDP offer (an object or a string) to peer `to`. */
  sendOffer(to: string, sdp: Json): Promise<void> {
    return send(() => this.#native.sendOffer(str('to', to), jsonArg('sdp', sdp))).then(() => undefined);
  }

  sendAnswer(to: string, sdp: Json): Promise<void> {
    return send(() => this.#native.sendAnswer(str('to', to), jsonArg('sdp', sdp))).then(() => undefined);
  }

  /** Sends an ICE candidate (`null` for end-of-candidates) to peer `to`. */
  sendCandidate(to: string, candidate: Json): Promise<void> {
    return send(() => this.#native.sendCandidate(str('to', to), jsonArg('candidate', candidate))).then(() => undefined);
  }

  /** Application data to one peer, or with `to = null` to every other peer of the room. */
  send(to: string | null, data: Json): Promise<void> {
    return send(() => this.#native.send(to === null ? null : str('to', to), jsonArg('data', data))).then(() => undefined);
  }

  /** A chat line to the whole room (the sender gets it back too). */
  chat(content: string): Promise<void> {
    return send(() => this.#native.chat(str('content', content))).then(() => undefined);
  }

  /**
   * Any client message as an object with its `type` (e.g. with an explicit
   * `roomId` when in several rooms); resolves with the `room-info` for a
   * `join`, `null` otherwise.
   */
  sendJson(message: { type: string; [field: string]: unknown }): Promise<RoomInfo | null> {
    return send(() => {
      if (message === null || typeof message !== 'object' || Array.isArray(message)) {
        throw invalidArgument('a message must be an object with a string `type`');
      }
      return this.#native.sendJson(JSON.stringify(message));
    }).then((t) => JSON.parse(t) as RoomInfo | null);
  }

  /** Every event from now on, until `closed`. */
  events(): AsyncIterableIterator<ClientEvent> {
    return this.iterate(() => {});
  }

  /** The session id (the same across resumes). */
  get sessionId(): string | null {
    return this.#native.sessionId;
  }

  /** Whether a session is established right now. */
  get connected(): boolean {
    return this.#native.connected;
  }

  /** Whether the client is closed for good. */
  get closed(): boolean {
    return this.#native.closed;
  }

  /** Rooms joined (confirmed by `room-info`). */
  get rooms(): string[] {
    return this.#native.rooms;
  }

  /** Messages queued or awaiting their acknowledgement. */
  get pending(): number {
    return this.#native.pending;
  }

  /** Events lost because listeners fell more than `eventCapacity` behind. */
  get missedEvents(): number {
    return this.#native.missedEvents;
  }

  /**
   * Closes for good: queued messages are written and acknowledged (up to 1 s),
   * then the socket closes with 1000 (peers see `user-left`, `closed`).
   * Pending sends reject with `closed`. Resolves once everything is released.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await settle(this.#native.close());
      await this.#ended;
    })();
    return this.#closing;
  }

  #pump(): Promise<void> {
    // When the client ends (closed, kicked, or gave up) the token provider is
    // released: nothing of it keeps the process alive.
    return this.pump('client', () => settle(this.#native.nextEvents()), () => this.#native.release());
  }
}
