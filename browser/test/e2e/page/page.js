// The end-to-end test page's logic: a call participant driven by the tests through
// window.sb. It uses the shipped client and PerfectNegotiation exactly as an
// application would; the loopback candidate rewrite lives in loopback.js (an init
// script), not here and not in the client.
import { SignalingClient, PerfectNegotiation } from '/switchboard.js';

const CONFIG_KEY = 'e2e-config';

const sb = {
  client: null,
  negotiation: null,
  config: null,
  stream: null,
  /** Every client event, in order (type plus a few fields). */
  events: [],
  /** Signaling `message` payloads received, in order. */
  messages: [],
  /** Data-channel texts received, per peer. */
  dcReceived: {},
  channels: {},
  timing: { joinAt: null, connectedAt: {} },
  loadedAt: performance.now(),

  /** Creates the client and the negotiation helper, and joins the room. */
  async start(config) {
    sessionStorage.setItem(CONFIG_KEY, JSON.stringify(config));
    this.config = config;
    if (config.media) {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
    }
    const client = new SignalingClient(config.url, { userId: config.userId, ...(config.clientOptions ?? {}) });
    this.client = client;
    client.on('*', (e) => {
      const { type, attempt, code, reason, userId, roomId, from, restored, replayed, rooms } = e;
      this.events.push({ type, attempt, code, reason, userId, roomId, from, restored, replayed, rooms, t: performance.now() });
      if (type === 'message') this.messages.push(e.data);
    });
    this.negotiation = new PerfectNegotiation(client, {
      roomId: config.room,
      createPeerConnection: (peerId) => this.makePc(peerId),
      onError: (error, peerId) => this.events.push({ type: 'negotiation-error', peerId, message: String(error) }),
    });
    this.timing.joinAt = performance.now();
    const info = await client.join(config.room);
    document.getElementById('state').textContent = 'joined';
    return { userId: client.userId, peers: info.peers.map((p) => p.userId) };
  },

  makePc(peerId) {
    const pc = new RTCPeerConnection();
    if (this.stream) for (const t of this.stream.getTracks()) pc.addTrack(t, this.stream);
    // Negotiated (same id on both sides): no asymmetry in who creates it.
    const dc = pc.createDataChannel('e2e', { negotiated: true, id: 0 });
    this.channels[peerId] = dc;
    this.dcReceived[peerId] = [];
    dc.onmessage = (ev) => this.dcReceived[peerId].push(ev.data);
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected' && this.timing.connectedAt[peerId] === undefined) {
        this.timing.connectedAt[peerId] = performance.now();
      }
    });
    return pc;
  },

  /** The state of the call with one peer. */
  async peerState(peerId) {
    const pc = this.negotiation?.get(peerId);
    if (!pc) return null;
    const p = this.negotiation.peer(peerId);
    let inboundPackets = 0;
    let inboundKinds = [];
    const stats = await pc.getStats();
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp') {
        inboundPackets += r.packetsReceived ?? 0;
        if ((r.packetsReceived ?? 0) > 0) inboundKinds.push(r.kind);
      }
    });
    return {
      connectionState: pc.connectionState,
      signalingState: pc.signalingState,
      dcState: this.channels[peerId]?.readyState ?? null,
      inboundPackets,
      inboundKinds,
      polite: p.polite,
      collisions: p.collisions,
      ignoredOffers: p.ignoredOffers,
      rollbacks: p.rollbacks,
      iceRestarts: p.iceRestarts,
      remoteUfrag: /a=ice-ufrag:(\S+)/.exec(pc.remoteDescription?.sdp ?? '')?.[1] ?? null,
    };
  },

  peers() {
    return this.negotiation?.peers().map((p) => p.peerId) ?? [];
  },

  sendDc(peerId, text) {
    this.channels[peerId].send(text);
  },

  /** Adds a transceiver: renegotiation (used to make both sides offer at once). */
  renegotiate(peerId) {
    this.negotiation.get(peerId).addTransceiver('audio', { direction: 'recvonly' });
  },
};

window.sb = sb;
document.getElementById('state').textContent = 'ready';

// After a reload: the same participant joins again.
const stored = JSON.parse(sessionStorage.getItem(CONFIG_KEY) || 'null');
if (stored) sb.restarted = sb.start(stored);
