"""Pure protocol codecs: bytes in, events out; no sockets, no I/O."""
