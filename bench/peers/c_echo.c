/*
 * c_echo.c - a minimal epoll RFC 6455 echo server, the benchmark's yardstick.
 *
 * Not a product: it exists to show that bench/loadgen.c is not the bottleneck.
 * If the load generator can drive this server several times faster than any
 * Python server, the Python figures measure the servers, not the client.
 *
 * Echoes every data frame as it arrives (same FIN/opcode, so fragmented messages
 * are echoed fragment by fragment), answers ping with pong and close with close
 * (then closes the TCP connection first, as RFC 6455 asks of servers). Frames up
 * to 16 MiB. One thread, edge-triggered epoll; data is read into a shared
 * buffer and processed there, and echoes are written with one send per read;
 * only leftovers (a partial frame, unsent output) get a per-connection buffer.
 *
 * usage: c_echo --port P [--host 127.0.0.1]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../ws_accept.h"

#define RBUF_SIZE (256 * 1024)
#define MAX_FRAME (16u * 1024 * 1024)
#define MAX_REQUEST 8192

struct buf { uint8_t *p; size_t len, cap; };

struct conn {
    int fd;
    int upgraded;  /* handshake done */
    int closing;   /* close frame sent: close the socket once output is flushed */
    struct buf in;  /* unprocessed input (partial request or frame) */
    struct buf out; /* output the kernel did not take yet */
};

static uint8_t rbuf[RBUF_SIZE];
static struct buf wbuf; /* output of the current read event */

static void buf_append(struct buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 < 4096 ? 4096 : (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void buf_free(struct buf *b) { free(b->p); b->p = NULL; b->len = b->cap = 0; }

static void conn_free(struct conn *c)
{
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

/* Server frame header for a payload of len bytes. */
static void put_frame(uint8_t b0, const uint8_t *payload, uint64_t len)
{
    uint8_t h[10];
    size_t n = 0;
    h[n++] = b0;
    if (len < 126) h[n++] = len;
    else if (len < 65536) { h[n++] = 126; h[n++] = len >> 8; h[n++] = len; }
    else { h[n++] = 127; for (int i = 7; i >= 0; i--) h[n++] = len >> (8 * i); }
    buf_append(&wbuf, h, n);
    buf_append(&wbuf, payload, len);
}

/* XOR the payload with the 4-byte key, 8 bytes at a time (a byte loop would
 * make this "fast" server slower than the Python peers' C unmaskers on 1 MiB). */
static void unmask(uint8_t *p, uint64_t len, const uint8_t key[4])
{
    uint64_t k8, w, i = 0;
    uint32_t k4;
    memcpy(&k4, key, 4);
    k8 = (uint64_t)k4 << 32 | k4;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, p + i, 8);
        w ^= k8;
        memcpy(p + i, &w, 8);
    }
    for (; i < len; i++) p[i] ^= key[i & 3];
}

/* Answer the upgrade request in p[0..n); returns bytes consumed, 0 if incomplete, -1 bad. */
static ssize_t handshake(struct conn *c, uint8_t *p, size_t n)
{
    uint8_t *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) return n >= MAX_REQUEST ? -1 : 0;
    *end = 0;
    char *key = NULL;
    for (char *line = strstr((char *)p, "\r\n"); line; line = strstr(line + 2, "\r\n"))
        if (!strncasecmp(line + 2, "sec-websocket-key:", 18)) { key = line + 20; break; }
    if (!key) return -1;
    while (*key == ' ') key++;
    size_t klen = strcspn(key, "\r ");
    char accept[29], resp[160];
    ws_accept_for_key(key, klen, accept);
    int rn = snprintf(resp, sizeof resp,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    buf_append(&wbuf, resp, rn);
    c->upgraded = 1;
    return end + 4 - p;
}

/* Echo every complete frame in p[0..n); returns bytes consumed or -1 to drop. */
static ssize_t frames(struct conn *c, uint8_t *p, size_t n)
{
    size_t pos = 0;
    while (!c->closing && n - pos >= 2) {
        uint8_t *f = p + pos;
        if (!(f[1] & 0x80) || (f[0] & 0x70)) return -1; /* unmasked or RSV set */
        uint64_t len = f[1] & 127;
        size_t h = 2;
        if (len == 126) { if (n - pos < 4) break; len = (uint64_t)f[2] << 8 | f[3]; h = 4; }
        else if (len == 127) {
            if (n - pos < 10) break;
            len = 0;
            for (int i = 2; i < 10; i++) len = len << 8 | f[i];
            h = 10;
        }
        if (len > MAX_FRAME) return -1;
        if (n - pos < h + 4 + len) break;
        uint8_t *mask = f + h, *payload = f + h + 4;
        unmask(payload, len, mask);
        int op = f[0] & 15;
        if (op == 9) put_frame(0x8A, payload, len);          /* ping -> pong */
        else if (op == 8) { put_frame(0x88, payload, len); c->closing = 1; }
        else if (op != 10) put_frame(f[0], payload, len);    /* data: echo as is */
        pos += h + 4 + len;
    }
    return pos;
}

static ssize_t process(struct conn *c, uint8_t *p, size_t n)
{
    size_t pos = 0;
    if (!c->upgraded) {
        ssize_t r = handshake(c, p, n);
        if (r <= 0) return r;
        pos = r;
    }
    ssize_t r = frames(c, p + pos, n - pos);
    return r < 0 ? -1 : (ssize_t)pos + r;
}

/* Write pending output; returns -1 when the connection is finished. */
static int flush(struct conn *c)
{
    while (c->out.len) {
        ssize_t w = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
        if (w < 0) return errno == EAGAIN ? 0 : -1;
        memmove(c->out.p, c->out.p + w, c->out.len - w);
        c->out.len -= w;
    }
    if (c->out.cap > 65536) buf_free(&c->out);
    return c->closing ? -1 : 0;
}

static int on_readable(struct conn *c, int hup)
{
    for (;;) {
        ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (n == 0) return -1;
        if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
        wbuf.len = 0;
        uint8_t *data = rbuf;
        size_t len = n;
        if (c->in.len) { buf_append(&c->in, rbuf, n); data = c->in.p; len = c->in.len; }
        ssize_t used = process(c, data, len);
        if (used < 0) return -1;
        if (data == c->in.p) {
            memmove(c->in.p, c->in.p + used, len - used);
            c->in.len -= used;
            if (!c->in.len) buf_free(&c->in);
        } else if ((size_t)used < len) {
            buf_append(&c->in, data + used, len - used);
        }
        if (wbuf.len) {
            size_t off = 0;
            if (!c->out.len) { /* one send for everything this read produced */
                ssize_t w = send(c->fd, wbuf.p, wbuf.len, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN) return -1;
                off = w > 0 ? w : 0;
            }
            if (off < wbuf.len) buf_append(&c->out, wbuf.p + off, wbuf.len - off);
        }
        if (c->out.len || c->closing) { if (flush(c) < 0) return -1; }
        if (n < (ssize_t)sizeof rbuf && !hup) return 0; /* drained; an EOF needs one more recv */
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    }
    if (!port) { fprintf(stderr, "usage: c_echo --port P [--host H]\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
        perror("listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) { /* listener: accept everything pending */
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                              .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            int dead = 0;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) dead = on_readable(c, evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) < 0;
            if (!dead && (evs[i].events & EPOLLOUT) && c->out.len) dead = flush(c) < 0;
            if (dead) conn_free(c);
        }
    }
}
