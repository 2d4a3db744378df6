/* The functions of _speedups defined beside _speedups.c: the request head (_http_head.c), the
 * accept key (_accept_key.c), the non-blocking accept (_accept.c). */
#ifndef WSDAEMON_SPEEDUPS_H
#define WSDAEMON_SPEEDUPS_H

#include <Python.h>

PyObject *parse_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *compact_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *accept_key(PyObject *self, PyObject *key);
PyObject *accept_nonblocking(PyObject *self, PyObject *sock);

#endif
