/* Optional C accelerator for wsdaemon: masking and framing of RFC 6455 payloads.
 *
 * apply_mask(data, mask) -> bytes, the same as wsdaemon.masking._apply_mask_python
 * but about 40x faster on large payloads: 8 bytes per step, then the tail.
 * text_frame / binary_frame / session_frame: a server frame built in one allocation,
 * the same bytes as their Python versions in wsdaemon.proto.rfc6455 and .session. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

static void xor_mask(unsigned char *out, const unsigned char *in, Py_ssize_t n, const unsigned char *m);

static PyObject *
apply_mask(PyObject *self, PyObject *args)
{
    Py_buffer data, mask;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "y*y*:apply_mask", &data, &mask))
        return NULL;
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL)
        goto done;

    Py_BEGIN_ALLOW_THREADS
    xor_mask((unsigned char *)PyBytes_AS_STRING(result), data.buf, data.len, mask.buf);
    Py_END_ALLOW_THREADS

done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;
}

/* XOR `n` bytes of `in` with the 4-byte `m` into `out` (which may be `in`). */
static void
xor_mask(unsigned char *out, const unsigned char *in, Py_ssize_t n, const unsigned char *m)
{
    uint64_t m8;
    unsigned char m8b[8] = {m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]};
    memcpy(&m8, m8b, 8);
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, in + i, 8);
        word ^= m8;
        memcpy(out + i, &word, 8);
    }
    for (; i < n; i++)
        out[i] = in[i] ^ m[i & 3];
}

static PyObject *op_text, *op_binary;

/* scan_frames(data, pos, stop, events, max_size, require_mask) -> pos
 *
 * The fast path of FrameParser.feed: appends (opcode, payload) for each complete,
 * final, masked text or binary frame with no RSV bit that starts below `stop` and
 * is at most `max_size` bytes; text is decoded as UTF-8. Stops at the first frame
 * that is anything else (control, fragment, incomplete, invalid UTF-8, too large)
 * and returns where it stopped: the Python loop handles that frame, errors included. */
static PyObject *
scan_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "scan_frames takes 6 arguments");
        return NULL;
    }
    PyObject *events = args[3];
    if (!PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "events must be a list");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t stop = PyLong_AsSsize_t(args[2]);
    long long max_size = PyLong_AsLongLong(args[4]);
    int require_mask = PyObject_IsTrue(args[5]);
    if ((pos == -1 || stop == -1 || max_size == -1 || require_mask < 0) && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t n = view.len;
    if (stop > n - 1)
        stop = n - 1;
    unsigned char small[4096];

    while (pos < stop) {
        unsigned char b0 = buf[pos], b1 = buf[pos + 1];
        int opcode = b0 & 0x0F;
        if ((b0 & 0xF0) != 0x80 || (opcode != 1 && opcode != 2))
            break; /* fragment, RSV bit, control or unknown opcode */
        Py_ssize_t hdr = 2;
        unsigned long long length = b1 & 0x7F;
        if (length == 126) {
            if (n - pos < 4)
                break;
            length = ((unsigned)buf[pos + 2] << 8) | buf[pos + 3];
            hdr = 4;
        }
        else if (length == 127) {
            if (n - pos < 10)
                break;
            length = 0;
            for (int i = 0; i < 8; i++)
                length = (length << 8) | buf[pos + 2 + i];
            hdr = 10;
        }
        if (length > (unsigned long long)max_size)
            break;
        const unsigned char *mask = NULL;
        if (b1 & 0x80) {
            if (n - pos < hdr + 4)
                break;
            mask = buf + pos + hdr;
            hdr += 4;
        }
        else if (require_mask)
            break;
        if ((unsigned long long)(n - pos - hdr) < length)
            break; /* incomplete */
        const unsigned char *payload = buf + pos + hdr;
        Py_ssize_t len = (Py_ssize_t)length;
        PyObject *value;
        if (opcode == 1) {
            const unsigned char *text = payload;
            unsigned char *tmp = NULL;
            if (mask) {
                tmp = len <= (Py_ssize_t)sizeof(small) ? small : PyMem_Malloc(len ? len : 1);
                if (tmp == NULL) {
                    PyErr_NoMemory();
                    goto error;
                }
                xor_mask(tmp, payload, len, mask);
                text = tmp;
            }
            value = PyUnicode_DecodeUTF8((const char *)text, len, NULL);
            if (tmp != NULL && tmp != small)
                PyMem_Free(tmp);
            if (value == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                    goto error;
                PyErr_Clear();
                break; /* the Python path raises the protocol error */
            }
        }
        else {
            value = PyBytes_FromStringAndSize(NULL, len);
            if (value == NULL)
                goto error;
            if (mask)
                xor_mask((unsigned char *)PyBytes_AS_STRING(value), payload, len, mask);
            else
                memcpy(PyBytes_AS_STRING(value), payload, len);
        }
        PyObject *event = PyTuple_Pack(2, opcode == 1 ? op_text : op_binary, value);
        Py_DECREF(value);
        if (event == NULL)
            goto error;
        int rc = PyList_Append(events, event);
        Py_DECREF(event);
        if (rc < 0)
            goto error;
        pos += hdr + len;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(pos);
error:
    PyBuffer_Release(&view);
    return NULL;
}

/* Header of an unmasked final frame of `opcode` with `n` payload bytes; returns its length. */
static Py_ssize_t
frame_head(unsigned char *h, int opcode, Py_ssize_t n)
{
    h[0] = 0x80 | opcode;
    if (n < 126) {
        h[1] = (unsigned char)n;
        return 2;
    }
    if (n < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((unsigned long long)n >> (56 - 8 * i));
    return 10;
}

/* One frame: header, then `prefix` (0 or 1 byte), then `n` bytes of `data`. */
static PyObject *
build_frame(int opcode, const char *prefix, Py_ssize_t prefix_len, const char *data, Py_ssize_t n)
{
    unsigned char head[10];
    Py_ssize_t hlen = frame_head(head, opcode, n + prefix_len);
    PyObject *result = PyBytes_FromStringAndSize(NULL, hlen + prefix_len + n);
    if (result == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(result);
    memcpy(out, head, hlen);
    if (prefix_len)
        memcpy(out + hlen, prefix, prefix_len);
    memcpy(out + hlen + prefix_len, data, n);
    return result;
}

static PyObject *
frame_of_buffer(PyObject *payload, int opcode)
{
    if (PyBytes_CheckExact(payload))
        return build_frame(opcode, NULL, 0, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload));
    Py_buffer view;
    if (PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = build_frame(opcode, NULL, 0, view.buf, view.len);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
text_frame(PyObject *self, PyObject *payload)
{
    return frame_of_buffer(payload, 0x1);
}

static PyObject *
binary_frame(PyObject *self, PyObject *payload)
{
    return frame_of_buffer(payload, 0x2);
}

/* A session's numbered message as a frame: str -> text, a leading "!" doubled (the envelope's
 * escape); bytes -> binary, as it is. */
static PyObject *
session_frame(PyObject *self, PyObject *message)
{
    if (PyUnicode_Check(message)) {
        Py_ssize_t n;
        const char *utf8 = PyUnicode_AsUTF8AndSize(message, &n);
        if (utf8 == NULL)
            return NULL;
        if (n && utf8[0] == '!')
            return build_frame(0x1, "!", 1, utf8, n);
        return build_frame(0x1, NULL, 0, utf8, n);
    }
    if (PyBytes_Check(message))
        return build_frame(0x2, NULL, 0, PyBytes_AS_STRING(message), PyBytes_GET_SIZE(message));
    PyErr_Format(PyExc_TypeError, "a session message is str or bytes, not %.100s", Py_TYPE(message)->tp_name);
    return NULL;
}

/* An application message as a server frame: str -> text (UTF-8), bytes-like -> binary. */
static PyObject *
message_frame(PyObject *self, PyObject *message)
{
    if (PyUnicode_Check(message)) {
        Py_ssize_t n;
        const char *utf8 = PyUnicode_AsUTF8AndSize(message, &n);
        if (utf8 == NULL)
            return NULL;
        return build_frame(0x1, NULL, 0, utf8, n);
    }
    if (PyBytes_Check(message))
        return build_frame(0x2, NULL, 0, PyBytes_AS_STRING(message), PyBytes_GET_SIZE(message));
    if (PyByteArray_Check(message) || PyMemoryView_Check(message))
        return frame_of_buffer(message, 0x2);
    PyErr_Format(PyExc_TypeError, "send() takes str or bytes, not %.100s", Py_TYPE(message)->tp_name);
    return NULL;
}

/* The bytes of one session message for session_frames: pointer, length, opcode, escaped. */
static int
session_part(PyObject *message, const char **data, Py_ssize_t *n, int *opcode, int *escaped)
{
    if (PyUnicode_Check(message)) {
        *data = PyUnicode_AsUTF8AndSize(message, n);
        if (*data == NULL)
            return -1;
        *opcode = 0x1;
        *escaped = *n && (*data)[0] == '!';
        return 0;
    }
    if (PyBytes_Check(message)) {
        *data = PyBytes_AS_STRING(message);
        *n = PyBytes_GET_SIZE(message);
        *opcode = 0x2;
        *escaped = 0;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "a session message is str or bytes, not %.100s", Py_TYPE(message)->tp_name);
    return -1;
}

/* session_frames(messages) -> bytes: session_frame of each, joined, in one allocation. */
static PyObject *
session_frames(PyObject *self, PyObject *messages)
{
    if (!PyList_Check(messages)) {
        PyErr_SetString(PyExc_TypeError, "session_frames takes a list");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(messages), total = 0;
    const char *data;
    Py_ssize_t n;
    int opcode, escaped;
    unsigned char head[10];
    for (Py_ssize_t i = 0; i < count; i++) {
        if (session_part(PyList_GET_ITEM(messages, i), &data, &n, &opcode, &escaped) < 0)
            return NULL;
        total += frame_head(head, opcode, n + escaped) + escaped + n;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < count; i++) {
        session_part(PyList_GET_ITEM(messages, i), &data, &n, &opcode, &escaped);
        Py_ssize_t hlen = frame_head((unsigned char *)out, opcode, n + escaped);
        out += hlen;
        if (escaped)
            *out++ = '!';
        memcpy(out, data, n);
        out += n;
    }
    return result;
}


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

/* push_plain(message) -> bool: number and keep an unkeyed message; False (nothing kept) when it
 * would put the unacknowledged bytes over max_bytes. Keys seen before it replace nothing after it. */
static PyObject *
nb_push_plain(NumberedBuffer *self, PyObject *message)
{
    Py_ssize_t size = nb_size(message);
    if (size < 0)
        return NULL;
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

static PyMethodDef speedups_methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS, "Mask or unmask data with a 4-byte key."},
    {"text_frame", text_frame, METH_O, "A server's final text frame of already encoded payload."},
    {"binary_frame", binary_frame, METH_O, "A server's final binary frame."},
    {"message_frame", message_frame, METH_O, "An application message (str or bytes) as a server frame."},
    {"session_frames", session_frames, METH_O, "session_frame of each message of a list, joined."},
    {"session_frame", session_frame, METH_O, "A session message (str or bytes) as a frame, '!' escaped."},
    {"scan_frames", (PyCFunction)(void (*)(void))scan_frames, METH_FASTCALL,
     "Parse complete simple data frames into events; returns where it stopped."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "wsdaemon._speedups", "C accelerator for wsdaemon.", -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    op_text = PyLong_FromLong(1);
    op_binary = PyLong_FromLong(2);
    str_state = PyUnicode_InternFromString("state");
    str_callback_failed = PyUnicode_InternFromString("_callback_failed");
    str_on_message = PyUnicode_InternFromString("on_message");
    if (op_text == NULL || op_binary == NULL || str_state == NULL || str_callback_failed == NULL
        || str_on_message == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    PyObject *nb_type = PyType_FromSpec(&nb_spec);
    if (nb_type == NULL || PyModule_AddObject(module, "NumberedBuffer", nb_type) < 0) {
        Py_XDECREF(nb_type);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
