// A Node `ws` client with perMessageDeflate: connects, sends each message read from stdin, prints
// one JSON line per event (open with the extensions header and the parameters ws took, each
// echo, close).
//   node client.js URL < MESSAGES_JSON   ([{"text": ...} or {"binary": BASE64}, ...])
const fs = require("fs");
const WebSocket = require("ws");
const url = process.argv[2];
const messages = JSON.parse(fs.readFileSync(0, "utf8"));
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
let header = null;
ws.on("upgrade", (res) => { header = res.headers["sec-websocket-extensions"] || null; });
let i = 0;
const next = () => {
  if (i === messages.length) return ws.close(1000, "done");
  const m = messages[i++];
  if (m.binary) ws.send(Buffer.from(m.binary, "base64"));
  else ws.send(m.text);
};
ws.on("open", () => {
  const pmd = ws._extensions["permessage-deflate"];
  out({ event: "open", extensions: ws.extensions, header, params: pmd ? pmd.params : null });
  next();
});
ws.on("message", (data, isBinary) => {
  out(isBinary ? { event: "message", binary: data.toString("base64") } : { event: "message", text: data.toString("utf8") });
  next();
});
ws.on("close", (code, reason) => {
  out({ event: "close", code, reason: reason.toString() });
  process.exit(0);
});
ws.on("error", (err) => {
  out({ event: "error", message: String(err) });
  process.exit(1);
});
setTimeout(() => { out({ event: "error", message: "timeout" }); process.exit(2); }, 20000);
