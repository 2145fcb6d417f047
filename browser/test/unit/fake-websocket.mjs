// A scriptable stand-in for the browser's WebSocket and sessionStorage, so the
// client's reconnect, queue and resume logic can be driven step by step under
// node:test's mock timers. A socket whose `protocol` the test sets to the
// MessagePack subprotocol speaks binary frames both ways.
import { decode, encode } from '@msgpack/msgpack';

export class FakeWebSocket {
  /** Every socket the client opened, oldest first. */
  static instances = [];

  static reset() {
    FakeWebSocket.instances = [];
  }

  static get last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    /** The subprotocol the "server" selected (set by the test before open). */
    this.protocol = '';
    this.binaryType = 'blob';
    /** Parsed frames the client sent, and the frames as written. */
    this.sent = [];
    this.rawSent = [];
    this.closedWith = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeWebSocket.instances.push(this);
  }

  send(text) {
    if (this.readyState !== 1) throw new Error(`send in readyState ${this.readyState}`);
    this.rawSent.push(text);
    this.sent.push(typeof text === 'string' ? JSON.parse(text) : decode(text));
  }

  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // -- the test's side of the socket ------------------------------------------

  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(message) {
    if (this.protocol === 'webrtc-signaling.msgpack' && typeof message !== 'string') {
      const bytes = encode(message);
      this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
      return;
    }
    this.onmessage?.({ data: typeof message === 'string' ? message : JSON.stringify(message) });
  }

  /** The server closes (a code) or the network drops (1006, no close frame). */
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** Opens and sends `connected` for session `id`. */
  accept(id = 's1', token = `t-${id}`) {
    this.open();
    this.receive({ type: 'connected', clientId: `c-${id}`, sessionId: id, resumeToken: token, heartbeatMs: 30000, timestamp: 0 });
  }

  /** Frames of one type the client sent. */
  sentOf(type) {
    return this.sent.filter((m) => m.type === type);
  }

  /** Frames the client sent, without its own pings and acks. */
  appSent() {
    return this.sent.filter((m) => m.type !== 'ping' && m.type !== 'ack');
  }
}

export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}
