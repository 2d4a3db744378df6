/* The handshake fast paths of _speedups: the request head (_http_head.c), the accept key (_accept_key.c). */
#ifndef WSDAEMON_HANDSHAKE_H
#define WSDAEMON_HANDSHAKE_H

#include <Python.h>

PyObject *parse_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *compact_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *accept_key(PyObject *self, PyObject *key);

#endif
