/* The fast paths of wsdaemon.proto.http11 for _speedups: the request head split, the compaction.
 *
 * parse_head(head, names, lowers, names_max, max_headers) -> (method, target, version, items, index)
 * or None. None: the head is not of the plain shape _GOOD_HEAD_RE accepts (token method, visible
 * ASCII target, HTTP/1.x, token names, values without controls) or has more than `max_headers`
 * lines; the Python line by line parse then says what is wrong. Otherwise the result is what the
 * Python fast path builds: latin-1 strings, values stripped of spaces and tabs, `items` the
 * (name, value) pairs in order, `index` lower-case name -> [values]. `names` shares one string per
 * header name and `lowers` its lower-case form (both filled while `names` has fewer than
 * `names_max` entries). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_speedups.h"

/* RFC 9110 tchar: ! # $ % & ' * + - . ^ _ ` | ~ DIGIT ALPHA */
static int
is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return 1;
    default:
        return 0;
    }
}

/* Field value bytes: HTAB, SP to '~', 0x80 to 0xff. */
static int
is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* The shared name for the `n` bytes at `p` and its lower-case form (new references). */
static int
header_name(const char *p, Py_ssize_t n, PyObject *names, PyObject *lowers, Py_ssize_t names_max,
            PyObject **name_out, PyObject **key_out)
{
    PyObject *name = PyUnicode_DecodeLatin1(p, n, NULL);
    if (name == NULL)
        return -1;
    PyObject *shared = PyDict_GetItemWithError(names, name);
    if (shared != NULL) {
        PyObject *key = PyDict_GetItemWithError(lowers, shared);
        if (key != NULL) {
            Py_INCREF(shared);
            Py_INCREF(key);
            Py_DECREF(name);
            *name_out = shared;
            *key_out = key;
            return 0;
        }
        if (PyErr_Occurred())
            goto fail;
        Py_INCREF(shared);
        Py_SETREF(name, shared);
    } else if (PyErr_Occurred()) {
        goto fail;
    }
    char lower[256];
    PyObject *key;
    if (n <= (Py_ssize_t)sizeof(lower)) {
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            lower[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : (char)c;
        }
        key = PyUnicode_DecodeLatin1(lower, n, NULL);
    } else {
        key = PyObject_CallMethod(name, "lower", NULL);
    }
    if (key == NULL)
        goto fail;
    if (shared == NULL && PyDict_GET_SIZE(names) < names_max) {
        if (PyDict_SetItem(names, name, name) < 0 || PyDict_SetItem(lowers, name, key) < 0) {
            Py_DECREF(key);
            goto fail;
        }
    } else if (shared != NULL && PyDict_SetItem(lowers, name, key) < 0) {
        Py_DECREF(key);
        goto fail;
    }
    *name_out = name;
    *key_out = key;
    return 0;
fail:
    Py_DECREF(name);
    return -1;
}

/* Where the request line's shape ends (at CR or the end), or -1 when it is not the plain one. */
static Py_ssize_t
request_line_end(const unsigned char *s, Py_ssize_t len, Py_ssize_t *sp1, Py_ssize_t *sp2)
{
    Py_ssize_t i = 0;
    while (i < len && is_tchar(s[i]))
        i++;
    if (i == 0 || i >= len || s[i] != ' ')
        return -1;
    *sp1 = i++;
    Py_ssize_t start = i;
    while (i < len && s[i] >= 0x21 && s[i] <= 0x7e)
        i++;
    if (i == start || i >= len || s[i] != ' ')
        return -1;
    *sp2 = i++;
    if (len - i < 8 || memcmp(s + i, "HTTP/1.", 7) != 0 || s[i + 7] < '0' || s[i + 7] > '9')
        return -1;
    return i + 8;
}

PyObject *
parse_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyBytes_Check(args[0]) || !PyDict_Check(args[1]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "parse_head(head, names, lowers, names_max, max_headers)");
        return NULL;
    }
    Py_ssize_t names_max = PyLong_AsSsize_t(args[3]);
    Py_ssize_t max_headers = PyLong_AsSsize_t(args[4]);
    if ((names_max == -1 || max_headers == -1) && PyErr_Occurred())
        return NULL;
    PyObject *names = args[1], *lowers = args[2];
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t sp1, sp2;
    Py_ssize_t pos = request_line_end(s, len, &sp1, &sp2);
    if (pos < 0)
        Py_RETURN_NONE;

    /* Check the whole head before building anything: most heads pass, the others are rare. */
    Py_ssize_t lines = 0;
    for (Py_ssize_t i = pos; i < len;) {
        if (len - i < 3 || s[i] != '\r' || s[i + 1] != '\n')
            Py_RETURN_NONE;
        i += 2;
        Py_ssize_t start = i;
        while (i < len && is_tchar(s[i]))
            i++;
        if (i == start || i >= len || s[i] != ':')
            Py_RETURN_NONE;
        for (i++; i < len && s[i] != '\r'; i++)
            if (!is_value_char(s[i]))
                Py_RETURN_NONE;
        if (++lines > max_headers)
            Py_RETURN_NONE;
    }

    PyObject *method = NULL, *target = NULL, *version = NULL, *items = NULL, *index = NULL;
    method = PyUnicode_DecodeLatin1((const char *)s, sp1, NULL);
    target = PyUnicode_DecodeLatin1((const char *)s + sp1 + 1, sp2 - sp1 - 1, NULL);
    version = PyUnicode_DecodeLatin1((const char *)s + pos - 3, 3, NULL);
    items = PyList_New(0);
    index = PyDict_New();
    if (method == NULL || target == NULL || version == NULL || items == NULL || index == NULL)
        goto fail;
    for (Py_ssize_t i = pos; i < len;) {
        i += 2;
        Py_ssize_t start = i;
        while (s[i] != ':')
            i++;
        Py_ssize_t name_end = i++;
        while (i < len && s[i] != '\r')
            i++;
        Py_ssize_t vstart = name_end + 1, vend = i;
        while (vstart < vend && (s[vstart] == ' ' || s[vstart] == '\t'))
            vstart++;
        while (vend > vstart && (s[vend - 1] == ' ' || s[vend - 1] == '\t'))
            vend--;
        PyObject *name, *key;
        if (header_name((const char *)s + start, name_end - start, names, lowers, names_max, &name, &key) < 0)
            goto fail;
        PyObject *value = PyUnicode_DecodeLatin1((const char *)s + vstart, vend - vstart, NULL);
        PyObject *pair = value == NULL ? NULL : PyTuple_Pack(2, name, value);
        int ok = pair != NULL && PyList_Append(items, pair) == 0;
        Py_XDECREF(pair);
        Py_DECREF(name);
        if (ok) {
            PyObject *values = PyDict_GetItemWithError(index, key);
            if (values != NULL) {
                ok = PyList_Append(values, value) == 0;
            } else if (PyErr_Occurred()) {
                ok = 0;
            } else {
                PyObject *fresh = PyList_New(1);
                if (fresh == NULL) {
                    ok = 0;
                } else {
                    Py_INCREF(value);
                    PyList_SET_ITEM(fresh, 0, value);
                    ok = PyDict_SetItem(index, key, fresh) == 0;
                    Py_DECREF(fresh);
                }
            }
        }
        Py_XDECREF(value);
        Py_DECREF(key);
        if (!ok)
            goto fail;
    }
    return Py_BuildValue("(NNNNN)", method, target, version, items, index);
fail:
    Py_XDECREF(method);
    Py_XDECREF(target);
    Py_XDECREF(version);
    Py_XDECREF(items);
    Py_XDECREF(index);
    return NULL;
}

/* compact_items(items, lowers, shareable, shared, shared_max) -> tuple
 *
 * Headers.compact's loop: the (name, value) pairs as a tuple, the value of each name whose lower-case
 * form is in `shareable` replaced by the equal string of `shared` when at most 256 characters long
 * (added to `shared` while it has fewer than `shared_max` entries). `lowers` caches lower-case names. */
PyObject *
compact_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyList_Check(args[0]) || !PyDict_Check(args[1]) || !PyAnySet_Check(args[2]) ||
        !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "compact_items(items, lowers, shareable, shared, shared_max)");
        return NULL;
    }
    PyObject *items = args[0], *lowers = args[1], *shareable = args[2], *shared = args[3];
    Py_ssize_t shared_max = PyLong_AsSsize_t(args[4]);
    if (shared_max == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *out = PyTuple_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0)) ||
            !PyUnicode_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "header items must be (str, str) pairs");
            goto fail;
        }
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        PyObject *key = PyDict_GetItemWithError(lowers, name);
        if (key != NULL) {
            Py_INCREF(key);
        } else if (PyErr_Occurred() || (key = PyObject_CallMethod(name, "lower", NULL)) == NULL) {
            goto fail;
        }
        int wanted = PySet_Contains(shareable, key);
        Py_DECREF(key);
        if (wanted < 0)
            goto fail;
        PyObject *kept = value;
        if (wanted && PyUnicode_GET_LENGTH(value) <= 256) {
            PyObject *found = PyDict_GetItemWithError(shared, value);
            if (found != NULL && PyObject_IsTrue(found) == 1) {
                kept = found;
            } else if (PyErr_Occurred()) {
                goto fail;
            } else if (PyDict_GET_SIZE(shared) < shared_max && PyDict_SetItem(shared, value, value) < 0) {
                goto fail;
            }
        }
        if (kept == value) {
            Py_INCREF(pair);
            PyTuple_SET_ITEM(out, i, pair);
        } else {
            PyObject *fresh = PyTuple_Pack(2, name, kept);
            if (fresh == NULL)
                goto fail;
            PyTuple_SET_ITEM(out, i, fresh);
        }
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}
