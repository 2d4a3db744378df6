// wsdaemon.js: the client library with WebSocket -> long-polling fallback.
// Placeholder until the long-polling transport exists; for now it is a thin
// wrapper over the browser's WebSocket with the same surface.
(function (global) {
  'use strict';
  function WsDaemon(url) {
    return new WebSocket(url);
  }
  global.WsDaemon = WsDaemon;
})(this);
