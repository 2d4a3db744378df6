/* What the two sources of wsdaemon.proto._speedups share. */
#ifndef WSDAEMON_SPEEDUPS_H
#define WSDAEMON_SPEEDUPS_H

#include <Python.h>

/* Adds the NumberedBuffer type (_numbered.c) to the module; text and binary are the opcodes of
 * scan_frames' events, kept (not owned) for deliver's identity test. -1 with an exception set. */
int numbered_buffer_add(PyObject *module, PyObject *text, PyObject *binary);

#endif
