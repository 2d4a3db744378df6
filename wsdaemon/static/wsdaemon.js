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
// ('websocket' or 'long-polling'). No build step, no dependencies; long-polling
// uses XMLHttpRequest so that old browsers work. Wire protocol:
// docs/long-polling.md in the wsdaemon repository.
(function (global) {
  'use strict';

  var CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;
  var TRANSPORTS = ['websocket', 'long-polling'];
  var MAX_POST_BYTES = 256 * 1024;    // a post carries at most this much (unless one message is bigger)
  var RETRY_MIN = 100, RETRY_MAX = 4000;

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
    this._next = 0;
    this._attempt = null;  // the transport being tried: {abort: fn}
    this._impl = null;     // the open transport: {send, close, bufferedAmount}
    this._tried = [];      // [transport, why it failed] for each failed attempt
    this._tryNext();
  }

  WsDaemon.CONNECTING = WsDaemon.prototype.CONNECTING = CONNECTING;
  WsDaemon.OPEN = WsDaemon.prototype.OPEN = OPEN;
  WsDaemon.CLOSING = WsDaemon.prototype.CLOSING = CLOSING;
  WsDaemon.CLOSED = WsDaemon.prototype.CLOSED = CLOSED;

  // -- the WebSocket API -------------------------------------------------------

  WsDaemon.prototype.send = function (data) {
    if (this.readyState === CONNECTING) {
      throw domError('InvalidStateError', 'still in CONNECTING state');
    }
    if (this.readyState !== OPEN) { return; }  // as WebSocket: dropped once closing
    this._impl.send(data);
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
    this._impl.close(code, reason);
  };

  Object.defineProperty(WsDaemon.prototype, 'bufferedAmount', {
    get: function () { return this._impl ? this._impl.bufferedAmount() : 0; }
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
    if (this.readyState !== CONNECTING) { return; }
    if (this._next >= this._transports.length) {
      this._attempt = null;
      this._fail('no transport could open: ' + this._tried.map(function (t) {
        return t[0] + ' (' + t[1] + ')';
      }).join(', '));
      return;
    }
    var name = this._transports[this._next++];
    this._attempt = name === 'websocket' ? this._tryWebSocket() : this._tryLongPolling();
  };

  WsDaemon.prototype._opened = function (transport, impl, protocol, extensions) {
    this._attempt = null;
    this._impl = impl;
    this.transport = transport;
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
    this.readyState = CLOSED;
    this.dispatchEvent(makeCloseEvent(code, reason, wasClean));
  };

  WsDaemon.prototype._fail = function (why) {
    if (this.readyState === CLOSED) { return; }
    this.readyState = CLOSED;
    this._failure = why;
    this.dispatchEvent(makeEvent('error'));
    this.dispatchEvent(makeCloseEvent(1006, '', false));
  };

  // -- WebSocket ---------------------------------------------------------------

  WsDaemon.prototype._tryWebSocket = function () {
    var self = this;
    var ws;
    if (typeof WebSocket === 'undefined') {
      setTimeout(function () { self._tryNext('no WebSocket in this browser'); }, 0);
      return { abort: function () {} };
    }
    try {
      ws = this._protocols.length ? new WebSocket(this.url, this._protocols) : new WebSocket(this.url);
    } catch (e) {
      setTimeout(function () { self._tryNext('WebSocket refused: ' + e.message); }, 0);
      return { abort: function () {} };
    }
    ws.binaryType = 'arraybuffer';
    var opened = false, abandoned = false;
    var timer = setTimeout(function () { abandon('no open within ' + self._openTimeout + ' ms'); },
                           this._openTimeout);

    function abandon(why) {
      if (abandoned) { return; }
      abandoned = true;
      clearTimeout(timer);
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try { ws.close(); } catch (e) { /* already closing */ }
      if (why) { self._tryNext(why); }
    }

    ws.onopen = function () {
      opened = true;
      clearTimeout(timer);
      self._opened('websocket', {
        send: function (data) { ws.send(data); },
        close: function (code, reason) {
          if (code === undefined) { ws.close(); } else { ws.close(code, reason); }
        },
        bufferedAmount: function () { return ws.bufferedAmount; }
      }, ws.protocol, ws.extensions);
    };
    ws.onmessage = function (e) { self._message(e.data); };
    ws.onerror = function () { if (opened) { self._error(); } };
    ws.onclose = function (e) {
      if (!opened) { abandon('closed before open (code ' + e.code + ')'); return; }
      self._closed(e.code, e.reason, e.wasClean);
    };
    return { abort: function () { abandon(null); } };
  };

  // -- long-polling ------------------------------------------------------------

  WsDaemon.prototype._tryLongPolling = function () {
    var self = this;
    var body = this._protocols.length ? JSON.stringify({ protocols: this._protocols }) : '';
    var req = httpRequest('POST', this._lpBase + '/open' + this._appPath, body, this._openTimeout,
                          this._withCredentials, function (status, text) {
      var doc = parseJson(text);
      if (status !== 200 || !doc || !doc.session) {
        self._tryNext('long-polling open failed: ' + describe(status, doc));
        return;
      }
      var session = new LongPollSession(self, doc);
      self._opened('long-polling', session, doc.protocol);
      session.start(doc);
    });
    return { abort: function () { req.abort(); } };
  };

  // One long-polling session: a poll loop and a queue of numbered outgoing messages.
  function LongPollSession(owner, doc) {
    this.owner = owner;
    this.url = owner._lpBase + '/' + encodeURIComponent(doc.session);
    this.hold = (doc.hold || 25) * 1000;
    this.expire = (doc.expire || 30) * 1000;
    this.withCredentials = owner._withCredentials;
    this.received = 0;      // last server sequence number delivered
    this.sent = 0;          // last client sequence number assigned
    this.outbox = [];       // [{seq, wire, size, ready}] not yet acknowledged
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
    var total = 0;
    for (var i = 0; i < this.outbox.length; i++) { total += this.outbox[i].size; }
    return total;
  };

  LongPollSession.prototype.send = function (data) {
    var self = this;
    var item = { seq: ++this.sent, wire: null, size: 0, ready: true };
    if (typeof data === 'string') {
      item.wire = { seq: item.seq, text: wellFormed(data) };
      item.size = utf8Length(data);
    } else if (typeof Blob !== 'undefined' && data instanceof Blob) {
      item.ready = false;  // read asynchronously; later messages wait for it
      item.size = data.size;
      blobToArrayBuffer(data, function (buffer) {
        item.wire = { seq: item.seq, binary: bytesToBase64(new Uint8Array(buffer)) };
        item.ready = true;
        self.flush();
      });
    } else {
      var bytes = toBytes(data);
      item.wire = { seq: item.seq, binary: bytesToBase64(bytes) };
      item.size = bytes.length;
    }
    this.outbox.push(item);
    this.flush();
  };

  LongPollSession.prototype.close = function (code, reason) {
    this.closeSent = true;
    var wire = { seq: ++this.sent, close: code === undefined ? null : code };
    if (code !== undefined) { wire.reason = reason || ''; }
    this.closeWire = wire;
    this.outbox.push({ seq: wire.seq, wire: wire, size: 0, ready: true, isClose: true });
    this.flush();
  };

  // Messages of a poll (or open) response, each once and in order.
  LongPollSession.prototype.deliver = function (doc) {
    if (typeof doc.ack === 'number') { this.acknowledged(doc.ack); }
    var messages = doc.messages || [];
    for (var i = 0; i < messages.length && !this.stopped; i++) {
      var m = messages[i];
      if (m.seq <= this.received) { continue; }  // resent after a lost response
      this.received = m.seq;
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
    this.polling = httpRequest('GET', this.url + '/poll?ack=' + this.received, null, this.hold + 15000,
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
    if (this.stopped || this.posting || !this.outbox.length) { return; }
    var batch = [], bytes = 0, hasClose = false;
    for (var i = 0; i < this.outbox.length; i++) {
      var item = this.outbox[i];
      if (!item.ready || (batch.length && bytes + item.size > MAX_POST_BYTES)) { break; }
      batch.push(item.wire);
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
    while (this.outbox.length && this.outbox[0].seq <= ack) { this.outbox.shift(); }
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
    if (status === 404) {
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

  LongPollSession.prototype.lost = function (why) {
    this.owner._failure = why;
    this.stop();
    this.owner._error();
    this.owner._closed(1006, '', false);
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
    for (var i = 0; i < this.outbox.length; i++) {
      if (!this.outbox[i].ready || this.outbox[i].isClose) { this.stop(); return; }
      wire.push(this.outbox[i].wire);
    }
    wire.push({ seq: this.sent + 1, close: 1001, reason: 'page closed' });
    var body = JSON.stringify({ messages: wire });
    this.stop();
    if (global.navigator && navigator.sendBeacon) {
      navigator.sendBeacon(this.url + '/send', body);
    }
  };

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
