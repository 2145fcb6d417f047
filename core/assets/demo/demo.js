// The demo call page's logic: joins a room with the Switchboard client, runs a
// mesh video call through PerfectNegotiation, shows participants, chat and the
// connection status. A reload returns to the same call.
import { SignalingClient, PerfectNegotiation } from '/switchboard.js';

const $ = (id) => document.getElementById(id);
const LAST_CALL_KEY = 'switchboard-demo:call';

const metaPath = document.querySelector('meta[name="switchboard-path"]')?.content ?? '';
// Opened without the server filling the path in: the server's default.
const wsPath = metaPath.startsWith('/') ? metaPath : '/ws';
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${wsPath}`;

let client = null;
let negotiation = null;
let localStream = null;
let roomId = null;
const names = new Map(); // userId -> display name

function setStatus(state, text) {
  const el = $('status');
  el.dataset.state = state;
  el.textContent = text;
}

function nameOf(userId) {
  return names.get(userId) || userId;
}

// -- media ---------------------------------------------------------------------

/** A generated test picture: an animated canvas with the participant's name. */
function testPicture(label) {
  const canvas = document.createElement('canvas');
  canvas.width = 640;
  canvas.height = 480;
  const ctx = canvas.getContext('2d');
  let hue = Math.floor(Math.random() * 360);
  const draw = () => {
    hue = (hue + 1) % 360;
    ctx.fillStyle = `hsl(${hue} 55% 35%)`;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = '#fff';
    ctx.font = '600 40px system-ui, sans-serif';
    ctx.textAlign = 'center';
    ctx.fillText(label, canvas.width / 2, canvas.height / 2);
    ctx.font = '24px system-ui, sans-serif';
    ctx.fillText(new Date().toLocaleTimeString(), canvas.width / 2, canvas.height / 2 + 44);
  };
  draw();
  setInterval(draw, 100);
  return canvas.captureStream(15);
}

async function getMedia(useTestPicture, label) {
  if (!useTestPicture && navigator.mediaDevices?.getUserMedia) {
    try {
      return await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
    } catch (e) {
      const note = $('media-note');
      note.hidden = false;
      note.textContent = `No camera or microphone (${e.name}): showing a test picture instead.`;
    }
  }
  return testPicture(label);
}

// -- video tiles -----------------------------------------------------------------

function tile(id, label, muted) {
  let li = document.querySelector(`[data-peer="${CSS.escape(id)}"]`);
  if (li) return li;
  li = document.createElement('li');
  li.className = 'tile';
  li.dataset.peer = id;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = muted;
  video.setAttribute('aria-label', `Video of ${label}`);
  const name = document.createElement('span');
  name.className = 'label';
  name.textContent = label;
  const state = document.createElement('span');
  state.className = 'state';
  state.textContent = muted ? 'you' : 'connecting';
  li.append(video, name, state);
  $('videos').append(li);
  return li;
}

function removeTile(id) {
  document.querySelector(`[data-peer="${CSS.escape(id)}"]`)?.remove();
}

// -- participants and chat ---------------------------------------------------------

function renderParticipants() {
  const ul = $('participants');
  ul.replaceChildren();
  const me = document.createElement('li');
  me.textContent = `${nameOf(client.userId)} (you)`;
  ul.append(me);
  for (const peer of negotiation?.peers() ?? []) {
    const li = document.createElement('li');
    li.textContent = nameOf(peer.peerId);
    ul.append(li);
  }
  $('count').textContent = String(ul.children.length);
}

function addChatLine(from, content, timestamp) {
  const li = document.createElement('li');
  const time = document.createElement('time');
  const when = new Date(typeof timestamp === 'number' ? timestamp : Date.now());
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = from === client.userId ? 'You' : nameOf(from);
  const text = document.createElement('span');
  text.textContent = content;
  li.append(time, who, text);
  const log = $('chat-log');
  log.append(li);
  log.scrollTop = log.scrollHeight;
}

// -- the call ----------------------------------------------------------------------

async function join(room, name, useTestPicture) {
  $('join-error').hidden = true;
  roomId = room;
  sessionStorage.setItem(LAST_CALL_KEY, JSON.stringify({ room, name, useTestPicture }));
  localStream = await getMedia(useTestPicture, name);

  client = new SignalingClient(wsUrl, { displayName: name });
  client.on('connecting', (e) => setStatus(e.attempt ? 'reconnecting' : 'connecting', e.attempt ? `Reconnecting (attempt ${e.attempt})…` : 'Connecting…'));
  client.on('reconnecting', (e) => setStatus('reconnecting', `Connection lost, retrying in ${(e.delayMs / 1000).toFixed(1)} s…`));
  client.on('connected', () => setStatus('connected', 'Connected'));
  client.on('resumed', () => setStatus('connected', 'Connected (resumed)'));
  client.on('closed', (e) => setStatus('closed', `Disconnected: ${e.reason}`));
  client.on('user-joined', (e) => {
    if (e.roomId !== roomId) return;
    names.set(e.userId, e.displayName || e.userId);
    addSystemLine(`${nameOf(e.userId)} joined`);
  });
  client.on('user-left', (e) => {
    if (e.roomId !== roomId) return;
    addSystemLine(`${nameOf(e.userId)} left`);
    queueMicrotask(renderParticipants);
  });
  client.on('chat', (e) => {
    if (e.roomId === roomId) addChatLine(e.from, e.content, e.timestamp);
  });

  negotiation = new PerfectNegotiation(client, {
    roomId,
    createPeerConnection(peerId, ctx) {
      const pc = new RTCPeerConnection({ iceServers: ctx.iceServers ?? [] });
      for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
      const li = tile(peerId, nameOf(peerId), false);
      li.dataset.state = 'new';
      const video = li.querySelector('video');
      const state = li.querySelector('.state');
      pc.addEventListener('track', (ev) => {
        video.srcObject = ev.streams[0] ?? new MediaStream([ev.track]);
      });
      pc.addEventListener('connectionstatechange', () => {
        li.dataset.state = pc.connectionState;
        state.textContent = pc.connectionState;
      });
      queueMicrotask(renderParticipants);
      return pc;
    },
    onPeerClosed(peerId) {
      removeTile(peerId);
      queueMicrotask(renderParticipants);
    },
  });

  const me = tile('self', `${name} (you)`, true);
  me.querySelector('video').srcObject = localStream;
  $('room-name').textContent = room;
  $('join-section').hidden = true;
  $('call').hidden = false;

  try {
    const info = await client.join(room);
    for (const p of info.peers) names.set(p.userId, p.displayName || p.userId);
    for (const p of info.peers) {
      const label = document.querySelector(`[data-peer="${CSS.escape(p.userId)}"] .label`);
      if (label) label.textContent = nameOf(p.userId);
    }
    names.set(client.userId, name);
    renderParticipants();
    $('chat-input').focus();
  } catch (e) {
    await leave();
    const err = $('join-error');
    err.hidden = false;
    err.textContent = `Could not join: ${e.message}`;
  }
}

function addSystemLine(text) {
  const li = document.createElement('li');
  li.className = 'system';
  li.textContent = text;
  $('chat-log').append(li);
}

async function leave() {
  sessionStorage.removeItem(LAST_CALL_KEY);
  negotiation?.close();
  negotiation = null;
  await client?.close();
  client = null;
  for (const t of localStream?.getTracks() ?? []) t.stop();
  localStream = null;
  $('videos').replaceChildren();
  $('chat-log').replaceChildren();
  $('participants').replaceChildren();
  $('call').hidden = true;
  $('join-section').hidden = false;
  setStatus('idle', 'Not connected');
}

function toggleTrack(kind, button, onText, offText) {
  const tracks = localStream?.getTracks().filter((t) => t.kind === kind) ?? [];
  const off = button.getAttribute('aria-pressed') !== 'true';
  for (const t of tracks) t.enabled = !off;
  button.setAttribute('aria-pressed', String(off));
  button.textContent = off ? offText : onText;
}

// -- wiring ----------------------------------------------------------------------

$('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const room = $('room').value.trim();
  const name = $('name').value.trim();
  if (room && name) void join(room, name, $('test-picture').checked);
});
$('chat-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('chat-input');
  const text = input.value.trim();
  if (!text || !client) return;
  input.value = '';
  client.chat(text, roomId).catch((e) => addSystemLine(`Not sent (${e.code}): ${text}`));
});
$('leave').addEventListener('click', () => void leave());
$('mute').addEventListener('click', (ev) => toggleTrack('audio', ev.currentTarget, 'Mute microphone', 'Unmute microphone'));
$('camera').addEventListener('click', (ev) => toggleTrack('video', ev.currentTarget, 'Turn camera off', 'Turn camera on'));

// A reload returns to the call (the client takes its session or identity back).
const last = JSON.parse(sessionStorage.getItem(LAST_CALL_KEY) || 'null');
if (last && typeof last.room === 'string' && typeof last.name === 'string') {
  $('room').value = last.room;
  $('name').value = last.name;
  void join(last.room, last.name, Boolean(last.useTestPicture));
}
