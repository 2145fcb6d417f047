// The Switchboard admin page: signs in with the API key (kept in
// sessionStorage, never in the URL), then shows the server live from the
// operator API: rooms and their members, connections and messages per second
// over the last minutes, and a kick button per member. Live data comes from
// `GET /api/v1/stream` (one snapshot per line) where the host serves it, else
// from polling `GET /api/v1/snapshot` every second.
const KEY = 'switchboard:api-key';
const HISTORY = 300; // points kept for the charts: five minutes at one a second

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem(KEY), stop: null, history: [], lastRelayed: null, lastAt: null, lastRooms: null };

function api(path, init = {}) {
  return fetch(`/api/v1${path}`, {
    ...init,
    headers: { ...(init.headers ?? {}), authorization: `Bearer ${state.key}` },
  });
}

function showLogin(message = '') {
  state.stop?.();
  state.stop = null;
  $('dashboard').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('status').textContent = '';
}

async function signIn(key) {
  state.key = key;
  const res = await api('/info');
  if (res.status === 401) {
    sessionStorage.removeItem(KEY);
    return showLogin('the server refused this key');
  }
  if (!res.ok) return showLogin(`the API answered ${res.status}`);
  sessionStorage.setItem(KEY, key);
  state.lastRooms = null;
  $('login').hidden = true;
  $('dashboard').hidden = false;
  state.stop = follow(render);
}

/** Calls `onSnapshot` with every snapshot: from the stream, or by polling. */
function follow(onSnapshot) {
  let stopped = false;
  const controller = new AbortController();
  (async () => {
    try {
      const res = await api('/stream', { signal: controller.signal });
      if (res.status === 401) return showLogin('the server refused this key');
      if (res.ok && res.body) {
        $('status').textContent = 'live';
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffered = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffered += value;
          let nl;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            if (line) onSnapshot(JSON.parse(line));
          }
        }
      }
    } catch {
      // No stream (a host that only mounts the plain API) or it broke: poll.
    }
    $('status').textContent = 'polling';
    while (!stopped) {
      try {
        const res = await api('/snapshot');
        if (res.status === 401) return showLogin('the server refused this key');
        if (res.ok) onSnapshot(await res.json());
      } catch {
        $('status').textContent = 'server unreachable';
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return () => {
    stopped = true;
    controller.abort();
  };
}

function render(snapshot) {
  const { info, rooms, roomsTotal } = snapshot;
  const now = info.uptimeSeconds;
  let rate = null;
  if (state.lastRelayed !== null && now > state.lastAt) {
    rate = (info.messagesRelayed - state.lastRelayed) / (now - state.lastAt);
  }
  state.lastRelayed = info.messagesRelayed;
  state.lastAt = now;
  state.history.push({ connections: info.connections, rate: rate ?? 0 });
  if (state.history.length > HISTORY) state.history.shift();
  $('connections').textContent = info.connections;
  $('rate').textContent = rate === null ? '–' : rate.toFixed(1);
  $('rooms-count').textContent = roomsTotal;
  $('version').textContent = info.version;
  $('nodes').textContent = info.nodes ? `${info.nodes.length} node(s)` : '';
  chart($('chart-connections'), state.history.map((h) => h.connections));
  chart($('chart-rate'), state.history.map((h) => h.rate));
  renderRooms(rooms);
}

function chart(canvas, values) {
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (values.length < 2) return;
  const max = Math.max(1, ...values);
  ctx.strokeStyle = '#2f6fdb';
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / (HISTORY - 1)) * canvas.width;
    const y = canvas.height - 2 - (v / max) * (canvas.height - 4);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function renderRooms(rooms) {
  // Rebuilt only when they changed: a table redrawn every second would take
  // the Kick button away from under a click.
  const seen = JSON.stringify(rooms);
  if (seen === state.lastRooms) return;
  state.lastRooms = seen;
  const box = $('rooms');
  box.replaceChildren();
  if (rooms.length === 0) {
    box.textContent = 'No rooms.';
    return;
  }
  for (const room of rooms) {
    const table = document.createElement('table');
    table.dataset.room = room.roomId;
    const caption = table.createCaption();
    caption.textContent = `${room.roomId} (${room.members.length})`;
    caption.style.textAlign = 'left';
    caption.style.fontWeight = '600';
    const head = table.createTHead().insertRow();
    for (const h of ['user', 'name', 'state', 'node', '']) head.appendChild(document.createElement('th')).textContent = h;
    const body = table.createTBody();
    for (const m of room.members) {
      const row = body.insertRow();
      row.dataset.user = m.userId;
      row.insertCell().textContent = m.userId;
      row.insertCell().textContent = m.displayName ?? '';
      const st = row.insertCell();
      st.textContent = m.connected ? 'connected' : 'away';
      if (!m.connected) st.className = 'away';
      row.insertCell().textContent = m.node ?? '';
      const button = row.insertCell().appendChild(document.createElement('button'));
      button.className = 'kick';
      button.type = 'button';
      button.textContent = 'Kick';
      button.addEventListener('click', () => kick(room.roomId, m.userId));
    }
    box.appendChild(table);
  }
}

async function kick(roomId, userId) {
  if (!confirm(`Kick ${userId} from ${roomId}? Their connection closes (4403) and they do not reconnect.`)) return;
  const res = await api(`/rooms/${encodeURIComponent(roomId)}/users/${encodeURIComponent(userId)}/kick`, { method: 'POST' });
  if (!res.ok) {
    const e = await res.json().catch(() => ({}));
    alert(`Kick failed: ${e.error?.message ?? res.status}`);
  }
}

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void signIn($('key').value);
});
$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(KEY);
  showLogin();
});
if (state.key) void signIn(state.key);
else showLogin();
