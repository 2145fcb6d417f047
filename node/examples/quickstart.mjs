// The API at a glance (docs/NODE.md shows it as written): a server with its
// host-side controls, and two clients in a room that exchange an offer and an
// answer. Prints what happens, stops, and exits by itself.
// Usage: node examples/quickstart.mjs (run by test/examples.test.mjs)
import { Server, Client } from 'switchboard';   // or: const { Server, Client } = require('switchboard');

const offer = { type: 'offer', sdp: 'v=0 alice' };
const answerFor = async (sdp) => ({ type: 'answer', sdp: `answer to ${sdp.sdp}` }); // your WebRTC stack

const server = await Server.start({ listen: '127.0.0.1:0', path: '/ws', allowedOrigins: ['https://app.example'] });
console.log(server.url);                              // 'ws://127.0.0.1:PORT/ws'
server.on('user-joined', (e) => console.log(e.userId, 'joined', e.roomId));
const events = server.events();                       // async iterator from now on; e.type discriminates the union

const bob = await Client.connect(server.url, { userId: 'bob' });
await bob.join('room-1');
bob.on('offer', async (m) => bob.sendAnswer(m.from, await answerFor(m.sdp)));

const client = await Client.connect(server.url, { userId: 'alice' });
const info = await client.join('room-1');             // the room-info message
const answered = client.next('answer');               // the next `answer` event
await client.sendOffer('bob', offer);                 // sendAnswer, sendCandidate, send(to|null, data), chat
console.log('answer:', (await answered).sdp.sdp);

await server.send('room-1', 'alice', { type: 'message', from: 'host', data: { hi: 1 } });
console.log('broadcast to', await server.broadcast('room-1', { type: 'message', from: 'host', data: 'all' }));
await server.join('alice', 'stage'); await server.leave('alice', 'stage');  // host-side room control
console.log('peers:', server.peers('room-1').map((p) => p.userId), 'rooms:', server.rooms().length);
await server.kick('room-1', 'bob');                   // user-left (kicked), close 4403
for await (const e of events) {
  if (e.type === 'user-left' && e.reason === 'kicked') break;
}
console.log('bob was kicked; alice saw', info.users, 'at her join');

await client.leave('room-1'); await client.close(); await bob.close();
await server.stop();                                  // graceful drain; the process can exit
