// Node's socket.io with @socket.io/redis-adapter: the cross-node fan-out peer of bench/cluster.py.
// Every client joins the room "bench"; an event "pub" is emitted to the room as "msg". The
// adapter publishes each room emit to Redis; every other node delivers it to its local members.
// WebSocket transport only, no compression (as the other peers).
'use strict';
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

function arg(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  return i > 0 ? process.argv[i + 1] : fallback;
}

async function main() {
  const port = Number(arg('port'));
  const pub = createClient({ url: arg('redis') });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const io = new Server({
    adapter: createAdapter(pub, sub),
    transports: ['websocket'],
    perMessageDeflate: false,
    serveClient: false,
    maxHttpBufferSize: 16 * 1024 * 1024,
  });
  io.on('connection', (socket) => {
    socket.join('bench');
    socket.on('pub', (data) => io.to('bench').emit('msg', data));
  });
  io.listen(port);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
