// A bot peer: joins a room, answers every offer (a real app would hand the SDP
// to a WebRTC stack such as werift or node-datachannel), echoes chat, and
// survives reconnects. Usage: node examples/bot.mjs ws://127.0.0.1:8080/ws room-1 [userId]
import { Client } from 'switchboard';

const [url = 'ws://127.0.0.1:8080/ws', room = 'room-1', userId = 'bot'] = process.argv.slice(2);
const bot = await Client.connect(url, { userId });

bot.on('offer', async (offer) => {
  await bot.sendAnswer(offer.from, { type: 'answer', sdp: `answer-to:${offer.sdp?.sdp ?? ''}` });
});
bot.on('chat', async (m) => {
  if (m.from !== userId) await bot.chat(`echo: ${m.content}`);
});
bot.on('reconnecting', (e) => console.log(`reconnecting (attempt ${e.attempt})`));
bot.on('rejoined', (e) => console.log(`session lost, rejoined ${e.rooms.join(', ')}`));

const info = await bot.join(room);
console.log(`joined ${info.roomId} with ${info.users.length} peer(s)`);

process.once('SIGTERM', () => bot.close()); // then the process exits by itself
process.once('SIGINT', () => bot.close());
