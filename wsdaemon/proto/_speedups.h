/* What the sources of wsdaemon.proto._speedups share: the functions defined beside _speedups.c
 * (the request head in _http_head.c, the accept key in _accept_key.c, the non-blocking accept in
 * _accept.c) and the NumberedBuffer type (_numbered.c). */
#ifndef WSDAEMON_SPEEDUPS_H
#define WSDAEMON_SPEEDUPS_H

#include <Python.h>

PyObject *parse_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *compact_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *accept_key(PyObject *self, PyObject *key);
PyObject *accept_nonblocking(PyObject *self, PyObject *sock);

/* Adds the NumberedBuffer type (_numbered.c) to the module; text and binary are the opcodes of
 * scan_frames' events, kept (not owned) for deliver's identity test. -1 with an exception set. */
int numbered_buffer_add(PyObject *module, PyObject *text, PyObject *binary);

#endif
