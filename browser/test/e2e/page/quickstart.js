// The browser example of docs/BROWSER.md, as an app page runs it: the page
// shows the lines from the import to `client.close()` as written (checked by
// scripts/check-doc-snippets.py). The app's own functions (show, hide, print)
// are below; they and the end of the module record what happened in
// window.quickstart for test/e2e/quickstart.test.mjs.
import { SignalingClient, PerfectNegotiation } from '/switchboard.js';

const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
const client = new SignalingClient(`ws://${location.host}/ws`, { userId: 'alice' }); // connects at once
const calls = new PerfectNegotiation(client, {
  roomId: 'room-1',
  createPeerConnection(peerId, { iceServers }) {   // one per peer; add tracks, listen to `track`
    const pc = new RTCPeerConnection({ iceServers });
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    pc.ontrack = (e) => show(peerId, e.streams[0]);
    return pc;
  },
  onPeerClosed: (peerId) => hide(peerId),
});
const info = await client.join('room-1');         // room-info; the helper calls every peer
client.on('chat', (m) => print(m.from, m.content));
await client.chat('hi');                           // resolves on the server's ack
await client.close();

record().info = info;
record().calls = calls.peers().map((p) => ({ peerId: p.peerId, tracks: p.pc.getSenders().length }));
record().done = true;

function record() {
  window.quickstart ??= { shown: [], hidden: [], chat: [] };
  return window.quickstart;
}

function show(peerId, remote) {
  record().shown.push([peerId, remote.id]);
}

function hide(peerId) {
  record().hidden.push(peerId);
}

function print(from, content) {
  record().chat.push([from, content]);
}
