/* The HTTP request head fast paths of _speedups (see _http_head.c). */
#ifndef WSDAEMON_HTTP_HEAD_H
#define WSDAEMON_HTTP_HEAD_H

#include <Python.h>

PyObject *parse_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *compact_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
