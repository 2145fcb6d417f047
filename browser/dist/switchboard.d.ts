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
    you: {
        userId: string;
        displayName?: string;
        metadata?: unknown;
    };
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
    draining: SignalingMessage & {
        type: 'draining';
        retryAfterMs: number;
    };
    error: ErrorMessage;
    /** A connection attempt starts (0: the first, then the reconnect attempt). */
    connecting: SignalingMessage & {
        type: 'connecting';
        attempt: number;
    };
    /** The WebSocket is open (before `connected` / `resumed`). */
    open: SignalingMessage & {
        type: 'open';
    };
    /** The connection was lost; attempt `attempt` starts after `delayMs`. */
    reconnecting: SignalingMessage & {
        type: 'reconnecting';
        attempt: number;
        delayMs: number;
    };
    /** The session could not be resumed: these rooms were joined afresh. */
    rejoined: SignalingMessage & {
        type: 'rejoined';
        rooms: string[];
    };
    /** Reconnecting gave up after `attempts` attempts (then `closed`). */
    'reconnect-failed': SignalingMessage & {
        type: 'reconnect-failed';
        attempts: number;
    };
    /** Closed for good. */
    closed: SignalingMessage & {
        type: 'closed';
        code: number | null;
        reason: string;
    };
    /** Every event. */
    '*': SignalingMessage;
}
/** Error codes: the protocol's, plus `queue-full` and `closed` from the client. */
export type ErrorCode = 'invalid-json' | 'invalid-message' | 'unknown-type' | 'unauthorized' | 'forbidden' | 'not-in-room' | 'peer-not-found' | 'room-full' | 'user-id-taken' | 'rate-limited' | 'message-too-big' | 'resume-failed' | 'internal' | 'queue-full' | 'closed';
/** Why a send failed: `code` is the protocol error code, `queue-full` or `closed`. */
export declare class SignalingError extends Error {
    readonly code: ErrorCode | string;
    constructor(code: ErrorCode | string, message: string);
}
/** The part of the WebSocket API the client uses (the browser's, or a test double). */
export interface WebSocketLike {
    readonly readyState: number;
    /** The subprotocol the server selected (`webrtc-signaling.msgpack`: binary frames). */
    readonly protocol?: string;
    binaryType?: string;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
    send(data: string | Uint8Array): void;
    close(code?: number, reason?: string): void;
}
/** The MessagePack subprotocol: the same messages as binary frames. */
export declare const SUBPROTOCOL_MSGPACK = "webrtc-signaling.msgpack";
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
/** The ceiling of the delay before reconnect attempt `attempt` (1-based). */
export declare function backoffCeiling(attempt: number, baseMs: number, maxMs: number): number;
/** The connection state, for a status display. */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'closed';
/**
 * A signaling client. It connects at once and keeps connecting until `close()`;
 * sends made meanwhile wait in the outbox. Every send returns a promise of its
 * outcome (a `join` resolves with `room-info`, the others on the server's `ack`);
 * the message is queued whether or not the promise is awaited, and an ignored
 * failure never surfaces as an unhandled rejection.
 */
export declare class SignalingClient {
    readonly url: string;
    private readonly s;
    private readonly WS;
    private readonly token;
    private readonly tokenIn;
    /** The last attempt with a subprotocol token failed before the socket opened. */
    private tokenViaMessage;
    private readonly storage;
    private readonly storageKey;
    private readonly handlers;
    private readonly outbox;
    private identity;
    private phase;
    private ws;
    /** Bumped per connection: callbacks of an abandoned socket are ignored. */
    private generation;
    private session;
    /** A fresh session offered by `connected`, adopted unless the resume succeeds. */
    private fresh;
    private restored;
    private lastSeq;
    private unacked;
    private roomList;
    /** Joins whose `ack` came before their `room-info`. */
    private awaitingRoomInfo;
    private rejoin;
    private attempt;
    private establishedAt;
    private drainHintMs;
    private pausedUntil;
    private rejectedToken;
    private currentToken;
    private closedReason;
    private closeRequested;
    private timers;
    private readonly done;
    private resolveDone;
    private readonly onOnline;
    constructor(url: string, options?: SignalingClientOptions);
    /** Joins a room; resolves with its `room-info`, or rejects with `room-full`, `user-id-taken`, … */
    join(roomId: string): Promise<RoomInfo>;
    /** Leaves one room, or every room without an argument. */
    leave(roomId?: string): Promise<void>;
    /** Sends an SDP offer to peer `to` (`roomId` is needed only when in several rooms). */
    sendOffer(to: string, sdp: RTCSessionDescriptionInit | string, roomId?: string): Promise<void>;
    sendAnswer(to: string, sdp: RTCSessionDescriptionInit | string, roomId?: string): Promise<void>;
    /** Sends an ICE candidate (`null`: end of candidates). */
    sendCandidate(to: string, candidate: RTCIceCandidateInit | null, roomId?: string): Promise<void>;
    /** Application data to one peer, or with `to = null` to every other peer of the room. */
    send(to: string | null, data: unknown, roomId?: string): Promise<void>;
    /** A chat line to the whole room (the sender gets it back too). */
    chat(content: string, roomId?: string): Promise<void>;
    /**
     * Any client message (`join`, `leave`, `offer`, `answer`, `candidate`,
     * `message`, `chat`, `auth`, or one of the server's app types such as
     * `hangup`) as an object with its `type`; extra fields are relayed as they
     * are. Resolves with the `room-info` of a `join`, else `null`; a type the
     * server does not know is refused by it (`unknown-type`).
     */
    sendJson(message: Record<string, unknown>): Promise<unknown>;
    /** Subscribes to an event (a protocol `type`, a connection state, or `*`); returns the unsubscribe function. */
    on<K extends keyof SignalingEventMap>(type: K, handler: (event: SignalingEventMap[K]) => void): () => void;
    on(type: string, handler: (event: SignalingMessage) => void): () => void;
    off<K extends keyof SignalingEventMap>(type: K, handler: (event: SignalingEventMap[K]) => void): void;
    off(type: string, handler: (event: SignalingMessage) => void): void;
    /**
     * Closes for good: no more reconnects. When connected, queued messages are
     * written and their acknowledgements awaited up to `closeTimeoutMs`, then the
     * socket closes with 1000 (the server ends the membership at once: peers see
     * `user-left` with `closed`). Pending sends reject with `closed`; the stored
     * session is forgotten. Resolves when done.
     */
    close(): Promise<void>;
    /** The connection state. */
    get state(): ConnectionState;
    /** Whether a session is established right now. */
    get connected(): boolean;
    /** The user id: configured, kept from an earlier page, or assigned by the server. */
    get userId(): string | null;
    /** The server session id (the same across resumes). */
    get sessionId(): string | null;
    /** Rooms joined (confirmed by `room-info`), in join order. */
    get rooms(): string[];
    /** Messages in the outbox (queued, or written and awaiting their acknowledgement). */
    get pending(): number;
    private emit;
    private sendTo;
    private refused;
    private enqueue;
    /** Writes outbox messages not yet written on this connection, up to `maxInFlight`. */
    private flush;
    private sendRaw;
    /** One message in the encoding the server selected (the outbox keeps JSON text, which its bounds count). */
    private write;
    private clearTimer;
    private clearTimers;
    private connect;
    /** Stops listening to the current socket and closes it (best effort: it may be dead). */
    private abandonSocket;
    private onSocketClosed;
    private stopServing;
    /** The connection is gone: back off and try again, or give up. */
    private lost;
    /** Closes for good: later sends fail, pending ones reject, `closed` is emitted. */
    private finish;
    /** `close()` while connected, once the outbox is empty or the close timeout passed. */
    private afterAck;
    private finishClose;
    private onFrame;
    private onHandshake;
    private onResumeAnswer;
    /** Takes the session offered by `connected`: its `seq`s start at 1. */
    private adopt;
    private established;
    /** Any frame from the server is a sign of life; silence past the deadline means dead. */
    private armLiveness;
    /** `true` for a message already delivered (a replay overlapping what this client had). */
    private acceptSeq;
    /** Cumulative acks: after `ackEvery` messages, or `ackDelayMs` after the first one. */
    private scheduleAck;
    private sendAck;
    private onMessage;
    private onAck;
    private onRoomInfo;
    /** One re-join answered; `rejoined` once all are. */
    private rejoinProgress;
    /** Fails the message an `error` refers to; `rate-limited` schedules a resend of every unacknowledged one. */
    private onError;
    /** Reads the session a previous page of this tab left (same URL, same user). */
    private restore;
    private persist;
}
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
/**
 * WebRTC "perfect negotiation" (the W3C pattern) for one room of a client: one
 * `RTCPeerConnection` per peer, made by the application's factory. Either side
 * may (re)negotiate at any time; when both offer at once, the impolite side
 * ignores the incoming offer and the polite side rolls its own back. Candidates
 * that arrive before the remote description are queued. Each message carries
 * `pc`, an id of the sender's connection, so a peer that starts over (a reloaded
 * page) replaces the old connection instead of confusing it.
 */
export declare class PerfectNegotiation {
    private readonly client;
    private readonly options;
    private readonly peerMap;
    private readonly politeness;
    private iceServers;
    private readonly unsubscribe;
    private closed;
    constructor(client: SignalingClient, options: PerfectNegotiationOptions);
    /** The connection to one peer. */
    get(peerId: string): RTCPeerConnection | undefined;
    /** Every peer with its connection and negotiation counters. */
    peers(): NegotiatedPeer[];
    peer(peerId: string): NegotiatedPeer | undefined;
    /** Restarts ICE on every connection (renegotiates with new ICE credentials). */
    restartIce(): void;
    /** Stops listening to the client and closes every connection. */
    close(): void;
    private onRoomInfo;
    private openPeer;
    private closePeer;
    private signal;
    private fail;
    /** Runs negotiation steps of one peer one at a time. */
    private step;
    private makeOffer;
    private onSignal;
    private onDescription;
    private onCandidate;
    private flushCandidates;
}
