// A signaling server with an auth hook: tokens are looked up asynchronously
// (here a Map standing in for a database or an HTTP call), each user may only
// join their team's rooms, and every newcomer gets a welcome from the host.
// Usage: node examples/auth-server.mjs [--listen 127.0.0.1:8080]
import { Server } from 'switchboard';

const USERS = new Map([
  ['token-alice', { userId: 'alice', team: 'blue' }],
  ['token-bob', { userId: 'bob', team: 'blue' }],
]);

async function lookUp(token) {
  await new Promise((r) => setTimeout(r, 2)); // a database round trip
  return USERS.get(token) ?? null;
}

const i = process.argv.indexOf('--listen');
const server = await Server.start({
  listen: i > 0 ? process.argv[i + 1] : '127.0.0.1:8080',
  allowedOrigins: ['http://localhost:3000'],
  auth: {
    // Awaited by the core with `authTimeoutMs`; null refuses (HTTP 401).
    hook: async ({ token }) => {
      const user = token ? await lookUp(token) : null;
      return user && { userId: user.userId, rooms: [`${user.team}-*`], metadata: { team: user.team } };
    },
  },
  authTimeoutMs: 2000,
});

// A host message: `type: 'message'` reaches every Switchboard client as a
// `message` event (clients ignore types they do not know).
server.on('user-joined', async (e) => {
  await server.send(e.roomId, e.userId, { type: 'message', from: 'host', data: { welcome: `hello ${e.userId}` } });
});
server.on('user-left', (e) => console.log(`${e.userId} left ${e.roomId} (${e.reason})`));

console.log(`listening on ${server.url}`);
const stop = async () => {
  await server.stop(); // graceful drain; the process then exits by itself
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
