// Reference server for our hixie test clients: Debian's faye-websocket (websocket-driver),
// an implementation of hixie-75, hixie-76 and RFC 6455 independent of wsdaemon.
// Echoes every text message; "close-me" makes the server close first.
// Prints {"port": N} on stdout once listening on 127.0.0.1.
//   NODE_PATH=/usr/share/nodejs node tests/faye_hixie_server.js
'use strict';

const http = require('http');
const WebSocket = require('faye-websocket');

const server = http.createServer((request, response) => {
  response.writeHead(404, { 'Content-Type': 'text/plain' });
  response.end('not found\n');
});

server.on('upgrade', (request, socket, body) => {
  if (!WebSocket.isWebSocket(request)) {
    socket.destroy();
    return;
  }
  const ws = new WebSocket(request, socket, body);
  ws.on('message', (event) => {
    if (event.data === 'close-me') ws.close();
    else ws.send(event.data);
  });
  ws.on('close', () => socket.end());
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

process.on('SIGTERM', () => process.exit(0));
