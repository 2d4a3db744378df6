/* accept_key(key: str) -> bytes: Sec-WebSocket-Accept for an ASCII Sec-WebSocket-Key, the base64 of
 * the SHA-1 of the key and the RFC 6455 GUID (FIPS 180-4 SHA-1, one call, no hashlib object).
 * A key that is not ASCII raises the UnicodeEncodeError of ``key.encode("ascii")``. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_speedups.h"

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void
sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], t;
#define STEP(f, k, i)                                     \
    t = ROL(a, 5) + (f) + e + (uint32_t)(k) + w[i];       \
    e = d;                                                \
    d = c;                                                \
    c = ROL(b, 30);                                       \
    b = a;                                                \
    a = t;
    for (int i = 0; i < 20; i++) {
        STEP(d ^ (b & (c ^ d)), 0x5A827999, i)
    }
    for (int i = 20; i < 40; i++) {
        STEP(b ^ c ^ d, 0x6ED9EBA1, i)
    }
    for (int i = 40; i < 60; i++) {
        STEP((b & c) | (d & (b | c)), 0x8F1BBCDC, i)
    }
    for (int i = 60; i < 80; i++) {
        STEP(b ^ c ^ d, 0xCA62C1D6, i)
    }
#undef STEP
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

/* SHA-1 of the `n` bytes at `msg` into `out`. */
static void
sha1(const unsigned char *msg, size_t n, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t done = 0;
    for (; n - done >= 64; done += 64)
        sha1_block(h, msg + done);
    unsigned char tail[128] = {0};
    size_t rest = n - done;
    memcpy(tail, msg + done, rest);
    tail[rest] = 0x80;
    size_t blocks = rest + 9 <= 64 ? 1 : 2;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++)
        tail[blocks * 64 - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < blocks; i++)
        sha1_block(h, tail + 64 * i);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

PyObject *
accept_key(PyObject *self, PyObject *key)
{
    if (!PyUnicode_Check(key)) {
        PyErr_Format(PyExc_TypeError, "accept_key() takes a str, not %.100s", Py_TYPE(key)->tp_name);
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(key)) {
        PyObject *fails = PyUnicode_AsASCIIString(key); /* the UnicodeEncodeError of key.encode("ascii") */
        Py_XDECREF(fails);
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(key);
    const char *text = (const char *)PyUnicode_DATA(key);
    unsigned char small[256], digest[21] = {0};
    size_t total = (size_t)n + sizeof(GUID) - 1;
    unsigned char *msg = total <= sizeof(small) ? small : PyMem_Malloc(total);
    if (msg == NULL)
        return PyErr_NoMemory();
    memcpy(msg, text, n);
    memcpy(msg + n, GUID, sizeof(GUID) - 1);
    sha1(msg, total, digest);
    if (msg != small)
        PyMem_Free(msg);
    char out[28];
    for (int i = 0, j = 0; i < 21; i += 3, j += 4) {
        uint32_t v = (uint32_t)digest[i] << 16 | (uint32_t)digest[i + 1] << 8 | digest[i + 2];
        out[j] = B64[v >> 18];
        out[j + 1] = B64[(v >> 12) & 63];
        out[j + 2] = B64[(v >> 6) & 63];
        out[j + 3] = B64[v & 63];
    }
    out[27] = '=';
    return PyBytes_FromStringAndSize(out, 28);
}
