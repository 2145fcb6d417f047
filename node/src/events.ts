// The event types: one interface per protocol message or connection state,
// keyed by the protocol `type` string, and the discriminated unions of the
// server's and the client's events.

/** A JSON value as sent on the wire. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** One peer as the room's `room-info` / `user-joined` describe it. */
export interface PeerDescription {
  userId: string;
  displayName?: string;
  metadata?: Json;
  /** This receiver's role toward that peer in "perfect negotiation". */
  polite: boolean;
}

/** A relayed signaling message (`offer`, `answer`, `candidate`, `message`). */
interface Relayed<T extends string> {
  type: T;
  roomId: string;
  /** The sender's userId, stamped by the server. */
  from: string;
  /** The receiver's userId (absent for a `message` to the whole room). */
  to?: string;
  /** Per-session sequence number (client side only). */
  seq?: number;
  /** Fields the sender added are kept. */
  [field: string]: unknown;
}

export type OfferEvent = Relayed<'offer'> & { sdp: Json };
export type AnswerEvent = Relayed<'answer'> & { sdp: Json };
export type CandidateEvent = Relayed<'candidate'> & { candidate: Json };
export type MessageEvent = Relayed<'message'> & { data: Json };

export interface ChatEvent {
  type: 'chat';
  roomId: string;
  from: string;
  content: string;
  timestamp: number;
  seq?: number;
}

export interface UserJoinedEvent {
  type: 'user-joined';
  roomId: string;
  userId: string;
  displayName?: string;
  metadata?: Json;
  polite: boolean;
  seq?: number;
}

export type LeaveReason = 'leave' | 'closed' | 'timeout' | 'kicked' | 'replaced';

export interface UserLeftEvent {
  type: 'user-left';
  roomId: string;
  userId: string;
  reason: LeaveReason;
  seq?: number;
}

export interface ResumedEvent {
  type: 'resumed';
  sessionId: string;
  replayed: number;
  /** Server side: the connection that took the session back. */
  clientId?: string;
}

// ---- server events --------------------------------------------------------

/** Server: a WebSocket connection was established. */
export interface ConnectedServerEvent {
  type: 'connected';
  clientId: string;
  sessionId: string;
  /** Client IP (after trusted-proxy resolution). */
  ip: string | null;
}

/** Server: a connection ended (`code`: the close code). */
export interface DisconnectedEvent {
  type: 'disconnected';
  clientId: string;
  sessionId: string;
  code: number;
}

/** Every event a `Server` emits, by name. */
export interface ServerEventMap {
  connected: ConnectedServerEvent;
  disconnected: DisconnectedEvent;
  'user-joined': UserJoinedEvent;
  'user-left': UserLeftEvent;
  offer: OfferEvent;
  answer: AnswerEvent;
  candidate: CandidateEvent;
  message: MessageEvent;
  chat: ChatEvent;
  resumed: ResumedEvent;
}

export type ServerEventName = keyof ServerEventMap;
/** Discriminated on `type`. */
export type ServerEvent = ServerEventMap[ServerEventName];

export const SERVER_EVENT_NAMES: readonly ServerEventName[] = [
  'connected',
  'disconnected',
  'user-joined',
  'user-left',
  'offer',
  'answer',
  'candidate',
  'message',
  'chat',
  'resumed',
];

// ---- client events --------------------------------------------------------

/** Client: the server's first message on every connection. */
export interface ConnectedClientEvent {
  type: 'connected';
  clientId: string;
  sessionId: string;
  resumeToken: string;
  heartbeatMs: number;
  timestamp: number;
}

/** The answer to `join`. */
export interface RoomInfo {
  type: 'room-info';
  roomId: string;
  /** The other peers' userIds. */
  users: string[];
  peers: PeerDescription[];
  you: { userId: string; displayName?: string; metadata?: Json };
  /** TURN credentials, when the server has TURN configured. */
  iceServers?: Json[];
  seq?: number;
  [field: string]: unknown;
}

export interface DrainingEvent {
  type: 'draining';
  retryAfterMs: number;
  seq?: number;
}

/** A protocol error not tied to a pending call (e.g. `rate-limited`). */
export interface ErrorEvent {
  type: 'error';
  code: string;
  message: string;
  ref?: string | number;
  seq?: number;
}

export interface ConnectingEvent {
  type: 'connecting';
  /** 0 for the first connection, then the reconnect attempt. */
  attempt: number;
}

export interface OpenEvent {
  type: 'open';
}

export interface ReconnectingEvent {
  type: 'reconnecting';
  attempt: number;
  delayMs: number;
}

/** The session could not be resumed: these rooms were joined afresh; renegotiate. */
export interface RejoinedEvent {
  type: 'rejoined';
  rooms: string[];
}

export interface ReconnectFailedEvent {
  type: 'reconnect-failed';
  attempts: number;
}

/** Closed for good; the client's last event. */
export interface ClosedEvent {
  type: 'closed';
  code: number | null;
  reason: string;
}

/** Every event a `Client` emits, by name. */
export interface ClientEventMap {
  connecting: ConnectingEvent;
  open: OpenEvent;
  connected: ConnectedClientEvent;
  'room-info': RoomInfo;
  'user-joined': UserJoinedEvent;
  'user-left': UserLeftEvent;
  offer: OfferEvent;
  answer: AnswerEvent;
  candidate: CandidateEvent;
  message: MessageEvent;
  chat: ChatEvent;
  resumed: ResumedEvent;
  draining: DrainingEvent;
  error: ErrorEvent;
  reconnecting: ReconnectingEvent;
  rejoined: RejoinedEvent;
  'reconnect-failed': ReconnectFailedEvent;
  closed: ClosedEvent;
}

export type ClientEventName = keyof ClientEventMap;
/** Discriminated on `type`. */
export type ClientEvent = ClientEventMap[ClientEventName];

// ---- host-side views ------------------------------------------------------

/** One peer of a room as the server sees it. */
export interface PeerInfo {
  userId: string;
  sessionId: string;
  displayName: string | null;
  metadata: Json | null;
  /** `false` while the peer's connection is lost and its session may resume. */
  connected: boolean;
}

/** A room with its peers in join order. */
export interface RoomSummary {
  roomId: string;
  peers: PeerInfo[];
}
