// The arena's page: moves this player's dot, draws the room's state, the presence list and the chat.
// Everything the page knows is in window.arena (the e2e tests read it).
(function () {
  'use strict';

  var TRANSPORTS = { auto: ['websocket', 'long-polling'], websocket: ['websocket'],
                     'long-polling': ['long-polling'] };
  var PLAYER_SPEED = 8;   // cells per second
  var SEND_EVERY = 50;    // ms between two position messages (the server ticks at 20 Hz)
  var HALF = 0.3;         // half the side of a player's box, in cells (for walls)
  var CELL = 20;          // canvas pixels per cell
  var MAX_CHAT = 500;     // chat lines kept on the page
  var TICK = 50;          // ms between two states of the room

  var arena = window.arena = {
    id: null, name: '', me: null, players: {}, bots: [], who: [], chat: [], grid: null,
    width: 0, height: 0, unit: 100, transport: '', connected: false, closed: null,
    botsFrom: [], botsAt: 0, sent: null, movedAt: 0, states: 0, botsMode: '', errors: [], reconnecting: false, resumes: 0
  };
  var keys = {}, touch = null, conn = null;
  var field = document.getElementById('field'), ctx = field.getContext('2d');

  function param(name) {
    var m = new RegExp('[?&]' + name + '=([^&#]*)').exec(location.search);
    return m ? decodeURIComponent(m[1].replace(/\+/g, ' ')) : null;
  }
  function now() { return Date.now(); }
  function text(id, value) { document.getElementById(id).textContent = value; }
  function colour(id) { return 'hsl(' + ((id * 137) % 360) + ', 65%, 42%)'; }

  // -- the connection ----------------------------------------------------------

  function connect() {
    var transport = param('transport') || 'auto';
    if (!TRANSPORTS.hasOwnProperty(transport)) {
      text('status', 'unknown transport: ' + transport + ' (use ?transport=auto, websocket or long-polling)');
      return;
    }
    var name = param('name');
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/arena' +
              (name !== null ? '?name=' + encodeURIComponent(name) : '');
    conn = new WsDaemon(url, { transports: TRANSPORTS[transport] });
    conn.onopen = function () { arena.connected = true; showTransport(); text('status', ''); };
    conn.onmessage = function (e) { received(JSON.parse(e.data)); };
    // The session outlives a dropped transport: the client reconnects and the server replays.
    conn.addEventListener('reconnecting', function () {
      arena.reconnecting = true;
      showTransport();
      text('status', 'connection lost, reconnecting...');
    });
    conn.addEventListener('resume', function () {
      arena.reconnecting = false;
      arena.resumes++;
      showTransport();
      text('status', 'resumed');
    });
    conn.onclose = function (e) {
      arena.connected = false;
      arena.closed = { code: e.code, reason: e.reason };
      showTransport();
      text('status', (e.code === 4000 ? 'the server no longer has this session, reload the page: ' : 'closed: ') +
                     e.code + (e.reason ? ' ' + e.reason : ''));
    };
  }

  function showTransport() {
    var t = arena.closed ? 'offline' : !arena.connected ? 'connecting' :
            arena.reconnecting ? 'reconnecting' : conn.transport;
    if (t === arena.transport) { return; }
    arena.transport = t;
    var el = document.getElementById('transport');
    el.textContent = t === 'websocket' ? 'WebSocket' : t;
    el.className = t;
  }

  function received(m) {
    if (m.t === 's') {
      state(m);
    } else if (m.t === 'hello') {
      arena.id = m.id;
      arena.name = m.name;
      arena.width = m.w;
      arena.height = m.h;
      arena.unit = m.unit;
      arena.botsMode = m.bots;
      arena.grid = decodeCells(m.cells);
      if (!arena.me) { arena.me = { x: m.x, y: m.y }; }
      field.width = m.w * CELL;
      field.height = m.h * CELL;
      text('me', 'you are ' + m.name);
      text('bots', 'bots: ' + m.bots);
    } else if (m.t === 'who') {
      arena.who = m.players;
      showWho();
    } else if (m.t === 'chat') {
      arena.chat.push({ n: m.n, id: m.id, name: m.name, text: m.text });
      if (arena.chat.length > MAX_CHAT) { arena.chat.shift(); }
      showChat(m);
    } else if (m.t === 'error') {
      arena.errors.push(m.text);
      text('status', m.text);
    }
  }

  function state(m) {
    var t = now(), seen = {};
    arena.states++;
    for (var i = 0; i < m.p.length; i++) {
      var id = m.p[i][0], x = m.p[i][1], y = m.p[i][2], p = arena.players[id];
      seen[id] = true;
      if (!p) {
        arena.players[id] = { x: x, y: y, seenAt: t, from: [x, y] };
      } else if (p.x !== x || p.y !== y) {
        p.from = shown(p.from, [p.x, p.y], p.seenAt, t);
        p.x = x; p.y = y; p.seenAt = t;
      }
    }
    for (var known in arena.players) {
      if (!seen[known]) { delete arena.players[known]; }
    }
    var before = arena.bots;
    arena.botsFrom = m.b.map(function (b, i) {
      return before[i] ? shown(arena.botsFrom[i] || before[i], before[i], arena.botsAt, t) : b;
    });
    arena.bots = m.b;
    arena.botsAt = t;
  }

  // Others move in 20 Hz steps: the field shows them gliding from where they were drawn to the
  // newest position over one tick (arena.players keeps the exact positions).
  function shown(from, to, since, t) {
    var k = Math.min(1, (t - since) / TICK);
    return [from[0] + (to[0] - from[0]) * k, from[1] + (to[1] - from[1]) * k];
  }

  function decodeCells(b64) {
    var bin = atob(b64), cells = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { cells[i] = bin.charCodeAt(i); }
    return cells;
  }

  // -- presence and chat -------------------------------------------------------

  function showWho() {
    var list = document.getElementById('who');
    list.innerHTML = '';
    arena.who.forEach(function (p) {
      var li = document.createElement('li'), dot = document.createElement('span');
      dot.className = 'dot';
      dot.style.background = colour(p.id);
      li.appendChild(dot);
      li.appendChild(document.createTextNode(p.name + (p.id === arena.id ? ' (you)' : '') + ' via ' +
                                             p.via + ', caught ' + p.caught + 'x'));
      list.appendChild(li);
    });
  }

  function showChat(m) {
    var box = document.getElementById('chat'), line = document.createElement('div');
    var from = document.createElement('span');
    from.className = 'from';
    from.style.color = colour(m.id);
    from.textContent = m.name + ': ';
    line.appendChild(from);
    line.appendChild(document.createTextNode(m.text));
    box.appendChild(line);
    while (box.childNodes.length > MAX_CHAT) { box.removeChild(box.firstChild); }
    box.scrollTop = box.scrollHeight;
  }

  document.getElementById('chatform').addEventListener('submit', function (e) {
    e.preventDefault();
    var input = document.getElementById('say');
    if (input.value.trim() && conn && conn.readyState === WsDaemon.OPEN) {
      conn.send(JSON.stringify({ t: 'chat', text: input.value }));
      input.value = '';
    }
  });

  // -- moving ------------------------------------------------------------------

  var KEYS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1],
               a: [-1, 0], d: [1, 0], w: [0, -1], s: [0, 1] };

  function keyName(e) { return e.key && e.key.length === 1 ? e.key.toLowerCase() : e.key; }
  window.addEventListener('keydown', function (e) {
    if (e.target && e.target.id === 'say') { return; }
    var k = keyName(e);
    if (KEYS[k]) { keys[k] = true; e.preventDefault(); }
  });
  window.addEventListener('keyup', function (e) { delete keys[keyName(e)]; });
  window.addEventListener('blur', function () { keys = {}; });

  function touchAt(e) {
    var t = e.touches[0], r = field.getBoundingClientRect();
    if (!t) { touch = null; return; }
    touch = { x: (t.clientX - r.left) / r.width * arena.width * arena.unit,
              y: (t.clientY - r.top) / r.height * arena.height * arena.unit };
    e.preventDefault();
  }
  field.addEventListener('touchstart', touchAt);
  field.addEventListener('touchmove', touchAt);
  field.addEventListener('touchend', function () { touch = null; });
  field.addEventListener('touchcancel', function () { touch = null; });

  function walkable(x, y) {
    var cx = Math.floor(x / arena.unit), cy = Math.floor(y / arena.unit);
    return cx >= 0 && cy >= 0 && cx < arena.width && cy < arena.height &&
           arena.grid[cy * arena.width + cx] !== 0;
  }
  function free(x, y) {
    var h = HALF * arena.unit;
    return walkable(x - h, y - h) && walkable(x + h, y - h) && walkable(x - h, y + h) && walkable(x + h, y + h);
  }

  var lastStep = now();
  function step() {
    var t = now(), dt = Math.min((t - lastStep) / 1000, 0.1);
    lastStep = t;
    var me = arena.me;
    if (!me || !arena.grid) { return; }
    var dx = 0, dy = 0;
    for (var k in keys) { dx += KEYS[k][0]; dy += KEYS[k][1]; }
    if (touch) { dx = touch.x - me.x; dy = touch.y - me.y; }
    var len = Math.sqrt(dx * dx + dy * dy);
    var dist = PLAYER_SPEED * arena.unit * dt;
    if (len > 0.5) {
      if (touch) { dist = Math.min(dist, len); }
      var nx = me.x + dx / len * dist, ny = me.y + dy / len * dist;
      var rx0 = Math.round(me.x), ry0 = Math.round(me.y);
      if (free(nx, me.y)) { me.x = nx; }
      if (free(me.x, ny)) { me.y = ny; }
      if (Math.round(me.x) !== rx0 || Math.round(me.y) !== ry0) { arena.movedAt = t; }
    }
    sendPosition(t);
  }

  function sendPosition(t) {
    if (!conn || conn.readyState !== WsDaemon.OPEN) { return; }
    var x = Math.round(arena.me.x), y = Math.round(arena.me.y), sent = arena.sent;
    if (sent && sent.x === x && sent.y === y) { return; }
    if (sent && t - sent.at < SEND_EVERY) { return; }
    conn.send(JSON.stringify({ t: 'pos', x: x, y: y }));
    arena.sent = { x: x, y: y, at: t };
  }

  // -- drawing -----------------------------------------------------------------

  function draw() {
    var u = arena.unit, s = CELL / u;
    ctx.clearRect(0, 0, field.width, field.height);
    if (!arena.grid) { return; }
    ctx.fillStyle = '#556';
    for (var i = 0; i < arena.grid.length; i++) {
      if (!arena.grid[i]) {
        ctx.fillRect((i % arena.width) * CELL, Math.floor(i / arena.width) * CELL, CELL, CELL);
      }
    }
    ctx.fillStyle = '#d8262b';
    var t = now();
    arena.bots.forEach(function (b, i) {
      var at = arena.botsFrom[i] ? shown(arena.botsFrom[i], b, arena.botsAt, t) : b;
      ctx.fillRect(at[0] * s - CELL * 0.35, at[1] * s - CELL * 0.35, CELL * 0.7, CELL * 0.7);
    });
    var names = {};
    arena.who.forEach(function (p) { names[p.id] = p.name; });
    ctx.font = '12px sans-serif';
    ctx.textAlign = 'center';
    for (var id in arena.players) {
      if (+id === arena.id) { continue; }
      var p = arena.players[id], at = shown(p.from, [p.x, p.y], p.seenAt, t);
      dot(at[0] * s, at[1] * s, colour(+id), names[id] || '', false);
    }
    if (arena.me) { dot(arena.me.x * s, arena.me.y * s, colour(arena.id || 0), arena.name, true); }
  }

  function dot(x, y, fill, label, mine) {
    ctx.beginPath();
    ctx.arc(x, y, CELL * HALF, 0, 2 * Math.PI);
    ctx.fillStyle = fill;
    ctx.fill();
    if (mine) { ctx.lineWidth = 3; ctx.strokeStyle = '#111'; ctx.stroke(); }
    ctx.fillStyle = '#111';
    ctx.fillText(label, x, y - CELL * 0.5);
  }

  function frame() { draw(); window.requestAnimationFrame(frame); }

  setInterval(step, 16);
  setInterval(showTransport, 250);
  window.requestAnimationFrame(frame);
  connect();
})();
