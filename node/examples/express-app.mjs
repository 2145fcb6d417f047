// An Express app that serves its routes and Switchboard on one port (attach
// mode): upgrades on /ws go to the signaling hub, everything else to Express.
// Usage: node examples/express-app.mjs [--port 3000]
import http from 'node:http';

import express from 'express';
import { Server } from 'switchboard';

const app = express();
const httpServer = http.createServer(app);
// No own listener: the hub is served through the app's http server only.
const signaling = await Server.start({ listen: null, path: '/ws', allowedOrigins: ['http://localhost:3000'] });
signaling.attach(httpServer, { path: '/ws' });
// The core's /metrics, /health and /ready, mounted on the app.
app.use(signaling.httpHandler());

app.get('/rooms', (req, res) => res.json(signaling.rooms()));

app.post('/rooms/:room/announce', express.json(), async (req, res) => {
  const count = await signaling.broadcast(req.params.room, { type: 'message', from: 'host', data: { announcement: req.body.text } });
  res.json({ delivered: count });
});

const i = process.argv.indexOf('--port');
httpServer.listen(i > 0 ? Number(process.argv[i + 1]) : 3000, '127.0.0.1', () => {
  const { port } = httpServer.address();
  console.log(`listening on http://127.0.0.1:${port} (signaling at ws://127.0.0.1:${port}/ws)`);
});

const stop = async () => {
  await signaling.stop(); // drains the WebSocket clients
  httpServer.close();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
