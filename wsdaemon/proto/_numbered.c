/* NumberedBuffer of wsdaemon.proto._speedups (built with _speedups.c, one module): the base of
 * wsdaemon.proto.session.SessionState, whose Python twin is _NumberedBufferPython there. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <structmember.h>

#include "_speedups.h"

/* The opcodes of scan_frames' events (the module's int objects): compared by identity first. */
static PyObject *op_text, *op_binary;

/* NumberedBuffer: the counters and the kept messages of a session's outbound numbering, the base
 * of wsdaemon.proto.session.SessionState (which has the same class in Python as its fallback).
 * push_plain() is the one operation per message: number and keep it, within the byte limit;
 * acknowledge() drops what the peer confirmed. The counters are C integers (T_LONGLONG members):
 * the per-message push allocates no int; Python code reading one gets a new int, a few per read. */
#define NB_COUNTERS(X) X(max_bytes) X(first_seq) X(bytes) X(sent_seq) X(acked_seq) X(carried_seq) \
    X(received_seq) X(close_seq) X(replaced)
#define NB_DECLARE(name) long long name;
typedef struct {
    PyObject_HEAD
    PyObject *entries;
    PyObject *keyed;
    NB_COUNTERS(NB_DECLARE)
} NumberedBuffer;

static int
nb_traverse(NumberedBuffer *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->entries);
    Py_VISIT(self->keyed);
    return 0;
}

static int
nb_clear(NumberedBuffer *self)
{
    Py_CLEAR(self->entries);
    Py_CLEAR(self->keyed);
    return 0;
}

static void
nb_dealloc(NumberedBuffer *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    nb_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
nb_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    NumberedBuffer *self = (NumberedBuffer *)type->tp_alloc(type, 0); /* counters zeroed */
    if (self == NULL)
        return NULL;
    self->entries = PyList_New(0);
    self->keyed = PyDict_New();
    if (self->entries == NULL || self->keyed == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->first_seq = 1;
    return (PyObject *)self;
}

static int
nb_init(NumberedBuffer *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"max_bytes", NULL};
    long long max_bytes = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|L:NumberedBuffer", names, &max_bytes))
        return -1;
    self->max_bytes = max_bytes;
    return 0;
}

/* len() of a kept message: str and bytes without a call; a Close (a tuple) counts no bytes when
 * trimmed (acknowledge), its len() when pushed (push_plain is never given one). */
static inline Py_ssize_t
nb_size(PyObject *message)
{
    if (PyUnicode_CheckExact(message))
        return PyUnicode_GET_LENGTH(message);
    if (PyBytes_CheckExact(message))
        return PyBytes_GET_SIZE(message);
    return PyObject_Size(message);
}

/* push_plain(message) -> bool: number and keep an unkeyed message, a str or bytes (exactly; else
 * TypeError); False (nothing kept) when it would put the unacknowledged bytes over max_bytes. Keys
 * seen before it replace nothing after it. */
static PyObject *
nb_push_plain(NumberedBuffer *self, PyObject *message)
{
    if (!PyUnicode_CheckExact(message) && !PyBytes_CheckExact(message)) {
        PyErr_Format(PyExc_TypeError, "push_plain takes str or bytes, not %.100s", Py_TYPE(message)->tp_name);
        return NULL;
    }
    Py_ssize_t size = nb_size(message);
    if (PyDict_Check(self->keyed) && PyDict_GET_SIZE(self->keyed))
        PyDict_Clear(self->keyed);
    long long total = self->bytes + size;
    if (self->max_bytes && total > self->max_bytes)
        Py_RETURN_FALSE;
    if (!PyList_Check(self->entries)) {
        PyErr_SetString(PyExc_TypeError, "entries must be a list");
        return NULL;
    }
    if (PyList_Append(self->entries, message) < 0)
        return NULL;
    self->sent_seq += 1;
    self->bytes = total;
    Py_RETURN_TRUE;
}

/* ProtocolError(reason) of wsdaemon.proto.errors, raised (imported when first needed). */
static void
nb_protocol_error(const char *format, long long a, long long b)
{
    PyObject *module = PyImport_ImportModule("wsdaemon.proto.errors");
    if (module == NULL)
        return;
    PyObject *cls = PyObject_GetAttrString(module, "ProtocolError");
    Py_DECREF(module);
    if (cls == NULL)
        return;
    PyObject *reason = PyUnicode_FromFormat(format, a, b);
    if (reason != NULL) {
        PyObject *exc = PyObject_CallOneArg(cls, reason);
        if (exc != NULL) {
            PyErr_SetObject(cls, exc);
            Py_DECREF(exc);
        }
        Py_DECREF(reason);
    }
    Py_DECREF(cls);
}

/* acknowledge(ack) -> bool: drop the messages up to ack; True when that confirms the close.
 * A stale ack changes nothing; one beyond the last number sent is a ProtocolError. */
static PyObject *
nb_acknowledge(NumberedBuffer *self, PyObject *arg)
{
    long long ack = PyLong_AsLongLong(arg);
    if (ack == -1 && PyErr_Occurred())
        return NULL;
    if (ack > self->sent_seq) {
        nb_protocol_error("ack %lld for a message never sent (last is %lld)", ack, self->sent_seq);
        return NULL;
    }
    if (ack > self->acked_seq) {
        if (!PyList_Check(self->entries)) {
            PyErr_SetString(PyExc_TypeError, "entries must be a list");
            return NULL;
        }
        self->acked_seq = ack;
        if (ack > self->carried_seq)
            self->carried_seq = ack;
        Py_ssize_t count = PyList_GET_SIZE(self->entries);
        if (ack - self->first_seq + 1 < count)
            count = (Py_ssize_t)(ack - self->first_seq + 1);
        if (count > 0) {
            long long freed = 0;
            for (Py_ssize_t i = 0; i < count; i++) {
                PyObject *entry = PyList_GET_ITEM(self->entries, i);
                if (PyTuple_Check(entry)) /* the Close: last, and counts no bytes */
                    continue;
                Py_ssize_t n = nb_size(entry);
                if (n < 0)
                    return NULL;
                freed += n;
            }
            if (PyList_SetSlice(self->entries, 0, count, NULL) < 0)
                return NULL;
            self->first_seq += count;
            self->bytes -= freed;
        }
    }
    return PyBool_FromLong(self->close_seq && ack >= self->close_seq);
}

static PyObject *str_state, *str_callback_failed, *str_on_message;

/* session._callback_failed("on_message") for the exception being raised, which it sees as handled
 * (sys.exc_info(), for its log.exception), as in the Python twin's except clause. */
static int
nb_callback_failed(PyObject *session)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    PyObject *previous = PyErr_GetHandledException();
    PyErr_SetHandledException(value != NULL ? value : Py_None);
    PyObject *result = PyObject_CallMethodOneArg(session, str_callback_failed, str_on_message);
    PyErr_SetHandledException(previous != NULL ? previous : Py_None);
    Py_XDECREF(previous);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* deliver(events, start, session, handle, open_state) -> index: the messages of events[start:]
 * ((opcode, value) pairs of one read), each counted in received_seq and handed to
 * handle(session, message) while session.state == open_state (a text's leading "!!" loses one
 * "!"; an Exception of the handler goes to session._callback_failed("on_message")). Stops at the
 * first event that is not a message (a control text, a ping, a close, an error) and returns its
 * index, len(events) when there is none. The Python twin is _NumberedBufferPython.deliver. */
static PyObject *
nb_deliver(NumberedBuffer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "deliver(events: list, start, session, handle, open_state)");
        return NULL;
    }
    PyObject *events = args[0], *session = args[2], *handle = args[3], *open_state = args[4];
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0)
        i = 0;
    for (; i < PyList_GET_SIZE(events); i++) {
        PyObject *event = PyList_GET_ITEM(events, i);
        if (!PyTuple_Check(event) || PyTuple_GET_SIZE(event) != 2) {
            PyErr_SetString(PyExc_TypeError, "an event is a (kind, value) pair");
            return NULL;
        }
        PyObject *kind = PyTuple_GET_ITEM(event, 0);
        long k = kind == op_text ? 1 : kind == op_binary ? 2 : -2;
        if (k == -2 && PyLong_Check(kind)) {
            k = PyLong_AsLong(kind);
            if (k == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                k = -2;
            }
        }
        PyObject *message = PyTuple_GET_ITEM(event, 1);
        Py_INCREF(message);
        if (k == 1) {
            if (PyUnicode_Check(message) && PyUnicode_GET_LENGTH(message)
                && PyUnicode_READ_CHAR(message, 0) == '!') {
                Py_ssize_t n = PyUnicode_GET_LENGTH(message);
                if (n < 2 || PyUnicode_READ_CHAR(message, 1) != '!') {
                    Py_DECREF(message);
                    break; /* a control message: the caller's */
                }
                Py_SETREF(message, PyUnicode_Substring(message, 1, n));
                if (message == NULL)
                    return NULL;
            }
        }
        else if (k != 2) {
            Py_DECREF(message);
            break; /* a ping, pong, close or error: the caller's */
        }
        self->received_seq += 1;
        PyObject *state = PyObject_GetAttr(session, str_state);
        if (state == NULL) {
            Py_DECREF(message);
            return NULL;
        }
        int open = state == open_state ? 1 : PyObject_RichCompareBool(state, open_state, Py_EQ);
        Py_DECREF(state);
        if (open > 0) {
            PyObject *argv[2] = {session, message};
            PyObject *result = PyObject_Vectorcall(handle, argv, 2, NULL);
            if (result != NULL)
                Py_DECREF(result);
            else if (!PyErr_ExceptionMatches(PyExc_Exception) || nb_callback_failed(session) < 0)
                open = -1;
        }
        Py_DECREF(message);
        if (open < 0)
            return NULL;
    }
    return PyLong_FromSsize_t(i);
}

static PyMethodDef nb_methods[] = {
    {"push_plain", (PyCFunction)nb_push_plain, METH_O, "Number and keep an unkeyed message; False when full."},
    {"acknowledge", (PyCFunction)nb_acknowledge, METH_O, "Drop messages up to ack; True when that confirms the close."},
    {"deliver", (PyCFunction)(void (*)(void))nb_deliver, METH_FASTCALL,
     "Number the messages of events[start:] and hand them to handle; the index of the first other event."},
    {NULL, NULL, 0, NULL},
};

#define NB_MEMBER(name) {#name, T_LONGLONG, offsetof(NumberedBuffer, name), 0, NULL},
static PyMemberDef nb_members[] = {
    {"entries", T_OBJECT_EX, offsetof(NumberedBuffer, entries), 0, NULL},
    {"keyed", T_OBJECT_EX, offsetof(NumberedBuffer, keyed), 0, NULL},
    NB_COUNTERS(NB_MEMBER)
    {NULL},
};

static PyType_Slot nb_slots[] = {
    {Py_tp_doc, "The numbering and kept messages of a session (base of SessionState)."},
    {Py_tp_new, nb_new},
    {Py_tp_init, nb_init},
    {Py_tp_dealloc, nb_dealloc},
    {Py_tp_traverse, nb_traverse},
    {Py_tp_clear, nb_clear},
    {Py_tp_methods, nb_methods},
    {Py_tp_members, nb_members},
    {0, NULL},
};

static PyType_Spec nb_spec = {
    "wsdaemon.proto._speedups.NumberedBuffer",
    sizeof(NumberedBuffer),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    nb_slots,
};

int
numbered_buffer_add(PyObject *module, PyObject *text, PyObject *binary)
{
    op_text = text;
    op_binary = binary;
    str_state = PyUnicode_InternFromString("state");
    str_callback_failed = PyUnicode_InternFromString("_callback_failed");
    str_on_message = PyUnicode_InternFromString("on_message");
    if (str_state == NULL || str_callback_failed == NULL || str_on_message == NULL)
        return -1;
    PyObject *nb_type = PyType_FromSpec(&nb_spec);
    if (nb_type == NULL || PyModule_AddObject(module, "NumberedBuffer", nb_type) < 0) {
        Py_XDECREF(nb_type);
        return -1;
    }
    return 0;
}
