// The typed API: options, the discriminated-union events, typed listeners and
// errors with `code`. Checked with `tsc --noEmit` and run by the tests.
import { Client, Server, SwitchboardError, type ServerEvent } from 'switchboard';

function describe(e: ServerEvent): string {
  switch (e.type) {
    case 'user-joined':
      return `${e.userId} joined ${e.roomId} (polite: ${e.polite})`;
    case 'user-left':
      return `${e.userId} left ${e.roomId}: ${e.reason}`;
    case 'offer':
      return `offer ${e.from} -> ${e.to ?? '?'} in ${e.roomId}`;
    case 'disconnected':
      return `connection ${e.clientId} closed with ${e.code}`;
    default:
      return e.type;
  }
}

async function main(): Promise<void> {
  const server = await Server.start({ listen: '127.0.0.1:0', rateLimitRps: 0, allowedOrigins: ['https://app.example'] });
  const url: string = server.url ?? '';
  const seen: string[] = [];
  server.on('user-joined', (e) => seen.push(describe(e)));
  server.on('offer', (e) => seen.push(describe(e)));

  const alice = await Client.connect(url, { userId: 'alice' });
  const bob = await Client.connect(url, { userId: 'bob' });
  await alice.join('demo');
  const info = await bob.join('demo');
  const gotOffer = alice.next('offer', { timeoutMs: 5000 });
  await bob.sendOffer('alice', { type: 'offer', sdp: 'v=0' });
  const offer = await gotOffer;
  try {
    await bob.sendOffer('nobody', 'sdp');
  } catch (err) {
    if (err instanceof SwitchboardError && err.code === 'peer-not-found') seen.push('peer-not-found');
  }
  console.log(JSON.stringify({ peers: info.users, from: offer.from, seen }));
  await alice.close();
  await bob.close();
  await server.stop();
}

void main();
