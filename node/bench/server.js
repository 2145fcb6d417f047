// The Node-hosted Switchboard for switchboard-bench: the Rust server started
// from Node with one `on('offer')` listener (so hub events cross into JS),
// limits off as for the CLI under load (the bench connects from one IP). Prints `listening on ws://…` for the
// bench. Usage: node node/bench/server.js [--listen 127.0.0.1:0]
'use strict';

const { Server } = require('../dist/index.js');

const i = process.argv.indexOf('--listen');
const listen = i > 0 ? process.argv[i + 1] : '127.0.0.1:0';

(async () => {
  const server = await Server.start({
    listen,
    path: '/ws',
    rateLimitRps: 0,
    maxConnsPerIp: 0,
    connRatePerIp: 0,
    maxPendingPerIp: 0,
    maxConns: 0,
    allowedOrigins: ['http://127.0.0.1'],
  });
  let offers = 0;
  if (!process.env.SB_BENCH_NO_LISTENER) server.on('offer', () => {
    offers += 1;
  });
  process.stdout.write(`listening on ${server.url}\n`);
  const stop = () => {
    server.stop().then(() => process.stderr.write(`node-hosted switchboard: ${offers} offers seen\n`));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
})();
