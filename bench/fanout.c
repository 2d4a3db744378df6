/*
 * fanout.c - cross-node fan-out load for bench/cluster.py.
 *
 * N member connections are spread round robin over the given ports (one port per
 * node); every member is in one room (the server puts each connection there on
 * open). Member 0 (on the first node) is also the publisher: it sends
 * publications of --size bytes and the server publishes each to the room, so every
 * member, on every node, receives every publication once.
 *
 * Flow: with --inflight K the publisher keeps at most K publications that the
 * probe (the last member, on the last node: the far side of the broker) has not
 * received yet; that gives the peak rate. With --rate R it sends R publications a
 * second (paced on a 1 ms tick), bounded by a window of MAX_WINDOW, for latency at
 * a chosen load.
 *
 * Latency needs no timestamp in the payload: every member receives the
 * publications in order, so the k-th message a member receives is publication k,
 * sent at send_time[k]. The run checks that assumption at the end: after the
 * publisher stops, every member must reach the publisher's count ("lost" counts
 * what did not arrive within the drain time).
 *
 * --sio speaks Socket.IO v4 over its WebSocket transport (Engine.IO 4): the
 * path /socket.io/?EIO=4&transport=websocket, "40" to join the default
 * namespace, the open and connect packets not counted, "2" pings answered "3",
 * publications sent as 42["pub","..."] and received as 42["msg","..."].
 *
 * One epoll loop, no threads. Only 127.0.0.0/8 targets: the host is 127.0.0.1.
 * Output: one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE (256 * 1024)
#define RING 65536
#define MAX_WINDOW 20000
#define BUCKET_US 20
#define BUCKETS 50000 /* 20 us buckets up to 1 s; later deliveries go to the last one */
#define MAX_PORTS 8
#define CONNECTING_MAX 100

enum state { S_CONNECTING, S_HANDSHAKE, S_OPEN, S_DEAD };
enum phase { P_CONNECT, P_SETTLE, P_WARMUP, P_MEASURE, P_DRAIN, P_DONE };

struct conn {
    int fd, port;
    uint8_t state, hlen, opcode, fin, ctrl_len, in_payload;
    uint8_t hdr[10];
    uint8_t ctrl[125];
    uint64_t remaining, msg_len;
    uint32_t skip;     /* preamble messages still to skip (Socket.IO: open and connect packets) */
    uint64_t received; /* publications received */
    char *hs;
    int hs_len;
    uint8_t *out; /* bytes not sent yet (the publisher's backlog, pongs) */
    size_t out_len, out_off, out_cap;
};

static struct {
    int ports[MAX_PORTS], nports, conns, size, inflight, sio;
    double rate, duration, warmup, settle, drain, timeout;
    const char *path;
} cfg = {{0}, 0, 1000, 32, 10, 0, 0, 5.0, 1.0, 1.0, 3.0, 60.0, "/"};

static struct conn *conns;
static int epfd, nopen, nready, nconnecting, next_to_open, probe;
static enum phase phase = P_CONNECT;
static double t_phase, t_measure, t_pace;
static uint8_t rbuf[RBUF_SIZE];
static uint8_t *frame;
static size_t flen;
static double send_time[RING];
static uint64_t sent, sent_measure_start, sent_measure_end, window_full;
static uint64_t deliveries, errors, closed_by_server, out_of_range;
static uint32_t hist[BUCKETS];
static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *msg)
{
    printf("{\"error\": \"%s\", \"errno\": \"%s\"}\n", msg, strerror(errno));
    exit(2);
}

static size_t build_frame(uint8_t *out, int opcode, const uint8_t *payload, size_t len)
{
    size_t h = 0;
    out[h++] = 0x80 | opcode;
    if (len < 126) {
        out[h++] = 0x80 | len;
    } else if (len < 65536) {
        out[h++] = 0x80 | 126;
        out[h++] = len >> 8;
        out[h++] = len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + h, MASK, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) out[h + i] = payload[i] ^ MASK[i & 3];
    return h + len;
}

static void kill_conn(struct conn *c, const char *why)
{
    if (c->state == S_DEAD) return;
    if (phase != P_DONE) {
        errors++;
        fprintf(stderr, "fanout: connection %ld: %s\n", (long)(c - conns), why);
    }
    if (c->state == S_OPEN) nopen--;
    if (c->state == S_OPEN && !c->skip) nready--;
    if (c->state == S_CONNECTING || c->state == S_HANDSHAKE) nconnecting--;
    close(c->fd);
    c->state = S_DEAD;
}

/* Queue or send bytes on a connection; what the kernel does not take waits in out. */
static void put(struct conn *c, const uint8_t *p, size_t n)
{
    if (c->out_len == c->out_off) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) return kill_conn(c, "send failed");
        if (w > 0) {
            p += w;
            n -= w;
        }
        if (!n) return;
        c->out_len = c->out_off = 0;
    }
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        while (c->out_len + n > c->out_cap) c->out_cap = c->out_cap ? c->out_cap * 2 : 4096;
        if (c->out_cap > (64u << 20)) die("send backlog over 64 MiB");
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void flush(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN) kill_conn(c, "send failed");
            return;
        }
        c->out_off += w;
    }
}

static void open_next(void)
{
    while (next_to_open < cfg.conns && nconnecting < CONNECTING_MAX) {
        struct conn *c = &conns[next_to_open];
        c->port = cfg.ports[next_to_open % cfg.nports];
        c->skip = cfg.sio ? 2 : 0;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) die("socket");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
            die("connect");
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
        c->state = S_CONNECTING;
        nconnecting++;
        next_to_open++;
    }
}

static void sio_pong(struct conn *c)
{
    uint8_t f[8];
    put(c, f, build_frame(f, 1, (const uint8_t *)"3", 1));
}

static void message_done(struct conn *c, double t)
{
    if (c->skip) {
        c->skip--;
        if (!c->skip) nready++; /* Socket.IO: in the namespace, so in the room */
        return;
    }
    if (cfg.sio && c->msg_len == 1) return sio_pong(c); /* Engine.IO ping "2" */
    uint64_t k = c->received++;
    if (k >= sent) {
        out_of_range++;
        return;
    }
    if (phase == P_MEASURE) {
        deliveries++;
        long us = (long)((t - send_time[k % RING]) * 1e6);
        long b = us < 0 ? 0 : us / BUCKET_US;
        hist[b < BUCKETS ? b : BUCKETS - 1]++;
    }
}

static void control_done(struct conn *c)
{
    int op = c->opcode;
    if (op == 8) {
        closed_by_server++;
        return kill_conn(c, "closed by the server");
    }
    if (op == 9) {
        uint8_t f[140];
        put(c, f, build_frame(f, 10, c->ctrl, c->ctrl_len));
    }
}

/* Parse server frames (never masked) streaming through p; data payloads are skipped. */
static void parse(struct conn *c, const uint8_t *p, size_t n, double t)
{
    while (n && c->state == S_OPEN) {
        if (!c->in_payload) {
            c->hdr[c->hlen++] = *p++;
            n--;
            if (c->hlen < 2) continue;
            int l7 = c->hdr[1] & 0x7f;
            int need = l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
            if (c->hlen < need) continue;
            uint64_t len = l7;
            if (l7 == 126) len = (c->hdr[2] << 8) | c->hdr[3];
            if (l7 == 127) {
                len = 0;
                for (int i = 2; i < 10; i++) len = (len << 8) | c->hdr[i];
            }
            c->fin = c->hdr[0] & 0x80;
            c->opcode = c->hdr[0] & 0x0f;
            c->hlen = 0;
            c->in_payload = 1;
            c->remaining = len;
            c->ctrl_len = 0;
            if (!(c->opcode & 8)) {
                if (c->opcode) c->msg_len = 0;
                c->msg_len += len;
            }
            if (len) continue;
        } else {
            size_t take = n < c->remaining ? n : c->remaining;
            if ((c->opcode & 8) && c->ctrl_len + take <= sizeof c->ctrl) {
                memcpy(c->ctrl + c->ctrl_len, p, take);
                c->ctrl_len += take;
            }
            p += take;
            n -= take;
            c->remaining -= take;
            if (c->remaining) continue;
        }
        c->in_payload = 0; /* a frame ended */
        if (c->opcode & 8)
            control_done(c);
        else if (c->fin)
            message_done(c, t);
    }
}

static void on_handshake(struct conn *c, double t)
{
    for (;;) {
        ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (r == 0) return kill_conn(c, "EOF during the handshake");
        if (r < 0) {
            if (errno != EAGAIN) kill_conn(c, "recv failed during the handshake");
            return;
        }
        int keep = r < 2048 - c->hs_len ? (int)r : 2048 - c->hs_len;
        memcpy(c->hs + c->hs_len, rbuf, keep);
        c->hs_len += keep;
        c->hs[c->hs_len] = 0;
        char *end = strstr(c->hs, "\r\n\r\n");
        if (!end) {
            if (c->hs_len >= 2047) return kill_conn(c, "handshake answer too long");
            continue;
        }
        if (strncmp(c->hs, "HTTP/1.1 101", 12)) return kill_conn(c, "no 101");
        size_t head = end + 4 - c->hs;
        size_t extra = c->hs_len - head; /* frames sent right after the 101 */
        uint8_t tail[2048];
        memcpy(tail, c->hs + head, extra);
        /* bytes of this read past what fitted in hs */
        size_t more = r - keep;
        free(c->hs);
        c->hs = NULL;
        c->state = S_OPEN;
        nconnecting--;
        nopen++;
        if (!cfg.sio) nready++;
        if (cfg.sio) {
            uint8_t f[8];
            put(c, f, build_frame(f, 1, (const uint8_t *)"40", 2));
        }
        parse(c, tail, extra, t);
        if (more) parse(c, rbuf + keep, more, t);
        return;
    }
}

static void on_event(struct conn *c, uint32_t events, double t)
{
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) return kill_conn(c, "connect failed");
        if (!(events & EPOLLOUT)) return;
        char req[512];
        char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
        const char *path = cfg.sio ? "/socket.io/?EIO=4&transport=websocket" : cfg.path;
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n",
                         path, c->port, key);
        if (send(c->fd, req, n, MSG_NOSIGNAL) != n) return kill_conn(c, "handshake send");
        c->hs = malloc(2049);
        c->hs_len = 0;
        c->state = S_HANDSHAKE;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    if (events & EPOLLOUT) {
        flush(c);
        if (c->state == S_DEAD) return;
        if (c->out_off == c->out_len) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    if (c->state == S_HANDSHAKE) return on_handshake(c, t);
    for (;;) {
        ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (r == 0) return kill_conn(c, "EOF");
        if (r < 0) {
            if (errno != EAGAIN) kill_conn(c, "recv failed");
            return;
        }
        parse(c, rbuf, r, t);
        if (c->state != S_OPEN || (size_t)r < sizeof rbuf) break;
    }
    if (c->out_off < c->out_len) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static void publish(double t)
{
    struct conn *pub = &conns[0];
    send_time[sent % RING] = t;
    sent++;
    put(pub, frame, flen);
    if (pub->out_off < pub->out_len) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = pub};
        epoll_ctl(epfd, EPOLL_CTL_MOD, pub->fd, &ev);
    }
}

static void pump(double t)
{
    if (phase != P_WARMUP && phase != P_MEASURE) return;
    uint64_t behind = sent - conns[probe].received;
    if (cfg.rate > 0) {
        uint64_t due = (uint64_t)((t - t_pace) * cfg.rate);
        while (sent < due) {
            if (behind >= MAX_WINDOW) {
                window_full++;
                t_pace += 1.0 / cfg.rate; /* the pace slips instead of bursting later */
                due = (uint64_t)((t - t_pace) * cfg.rate);
                continue;
            }
            publish(t);
            behind++;
        }
        return;
    }
    while (behind < (uint64_t)cfg.inflight) {
        publish(t);
        behind++;
    }
}

static void parse_ports(const char *s)
{
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (cfg.nports == MAX_PORTS) die("too many ports");
        cfg.ports[cfg.nports++] = atoi(tok);
    }
    free(copy);
}

static double percentile(double q)
{
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < BUCKETS; i++) total += hist[i];
    if (!total) return -1;
    uint64_t want = (uint64_t)(q * total);
    for (int i = 0; i < BUCKETS; i++) {
        seen += hist[i];
        if (seen > want) return (i + 1) * BUCKET_US / 1000.0;
    }
    return BUCKETS * BUCKET_US / 1000.0;
}

int main(int argc, char **argv)
{
    static struct option opts[] = {
        {"ports", 1, 0, 'p'}, {"conns", 1, 0, 'n'}, {"size", 1, 0, 's'},
        {"inflight", 1, 0, 'k'}, {"rate", 1, 0, 'r'}, {"duration", 1, 0, 'd'},
        {"warmup", 1, 0, 'w'}, {"settle", 1, 0, 'S'}, {"sio", 0, 0, 'I'},
        {"path", 1, 0, 'P'}, {"timeout", 1, 0, 'T'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p': parse_ports(optarg); break;
        case 'n': cfg.conns = atoi(optarg); break;
        case 's': cfg.size = atoi(optarg); break;
        case 'k': cfg.inflight = atoi(optarg); break;
        case 'r': cfg.rate = atof(optarg); break;
        case 'd': cfg.duration = atof(optarg); break;
        case 'w': cfg.warmup = atof(optarg); break;
        case 'S': cfg.settle = atof(optarg); break;
        case 'I': cfg.sio = 1; break;
        case 'P': cfg.path = optarg; break;
        case 'T': cfg.timeout = atof(optarg); break;
        default: die("usage: fanout --ports A,B [--conns N --size B --inflight K | --rate R] [--sio]");
        }
    }
    if (!cfg.nports || cfg.conns < 2 || cfg.size < 1 || cfg.inflight < 1 || cfg.inflight > MAX_WINDOW)
        die("bad arguments");
    probe = cfg.conns - 1;
    while (probe % cfg.nports != cfg.nports - 1) probe--; /* the last member on the last node */

    uint8_t *payload = malloc(cfg.size + 32);
    size_t plen = 0;
    if (cfg.sio) plen += sprintf((char *)payload, "42[\"pub\",\"");
    for (int i = 0; i < cfg.size; i++) payload[plen++] = 'a' + i % 26;
    if (cfg.sio) plen += sprintf((char *)payload + plen, "\"]");
    frame = malloc(plen + 14);
    flen = build_frame(frame, 1, payload, plen);

    conns = calloc(cfg.conns, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    double t0 = now();
    t_phase = t0;
    struct epoll_event evs[512];
    while (phase != P_DONE) {
        double t = now();
        if (t - t0 > cfg.timeout) {
            errno = ETIMEDOUT;
            die("run timed out");
        }
        switch (phase) {
        case P_CONNECT:
            open_next();
            if (nready == cfg.conns) {
                phase = P_SETTLE;
                t_phase = t;
            } else if (errors) {
                die("connections failed (see stderr)");
            }
            break;
        case P_SETTLE: /* let the nodes subscribe to the room's channel */
            if (t - t_phase >= cfg.settle) {
                phase = P_WARMUP;
                t_phase = t_pace = t;
            }
            break;
        case P_WARMUP:
            if (t - t_phase >= cfg.warmup) {
                phase = P_MEASURE;
                t_phase = t_measure = t;
                sent_measure_start = sent;
            }
            break;
        case P_MEASURE:
            if (t - t_phase >= cfg.duration) {
                phase = P_DRAIN;
                t_phase = t;
                sent_measure_end = sent;
            }
            break;
        case P_DRAIN: {
            int behind = 0;
            for (int i = 0; i < cfg.conns; i++)
                if (conns[i].state == S_OPEN && conns[i].received < sent) behind = 1;
            if (!behind || t - t_phase >= cfg.drain) phase = P_DONE;
            break;
        }
        default:
            break;
        }
        pump(t);
        int timeout = cfg.rate > 0 || phase == P_DRAIN ? 1 : 50;
        int n = epoll_wait(epfd, evs, 512, timeout);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        t = now();
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events, t);
    }
    double measured = t_phase - t_measure; /* t_phase: the drain's start */
    uint64_t lost = 0;
    int dead = 0;
    for (int i = 0; i < cfg.conns; i++) {
        if (conns[i].state != S_OPEN) dead++;
        lost += sent - (conns[i].received < sent ? conns[i].received : sent);
    }
    printf("{\"conns\": %d, \"nodes\": %d, \"sio\": %d, \"size\": %d, \"rate\": %.1f, \"inflight\": %d, "
           "\"measured_s\": %.3f, \"publications_per_s\": %.1f, \"deliveries_per_s\": %.1f, "
           "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, \"sent\": %llu, \"lost\": %llu, "
           "\"dead\": %d, \"errors\": %llu, \"closed_by_server\": %llu, \"out_of_range\": %llu, "
           "\"window_full\": %llu}\n",
           cfg.conns, cfg.nports, cfg.sio, cfg.size, cfg.rate, cfg.inflight, measured,
           (sent_measure_end - sent_measure_start) / measured, deliveries / measured,
           percentile(0.50), percentile(0.99), percentile(0.999), (unsigned long long)sent,
           (unsigned long long)lost, dead, (unsigned long long)errors,
           (unsigned long long)closed_by_server, (unsigned long long)out_of_range,
           (unsigned long long)window_full);
    return 0;
}
