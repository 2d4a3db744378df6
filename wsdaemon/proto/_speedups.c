/* Optional C accelerator for wsdaemon: masking and framing of RFC 6455 payloads.
 *
 * apply_mask(data, mask) -> bytes, the same as wsdaemon.masking._apply_mask_python
 * but about 40x faster on large payloads: 8 bytes per step, then the tail.
 * join_unmask: a large frame's payload from its received pieces in one copy.
 * text_frame / binary_frame / session_frame: a server frame built in one allocation,
 * the same bytes as their Python versions in wsdaemon.proto.rfc6455 and .session.
 * NumberedBuffer, the base of a session's state, is in _numbered.c (same module). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

#include "_speedups.h"

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

/* join_unmask(parts, start, end, mask) -> bytes
 *
 * Bytes start..end of the concatenation of `parts` (a list of bytes), XORed with the
 * 4-byte `mask` (phase 0 at `start`) unless it is None: a large frame's payload out of
 * its received pieces in one copy, instead of a join and then an unmask. */
static PyObject *
join_unmask(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "join_unmask takes 4 arguments");
        return NULL;
    }
    PyObject *parts = args[0], *mask_obj = args[3];
    Py_ssize_t start = PyLong_AsSsize_t(args[1]), end = PyLong_AsSsize_t(args[2]);
    if ((start == -1 || end == -1) && PyErr_Occurred())
        return NULL;
    if (!PyList_Check(parts)) {
        PyErr_SetString(PyExc_TypeError, "parts must be a list of bytes");
        return NULL;
    }
    const unsigned char *mask = NULL;
    if (mask_obj != Py_None) {
        if (!PyBytes_Check(mask_obj) || PyBytes_GET_SIZE(mask_obj) != 4) {
            PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes or None");
            return NULL;
        }
        mask = (const unsigned char *)PyBytes_AS_STRING(mask_obj);
    }
    Py_ssize_t total = 0, count = PyList_GET_SIZE(parts);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *part = PyList_GET_ITEM(parts, k);
        if (!PyBytes_Check(part)) {
            PyErr_SetString(PyExc_TypeError, "parts must be a list of bytes");
            return NULL;
        }
        total += PyBytes_GET_SIZE(part);
    }
    if (start < 0 || end < start || end > total) {
        PyErr_SetString(PyExc_ValueError, "start and end must lie within the parts");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, end - start);
    if (result == NULL)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    Py_ssize_t at = 0, done = 0; /* at: offset of the part in the concatenation */
    for (Py_ssize_t k = 0; k < count && start + done < end; k++) {
        PyObject *part = PyList_GET_ITEM(parts, k);
        Py_ssize_t len = PyBytes_GET_SIZE(part);
        const unsigned char *in = (const unsigned char *)PyBytes_AS_STRING(part);
        Py_ssize_t from = start + done - at; /* first byte wanted from this part */
        at += len;
        if (from >= len)
            continue;
        Py_ssize_t n = len - from;
        if (n > end - start - done)
            n = end - start - done;
        if (mask == NULL) {
            memcpy(out + done, in + from, n);
        } else {
            unsigned char phased[4];
            for (int j = 0; j < 4; j++)
                phased[j] = mask[(done + j) & 3];
            xor_mask(out + done, in + from, n, phased);
        }
        done += n;
    }
    return result;
}

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


static PyMethodDef speedups_methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS, "Mask or unmask data with a 4-byte key."},
    {"text_frame", text_frame, METH_O, "A server's final text frame of already encoded payload."},
    {"binary_frame", binary_frame, METH_O, "A server's final binary frame."},
    {"message_frame", message_frame, METH_O, "An application message (str or bytes) as a server frame."},
    {"session_frames", session_frames, METH_O, "session_frame of each message of a list, joined."},
    {"session_frame", session_frame, METH_O, "A session message (str or bytes) as a frame, '!' escaped."},
    {"join_unmask", (PyCFunction)(void (*)(void))join_unmask, METH_FASTCALL,
     "Bytes start..end of the joined parts, unmasked unless mask is None."},
    {"scan_frames", (PyCFunction)(void (*)(void))scan_frames, METH_FASTCALL,
     "Parse complete simple data frames into events; returns where it stopped."},
    {"parse_head", (PyCFunction)(void (*)(void))parse_head, METH_FASTCALL,
     "Split a plain HTTP/1.x request head into its parts; None for any other head."},
    {"compact_items", (PyCFunction)(void (*)(void))compact_items, METH_FASTCALL,
     "Header items as a tuple, common values shared."},
    {"accept_key", accept_key, METH_O, "Sec-WebSocket-Accept (bytes) for a Sec-WebSocket-Key."},
    {"accept_nonblocking", accept_nonblocking, METH_O, "accept4 a non-blocking client of an AF_INET socket."},
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
    if (op_text == NULL || op_binary == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    if (numbered_buffer_add(module, op_text, op_binary) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
