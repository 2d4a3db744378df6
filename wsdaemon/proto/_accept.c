/* accept_nonblocking(sock) -> (fd, (host, port)): accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC on an
 * AF_INET listening socket, so the client needs no FIONBIO of its own. The address is what
 * socket.accept() gives for AF_INET; errors are its OSErrors (BlockingIOError when none is waiting),
 * EINTR is retried after the signal handlers ran (PEP 475). */

#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "_speedups.h"

PyObject *
accept_nonblocking(PyObject *self, PyObject *sock)
{
    int listen_fd = PyObject_AsFileDescriptor(sock);
    if (listen_fd < 0)
        return NULL;
    struct sockaddr_in addr;
    int fd;
    for (;;) {
        socklen_t len = sizeof(addr);
        fd = accept4(listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            break;
        if (errno != EINTR)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (PyErr_CheckSignals() < 0)
            return NULL;
    }
    if (addr.sin_family != AF_INET) {
        close(fd);
        PyErr_SetString(PyExc_ValueError, "accept_nonblocking() takes an AF_INET socket");
        return NULL;
    }
    char host[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &addr.sin_addr, host, sizeof(host)) == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        close(fd);
        return NULL;
    }
    PyObject *result = Py_BuildValue("(i(si))", fd, host, (int)ntohs(addr.sin_port));
    if (result == NULL)
        close(fd);
    return result;
}
