/**
 * The Switchboard browser client: one ES module (MessagePack, for the
 * `webrtc-signaling.msgpack` subprotocol, is bundled in).
 *
 * - `SignalingClient` speaks the Switchboard protocol (docs/PROTOCOL.md) with the
 *   same semantics as the core Rust client: reconnect with exponential backoff and
 *   full jitter, a JSON heartbeat with dead-connection detection, a bounded outbox
 *   (offline queue and unacknowledged messages), `id`/`ack` retransmission,
 *   `resume` with `lastSeq`, and a fresh `join` of every room plus `rejoined` when
 *   the server answers `resume-failed`. The session lives in `sessionStorage`, so
 *   a reloaded page resumes it or takes its identity over.
 * - `PerfectNegotiation` runs WebRTC "perfect negotiation" over a client for one
 *   room: one `RTCPeerConnection` per peer, roles from the server's `polite` flag,
 *   rollback on glare, trickle ICE with early candidates queued, ICE restart after
 *   a resume.
 */

import { decode as decodeMsgpack, encode as encodeMsgpack } from '@msgpack/msgpack';

// ---------------------------------------------------------------------------
// Messages and events
// ---------------------------------------------------------------------------

/** Any protocol message or client event: a `type` plus its fields. */
export interface SignalingMessage {
  type: string;
  [field: string]: unknown;
}

/** One other peer of a room, as `room-info` lists it. */
export interface PeerEntry {
  userId: string;
  displayName?: string;
  metadata?: unknown;
  /** This client's role toward that peer in perfect negotiation. */
  polite: boolean;
}

/** The server's answer to `join`. */
export interface RoomInfo extends SignalingMessage {
  type: 'room-info';
  roomId: string;
  /** The other peers' ids. */
  users: string[];
  peers: PeerEntry[];
  you: { userId: string; displayName?: string; metadata?: unknown };
  /** TURN/STUN servers, when the server hands out credentials. */
  iceServers?: RTCIceServer[];
}

export interface UserJoinedEvent extends SignalingMessage {
  type: 'user-joined';
  roomId: string;
  userId: string;
  displayName?: string;
  metadata?: unknown;
  polite: boolean;
}

export interface UserLeftEvent extends SignalingMessage {
  type: 'user-left';
  roomId: string;
  userId: string;
  reason: 'leave' | 'closed' | 'timeout' | 'kicked' | 'replaced' | string;
}

/** `offer` / `answer` as relayed: `from` is stamped by the server. */
export interface DescriptionMessage extends SignalingMessage {
  type: 'offer' | 'answer';
  from: string;
  roomId: string;
  sdp: RTCSessionDescriptionInit | string;
}

export interface CandidateMessage extends SignalingMessage {
  type: 'candidate';
  from: string;
  roomId: string;
  candidate: RTCIceCandidateInit | null;
}

export interface DataMessage extends SignalingMessage {
  type: 'message';
  from: string;
  roomId: string;
  data: unknown;
}

export interface ChatMessage extends SignalingMessage {
  type: 'chat';
  from: string;
  roomId: string;
  content: string;
  timestamp: number;
}

export interface ConnectedEvent extends SignalingMessage {
  type: 'connected';
  clientId: string;
  sessionId: string;
  heartbeatMs: number;
}

export interface ResumedEvent extends SignalingMessage {
  type: 'resumed';
  sessionId: string;
  replayed: number;
  /**
   * True when the session came from storage (this page was reloaded): the
   * session survived, but the previous page's peer connections did not.
   */
  restored: boolean;
}

export interface ErrorMessage extends SignalingMessage {
  type: 'error';
  code: string;
  message: string;
  ref?: string | number;
}

/** Every event name with its payload. Unknown server types are emitted too. */
export interface SignalingEventMap {
  connected: ConnectedEvent;
  'room-info': RoomInfo;
  'user-joined': UserJoinedEvent;
  'user-left': UserLeftEvent;
  offer: DescriptionMessage;
  answer: DescriptionMessage;
  candidate: CandidateMessage;
  message: DataMessage;
  chat: ChatMessage;
  resumed: ResumedEvent;
  draining: SignalingMessage & { type: 'draining'; retryAfterMs: number };
  error: ErrorMessage;
  /** A connection attempt starts (0: the first, then the reconnect attempt). */
  connecting: SignalingMessage & { type: 'connecting'; attempt: number };
  /** The WebSocket is open (before `connected` / `resumed`). */
  open: SignalingMessage & { type: 'open' };
  /** The connection was lost; attempt `attempt` starts after `delayMs`. */
  reconnecting: SignalingMessage & { type: 'reconnecting'; attempt: number; delayMs: number };
  /** The session could not be resumed: these rooms were joined afresh. */
  rejoined: SignalingMessage & { type: 'rejoined'; rooms: string[] };
  /** Reconnecting gave up after `attempts` attempts (then `closed`). */
  'reconnect-failed': SignalingMessage & { type: 'reconnect-failed'; attempts: number };
  /** Closed for good. */
  closed: SignalingMessage & { type: 'closed'; code: number | null; reason: string };
  /** Every event. */
  '*': SignalingMessage;
}

/** Error codes: the protocol's, plus `queue-full` and `closed` from the client. */
export type ErrorCode =
  | 'invalid-json'
  | 'invalid-message'
  | 'unknown-type'
  | 'unauthorized'
  | 'forbidden'
  | 'not-in-room'
  | 'peer-not-found'
  | 'room-full'
  | 'user-id-taken'
  | 'rate-limited'
  | 'message-too-big'
  | 'resume-failed'
  | 'internal'
  | 'queue-full'
  | 'closed';

/** Why a send failed: `code` is the protocol error code, `queue-full` or `closed`. */
export class SignalingError extends Error {
  readonly code: ErrorCode | string;
  constructor(code: ErrorCode | string, message: string) {
    super(message);
    this.name = 'SignalingError';
    this.code = code;
  }
}

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/** The part of the WebSocket API the client uses (the browser's, or a test double). */
export interface WebSocketLike {
  readonly readyState: number;
  /** The subprotocol the server selected (`webrtc-signaling.msgpack`: binary frames). */
  readonly protocol?: string;
  binaryType?: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** The MessagePack subprotocol: the same messages as binary frames. */
export const SUBPROTOCOL_MSGPACK = 'webrtc-signaling.msgpack';

/** The characters a subprotocol entry (an HTTP token) may hold. */
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export type WebSocketFactory = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Where the session is kept across page reloads (`sessionStorage` by default). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface SignalingClientOptions {
  /** Sent with every `join`. Without one the server assigns an id, kept for re-joins and reloads. */
  userId?: string;
  displayName?: string;
  metadata?: unknown;
  /**
   * A token, or a function asked before every connection attempt (so an expiring
   * token is refreshed). Browsers can not set headers on a WebSocket and a query
   * string ends up in logs, so it goes in a `bearer.<token>` subprotocol entry
   * (the server checks it before the upgrade and selects only
   * `webrtc-signaling`), or as the first message, `{"type":"auth"}` (see `tokenIn`).
   */
  token?: string | (() => string | Promise<string>);
  /**
   * Where the token goes: `'subprotocol'` (default) or `'message'`. A token with
   * characters a subprotocol can not carry goes in the message; so does the
   * next attempt after a handshake that failed before the socket opened (a
   * refused token is then answered with a clear 4401).
   */
  tokenIn?: 'subprotocol' | 'message';
  /**
   * `'json'` (default) or `'msgpack'`: the `webrtc-signaling.msgpack`
   * subprotocol, every message a MessagePack binary frame.
   */
  encoding?: 'json' | 'msgpack';
  /** WebSocket subprotocols to offer (default `['webrtc-signaling']`, or the MessagePack one). */
  protocols?: string[];
  /** Ceiling of the first reconnect delay (default 1000 ms); doubles per attempt. */
  reconnectBaseMs?: number;
  /** Largest reconnect delay ceiling (default 30000 ms). */
  reconnectMaxMs?: number;
  /** Reconnect attempts in a row before `reconnect-failed` (default: unlimited). */
  maxReconnectAttempts?: number | null;
  /** A connection up this long resets the attempt counter (default 10000 ms). */
  stableAfterMs?: number;
  /** A JSON `ping` this often (default 15000 ms). */
  heartbeatIntervalMs?: number;
  /** Dead after interval + this much silence from the server (default 10000 ms). */
  heartbeatTimeoutMs?: number;
  /** Bound on opening a connection up to `connected`/`resumed` (default 10000 ms). */
  connectTimeoutMs?: number;
  /** `close()` waits this long for queued messages' acknowledgements (default 1000 ms). */
  closeTimeoutMs?: number;
  /** Outbox bound in messages (default 256). */
  queueMaxMessages?: number;
  /** Outbox bound in bytes of JSON text (default 1 MiB). */
  queueMaxBytes?: number;
  /** Largest message the client sends (default 64 KiB, the server's default limit). */
  maxMessageBytes?: number;
  /** Messages written and not yet acknowledged, at most (default 32). */
  maxInFlight?: number;
  /** Pause of writes after a `rate-limited` error (default 1000 ms). */
  rateLimitPauseMs?: number;
  /** Cumulative `ack` after this many server messages (default 16)… */
  ackEvery?: number;
  /** …or this long after the first unacknowledged one (default 100 ms). */
  ackDelayMs?: number;
  /** Where the session survives a reload (default `sessionStorage`; `null`: nowhere). */
  storage?: StorageLike | null;
  /** The storage key (default `switchboard:` + url). */
  storageKey?: string;
  /** The WebSocket implementation (default the global `WebSocket`). */
  WebSocket?: WebSocketFactory;
}

interface Settings {
  protocols: string[];
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  maxReconnectAttempts: number | null;
  stableAfterMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  connectTimeoutMs: number;
  closeTimeoutMs: number;
  queueMaxMessages: number;
  queueMaxBytes: number;
  maxMessageBytes: number;
  maxInFlight: number;
  rateLimitPauseMs: number;
  ackEvery: number;
  ackDelayMs: number;
}

const DEFAULTS: Settings = {
  protocols: ['webrtc-signaling'],
  reconnectBaseMs: 1000,
  reconnectMaxMs: 30000,
  maxReconnectAttempts: null,
  stableAfterMs: 10000,
  heartbeatIntervalMs: 15000,
  heartbeatTimeoutMs: 10000,
  connectTimeoutMs: 10000,
  closeTimeoutMs: 1000,
  // Well below the 512 ids the server remembers per session, so a retransmitted
  // id is always recognised.
  queueMaxMessages: 256,
  queueMaxBytes: 1024 * 1024,
  maxMessageBytes: 64 * 1024,
  // Below the server's default rate-limit burst (50).
  maxInFlight: 32,
  // The server sends at most one `rate-limited` per second: after a pause this
  // long, a message dropped again yields a new error.
  rateLimitPauseMs: 1000,
  ackEvery: 16,
  ackDelayMs: 100,
};

/** Close codes with a meaning for reconnecting (docs/PROTOCOL.md). */
const CLOSE = {
  NORMAL: 1000,
  HEARTBEAT_TIMEOUT: 4000,
  UNAUTHORIZED: 4401,
  KICKED: 4403,
  REPLACED: 4409,
  JOIN_REFUSED: 4400,
} as const;

/** The ceiling of the delay before reconnect attempt `attempt` (1-based). */
export function backoffCeiling(attempt: number, baseMs: number, maxMs: number): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 31);
  return Math.min(maxMs, baseMs * 2 ** exponent);
}

/** Bytes of a string in UTF-8 (the server's limits count bytes). */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4; // a surrogate pair: one 4-byte code point
      i++;
    } else n += 3;
  }
  return n;
}

function report(error: unknown): void {
  const g = globalThis as { reportError?: (e: unknown) => void };
  if (typeof g.reportError === 'function') g.reportError(error);
  else console.error(error);
}

// ---------------------------------------------------------------------------
// The outbox: every message the server has not acknowledged yet
// ---------------------------------------------------------------------------

type Kind =
  | { t: 'join'; room: string; rejoin: boolean }
  | { t: 'leave'; room: string | null }
  | { t: 'other' };

interface Reply {
  resolve(value: unknown): void;
  reject(error: SignalingError): void;
}

interface Entry {
  id: number;
  kind: Kind;
  text: string;
  bytes: number;
  /** `null` once answered, or for the client's own re-joins. */
  reply: Reply | null;
  /** Written on the current connection (and not found dropped by the rate limit since). */
  written: boolean;
  /** Written at least once in the current server session: the server may have acted on it. */
  sent: boolean;
}

function answer(entry: { reply: Reply | null }, result: { ok: unknown } | { err: SignalingError }): void {
  const reply = entry.reply;
  entry.reply = null;
  if (!reply) return;
  if ('ok' in result) reply.resolve(result.ok);
  else reply.reject(result.err);
}

/**
 * Queued and in-flight messages in one ordered list, bounded by count and bytes:
 * after a reconnect everything unacknowledged is written again, oldest first, and
 * the server acknowledges ids it already has without delivering them twice.
 */
class Outbox {
  entries: Entry[] = [];
  bytes = 0;
  private nextId = 1;

  constructor(private readonly s: Settings) {}

  /**
   * Adds a message and assigns its `id`. At the bound the message is refused with
   * `queue-full` and nothing is queued (dropping an older one would break the
   * ordering and exactly-once promises of a message its caller believes sent).
   */
  push(kind: Kind, fields: Record<string, unknown>, reply: Reply): SignalingError | null {
    const id = this.nextId;
    let text: string;
    try {
      text = JSON.stringify({ ...fields, id });
    } catch (e) {
      return new SignalingError('invalid-message', `the message can not be serialized: ${String(e)}`);
    }
    const bytes = utf8Length(text);
    if (bytes > this.s.maxMessageBytes) {
      // The server would close the connection (1009), and the retransmission
      // after the reconnect would do it again, forever.
      return new SignalingError('message-too-big', `the message is ${bytes} bytes, the limit is ${this.s.maxMessageBytes}`);
    }
    if (this.entries.length >= this.s.queueMaxMessages) {
      return new SignalingError('queue-full', `${this.entries.length} messages are waiting for the server's acknowledgement (limit ${this.s.queueMaxMessages})`);
    }
    if (this.bytes + bytes > this.s.queueMaxBytes) {
      return new SignalingError('queue-full', `${this.bytes} bytes are waiting for the server's acknowledgement; ${bytes} more would pass the limit of ${this.s.queueMaxBytes}`);
    }
    this.nextId++;
    this.bytes += bytes;
    this.entries.push({ id, kind, text, bytes, reply, written: false, sent: false });
    return null;
  }

  /**
   * The client's own re-joins after a failed resume go first and outside the
   * bound (one per room the application had joined): the rooms must be joined
   * before queued messages addressed to them are sent.
   */
  pushRejoinsFront(rooms: string[], identity: Record<string, unknown>): void {
    const rejoins: Entry[] = rooms.map((room) => {
      const id = this.nextId++;
      const text = JSON.stringify({ ...identity, type: 'join', roomId: room, id });
      const bytes = utf8Length(text);
      this.bytes += bytes;
      return { id, kind: { t: 'join', room, rejoin: true }, text, bytes, reply: null, written: false, sent: false };
    });
    this.entries.unshift(...rejoins);
  }

  /** Texts not yet written on this connection, oldest first, keeping at most `maxInFlight` unacknowledged. */
  takeUnwritten(maxInFlight: number): string[] {
    let room = maxInFlight - this.inFlight();
    const out: string[] = [];
    for (const e of this.entries) {
      if (room <= 0) break;
      if (e.written) continue;
      room--;
      e.written = true;
      e.sent = true;
      out.push(e.text);
    }
    return out;
  }

  inFlight(): number {
    let n = 0;
    for (const e of this.entries) if (e.written) n++;
    return n;
  }

  markAllUnwritten(): void {
    for (const e of this.entries) e.written = false;
  }

  remove(id: number): Entry | undefined {
    return this.removeFirst((e) => e.id === id);
  }

  removeFirst(pred: (e: Entry) => boolean): Entry | undefined {
    const i = this.entries.findIndex(pred);
    if (i < 0) return undefined;
    const [e] = this.entries.splice(i, 1);
    this.bytes -= e.bytes;
    return e;
  }

  removeWhere(pred: (e: Entry) => boolean): Entry[] {
    const removed: Entry[] = [];
    this.entries = this.entries.filter((e) => {
      if (!pred(e)) return true;
      this.bytes -= e.bytes;
      removed.push(e);
      return false;
    });
    return removed;
  }

  drain(): Entry[] {
    const all = this.entries;
    this.entries = [];
    this.bytes = 0;
    return all;
  }
}

/** Reads a message id echoed by the server (`ack.id`, `error.ref`). */
function parseId(v: unknown): number | null {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string' && /^\d+$/.test(v)) return Number(v);
  return null;
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

interface StoredSession {
  userId?: string;
  sessionId?: string;
  resumeToken?: string;
  lastSeq?: number;
  rooms?: string[];
}

type Phase = 'connecting' | 'handshake' | 'resuming' | 'established' | 'waiting' | 'closing' | 'closed';

/** The connection state, for a status display. */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

type Handler = (event: SignalingMessage) => void;

/**
 * A signaling client. It connects at once and keeps connecting until `close()`;
 * sends made meanwhile wait in the outbox. Every send returns a promise of its
 * outcome (a `join` resolves with `room-info`, the others on the server's `ack`);
 * the message is queued whether or not the promise is awaited, and an ignored
 * failure never surfaces as an unhandled rejection.
 */
export class SignalingClient {
  readonly url: string;
  private readonly s: Settings;
  private readonly WS: WebSocketFactory;
  private readonly token: SignalingClientOptions['token'];
  private readonly tokenIn: 'subprotocol' | 'message';
  /** The last attempt with a subprotocol token failed before the socket opened. */
  private tokenViaMessage = false;
  private readonly storage: StorageLike | null;
  private readonly storageKey: string;
  private readonly handlers = new Map<string, Set<Handler>>();
  private readonly outbox: Outbox;
  private identity: Record<string, unknown> = {};
  private phase: Phase = 'connecting';
  private ws: WebSocketLike | null = null;
  /** Bumped per connection: callbacks of an abandoned socket are ignored. */
  private generation = 0;
  private session: { id: string; resumeToken: string } | null = null;
  /** A fresh session offered by `connected`, adopted unless the resume succeeds. */
  private fresh: { id: string; resumeToken: string } | null = null;
  private restored = false;
  private lastSeq = 0;
  private unacked = 0;
  private roomList: string[] = [];
  /** Joins whose `ack` came before their `room-info`. */
  private awaitingRoomInfo: { id: number; room: string; reply: Reply }[] = [];
  private rejoin: { rooms: string[]; pending: Set<string> } | null = null;
  private attempt = 0;
  private establishedAt = 0;
  private drainHintMs: number | null = null;
  private pausedUntil: number | null = null;
  private rejectedToken: string | null = null;
  private currentToken: string | null = null;
  private closedReason: string | null = null;
  private closeRequested = false;
  private timers: Record<'connect' | 'reconnect' | 'ping' | 'liveness' | 'ack' | 'pause', ReturnType<typeof setTimeout> | null> = {
    connect: null,
    reconnect: null,
    ping: null,
    liveness: null,
    ack: null,
    pause: null,
  };
  private readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly onOnline = (): void => {
    // The browser is back online: skip the rest of the backoff.
    if (this.phase === 'waiting') {
      this.clearTimer('reconnect');
      this.connect();
    }
  };

  constructor(url: string, options: SignalingClientOptions = {}) {
    this.url = url;
    const s: Settings = { ...DEFAULTS };
    for (const k of Object.keys(DEFAULTS) as (keyof Settings)[]) {
      const v = options[k];
      if (v !== undefined) (s as unknown as Record<string, unknown>)[k] = v;
    }
    this.s = s;
    const positive: (keyof Settings)[] = ['reconnectBaseMs', 'heartbeatIntervalMs', 'heartbeatTimeoutMs', 'connectTimeoutMs', 'queueMaxMessages', 'queueMaxBytes', 'maxMessageBytes', 'maxInFlight', 'ackEvery'];
    for (const k of positive) {
      if (!(typeof s[k] === 'number' && (s[k] as number) > 0)) throw new TypeError(`${k} must be a positive number`);
    }
    if (s.reconnectMaxMs < s.reconnectBaseMs) throw new TypeError('reconnectMaxMs must be at least reconnectBaseMs');
    if (!/^wss?:\/\//.test(url)) throw new TypeError('the URL must start with ws:// or wss://');
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket;
    if (!WS) throw new TypeError('no WebSocket implementation: pass options.WebSocket');
    this.WS = WS;
    this.token = options.token;
    if (options.tokenIn !== undefined && options.tokenIn !== 'subprotocol' && options.tokenIn !== 'message') {
      throw new TypeError("tokenIn must be 'subprotocol' or 'message'");
    }
    this.tokenIn = options.tokenIn ?? 'subprotocol';
    if (options.encoding !== undefined && options.encoding !== 'json' && options.encoding !== 'msgpack') {
      throw new TypeError("encoding must be 'json' or 'msgpack'");
    }
    if (options.encoding === 'msgpack' && options.protocols === undefined) s.protocols = [SUBPROTOCOL_MSGPACK];
    this.outbox = new Outbox(s);
    this.storage = options.storage !== undefined ? options.storage : defaultStorage();
    this.storageKey = options.storageKey ?? `switchboard:${url}`;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));

    if (options.userId !== undefined) this.identity.userId = options.userId;
    if (options.displayName !== undefined) this.identity.displayName = options.displayName;
    if (options.metadata !== undefined) this.identity.metadata = options.metadata;
    this.restore(options.userId);

    const g = globalThis as { addEventListener?: (t: string, f: () => void) => void };
    if (typeof g.addEventListener === 'function') g.addEventListener('online', this.onOnline);
    // On the next microtask, so that handlers attached right after construction
    // see the first `connecting`.
    queueMicrotask(() => void this.connect());
  }

  // -- public API -----------------------------------------------------------

  /** Joins a room; resolves with its `room-info`, or rejects with `room-full`, `user-id-taken`, … */
  join(roomId: string): Promise<RoomInfo> {
    return this.enqueue({ t: 'join', room: roomId, rejoin: false }, { ...this.identity, type: 'join', roomId }) as Promise<RoomInfo>;
  }

  /** Leaves one room, or every room without an argument. */
  leave(roomId?: string): Promise<void> {
    const fields: Record<string, unknown> = { type: 'leave' };
    if (roomId !== undefined) fields.roomId = roomId;
    return this.enqueue({ t: 'leave', room: roomId ?? null }, fields) as Promise<void>;
  }

  /** Sends an SDP offer to peer `to` (`roomId` is needed only when in several rooms). */
  sendOffer(to: string, sdp: RTCSessionDescriptionInit | string, roomId?: string): Promise<void> {
    return this.sendTo('offer', to, { sdp }, roomId);
  }

  sendAnswer(to: string, sdp: RTCSessionDescriptionInit | string, roomId?: string): Promise<void> {
    return this.sendTo('answer', to, { sdp }, roomId);
  }

  /** Sends an ICE candidate (`null`: end of candidates). */
  sendCandidate(to: string, candidate: RTCIceCandidateInit | null, roomId?: string): Promise<void> {
    return this.sendTo('candidate', to, { candidate }, roomId);
  }

  /** Application data to one peer, or with `to = null` to every other peer of the room. */
  send(to: string | null, data: unknown, roomId?: string): Promise<void> {
    const fields: Record<string, unknown> = { type: 'message', data };
    if (to !== null) fields.to = to;
    if (roomId !== undefined) fields.roomId = roomId;
    return this.enqueue({ t: 'other' }, fields) as Promise<void>;
  }

  /** A chat line to the whole room (the sender gets it back too). */
  chat(content: string, roomId?: string): Promise<void> {
    const fields: Record<string, unknown> = { type: 'chat', content };
    if (roomId !== undefined) fields.roomId = roomId;
    return this.enqueue({ t: 'other' }, fields) as Promise<void>;
  }

  /**
   * Any client message (`join`, `leave`, `offer`, `answer`, `candidate`,
   * `message`, `chat`, `auth`, or one of the server's app types such as
   * `hangup`) as an object with its `type`; extra fields are relayed as they
   * are. Resolves with the `room-info` of a `join`, else `null`; a type the
   * server does not know is refused by it (`unknown-type`).
   */
  sendJson(message: Record<string, unknown>): Promise<unknown> {
    const type = message?.type;
    let kind: Kind;
    switch (type) {
      case 'join':
        if (typeof message.roomId !== 'string') return this.refused(new SignalingError('invalid-message', '`join` needs a string `roomId`'));
        kind = { t: 'join', room: message.roomId, rejoin: false };
        break;
      case 'leave':
        kind = { t: 'leave', room: typeof message.roomId === 'string' ? message.roomId : null };
        break;
      case 'ping':
      case 'ack':
      case 'resume':
        return this.refused(new SignalingError('invalid-message', '`ping`, `ack` and `resume` are sent by the client itself'));
      default:
        // The protocol's relayed types, `auth`, and the server's app types.
        if (typeof type !== 'string' || type === '') return this.refused(new SignalingError('invalid-message', '`type` must be a string'));
        kind = { t: 'other' };
    }
    return this.enqueue(kind, message);
  }

  /** Subscribes to an event (a protocol `type`, a connection state, or `*`); returns the unsubscribe function. */
  on<K extends keyof SignalingEventMap>(type: K, handler: (event: SignalingEventMap[K]) => void): () => void;
  on(type: string, handler: (event: SignalingMessage) => void): () => void;
  on(type: string, handler: (event: never) => void): () => void {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(handler as Handler);
    return () => this.off(type, handler as Handler);
  }

  off<K extends keyof SignalingEventMap>(type: K, handler: (event: SignalingEventMap[K]) => void): void;
  off(type: string, handler: (event: SignalingMessage) => void): void;
  off(type: string, handler: (event: never) => void): void {
    this.handlers.get(type)?.delete(handler as Handler);
  }

  /**
   * Closes for good: no more reconnects. When connected, queued messages are
   * written and their acknowledgements awaited up to `closeTimeoutMs`, then the
   * socket closes with 1000 (the server ends the membership at once: peers see
   * `user-left` with `closed`). Pending sends reject with `closed`; the stored
   * session is forgotten. Resolves when done.
   */
  close(): Promise<void> {
    if (this.closeRequested || this.phase === 'closed') return this.done;
    this.closeRequested = true;
    if (this.phase === 'established' && this.ws) {
      this.phase = 'closing';
      this.flush();
      const deadline = setTimeout(() => this.finishClose(), this.s.closeTimeoutMs);
      const check = (): void => {
        if (this.outbox.entries.length === 0) {
          clearTimeout(deadline);
          this.finishClose();
        }
      };
      this.afterAck = check;
      check();
    } else {
      this.abandonSocket(CLOSE.NORMAL, 'closed by the client');
      this.finish(CLOSE.NORMAL, 'closed by the application');
    }
    return this.done;
  }

  /** The connection state. */
  get state(): ConnectionState {
    switch (this.phase) {
      case 'established':
        return 'connected';
      case 'waiting':
        return 'reconnecting';
      case 'closing':
      case 'closed':
        return 'closed';
      default:
        return this.attempt === 0 ? 'connecting' : 'reconnecting';
    }
  }

  /** Whether a session is established right now. */
  get connected(): boolean {
    return this.phase === 'established';
  }

  /** The user id: configured, kept from an earlier page, or assigned by the server. */
  get userId(): string | null {
    return typeof this.identity.userId === 'string' ? this.identity.userId : null;
  }

  /** The server session id (the same across resumes). */
  get sessionId(): string | null {
    return this.session?.id ?? null;
  }

  /** Rooms joined (confirmed by `room-info`), in join order. */
  get rooms(): string[] {
    return [...this.roomList];
  }

  /** Messages in the outbox (queued, or written and awaiting their acknowledgement). */
  get pending(): number {
    return this.outbox.entries.length;
  }

  // -- events ---------------------------------------------------------------

  private emit(event: SignalingMessage): void {
    for (const key of [event.type, '*']) {
      const set = this.handlers.get(key);
      if (!set) continue;
      for (const h of [...set]) {
        try {
          h(event);
        } catch (e) {
          // A failing handler must not break the client (or the other handlers).
          report(e);
        }
      }
    }
  }

  // -- sending --------------------------------------------------------------

  private sendTo(type: string, to: string, body: Record<string, unknown>, roomId?: string): Promise<void> {
    const fields: Record<string, unknown> = { type, to, ...body };
    if (roomId !== undefined) fields.roomId = roomId;
    return this.enqueue({ t: 'other' }, fields) as Promise<void>;
  }

  private refused(error: SignalingError): Promise<never> {
    const p = Promise.reject(error);
    p.catch(() => {});
    return p;
  }

  private enqueue(kind: Kind, fields: Record<string, unknown>): Promise<unknown> {
    if (this.closedReason !== null || this.closeRequested) {
      return this.refused(new SignalingError('closed', this.closedReason ?? 'the client is closing'));
    }
    let reply!: Reply;
    const p = new Promise<unknown>((resolve, reject) => (reply = { resolve, reject }));
    // Marks the promise handled: a caller that ignores it gets no unhandled
    // rejection, one that awaits it still sees the error.
    p.catch(() => {});
    const error = this.outbox.push(kind, fields, reply);
    if (error) return this.refused(error);
    this.flush();
    return p;
  }

  /** Writes outbox messages not yet written on this connection, up to `maxInFlight`. */
  private flush(): void {
    if ((this.phase !== 'established' && this.phase !== 'closing') || !this.ws) return;
    if (this.pausedUntil !== null) return;
    for (const text of this.outbox.takeUnwritten(this.s.maxInFlight)) this.write(text);
  }

  private sendRaw(message: Record<string, unknown>): void {
    this.write(JSON.stringify(message));
  }

  /** One message in the encoding the server selected (the outbox keeps JSON text, which its bounds count). */
  private write(text: string): void {
    const ws = this.ws;
    if (!ws) return;
    ws.send(ws.protocol === SUBPROTOCOL_MSGPACK ? encodeMsgpack(JSON.parse(text)) : text);
  }

  // -- connection life cycle ------------------------------------------------

  private clearTimer(name: keyof SignalingClient['timers']): void {
    const t = this.timers[name];
    if (t !== null) clearTimeout(t);
    this.timers[name] = null;
  }

  private clearTimers(): void {
    this.stopServing();
    this.clearTimer('reconnect');
  }

  private async connect(): Promise<void> {
    if (this.closeRequested) return;
    this.phase = 'connecting';
    const gen = ++this.generation;
    this.emit({ type: 'connecting', attempt: this.attempt });
    // One deadline for the whole attempt: token, handshake, `connected`, `resumed`.
    this.timers.connect = setTimeout(() => {
      if (gen !== this.generation) return;
      this.abandonSocket(CLOSE.NORMAL, 'connect timeout');
      this.lost(null, `no session within ${this.s.connectTimeoutMs} ms`, false);
    }, this.s.connectTimeoutMs);

    let token: string | null = null;
    if (this.token !== undefined) {
      try {
        token = typeof this.token === 'function' ? await this.token() : this.token;
      } catch (e) {
        if (gen !== this.generation) return;
        this.clearTimer('connect');
        return this.lost(null, `the token provider failed: ${String(e)}`, false);
      }
      if (gen !== this.generation) return;
      if (token === this.rejectedToken) {
        this.clearTimer('connect');
        return this.finish(CLOSE.UNAUTHORIZED, 'the server refused the token and no new token was provided');
      }
      this.currentToken = token;
    }

    // The token in a `bearer.` subprotocol entry: checked before the upgrade.
    const inProtocol =
      token !== null && this.tokenIn === 'subprotocol' && !this.tokenViaMessage && TOKEN_CHARS.test(token);
    const protocols = inProtocol ? [...this.s.protocols, `bearer.${token}`] : this.s.protocols;
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.url, protocols);
    } catch (e) {
      this.clearTimer('connect');
      return this.finish(null, `can not open a WebSocket: ${String(e)}`);
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.phase = 'handshake';
    let opened = false;
    ws.onopen = () => {
      if (gen !== this.generation) return;
      opened = true;
      this.tokenViaMessage = false;
      this.emit({ type: 'open' });
      // First, so that it precedes `resume` (the server accepts `auth` then `resume`).
      if (token !== null && !inProtocol) this.sendRaw({ type: 'auth', token });
    };
    ws.onmessage = (ev) => {
      if (gen === this.generation) this.onFrame(ev.data);
    };
    ws.onerror = () => {
      // Always followed by `close`.
    };
    ws.onclose = (ev) => {
      if (gen !== this.generation) return;
      // A browser reports a refused upgrade (HTTP 401 included) as a plain
      // failure: the next attempt sends the token as a message, whose refusal
      // is a clear 4401.
      if (inProtocol && !opened) this.tokenViaMessage = true;
      this.onSocketClosed(ev.code, ev.reason);
    };
  }

  /** Stops listening to the current socket and closes it (best effort: it may be dead). */
  private abandonSocket(code: number, reason: string): void {
    const ws = this.ws;
    this.ws = null;
    this.generation++;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
      // Already closed.
    }
  }

  private onSocketClosed(code: number, reason: string): void {
    const wasEstablished = this.phase === 'established' || this.phase === 'closing';
    const stable = wasEstablished && Date.now() - this.establishedAt >= this.s.stableAfterMs;
    this.ws = null;
    this.generation++;
    this.stopServing();
    if (this.closeRequested) return this.finish(code, reason || 'closed by the application');
    const why = (what: string): string => (reason ? `${what}: ${reason}` : what);
    switch (code) {
      case CLOSE.KICKED:
        return this.finish(code, why('kicked'));
      case CLOSE.REPLACED:
        return this.finish(code, why('the session was taken over by a newer connection'));
      case CLOSE.JOIN_REFUSED:
        // The room in the URL can not be joined: the same URL would fail again.
        return this.finish(code, why('the join the URL asks for was refused'));
      case CLOSE.UNAUTHORIZED:
        this.rejectedToken = this.currentToken;
        if (typeof this.token !== 'function') return this.finish(code, why('unauthorized'));
        break;
    }
    this.lost(code, why(wasEstablished ? 'connection lost' : 'connection failed'), stable);
  }

  private stopServing(): void {
    this.clearTimer('connect');
    this.clearTimer('liveness');
    this.clearTimer('ack');
    this.clearTimer('pause');
    if (this.timers.ping !== null) clearInterval(this.timers.ping);
    this.timers.ping = null;
    this.pausedUntil = null;
  }

  /** The connection is gone: back off and try again, or give up. */
  private lost(code: number | null, reason: string, stable: boolean): void {
    this.stopServing();
    if (this.closeRequested) return this.finish(code, reason);
    if (stable) this.attempt = 0;
    this.attempt++;
    const max = this.s.maxReconnectAttempts;
    if (max !== null && this.attempt > max) {
      const attempts = this.attempt - 1;
      this.emit({ type: 'reconnect-failed', attempts });
      return this.finish(code, `gave up after ${attempts} reconnect attempts; last: ${reason}`);
    }
    const ceiling = this.drainHintMs ?? backoffCeiling(this.attempt, this.s.reconnectBaseMs, this.s.reconnectMaxMs);
    this.drainHintMs = null;
    // Full jitter: clients that lost the same server spread over the whole window.
    const delayMs = Math.floor(Math.random() * (ceiling + 1));
    this.phase = 'waiting';
    this.emit({ type: 'reconnecting', attempt: this.attempt, delayMs, code, reason });
    if (this.phase !== 'waiting') return; // a handler called close()
    this.timers.reconnect = setTimeout(() => {
      this.timers.reconnect = null;
      void this.connect();
    }, delayMs);
  }

  /** Closes for good: later sends fail, pending ones reject, `closed` is emitted. */
  private finish(code: number | null, reason: string): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.closedReason = reason;
    this.clearTimers();
    this.abandonSocket(CLOSE.NORMAL, reason.slice(0, 100));
    const g = globalThis as { removeEventListener?: (t: string, f: () => void) => void };
    if (typeof g.removeEventListener === 'function') g.removeEventListener('online', this.onOnline);
    const error = new SignalingError('closed', reason);
    for (const e of this.outbox.drain()) answer(e, { err: error });
    for (const w of this.awaitingRoomInfo.splice(0)) w.reply.reject(error);
    // The session is over for this page: a reload starts a new one (same user id).
    this.session = null;
    this.roomList = [];
    this.persist();
    this.emit({ type: 'closed', code, reason });
    this.resolveDone();
  }

  /** `close()` while connected, once the outbox is empty or the close timeout passed. */
  private afterAck: (() => void) | null = null;

  private finishClose(): void {
    if (this.phase === 'closed') return;
    this.afterAck = null;
    if (this.unacked > 0) this.sendRaw({ type: 'ack', seq: this.lastSeq });
    this.unacked = 0;
    this.abandonSocket(CLOSE.NORMAL, 'closed by the client');
    this.finish(CLOSE.NORMAL, 'closed by the application');
  }

  // -- inbound --------------------------------------------------------------

  private onFrame(data: unknown): void {
    let msg: SignalingMessage;
    try {
      // Text: JSON; binary: MessagePack (the `webrtc-signaling.msgpack` subprotocol).
      let v: unknown;
      if (typeof data === 'string') v = JSON.parse(data);
      else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) v = decodeMsgpack(data as ArrayBuffer);
      else return;
      if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof (v as SignalingMessage).type !== 'string') return;
      msg = v as SignalingMessage;
    } catch {
      return;
    }
    switch (this.phase) {
      case 'handshake':
        return this.onHandshake(msg);
      case 'resuming':
        return this.onResumeAnswer(msg);
      case 'established':
      case 'closing':
        this.armLiveness();
        this.onMessage(msg);
        this.scheduleAck();
        return;
    }
  }

  private onHandshake(msg: SignalingMessage): void {
    if (msg.type !== 'connected') return; // nothing else is expected before it
    if (typeof msg.sessionId !== 'string' || typeof msg.resumeToken !== 'string') {
      this.abandonSocket(CLOSE.NORMAL, 'bad connected');
      return this.lost(null, '`connected` without sessionId/resumeToken', false);
    }
    this.fresh = { id: msg.sessionId, resumeToken: msg.resumeToken };
    this.emit(msg);
    if (this.session) {
      this.phase = 'resuming';
      this.sendRaw({ type: 'resume', sessionId: this.session.id, resumeToken: this.session.resumeToken, lastSeq: this.lastSeq });
    } else {
      this.adopt();
      this.established('first');
    }
  }

  private onResumeAnswer(msg: SignalingMessage): void {
    if (msg.type === 'resumed') {
      if (this.session && typeof msg.resumeToken === 'string') this.session.resumeToken = msg.resumeToken;
      const restored = this.restored;
      this.restored = false;
      this.emit({ ...msg, restored });
      this.established('resumed');
    } else if (msg.type === 'error' && msg.code !== 'unauthorized') {
      // `resume-failed` (or anything else refusing the resume): the session of
      // this connection's `connected` is ours now, and its first message is this
      // error. (`unauthorized` answers the `auth` message; the 4401 close follows
      // and the old session stays ours to resume with a new token.)
      this.restored = false;
      this.adopt();
      this.acceptSeq(msg.seq);
      this.emit(msg);
      this.established('resume-failed');
    }
  }

  /** Takes the session offered by `connected`: its `seq`s start at 1. */
  private adopt(): void {
    this.session = this.fresh;
    this.lastSeq = 0;
    this.unacked = 0;
    this.persist();
  }

  private established(start: 'first' | 'resumed' | 'resume-failed'): void {
    this.clearTimer('connect');
    this.phase = 'established';
    this.establishedAt = Date.now();
    // A new connection has a new rate-limit bucket on the server.
    this.pausedUntil = null;
    let rejoined: string[] | null = null;
    if (start === 'resume-failed') {
      // Pending leaves are moot: the new session is in no room.
      for (const e of this.outbox.removeWhere((e) => e.kind.t === 'leave')) {
        const room = (e.kind as { room: string | null }).room;
        this.roomList = room === null ? [] : this.roomList.filter((r) => r !== room);
        answer(e, { ok: null });
      }
      this.outbox.removeWhere((e) => e.kind.t === 'join' && e.kind.rejoin);
      // Written on the lost session: not resent into the new one, where they
      // would reach the peers exactly while they renegotiate.
      const lostError = new SignalingError('resume-failed', 'written on a session the server could not resume; not sent again');
      for (const e of this.outbox.removeWhere((e) => e.sent)) answer(e, { err: lostError });
      for (const w of this.awaitingRoomInfo.splice(0)) w.reply.reject(lostError);
      const rooms = [...this.roomList];
      this.outbox.pushRejoinsFront(rooms, this.identity);
      if (rooms.length === 0) rejoined = [];
      else this.rejoin = { rooms, pending: new Set(rooms) };
    }
    this.outbox.markAllUnwritten();
    this.armLiveness();
    this.timers.ping = setInterval(() => this.sendRaw({ type: 'ping', timestamp: Date.now() }), this.s.heartbeatIntervalMs);
    this.flush();
    if (rejoined) this.emit({ type: 'rejoined', rooms: rejoined });
  }

  /** Any frame from the server is a sign of life; silence past the deadline means dead. */
  private armLiveness(): void {
    this.clearTimer('liveness');
    const deadAfter = this.s.heartbeatIntervalMs + this.s.heartbeatTimeoutMs;
    this.timers.liveness = setTimeout(() => {
      this.timers.liveness = null;
      const stable = Date.now() - this.establishedAt >= this.s.stableAfterMs;
      // A black-holed socket never closes by itself, and its closing handshake
      // would not finish either: drop it now.
      this.abandonSocket(CLOSE.HEARTBEAT_TIMEOUT, 'heartbeat timeout');
      if (this.closeRequested) return this.finish(CLOSE.HEARTBEAT_TIMEOUT, 'closed by the application');
      this.lost(CLOSE.HEARTBEAT_TIMEOUT, `no frame from the server for ${deadAfter} ms`, stable);
    }, deadAfter);
  }

  /** `true` for a message already delivered (a replay overlapping what this client had). */
  private acceptSeq(seq: unknown): boolean {
    if (typeof seq !== 'number') return true;
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    this.unacked++;
    this.persist();
    return true;
  }

  /** Cumulative acks: after `ackEvery` messages, or `ackDelayMs` after the first one. */
  private scheduleAck(): void {
    if (this.unacked >= this.s.ackEvery) {
      this.clearTimer('ack');
      this.sendAck();
    } else if (this.unacked > 0 && this.timers.ack === null) {
      this.timers.ack = setTimeout(() => {
        this.timers.ack = null;
        this.sendAck();
      }, this.s.ackDelayMs);
    }
  }

  private sendAck(): void {
    if (this.unacked === 0) return;
    this.unacked = 0;
    this.sendRaw({ type: 'ack', seq: this.lastSeq });
  }

  private onMessage(msg: SignalingMessage): void {
    if (!this.acceptSeq(msg.seq)) return;
    let after: SignalingMessage | null = null;
    switch (msg.type) {
      // The client's own bookkeeping: not emitted.
      case 'ack': {
        const id = parseId(msg.id);
        if (id !== null) this.onAck(id);
        return;
      }
      case 'pong':
        return;
      case 'room-info':
        after = this.onRoomInfo(msg as RoomInfo);
        break;
      case 'error':
        after = this.onError(msg as ErrorMessage);
        break;
      case 'draining':
        if (typeof msg.retryAfterMs === 'number') this.drainHintMs = msg.retryAfterMs;
        break;
    }
    this.emit(msg);
    if (after) this.emit(after);
  }

  private onAck(id: number): void {
    // Not found: a second ack of a retransmitted message, or a join already answered.
    const entry = this.outbox.remove(id);
    if (entry) {
      const kind = entry.kind;
      if (kind.t === 'join') {
        // The reply is the room-info, still to come.
        if (entry.reply) this.awaitingRoomInfo.push({ id, room: kind.room, reply: entry.reply });
        entry.reply = null;
      } else {
        if (kind.t === 'leave') {
          this.roomList = kind.room === null ? [] : this.roomList.filter((r) => r !== kind.room);
          this.persist();
        }
        answer(entry, { ok: null });
      }
    }
    // A free in-flight slot; or the outbox emptied while closing.
    this.flush();
    this.afterAck?.();
  }

  private onRoomInfo(info: RoomInfo): SignalingMessage | null {
    const room = info.roomId;
    if (typeof room !== 'string') return null;
    if (!this.roomList.includes(room)) this.roomList.push(room);
    // Keep a server-assigned user id, so re-joins and reloads keep it.
    if (this.identity.userId === undefined) {
      const you = info.you as unknown;
      const id = typeof you === 'string' ? you : (you as { userId?: unknown } | undefined)?.userId;
      if (typeof id === 'string') this.identity.userId = id;
    }
    this.persist();
    // The oldest join of that room the server has seen: one already
    // acknowledged, else the oldest written one. A later join of the same room
    // (join, leave, join) gets its own room-info.
    const i = this.awaitingRoomInfo.findIndex((w) => w.room === room);
    if (i >= 0) {
      this.awaitingRoomInfo.splice(i, 1)[0].reply.resolve(info);
    } else {
      const e = this.outbox.removeFirst((e) => e.sent && e.kind.t === 'join' && e.kind.room === room);
      if (e) answer(e, { ok: info });
      this.flush();
      this.afterAck?.();
    }
    return this.rejoinProgress(room, true);
  }

  /** One re-join answered; `rejoined` once all are. */
  private rejoinProgress(room: string, joined: boolean): SignalingMessage | null {
    const r = this.rejoin;
    if (!r || !r.pending.delete(room)) return null;
    if (!joined) r.rooms = r.rooms.filter((x) => x !== room);
    if (r.pending.size > 0) return null;
    this.rejoin = null;
    return { type: 'rejoined', rooms: r.rooms };
  }

  /** Fails the message an `error` refers to; `rate-limited` schedules a resend of every unacknowledged one. */
  private onError(msg: ErrorMessage): SignalingMessage | null {
    const code = typeof msg.code === 'string' ? msg.code : 'internal';
    if (code === 'rate-limited') {
      // The server dropped one or more messages and named at most one: write
      // every unacknowledged message again after the pause (it acknowledges
      // ids it already has without acting twice).
      this.outbox.markAllUnwritten();
      this.pausedUntil = Date.now() + this.s.rateLimitPauseMs;
      this.clearTimer('pause');
      this.timers.pause = setTimeout(() => {
        this.timers.pause = null;
        this.pausedUntil = null;
        this.flush();
      }, this.s.rateLimitPauseMs);
      return null;
    }
    const id = parseId(msg.ref);
    if (id === null) return null;
    const error = new SignalingError(code, typeof msg.message === 'string' ? msg.message : code);
    let after: SignalingMessage | null = null;
    const entry = this.outbox.remove(id);
    if (entry) {
      const kind = entry.kind;
      if (kind.t === 'join' && kind.rejoin) {
        this.roomList = this.roomList.filter((r) => r !== kind.room);
        after = this.rejoinProgress(kind.room, false);
      } else if (kind.t === 'leave' && kind.room !== null && code === 'not-in-room') {
        this.roomList = this.roomList.filter((r) => r !== kind.room);
      }
      this.persist();
      answer(entry, { err: error });
    } else {
      const i = this.awaitingRoomInfo.findIndex((w) => w.id === id);
      if (i >= 0) this.awaitingRoomInfo.splice(i, 1)[0].reply.reject(error);
    }
    this.flush();
    this.afterAck?.();
    return after;
  }

  // -- the session across page reloads ---------------------------------------

  /** Reads the session a previous page of this tab left (same URL, same user). */
  private restore(userId: string | undefined): void {
    let stored: StoredSession | null = null;
    try {
      const raw = this.storage?.getItem(this.storageKey);
      stored = raw ? (JSON.parse(raw) as StoredSession) : null;
    } catch {
      stored = null;
    }
    if (!stored || typeof stored !== 'object') return;
    // A different user on this page: the stored session is not ours.
    if (userId !== undefined && stored.userId !== userId) return;
    if (userId === undefined && typeof stored.userId === 'string') this.identity.userId = stored.userId;
    if (typeof stored.sessionId === 'string' && typeof stored.resumeToken === 'string') {
      this.session = { id: stored.sessionId, resumeToken: stored.resumeToken };
      this.lastSeq = typeof stored.lastSeq === 'number' ? stored.lastSeq : 0;
      this.roomList = Array.isArray(stored.rooms) ? stored.rooms.filter((r) => typeof r === 'string') : [];
      this.restored = true;
    }
  }

  private persist(): void {
    if (!this.storage) return;
    const value: StoredSession = { userId: this.userId ?? undefined };
    if (this.session) {
      value.sessionId = this.session.id;
      value.resumeToken = this.session.resumeToken;
      value.lastSeq = this.lastSeq;
      value.rooms = this.roomList;
    }
    try {
      this.storage.setItem(this.storageKey, JSON.stringify(value));
    } catch {
      // Storage full or disabled: reloads just start a new session.
    }
  }
}

function defaultStorage(): StorageLike | null {
  try {
    const s = (globalThis as { sessionStorage?: StorageLike }).sessionStorage;
    return s ?? null;
  } catch {
    // Access denied (sandboxed iframe, blocked cookies).
    return null;
  }
}

// ---------------------------------------------------------------------------
// Perfect negotiation
// ---------------------------------------------------------------------------

export interface PeerContext {
  roomId: string;
  /** This side's role toward the peer (from the server's `polite` flag). */
  polite: boolean;
  /** The `iceServers` of the room's `room-info`, when the server sent some. */
  iceServers?: RTCIceServer[];
}

export interface PerfectNegotiationOptions {
  /** The room whose peers to connect with. */
  roomId: string;
  /**
   * Makes the connection to one peer: add tracks and data channels here, and
   * listen to `track` etc. Called again when a peer's connection is replaced.
   */
  createPeerConnection(peerId: string, context: PeerContext): RTCPeerConnection;
  /** A peer's connection was closed (the peer left, or its connection was replaced). */
  onPeerClosed?(peerId: string, pc: RTCPeerConnection): void;
  /** A negotiation step failed (default: reported to the console). */
  onError?(error: unknown, peerId: string): void;
  /** Restart ICE on every connection after the signaling session resumed (default true). */
  restartIceOnResume?: boolean;
}

/** What the helper knows about one peer. */
export interface NegotiatedPeer {
  readonly peerId: string;
  readonly pc: RTCPeerConnection;
  readonly polite: boolean;
  /** Offers that arrived while this side had its own offer out (glare). */
  readonly collisions: number;
  /** Of those, offers ignored (impolite side). */
  readonly ignoredOffers: number;
  /** Of those, own offers rolled back to take the peer's (polite side). */
  readonly rollbacks: number;
  readonly iceRestarts: number;
}

/** Early candidates kept per peer until its description is set; past it the oldest are dropped. */
const MAX_PENDING_CANDIDATES = 256;

class Peer implements NegotiatedPeer {
  /** Sent with every description and candidate, so the other side can tell a new connection from an old one. */
  readonly localId = randomId();
  remoteId: string | null = null;
  ignoreOffer = false;
  pendingCandidates: RTCIceCandidateInit[] = [];
  /** Negotiation steps run one at a time, in arrival order. */
  chain: Promise<void> = Promise.resolve();
  closed = false;
  collisions = 0;
  ignoredOffers = 0;
  rollbacks = 0;
  iceRestarts = 0;
  constructor(
    readonly peerId: string,
    readonly pc: RTCPeerConnection,
    readonly polite: boolean,
  ) {}
}

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  return Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
}

/**
 * WebRTC "perfect negotiation" (the W3C pattern) for one room of a client: one
 * `RTCPeerConnection` per peer, made by the application's factory. Either side
 * may (re)negotiate at any time; when both offer at once, the impolite side
 * ignores the incoming offer and the polite side rolls its own back. Candidates
 * that arrive before the remote description are queued. Each message carries
 * `pc`, an id of the sender's connection, so a peer that starts over (a reloaded
 * page) replaces the old connection instead of confusing it.
 */
export class PerfectNegotiation {
  private readonly peerMap = new Map<string, Peer>();
  private readonly politeness = new Map<string, boolean>();
  private iceServers: RTCIceServer[] | undefined;
  private readonly unsubscribe: (() => void)[];
  private closed = false;

  constructor(
    private readonly client: SignalingClient,
    private readonly options: PerfectNegotiationOptions,
  ) {
    const room = options.roomId;
    const mine = (m: { roomId?: unknown }): boolean => m.roomId === room;
    this.unsubscribe = [
      client.on('room-info', (info) => {
        if (mine(info)) this.onRoomInfo(info);
      }),
      client.on('user-joined', (m) => {
        if (!mine(m)) return;
        this.politeness.set(m.userId, m.polite);
        // A peer we still had a connection with starts over.
        this.closePeer(m.userId);
        this.openPeer(m.userId, m.polite);
      }),
      client.on('user-left', (m) => {
        if (mine(m)) this.closePeer(m.userId);
      }),
      client.on('offer', (m) => {
        if (mine(m)) this.onSignal(m);
      }),
      client.on('answer', (m) => {
        if (mine(m)) this.onSignal(m);
      }),
      client.on('candidate', (m) => {
        if (mine(m)) this.onSignal(m);
      }),
      client.on('resumed', (m) => {
        // The signaling path was lost; the media path may have been too (a
        // network change): new candidates through an ICE restart.
        if (!m.restored && options.restartIceOnResume !== false) this.restartIce();
      }),
      client.on('error', (m) => {
        // The old session is gone: the peers see `user-left` and renegotiate
        // with the re-joined one; its `room-info` brings the peers back.
        if (m.code === 'resume-failed') for (const id of [...this.peerMap.keys()]) this.closePeer(id);
      }),
    ];
  }

  /** The connection to one peer. */
  get(peerId: string): RTCPeerConnection | undefined {
    return this.peerMap.get(peerId)?.pc;
  }

  /** Every peer with its connection and negotiation counters. */
  peers(): NegotiatedPeer[] {
    return [...this.peerMap.values()];
  }

  peer(peerId: string): NegotiatedPeer | undefined {
    return this.peerMap.get(peerId);
  }

  /** Restarts ICE on every connection (renegotiates with new ICE credentials). */
  restartIce(): void {
    for (const p of this.peerMap.values()) {
      p.iceRestarts++;
      p.pc.restartIce();
    }
  }

  /** Stops listening to the client and closes every connection. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const u of this.unsubscribe) u();
    for (const id of [...this.peerMap.keys()]) this.closePeer(id);
  }

  private onRoomInfo(info: RoomInfo): void {
    this.iceServers = Array.isArray(info.iceServers) ? info.iceServers : undefined;
    const present = new Set<string>();
    for (const p of info.peers ?? []) {
      present.add(p.userId);
      this.politeness.set(p.userId, p.polite);
      // A repeated join answers room-info again: keep working connections.
      if (!this.peerMap.has(p.userId)) this.openPeer(p.userId, p.polite);
    }
    // Peers gone while this side was not told (a missed user-left).
    for (const id of [...this.peerMap.keys()]) if (!present.has(id)) this.closePeer(id);
  }

  private openPeer(peerId: string, polite: boolean): Peer | null {
    if (this.closed) return null;
    const context: PeerContext = { roomId: this.options.roomId, polite };
    if (this.iceServers) context.iceServers = this.iceServers;
    let pc: RTCPeerConnection;
    try {
      pc = this.options.createPeerConnection(peerId, context);
    } catch (e) {
      this.fail(e, peerId);
      return null;
    }
    const peer = new Peer(peerId, pc, polite);
    this.peerMap.set(peerId, peer);
    pc.addEventListener('negotiationneeded', () => this.step(peer, () => this.makeOffer(peer)));
    pc.addEventListener('icecandidate', (ev) => {
      // `null` ends the generation; the remote side needs no notice of that.
      if (ev.candidate && !peer.closed) this.signal(peer, { type: 'candidate', candidate: ev.candidate.toJSON() });
    });
    return peer;
  }

  private closePeer(peerId: string): void {
    const peer = this.peerMap.get(peerId);
    if (!peer) return;
    this.peerMap.delete(peerId);
    peer.closed = true;
    peer.pc.close();
    try {
      this.options.onPeerClosed?.(peerId, peer.pc);
    } catch (e) {
      report(e);
    }
  }

  private signal(peer: Peer, fields: Record<string, unknown>): void {
    // Not awaited: a step must not stall while the signaling is offline (the
    // message waits in the client's outbox). A failure is reported.
    this.client
      .sendJson({ ...fields, to: peer.peerId, roomId: this.options.roomId, pc: peer.localId })
      .catch((e: unknown) => {
        if (!peer.closed) this.fail(e, peer.peerId);
      });
  }

  private fail(error: unknown, peerId: string): void {
    if (this.options.onError) this.options.onError(error, peerId);
    else console.warn(`switchboard: negotiation with ${peerId} failed`, error);
  }

  /** Runs negotiation steps of one peer one at a time. */
  private step(peer: Peer, fn: () => Promise<void>): void {
    peer.chain = peer.chain
      .then(() => (peer.closed ? undefined : fn()))
      .catch((e: unknown) => {
        if (!peer.closed) this.fail(e, peer.peerId);
      });
  }

  private async makeOffer(peer: Peer): Promise<void> {
    // Not stable: the browser fires `negotiationneeded` again once it is.
    if (peer.pc.signalingState !== 'stable') return;
    await peer.pc.setLocalDescription();
    const d = peer.pc.localDescription;
    if (d && !peer.closed) this.signal(peer, { type: 'offer', sdp: { type: d.type, sdp: d.sdp } });
  }

  private onSignal(m: DescriptionMessage | CandidateMessage): void {
    const from = m.from;
    if (typeof from !== 'string') return;
    const remoteId = typeof m.pc === 'string' ? m.pc : null;
    let peer = this.peerMap.get(from);
    if (m.type === 'offer') {
      if (peer && remoteId !== null && peer.remoteId !== null && remoteId !== peer.remoteId) {
        // The peer started over with a new connection (e.g. its page reloaded).
        this.closePeer(from);
        peer = undefined;
      }
      if (!peer) {
        const polite = this.politeness.get(from) ?? (this.client.userId ?? '') > from;
        peer = this.openPeer(from, polite) ?? undefined;
        if (!peer) return;
      }
    } else if (!peer || (remoteId !== null && peer.remoteId !== null && remoteId !== peer.remoteId)) {
      return; // for a connection that no longer exists
    }
    if (remoteId !== null) peer.remoteId = remoteId;
    const p = peer;
    if (m.type === 'candidate') this.step(p, () => this.onCandidate(p, m.candidate));
    else this.step(p, () => this.onDescription(p, m));
  }

  private async onDescription(peer: Peer, m: DescriptionMessage): Promise<void> {
    const pc = peer.pc;
    const description: RTCSessionDescriptionInit = typeof m.sdp === 'string' ? { type: m.type, sdp: m.sdp } : m.sdp;
    if (description.type === 'offer') {
      // Steps run one at a time, so "making an offer" shows as have-local-offer.
      const collision = pc.signalingState !== 'stable';
      peer.ignoreOffer = !peer.polite && collision;
      if (collision) peer.collisions++;
      if (peer.ignoreOffer) {
        peer.ignoredOffers++;
        return;
      }
      if (collision) {
        peer.rollbacks++;
        await pc.setLocalDescription({ type: 'rollback' });
      }
      await pc.setRemoteDescription(description);
      await this.flushCandidates(peer);
      await pc.setLocalDescription();
      const d = pc.localDescription;
      if (d && !peer.closed) this.signal(peer, { type: 'answer', sdp: { type: d.type, sdp: d.sdp } });
    } else if (description.type === 'answer') {
      // An answer to an offer this side rolled back: nothing to apply it to.
      if (pc.signalingState !== 'have-local-offer') return;
      await pc.setRemoteDescription(description);
      await this.flushCandidates(peer);
    }
  }

  private async onCandidate(peer: Peer, candidate: RTCIceCandidateInit | null): Promise<void> {
    if (!candidate) return;
    if (!peer.pc.remoteDescription) {
      if (peer.pendingCandidates.length >= MAX_PENDING_CANDIDATES) peer.pendingCandidates.shift();
      peer.pendingCandidates.push(candidate);
      return;
    }
    try {
      await peer.pc.addIceCandidate(candidate);
    } catch (e) {
      // Candidates of an offer this side ignored do not fit; others are real errors.
      if (!peer.ignoreOffer) throw e;
    }
  }

  private async flushCandidates(peer: Peer): Promise<void> {
    const queued = peer.pendingCandidates.splice(0);
    for (const c of queued) {
      try {
        await peer.pc.addIceCandidate(c);
      } catch {
        // Queued candidates may belong to an offer that was rolled back or
        // ignored (another ICE ufrag): those are expected to fail.
      }
    }
  }
}
