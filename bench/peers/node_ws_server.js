// Peer: Node's `ws` (with bufferutil and utf-8-validate) as echo or broadcast server.
//
//   node node_ws_server.js --port P [--host 127.0.0.1] [--mode echo|broadcast] [--deflate]
//
// Same settings as the Python peers: 16 MiB messages, no pings. Compression is
// off unless --deflate, which turns on `perMessageDeflate` with ws's defaults
// (zlib's window and memLevel, context takeover; its 1024-byte threshold only
// applies without context takeover, so 200-byte messages are compressed too).
// Modules come from ./node/node_modules (bench/setup.sh installs them).
"use strict";

const path = require("path");
const modules = path.join(__dirname, "node", "node_modules");
const { WebSocketServer, WebSocket } = require(path.join(modules, "ws"));

function parseArgs(argv) {
  const args = { host: "127.0.0.1", port: 0, mode: "echo", deflate: false };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--deflate") args.deflate = true;
    else if (a === "--host") args.host = argv[++i];
    else if (a === "--port") args.port = Number(argv[++i]);
    else if (a === "--mode") args.mode = argv[++i];
    else throw new Error(`unknown argument ${a}`);
  }
  if (!args.port || !["echo", "broadcast"].includes(args.mode)) {
    throw new Error("usage: node_ws_server.js --port P [--mode echo|broadcast] [--deflate]");
  }
  return args;
}

// ws loads these itself when they resolve; fail early instead of measuring without them.
require(path.join(modules, "bufferutil"));
require(path.join(modules, "utf-8-validate"));

const args = parseArgs(process.argv);
const wss = new WebSocketServer({
  host: args.host,
  port: args.port,
  backlog: 1024,
  maxPayload: 16 * 1024 * 1024,
  perMessageDeflate: args.deflate,
  clientTracking: true,
});

wss.on("connection", (ws) => {
  if (args.mode === "echo") {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else {
    // every message goes to every open connection, the sender included
    ws.on("message", (data, isBinary) => {
      for (const peer of wss.clients) {
        if (peer.readyState === WebSocket.OPEN) peer.send(data, { binary: isBinary });
      }
    });
  }
  ws.on("error", () => ws.terminate());
});

wss.on("listening", () => console.log(`node ws ${args.mode} on ${args.host}:${args.port}`));
process.on("SIGTERM", () => process.exit(0));
