// The classic Node `ws` signaling relay (the widely copied example): rooms
// in a Map, `join` answers `room-info` and tells the others `user-joined`,
// messages with `to` are forwarded with `from` added. Used by
// switchboard-bench as a reference; prints `listening on ws://HOST:PORT/ws`.
// Usage: node bench/node/ws-server.js [--listen 127.0.0.1:0]
'use strict';

let WebSocketServer;
try {
  ({ WebSocketServer } = require('ws'));
} catch (e) {
  process.stderr.write('npm package `ws` not installed (npm install --prefix bench/node)\n');
  process.exit(3);
}

const i = process.argv.indexOf('--listen');
const listen = i > 0 ? process.argv[i + 1] : '127.0.0.1:0';
const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))];

const rooms = new Map(); // roomId -> Map(userId -> ws)
let nextId = 0;

const wss = new WebSocketServer({ host, port, path: '/ws' });
wss.on('listening', () => {
  const a = wss.address();
  process.stdout.write(`listening on ws://${a.address}:${a.port}/ws\n`);
});
wss.on('connection', (ws) => {
  let roomId = null;
  let userId = null;
  ws.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (msg.type === 'join') {
      roomId = msg.roomId || 'default';
      userId = msg.userId || `u${nextId++}`;
      if (!rooms.has(roomId)) rooms.set(roomId, new Map());
      const room = rooms.get(roomId);
      const joined = JSON.stringify({ type: 'user-joined', roomId, userId });
      for (const peer of room.values()) peer.send(joined);
      ws.send(JSON.stringify({ type: 'room-info', roomId, users: [...room.keys()], you: userId }));
      room.set(userId, ws);
    } else if (msg.to !== undefined && roomId !== null) {
      const peer = rooms.get(roomId).get(msg.to);
      if (peer) {
        msg.from = userId;
        peer.send(JSON.stringify(msg));
      }
    }
  });
  ws.on('close', () => {
    if (roomId === null) return;
    const room = rooms.get(roomId);
    room.delete(userId);
    const left = JSON.stringify({ type: 'user-left', roomId, userId, reason: 'closed' });
    for (const peer of room.values()) peer.send(left);
    if (room.size === 0) rooms.delete(roomId);
  });
});
