// Parity host: Node attach mode, `http.createServer` with the server attached
// at the config's `path` and the kit's endpoints (`/metrics`) from
// `server.httpHandler()` (HOSTS.md). Run from the repository root.
import http from 'node:http';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';

import { Server } from '../../../node/esm/index.mjs';

const config = JSON.parse(readFileSync(process.env.SWITCHBOARD_PARITY_CONFIG, 'utf8'));
const NAMES = {
  max_message_bytes: 'maxMessageBytes',
  max_conns: 'maxConns',
  max_conns_per_ip: 'maxConnsPerIp',
  max_room_size: 'maxRoomSize',
  max_rooms_per_session: 'maxRoomsPerSession',
  rate_limit_burst: 'rateLimitBurst',
  rate_limit_rps: 'rateLimitRps',
  heartbeat_interval_ms: 'heartbeatMs',
  heartbeat_timeout_ms: 'heartbeatTimeoutMs',
  resume_window_ms: 'resumeWindowMs',
  drain_timeout_ms: 'drainTimeoutMs',
  allowed_origins: 'allowedOrigins',
  trusted_proxies: 'trustedProxies',
  redis_url: 'redisUrl',
  app_types: 'appTypes',
};
const options = { listen: null };
for (const [key, value] of Object.entries(config)) {
  if (key === 'path') options.path = value;
  else if (key === 'auth_tokens') options.auth = { tokens: value };
  else if (NAMES[key]) options[NAMES[key]] = value;
  else {
    console.error(`node attach host: unknown config key ${key}`);
    process.exit(2);
  }
}
const server = await Server.start(options);
const handler = server.httpHandler();
const app = http.createServer((req, res) => handler(req, res));
server.attach(app);
app.listen(0, '127.0.0.1');
await once(app, 'listening');
// The URL names the first fixed entry of the path list (the root when all are templates).
const first = (options.path ?? '/ws').split(',').map((p) => p.trim()).find((p) => !p.includes('{')) ?? '/';
console.log(`listening on ws://127.0.0.1:${app.address().port}${first}`);
process.on('SIGTERM', async () => {
  await server.stop();
  app.close();
});
