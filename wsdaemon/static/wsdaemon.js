// wsdaemon.js: a WebSocket-like client that falls back to long-polling.
//
//   var conn = new WsDaemon('ws://example.com:8081/game', {
//     transports: ['websocket', 'long-polling'],  // tried in this order
//     openTimeout: 5000,                          // ms a transport gets to open
//   });
//   conn.onopen = function () { conn.send('hello'); };
//   conn.onmessage = function (e) { console.log(e.data, conn.transport); };
//   conn.onclose = function (e) { console.log(e.code, e.reason, e.wasClean); };
//
// The surface is the browser WebSocket's: onopen, onmessage, onclose (code,
// reason, wasClean), onerror, addEventListener, send, close, readyState,
// bufferedAmount, protocol, binaryType, url; plus `transport`
// ('websocket' or 'long-polling'). With a session (the default; {session: false}
// turns it off) the client reconnects by itself after a drop, with back-off, and
// resumes: events 'reconnecting' and 'resume'; onclose with code 4000 when the
// server no longer has the session (docs/sessions.md). No build step, no dependencies; long-polling
// uses XMLHttpRequest so that old browsers work. Wire protocol:
// docs/long-polling.md in the wsdaemon repository.
(function (global) {
  'use strict';

  var CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;
  var TRANSPORTS = ['websocket', 'long-polling'];
  var MAX_POST_BYTES = 256 * 1024;    // a post carries at most this much (unless one message is bigger)
  var RETRY_MIN = 100, RETRY_MAX = 4000;
  // Sessions (docs/sessions.md): the query parameter, the close code for a session that is gone,
  // how acks are batched, and the reconnect back-off.
  var SESSION_PARAM = 'wsdaemon_session';
  var NOT_RECOVERED = 4000;
  var ACK_DELAY = 100, ACK_EVERY = 32;
  var RECONNECT_MIN = 100, RECONNECT_MAX = 5000;

  function WsDaemon(url, options) {
    if (!(this instanceof WsDaemon)) { return new WsDaemon(url, options); }
    options = options || {};
    var resolved = resolveUrl(url);
    this.url = resolved.ws;
    this.readyState = CONNECTING;
    this.protocol = '';
    this.extensions = '';
    this.transport = '';
    this.binaryType = options.binaryType || 'blob';
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this._listeners = {};
    this._lpBase = options.longPollingUrl || resolved.lpBase;
    this._appPath = resolved.path;
    this._protocols = typeof options.protocols === 'string' ? [options.protocols] : (options.protocols || []);
    this._openTimeout = options.openTimeout || 5000;
    this._withCredentials = !!options.withCredentials;
    this._transports = (options.transports || TRANSPORTS).slice();
    for (var i = 0; i < this._transports.length; i++) {
      if (TRANSPORTS.indexOf(this._transports[i]) < 0) {
        throw new SyntaxError('unknown transport: ' + this._transports[i]);
      }
    }
    if (!this._transports.length) { throw new SyntaxError('no transport given'); }
    // A resumable session unless {session: false}: numbered messages, reconnect and resume.
    this._useSession = options.session !== false;
    this._reconnectMin = options.reconnectDelay || RECONNECT_MIN;
    this._reconnectMax = options.reconnectMaxDelay || RECONNECT_MAX;
    this._n = newNumbering();  // shared by every transport of the session
    this._sess = null;         // {id, token, window} once the server named the session
    this._reconnecting = false;
    this._attempts = 0;
    this._lostSince = 0;
    this._reconnectTimer = null;
    this._ackTimer = null;
    this._ackedUpTo = 0;
    this._next = 0;
    this._attempt = null;  // the transport being tried: {abort: fn}
    this._impl = null;     // the open transport: {send, flush, close, bufferedAmount, abort}
    this._tried = [];      // [transport, why it failed] for each failed attempt
    this._tryNext();
  }

  WsDaemon.CONNECTING = WsDaemon.prototype.CONNECTING = CONNECTING;
  WsDaemon.OPEN = WsDaemon.prototype.OPEN = OPEN;
  WsDaemon.CLOSING = WsDaemon.prototype.CLOSING = CLOSING;
  WsDaemon.CLOSED = WsDaemon.prototype.CLOSED = CLOSED;
  WsDaemon.NOT_RECOVERED = NOT_RECOVERED;

  // -- the WebSocket API -------------------------------------------------------

  WsDaemon.prototype.send = function (data) {
    if (this.readyState === CONNECTING) {
      throw domError('InvalidStateError', 'still in CONNECTING state');
    }
    if (this.readyState !== OPEN) { return; }  // as WebSocket: dropped once closing
    if (!this._useSession) { this._impl.send(data); return; }
    // Numbered and kept until the server acknowledges it, also while reconnecting.
    var self = this;
    enqueue(this._n, data, function () { if (self._impl) { self._impl.flush(); } });
    if (this._impl) { this._impl.flush(); }
  };

  WsDaemon.prototype.close = function (code, reason) {
    if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw domError('InvalidAccessError', 'close code must be 1000 or in 3000-4999: ' + code);
    }
    reason = reason === undefined ? '' : String(reason);
    if (utf8Length(reason) > 123) { throw new SyntaxError('close reason longer than 123 bytes'); }
    if (this.readyState === CLOSING || this.readyState === CLOSED) { return; }
    if (this.readyState === CONNECTING) {
      // As WebSocket: closing before open fails the connection.
      if (this._attempt) { this._attempt.abort(); this._attempt = null; }
      this._fail('closed before the connection was established');
      return;
    }
    this.readyState = CLOSING;
    if (!this._impl) {
      // Reconnecting: no transport to say it on; the server ends the session after its window.
      if (this._attempt) { this._attempt.abort(); this._attempt = null; }
      this._closed(code === undefined ? 1005 : code, reason, false);
      return;
    }
    this._impl.close(code, reason);
  };

  Object.defineProperty(WsDaemon.prototype, 'bufferedAmount', {
    get: function () {
      if (this._useSession) { return outboxBytes(this._n.outbox); }
      return this._impl ? this._impl.bufferedAmount() : 0;
    }
  });

  WsDaemon.prototype.addEventListener = function (type, fn) {
    var list = this._listeners[type] || (this._listeners[type] = []);
    if (list.indexOf(fn) < 0) { list.push(fn); }
  };

  WsDaemon.prototype.removeEventListener = function (type, fn) {
    var list = this._listeners[type];
    if (list && list.indexOf(fn) >= 0) { list.splice(list.indexOf(fn), 1); }
  };

  WsDaemon.prototype.dispatchEvent = function (event) {
    var handler = this['on' + event.type];
    if (typeof handler === 'function') { callSafely(handler, this, event); }
    var list = (this._listeners[event.type] || []).slice();
    for (var i = 0; i < list.length; i++) { callSafely(list[i], this, event); }
    return true;
  };

  // -- transport selection -------------------------------------------------------

  WsDaemon.prototype._tryNext = function (why) {
    if (why) { this._tried.push([this._transports[this._next - 1], why]); }
    if (this.readyState !== CONNECTING && !this._reconnecting) { return; }
    if (this._next >= this._transports.length) {
      this._attempt = null;
      var failures = 'no transport could open: ' + this._tried.map(function (t) {
        return t[0] + ' (' + t[1] + ')';
      }).join(', ');
      this._tried = [];
      if (this._reconnecting) { this._scheduleReconnect(failures); } else { this._fail(failures); }
      return;
    }
    var name = this._transports[this._next++];
    this._attempt = name === 'websocket' ? this._tryWebSocket() : this._tryLongPolling();
  };

  WsDaemon.prototype._opened = function (transport, impl, protocol, extensions) {
    this._attempt = null;
    this._impl = impl;
    this.transport = transport;
    if (this._reconnecting) {
      // A resume: the server replays what we missed; we resend what it did not acknowledge.
      this._reconnecting = false;
      this._attempts = 0;
      this._lostSince = 0;
      this._tried = [];
      this.dispatchEvent(makeEvent('resume'));
      impl.flush();
      return;
    }
    this.protocol = protocol || '';
    this.extensions = extensions || '';
    this.readyState = OPEN;
    this.dispatchEvent(makeEvent('open'));
  };

  WsDaemon.prototype._message = function (data) {
    if (this.readyState !== OPEN && this.readyState !== CLOSING) { return; }
    if (typeof data !== 'string' && this.binaryType === 'blob' && typeof Blob !== 'undefined') {
      data = new Blob([data]);
    }
    this.dispatchEvent(makeMessageEvent(data));
  };

  WsDaemon.prototype._error = function () {
    this.dispatchEvent(makeEvent('error'));
  };

  WsDaemon.prototype._closed = function (code, reason, wasClean) {
    if (this.readyState === CLOSED) { return; }
    this._stopTimers();
    this._impl = null;
    this.readyState = CLOSED;
    this.dispatchEvent(makeCloseEvent(code, reason, wasClean));
  };

  WsDaemon.prototype._fail = function (why) {
    if (this.readyState === CLOSED) { return; }
    this._stopTimers();
    this.readyState = CLOSED;
    this._failure = why;
    this.dispatchEvent(makeEvent('error'));
    this.dispatchEvent(makeCloseEvent(1006, '', false));
  };

  WsDaemon.prototype._stopTimers = function () {
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._ackTimer);
    this._reconnectTimer = this._ackTimer = null;
    this._reconnecting = false;
  };

  // -- the session: numbers, acks, reconnect --------------------------------------

  WsDaemon.prototype._sessionParam = function () {
    var s = this._sess;
    return s ? s.id + '.' + s.token + '.' + this._n.received : 'new';
  };

  // The server named the session (WebSocket hello or long-polling open answer).
  WsDaemon.prototype._hello = function (doc) {
    this._sess = { id: doc.session, token: doc.token || '', window: doc.window || doc.expire || 30 };
    this._serverAck(doc.ack || 0);
    this._ackedUpTo = this._n.received;
  };

  WsDaemon.prototype._serverAck = function (ack) {
    var out = this._n.outbox;
    while (out.length && out[0].seq <= ack) { out.shift(); }
  };

  // A numbered message from the server: delivered once and in order, acknowledged in batches.
  WsDaemon.prototype._numbered = function (seq, data) {
    var n = this._n;
    if (seq <= n.received) { return; }  // replayed: we have it
    if (seq !== n.received + 1) {
      // A message is missing (never on an ordered transport): resume from what we have.
      if (this._impl) { this._impl.abort(); }
      this._transportLost('message ' + (n.received + 1) + ' missing');
      return;
    }
    n.received = seq;
    this._message(data);
    if (n.received - this._ackedUpTo >= ACK_EVERY) {
      this._sendAck();
    } else if (!this._ackTimer) {
      var self = this;
      this._ackTimer = setTimeout(function () { self._sendAck(); }, ACK_DELAY);
    }
  };

  WsDaemon.prototype._sendAck = function () {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    var impl = this._impl;
    if (impl && impl.sendAck && this._n.received > this._ackedUpTo) {
      this._ackedUpTo = this._n.received;
      impl.sendAck(this._ackedUpTo);
    }
  };

  // The transport dropped without a close: reconnect and resume, or report the end.
  WsDaemon.prototype._transportLost = function (why) {
    this._impl = null;
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    if (this.readyState === CLOSED) { return; }
    if (!this._useSession || !this._sess || this.readyState !== OPEN) {
      this._failure = why;
      this._error();
      this._closed(1006, '', false);
      return;
    }
    this._reconnecting = true;
    if (!this._lostSince) {
      this._lostSince = now();
      this.dispatchEvent(makeEvent('reconnecting'));
    }
    this._scheduleReconnect(why);
  };

  WsDaemon.prototype._scheduleReconnect = function (why) {
    this._failure = why;
    if (now() - this._lostSince > this._sess.window * 1000 + 5000) {
      this._notRecovered('session not recovered: ' + why);  // the server has given up too
      return;
    }
    // Exponential back-off with jitter: a server restart is not met by every client at once.
    var delay = Math.min(this._reconnectMax, this._reconnectMin * Math.pow(2, this._attempts++));
    delay = delay / 2 + Math.random() * delay / 2;
    var self = this;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(function () {
      self._reconnectTimer = null;
      self._next = 0;
      self._tryNext();
    }, delay);
  };

  // The server no longer has the session: close 4000. A new WsDaemon gets a fresh one.
  WsDaemon.prototype._notRecovered = function (reason) {
    this._reconnecting = false;
    this._impl = null;
    this._closed(NOT_RECOVERED, reason || 'session not recovered', false);
  };

  // -- WebSocket ---------------------------------------------------------------

  WsDaemon.prototype._tryWebSocket = function () {
    var self = this;
    var useSession = this._useSession;
    var url = this.url;
    var ws;
    if (useSession) {
      url += (url.indexOf('?') < 0 ? '?' : '&') + SESSION_PARAM + '=' + encodeURIComponent(this._sessionParam());
    }
    if (typeof WebSocket === 'undefined') {
      setTimeout(function () { self._tryNext('no WebSocket in this browser'); }, 0);
      return { abort: function () {} };
    }
    try {
      ws = this._protocols.length ? new WebSocket(url, this._protocols) : new WebSocket(url);
    } catch (e) {
      setTimeout(function () { self._tryNext('WebSocket refused: ' + e.message); }, 0);
      return { abort: function () {} };
    }
    ws.binaryType = 'arraybuffer';
    var opened = false, abandoned = false;
    var sentUpTo = 0;  // the last numbered message written to this socket
    var inSeq = 0;     // the number of the server's next message here (its hello says)
    var timer = setTimeout(function () { abandon('no open within ' + self._openTimeout + ' ms'); },
                           this._openTimeout);

    function detach() {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try { ws.close(); } catch (e) { /* already closing */ }
    }

    function abandon(why) {
      if (abandoned) { return; }
      abandoned = true;
      clearTimeout(timer);
      detach();
      if (why) { self._tryNext(why); }
    }

    var impl = {
      send: function (data) { ws.send(data); },
      flush: function () {
        var out = self._n.outbox;
        for (var i = 0; i < out.length; i++) {
          var item = out[i];
          if (item.seq <= sentUpTo) { continue; }
          if (!item.ready || item.isClose) { break; }  // a long-polling close item: not for a socket
          // Numbers are implicit on the socket: after the hello, the client's messages
          // go from the server's ack + 1, in order; only a text beginning with '!' is escaped.
          ws.send(item.text === undefined ? item.bytes
                                          : item.text.charAt(0) === '!' ? '!' + item.text : item.text);
          sentUpTo = item.seq;
        }
      },
      sendAck: function (seq) { ws.send('!a' + seq.toString(36)); },
      close: function (code, reason) {
        if (code === undefined) { ws.close(); } else { ws.close(code, reason); }
      },
      bufferedAmount: function () { return ws.bufferedAmount; },
      abort: function () { clearTimeout(timer); detach(); }
    };

    function open() {
      opened = true;
      clearTimeout(timer);
      self._opened('websocket', impl, ws.protocol, ws.extensions);
    }

    ws.onopen = function () {
      if (!useSession) { open(); }  // with a session: open when the hello arrives
    };
    ws.onmessage = function (e) {
      var data = e.data;
      if (!useSession) { self._message(data); return; }
      if (typeof data === 'string' && data.charAt(0) === '!') {
        var kind = data.charAt(1);
        if (kind === 'h') {
          var doc = parseJson(data.slice(2));
          if (!doc || !doc.session) { abandon('bad session hello'); return; }
          self._hello(doc);
          inSeq = doc.next || 1;
          open();
          return;
        }
        if (kind === 'a') { self._serverAck(parseInt(data.slice(2), 36)); return; }
        if (kind !== '!') { return; }  // a control message of a later version
        data = data.slice(1);
      }
      self._numbered(inSeq++, data);  // numbered by its place after the hello
    };
    ws.onerror = function () { if (opened && !useSession) { self._error(); } };
    ws.onclose = function (e) {
      if (useSession && e.code === NOT_RECOVERED) {
        abandoned = true;
        clearTimeout(timer);
        self._attempt = null;
        self._notRecovered(e.reason);
        return;
      }
      if (!opened) { abandon('closed before open (code ' + e.code + ')'); return; }
      if (useSession && e.code === 1006) {
        self._transportLost('WebSocket dropped (code 1006)');
        return;
      }
      self._closed(e.code, e.reason, e.wasClean);
    };
    return { abort: function () { abandon(null); } };
  };

  // -- long-polling ------------------------------------------------------------

  WsDaemon.prototype._tryLongPolling = function () {
    var self = this;
    var body = this._protocols.length ? JSON.stringify({ protocols: this._protocols }) : '';
    var path = this._appPath;
    if (this._useSession) {
      path += (path.indexOf('?') < 0 ? '?' : '&') + SESSION_PARAM + '=' + encodeURIComponent(this._sessionParam());
    }
    var req = httpRequest('POST', this._lpBase + '/open' + path, body, this._openTimeout,
                          this._withCredentials, function (status, text) {
      var doc = parseJson(text);
      if (self._useSession && status === 410) {
        self._attempt = null;
        self._notRecovered(doc && doc.error);
        return;
      }
      if (status !== 200 || !doc || !doc.session) {
        self._tryNext('long-polling open failed: ' + describe(status, doc));
        return;
      }
      if (self._useSession) { self._hello(doc); }
      var session = new LongPollSession(self, doc);
      self._opened('long-polling', session, doc.protocol);
      session.start(doc);
    });
    return { abort: function () { req.abort(); } };
  };

  // One long-polling session: a poll loop and a queue of numbered outgoing messages.
  // With a resumable session the numbers are the session's (shared with WebSocket).
  function LongPollSession(owner, doc) {
    this.owner = owner;
    this.url = owner._lpBase + '/' + encodeURIComponent(doc.session);
    this.hold = (doc.hold || 25) * 1000;
    this.expire = (doc.expire || 30) * 1000;
    this.withCredentials = owner._withCredentials;
    this.n = owner._useSession ? owner._n : newNumbering();  // received, sent, outbox
    this.posting = null;    // the post in flight
    this.polling = null;    // the poll in flight
    this.stopped = false;
    this.closeSent = false;
    this.serverClose = null;
    this.pollFailingSince = 0;
    this.postFailingSince = 0;
    this.retryTimers = { poll: null, send: null };  // one each: a post retry must not cancel a poll's
    var self = this;
    this.onPageHide = function () { self.leave(); };
    if (global.addEventListener) { global.addEventListener('pagehide', this.onPageHide); }
  }

  LongPollSession.prototype.start = function (doc) {
    this.deliver(doc);
    this.poll();
  };

  LongPollSession.prototype.bufferedAmount = function () {
    return outboxBytes(this.n.outbox);
  };

  LongPollSession.prototype.send = function (data) {
    var self = this;
    enqueue(this.n, data, function () { self.flush(); });
    this.flush();
  };

  LongPollSession.prototype.close = function (code, reason) {
    this.closeSent = true;
    var wire = { seq: ++this.n.sent, close: code === undefined ? null : code };
    if (code !== undefined) { wire.reason = reason || ''; }
    this.closeWire = wire;
    this.n.outbox.push({ seq: wire.seq, wire: wire, size: 0, ready: true, isClose: true });
    this.flush();
  };

  LongPollSession.prototype.abort = function () { this.stop(); };

  // Messages of a poll (or open) response, each once and in order.
  LongPollSession.prototype.deliver = function (doc) {
    if (typeof doc.ack === 'number') { this.acknowledged(doc.ack); }
    var messages = doc.messages || [];
    for (var i = 0; i < messages.length && !this.stopped; i++) {
      var m = messages[i];
      if (m.seq <= this.n.received) { continue; }  // resent after a lost response
      this.n.received = m.seq;
      if (m.text !== undefined) {
        this.owner._message(m.text);
      } else if (m.binary !== undefined) {
        this.owner._message(base64ToBytes(m.binary).buffer);
      } else if (m.close !== undefined) {
        this.closedByServer(m.close === null ? 1005 : m.close, m.reason || '');
      }
    }
  };

  LongPollSession.prototype.closedByServer = function (code, reason) {
    if (this.closeSent) { this.finish(code, reason, true); return; }
    // Echo the close (so the server's on_close sees its code), then report it.
    this.serverClose = { code: code, reason: reason };
    this.owner.readyState = CLOSING;
    this.close(code === 1005 ? undefined : code, reason);
  };

  LongPollSession.prototype.poll = function () {
    var self = this;
    if (this.stopped || this.polling) { return; }
    this.polling = httpRequest('GET', this.url + '/poll?ack=' + this.n.received, null, this.hold + 15000,
                               this.withCredentials, function (status, text) {
      self.polling = null;
      if (self.stopped) { return; }
      var doc = parseJson(text);
      if (status === 200 && doc) {
        self.pollFailingSince = 0;
        self.deliver(doc);
        if (!self.serverClose) { self.poll(); }
      } else if (!self.retryable(status, doc, 'poll')) {
        return;
      } else {
        self.pollFailingSince = self.pollFailingSince || now();
        if (now() - self.pollFailingSince > self.expire) {
          self.lost('no poll answered for ' + self.expire + ' ms');
          return;
        }
        self.retryLater('poll', function () { self.poll(); }, self.pollFailingSince);
      }
    });
  };

  LongPollSession.prototype.flush = function () {
    var self = this;
    var outbox = this.n.outbox;
    if (this.stopped || this.posting || !outbox.length) { return; }
    var batch = [], bytes = 0, hasClose = false;
    for (var i = 0; i < outbox.length; i++) {
      var item = outbox[i];
      if (!item.ready || (batch.length && bytes + item.size > MAX_POST_BYTES)) { break; }
      batch.push(lpWire(item));
      bytes += item.size;
      if (item.isClose) { hasClose = true; break; }
    }
    if (!batch.length) { return; }
    var body = JSON.stringify({ messages: batch });
    this.posting = httpRequest('POST', this.url + '/send', body, 30000, this.withCredentials,
                               function (status, text) {
      self.posting = null;
      if (self.stopped) { return; }
      var doc = parseJson(text);
      if ((status === 200 || status === 409) && doc && typeof doc.ack === 'number') {
        self.postFailingSince = 0;
        self.acknowledged(doc.ack);
        if (hasClose && status === 200) { self.closeAcknowledged(); return; }
        self.flush();
      } else if (hasClose && self.serverClose) {
        self.closeAcknowledged();  // the server closed first: its close stands either way
      } else if (self.retryable(status, doc, 'send')) {
        // The same messages again: the server skips those it already has.
        self.postFailingSince = self.postFailingSince || now();
        if (now() - self.postFailingSince > self.expire) {
          self.lost('no post answered for ' + self.expire + ' ms');
          return;
        }
        self.retryLater('send', function () { self.flush(); }, self.postFailingSince);
      }
    });
  };

  LongPollSession.prototype.acknowledged = function (ack) {
    var outbox = this.n.outbox;
    while (outbox.length && outbox[0].seq <= ack) { outbox.shift(); }
  };

  LongPollSession.prototype.closeAcknowledged = function () {
    var close = this.serverClose;
    if (close) {
      this.finish(close.code, close.reason, true);
    } else {
      var mine = this.closeWire;
      this.finish(mine.close === null ? 1005 : mine.close, mine.reason || '', true);
    }
  };

  // Whether a failed request may be retried; a definite refusal ends the session.
  LongPollSession.prototype.retryable = function (status, doc, what) {
    // 0: no answer. Below 100: a status line cut short (Chromium reports "HTTP/1.1 2" as 2).
    if (status < 100 || status >= 500 || (status === 200 && !doc)) { return true; }
    if (status === 404 || status === 410) {
      this.lost('session unknown to the server (expired?)');
    } else {
      this.owner._failure = what + ' refused: ' + describe(status, doc);
      this.stop();
      this.owner._error();
      this.owner._closed(status === 413 ? 1009 : 1006, '', false);
    }
    return false;
  };

  LongPollSession.prototype.retryLater = function (which, fn, since) {
    var timers = this.retryTimers;
    var delay = Math.min(RETRY_MAX, Math.max(RETRY_MIN, (now() - since) / 2));
    clearTimeout(timers[which]);
    timers[which] = setTimeout(function () { timers[which] = null; fn(); }, delay);
  };

  // This transport is gone; with a session the client reconnects and resumes.
  LongPollSession.prototype.lost = function (why) {
    this.stop();
    if (this.owner._impl === this) { this.owner._transportLost(why); }
  };

  LongPollSession.prototype.finish = function (code, reason, wasClean) {
    this.stop();
    this.owner._closed(code, reason, wasClean);
  };

  LongPollSession.prototype.stop = function () {
    this.stopped = true;
    clearTimeout(this.retryTimers.poll);
    clearTimeout(this.retryTimers.send);
    if (this.polling) { this.polling.abort(); this.polling = null; }
    if (this.posting) { this.posting.abort(); this.posting = null; }
    if (global.removeEventListener) { global.removeEventListener('pagehide', this.onPageHide); }
  };

  // The page goes away: tell the server (1001, as a browser's WebSocket does).
  LongPollSession.prototype.leave = function () {
    if (this.stopped) { return; }
    var wire = [];
    var outbox = this.n.outbox;
    for (var i = 0; i < outbox.length; i++) {
      if (!outbox[i].ready || outbox[i].isClose) { this.stop(); return; }
      wire.push(lpWire(outbox[i]));
    }
    wire.push({ seq: this.n.sent + 1, close: 1001, reason: 'page closed' });
    var body = JSON.stringify({ messages: wire });
    this.stop();
    if (global.navigator && navigator.sendBeacon) {
      navigator.sendBeacon(this.url + '/send', body);
    }
  };

  // -- numbered outgoing messages (both transports) ------------------------------

  function newNumbering() {
    return { received: 0, sent: 0, outbox: [] };  // outbox: [{seq, text|bytes, size, ready}]
  }

  function enqueue(n, data, onReady) {
    var item = { seq: ++n.sent, text: undefined, bytes: undefined, size: 0, ready: true, wire: null };
    if (typeof data === 'string') {
      item.text = wellFormed(data);
      item.size = utf8Length(data);
    } else if (typeof Blob !== 'undefined' && data instanceof Blob) {
      item.ready = false;  // read asynchronously; later messages wait for it
      item.size = data.size;
      blobToArrayBuffer(data, function (buffer) {
        item.bytes = new Uint8Array(buffer);
        item.ready = true;
        onReady();
      });
    } else {
      item.bytes = new Uint8Array(toBytes(data));  // a copy: the caller may reuse its buffer
      item.size = item.bytes.length;
    }
    n.outbox.push(item);
    return item;
  }

  function lpWire(item) {
    if (!item.wire) {
      item.wire = item.text !== undefined ? { seq: item.seq, text: item.text }
                                          : { seq: item.seq, binary: bytesToBase64(item.bytes) };
    }
    return item.wire;
  }

  function outboxBytes(outbox) {
    var total = 0;
    for (var i = 0; i < outbox.length; i++) { total += outbox[i].size; }
    return total;
  }


  // -- helpers -----------------------------------------------------------------

  // XMLHttpRequest (not fetch) so that browsers from before fetch work too.
  // callback(status, responseText) runs once; status 0 means no answer.
  function httpRequest(method, url, body, timeout, withCredentials, callback) {
    var xhr = new XMLHttpRequest();
    var done = false;
    var timer = null;
    function finish(status, text) {
      if (done) { return; }
      done = true;
      clearTimeout(timer);
      callback(status, text);
    }
    xhr.open(method, url, true);
    if (withCredentials) { xhr.withCredentials = true; }
    xhr.onreadystatechange = function () {
      if (xhr.readyState === 4) { finish(xhr.status, xhr.responseText); }
    };
    xhr.onerror = function () { finish(0, ''); };
    timer = setTimeout(function () { try { xhr.abort(); } catch (e) { /* gone */ } finish(0, ''); }, timeout);
    if (body !== null) {
      // text/plain keeps the request "simple": no CORS preflight round trip.
      xhr.setRequestHeader('Content-Type', 'text/plain;charset=UTF-8');
    }
    try {
      xhr.send(body);
    } catch (e) {
      setTimeout(function () { finish(0, ''); }, 0);
    }
    return {
      abort: function () {
        if (done) { return; }
        done = true;
        clearTimeout(timer);
        try { xhr.abort(); } catch (e) { /* gone */ }
      }
    };
  }

  function resolveUrl(url) {
    var a = document.createElement('a');
    a.href = String(url).replace(/^ws(s?):/i, 'http$1:');
    var secure = a.protocol === 'https:';
    var host = a.host;
    var path = a.pathname.charAt(0) === '/' ? a.pathname : '/' + a.pathname;
    return {
      ws: (secure ? 'wss://' : 'ws://') + host + path + a.search,
      lpBase: (secure ? 'https://' : 'http://') + host + '/lp',
      path: path + a.search
    };
  }

  function parseJson(text) {
    if (!text) { return null; }
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function describe(status, doc) {
    return status ? 'HTTP ' + status + (doc && doc.error ? ' ' + doc.error : '') : 'no answer';
  }

  function now() { return new Date().getTime(); }

  function callSafely(fn, self, event) {
    try { fn.call(self, event); } catch (e) { setTimeout(function () { throw e; }, 0); }
  }

  function makeEvent(type) {
    try { return new Event(type); } catch (e) { return { type: type }; }
  }

  function makeMessageEvent(data) {
    try { return new MessageEvent('message', { data: data }); } catch (e) { return { type: 'message', data: data }; }
  }

  function makeCloseEvent(code, reason, wasClean) {
    var init = { code: code, reason: reason, wasClean: wasClean };
    try { return new CloseEvent('close', init); } catch (e) {
      init.type = 'close';
      return init;
    }
  }

  function domError(name, message) {
    try { return new DOMException(message, name); } catch (e) {
      var err = new Error(message);
      err.name = name;
      return err;
    }
  }

  function utf8Length(s) {
    var n = 0;
    for (var i = 0; i < s.length; i++) {
      var c = s.charCodeAt(i);
      if (c < 0x80) { n += 1; } else if (c < 0x800) { n += 2; } else if (c >= 0xd800 && c <= 0xdbff &&
        i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { n += 4; i++; } else { n += 3; }
    }
    return n;
  }

  // Lone surrogates become U+FFFD, as WebSocket.send does.
  function wellFormed(s) {
    if (s.toWellFormed) { return s.toWellFormed(); }
    return s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(^|[^\ud800-\udbff])[\udc00-\udfff]/g,
                     function (m, prefix) { return (prefix || '') + '\ufffd'; });
  }

  function toBytes(data) {
    if (data instanceof ArrayBuffer) { return new Uint8Array(data); }
    if (data && data.buffer instanceof ArrayBuffer) {
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    }
    throw new TypeError('send() takes a string, ArrayBuffer, typed array or Blob');
  }

  function blobToArrayBuffer(blob, callback) {
    if (blob.arrayBuffer) { blob.arrayBuffer().then(callback); return; }
    var reader = new FileReader();
    reader.onload = function () { callback(reader.result); };
    reader.readAsArrayBuffer(blob);
  }

  function bytesToBase64(bytes) {
    var chunks = [];
    for (var i = 0; i < bytes.length; i += 0x8000) {
      chunks.push(String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000)));
    }
    return btoa(chunks.join(''));
  }

  function base64ToBytes(text) {
    var raw = atob(text);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes;
  }

  global.WsDaemon = WsDaemon;
})(this);
