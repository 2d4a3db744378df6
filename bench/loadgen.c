/*
 * loadgen.c - a small, fast RFC 6455 load generator for the wsdaemon benchmarks.
 *
 * Why C: a Python client spends as much CPU per message as a Python server, so
 * it would measure itself. This one runs on its own core (taskset -c 1) and does
 * far less work per message than any server under test: one epoll loop, no
 * threads, no per-message allocation. peers/c_echo.c shows the headroom.
 *
 * How it stays cheap:
 *  - Every outgoing data frame is identical, so it is built (and masked) once.
 *    A shared "stream" buffer holds that frame repeated; a connection's send
 *    queue is just a byte count plus an offset into the current frame, and any
 *    window of the stream is a valid continuation. No copies, no per-connection
 *    send buffer.
 *  - Server frames are parsed while streaming through one shared 256 KiB
 *    receive buffer: only the (<= 14 byte) header is kept per connection and
 *    payloads are skipped, except control-frame payloads (<= 125 bytes).
 *  - Edge-triggered epoll, registered once; a short read or short write means
 *    the socket is drained / full, so no extra EAGAIN syscall.
 *
 * Modes (one JSON object with the results is printed on stdout at the end):
 *  echo       N connections keep K messages of M bytes in flight for T seconds
 *             (after a warm-up); counts echoed messages and bytes per second.
 *  broadcast  N connections; connection 0 sends, keeping K messages in flight
 *             (a message leaves flight when the sender gets its own copy);
 *             counts deliveries to all connections per second.
 *             With --session it speaks wsdaemon's resumable-session envelope
 *             (docs/sessions.md): ?wsdaemon_session=new, messages numbered by
 *             their place on the connection (the payload goes as it is), an
 *             "!a<seq>" ack every 32 echoes at a frame boundary, and the
 *             server's "!..." hello and acks not counted as echoes.
 *  handshake  L loops of connect, upgrade, close frame, wait for close/EOF.
 *  idle       open N connections (from --sources source addresses), print
 *             {"ready":...}, wait for a line on stdin (or --hold seconds), then
 *             optionally check that --verify connections still echo, and exit.
 *
 * --pause (echo, broadcast): print {"ready":...} once connected and wait for a
 * line on stdin before the warm-up; after the result, stop sending, keep the
 * connections open and wait for another line (the runner reads the server's
 * RSS idle, during and after traffic).
 *
 * --deflate: offer permessage-deflate (RFC 7692; --deflate-offer, default
 * Chrome's "permessage-deflate; client_max_window_bits") and require it in the
 * answer. Messages are then JSON game states from a fixed pool (each names its
 * pool index), compressed per connection with the negotiated window and context
 * takeover, masked, RSV1 set, tail 00 00 ff ff stripped; received messages are
 * inflated (or copied when the server sent them uncompressed) and compared with
 * the pool. This path builds frames per message; the uncompressed path above is
 * unchanged. Both count the bytes on the wire in each direction. Two shortcuts
 * keep zlib from dominating this core, both exact: without client context
 * takeover each pool message is compressed once (the bytes never differ), and
 * without server context takeover a compressed message is inflated only the
 * first time those exact bytes arrive (a fresh inflater gives the same output).
 *
 * The mask key is fixed per run (RFC 6455 wants it unpredictable per frame;
 * that protects proxies, not servers, and a server must unmask any key).
 * Only 127.0.0.0/8 targets are accepted.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ws_accept.h"
#include "loadgen_deflate.h"

#define RBUF_SIZE (256 * 1024)
#define HS_MAX 4096
#define STDIN_TAG ((void *)1)

enum mode { M_ECHO, M_BROADCAST, M_HANDSHAKE, M_IDLE };
enum state { S_FREE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_CLOSING };
enum phase { P_CONNECT, P_WARMUP, P_MEASURE, P_HOLD, P_VERIFY, P_DONE, P_PAUSE, P_AFTER };

/* A connection's permessage-deflate state (--deflate only); zlib streams are
 * created on first use. */
struct zconn {
    z_stream def, inf;
    uint8_t def_ready, inf_ready;
    uint8_t compressed;        /* the message being received has RSV1 */
    uint8_t collect;           /* ... and is collected whole before inflating (see vcache) */
    uint8_t *cmsg;             /* its compressed bytes, when collected */
    uint32_t clen, ccap;
    uint8_t overflow;          /* it grew past --size */
    struct pmd_params pm;      /* what the server answered */
    uint32_t next;             /* pool index of the next message to send */
    uint8_t *out;              /* queued frames, whole ones only */
    uint32_t out_len, out_off, out_cap;
    uint8_t *msg;              /* the message being received, inflated */
    uint32_t mlen;
};

struct conn {
    int fd;
    uint8_t state;
    uint8_t hlen;          /* bytes of the current frame header collected */
    uint8_t ctrl_len;      /* control payload bytes collected */
    uint8_t hdr[10];       /* current frame header (servers send no mask key) */
    uint8_t ctrl[125];     /* control frame payload being received */
    uint8_t out_ctrl[131]; /* pending pong/close frame, sent at a frame boundary */
    uint8_t out_ctrl_len, out_ctrl_off;
    uint8_t close_sent, close_received;
    uint64_t remaining;    /* payload bytes of the current frame still to come */
    uint64_t msg_len;      /* bytes of the current message so far */
    uint64_t to_send;      /* bytes of the data-frame stream still to send */
    uint32_t off;          /* offset inside the current outgoing frame */
    uint32_t inflight;
    double t_mark;         /* when started / verify message sent / close received */
    double t_start;        /* handshake mode: when this cycle's connect began */
    struct zconn *z;       /* --deflate only */
    char *hs;              /* handshake response being collected */
    uint8_t *sbuf;         /* --session: this connection's own outgoing frames */
    uint32_t sbuf_len, sbuf_off, sbuf_cap;
    uint32_t seq_out, seq_in, acked_in; /* --session: numbers sent, echoes received, acked */
    uint8_t first, first_seen; /* --session: first payload byte of the current message */
    uint16_t hs_len;
    char key[25];
};

/* ---- configuration and global state ------------------------------------ */

static struct {
    enum mode mode;
    const char *host, *path;
    int port, conns, size, inflight, binary, loops, sources, concurrency, verify, session;
    double duration, warmup, hold, timeout;
    int deflate, pause, mem_level;
    const char *offer;
} cfg = {M_ECHO, "127.0.0.1", "/", 0, 10, 16, 1, 0, 50, 0, 64, 0, 0, 5.0, 1.0, 60.0, 0,
         0, 0, 8, "permessage-deflate; client_max_window_bits"};

static const char B36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
static uint8_t smask[4];  /* the mask of the data frame template */

static struct conn *conns;
static int nconns, epfd;
static uint8_t *frame, *stream; /* one masked data frame; it repeated */
static size_t flen, slen;
static uint8_t rbuf[RBUF_SIZE];
static uint64_t rng_state;
static enum phase phase = P_CONNECT;
static double t_start, t_phase;
static char *pool;           /* --deflate: the payloads */
static uint8_t *zscratch;    /* --deflate: one compressed payload */
static uint8_t zmask[4];

static struct {
    uint64_t msgs, bytes, handshakes, open, connect_errors, handshake_errors,
        protocol_errors, closed_by_server, size_errors, pings, verified, slow_cycles;
    uint64_t sent, wire_out, wire_in, compressed_in, content_errors, deflate_declined;
    double verify_max_rtt, max_cycle;
} st;

static int pending_opens; /* connections in CONNECTING/HANDSHAKE */
static int next_to_open;  /* connect/idle/echo: index of the next connection to open */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng(void) /* xorshift64*: cheap nonces, seeded from the clock and pid */
{
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void die(const char *msg)
{
    printf("{\"error\": \"%s\", \"errno\": \"%s\"}\n", msg, strerror(errno));
    fflush(stdout);
    exit(2);
}

/* ---- frames ------------------------------------------------------------- */

/* Write a masked client frame header + payload into out; returns its length. */
static size_t build_frame(uint8_t *out, int opcode, const uint8_t *payload, size_t len,
                          const uint8_t mask[4])
{
    size_t h = 0;
    out[h++] = 0x80 | opcode;
    if (len < 126) {
        out[h++] = 0x80 | len;
    } else if (len < 65536) {
        out[h++] = 0x80 | 126; out[h++] = len >> 8; out[h++] = len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) out[h + i] = payload[i] ^ mask[i & 3];
    return h + len;
}

static void build_stream(void)
{
    uint8_t mask[4];
    uint64_t r = rng();
    memcpy(mask, &r, 4);
    uint8_t *payload = malloc(cfg.size + 1);
    for (int i = 0; i < cfg.size; i++) payload[i] = 'a' + i % 26;
    if (cfg.session) memcpy(smask, mask, 4); /* the acks' mask */
    frame = malloc(cfg.size + 14);
    flen = build_frame(frame, cfg.binary ? 2 : 1, payload, cfg.size, mask);
    free(payload);
    size_t copies = flen >= 65536 ? 1 : 65536 / flen;
    slen = copies * flen;
    stream = malloc(slen);
    for (size_t i = 0; i < copies; i++) memcpy(stream + i * flen, frame, flen);
}

/* ---- permessage-deflate (--deflate) ----------------------------------------- */

static const char *deflate_error;  /* why the first unacceptable answer was refused */
static char deflate_answer[256];   /* the first accepted answer, for the report */

/* Without client context takeover a message always compresses to the same bytes:
 * each pool message is compressed once, for the window bits of the first such
 * connection (others compress per message). */
static struct { int bits; uint8_t *data[POOL]; uint16_t len[POOL]; } nct;

/* Room for n more bytes at the end of the connection's queue of whole frames. */
static uint8_t *z_reserve(struct zconn *z, size_t n)
{
    if (z->out_off == z->out_len) z->out_off = z->out_len = 0;
    if (z->out_len + n > z->out_cap && z->out_off) {
        memmove(z->out, z->out + z->out_off, z->out_len - z->out_off);
        z->out_len -= z->out_off;
        z->out_off = 0;
    }
    if (z->out_len + n > z->out_cap) {
        size_t cap = z->out_cap ? z->out_cap : 1024;
        while (cap < z->out_len + n) cap *= 2;
        if (cap > (64u << 20)) { errno = ENOBUFS; die("send queue over 64 MiB"); }
        z->out = realloc(z->out, cap);
        z->out_cap = cap;
    }
    return z->out + z->out_len;
}

/* Compress the connection's next pool message into a frame at the end of its queue. */
static void z_queue_msg(struct conn *c)
{
    struct zconn *z = c->z;
    int bits = z->pm.client_max_window_bits ? z->pm.client_max_window_bits : 15;
    uint32_t i = z->next++ % POOL;
    if (z->pm.client_no_context_takeover && (!nct.bits || nct.bits == bits) && cfg.size <= 32768) {
        if (!nct.data[i]) {
            z_stream zs = {0};
            if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -bits, cfg.mem_level,
                             Z_DEFAULT_STRATEGY) != Z_OK)
                die("deflateInit2");
            long clen = pmd_compress(&zs, (const uint8_t *)pool + (size_t)i * cfg.size, cfg.size, zscratch);
            deflateEnd(&zs);
            if (clen < 0) die("deflate");
            nct.bits = bits;
            nct.data[i] = malloc(clen);
            memcpy(nct.data[i], zscratch, clen);
            nct.len[i] = clen;
        }
        uint8_t *out = z_reserve(z, nct.len[i] + 14);
        z->out_len += build_frame(out, 0x40 | (cfg.binary ? 2 : 1), nct.data[i], nct.len[i], zmask);
        return;
    }
    if (!z->def_ready) {
        if (deflateInit2(&z->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -bits, cfg.mem_level,
                         Z_DEFAULT_STRATEGY) != Z_OK)
            die("deflateInit2");
        z->def_ready = 1;
    }
    const uint8_t *msg = (const uint8_t *)pool + (size_t)i * cfg.size;
    long clen = pmd_compress(&z->def, msg, cfg.size, zscratch);
    if (clen < 0) die("deflate");
    if (z->pm.client_no_context_takeover) deflateReset(&z->def);
    uint8_t *out = z_reserve(z, clen + 14);
    z->out_len += build_frame(out, 0x40 | (cfg.binary ? 2 : 1), zscratch, clen, zmask);
}

static void z_flush(struct conn *c)
{
    struct zconn *z = c->z;
    while (z->out_off < z->out_len) {
        size_t n = z->out_len - z->out_off;
        ssize_t w = send(c->fd, z->out + z->out_off, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        if (phase == P_MEASURE) st.wire_out += w;
        z->out_off += w;
        if ((size_t)w < n) return;
    }
}

/* Without server context takeover the same compressed bytes always inflate to the
 * same message: compressed messages already inflated and found right are kept
 * here, so a broadcast's 1000 identical frames are inflated once, not 1000 times. */
#define VCACHE 4096
static struct { uint32_t len; uint8_t *data; } vcache[VCACHE];

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static int z_inflate(struct conn *c, const uint8_t *p, size_t n)
{
    struct zconn *z = c->z;
    uint32_t cap = cfg.size + 1;
    if (!z->inf_ready) {
        if (inflateInit2(&z->inf, -15) != Z_OK) die("inflateInit2");
        z->inf_ready = 1;
    }
    z->inf.next_in = (Bytef *)p;
    z->inf.avail_in = n;
    while (z->inf.avail_in && !z->overflow) {
        z->inf.next_out = z->msg + z->mlen;
        z->inf.avail_out = cap - z->mlen;
        int r = inflate(&z->inf, Z_SYNC_FLUSH);
        z->mlen = cap - z->inf.avail_out;
        if (z->mlen == cap) z->overflow = 1;
        if (r == Z_STREAM_END) inflateReset(&z->inf); /* a final block: a new stream may follow */
        else if (r != Z_OK) return -1;
    }
    return 0;
}

/* Feed payload bytes of the message being received: inflated (or collected, see
 * vcache), or copied as they are when the server sent it uncompressed. Past
 * --size, only overflow is noted. */
static int z_payload(struct conn *c, const uint8_t *p, size_t n)
{
    struct zconn *z = c->z;
    uint32_t cap = cfg.size + 1;
    if (!z->compressed) {
        size_t take = n < cap - z->mlen ? n : cap - z->mlen;
        memcpy(z->msg + z->mlen, p, take);
        z->mlen += take;
        if (z->mlen == cap) z->overflow = 1;
        return 0;
    }
    if (z->collect) {
        if (!z->cmsg) {
            z->ccap = pmd_room(cfg.size) + 64;
            z->cmsg = malloc(z->ccap);
        }
        if (z->clen + n <= z->ccap) {
            memcpy(z->cmsg + z->clen, p, n);
            z->clen += n;
            return 0;
        }
        z->collect = 0; /* larger than any right message could be: inflate from here on */
        if (z_inflate(c, z->cmsg, z->clen) < 0) return -1;
    }
    return z_inflate(c, p, n);
}

/* A message ended: finish inflating, reset as negotiated, check it against the pool. */
static int z_message_end(struct conn *c)
{
    struct zconn *z = c->z;
    int known = 0;
    uint32_t slot = 0;
    if (z->compressed) {
        if (z->collect) {
            slot = fnv1a(z->cmsg, z->clen) % VCACHE;
            known = vcache[slot].data && vcache[slot].len == z->clen &&
                    !memcmp(vcache[slot].data, z->cmsg, z->clen);
            if (!known && z_inflate(c, z->cmsg, z->clen) < 0) return -1;
        }
        if (!known && z_inflate(c, (const uint8_t *)"\x00\x00\xff\xff", 4) < 0) return -1;
        if (z->pm.server_no_context_takeover && z->inf_ready) inflateReset(&z->inf);
        if (phase == P_MEASURE) st.compressed_in++;
    }
    if (known) {
        c->msg_len = cfg.size;
        return 0;
    }
    c->msg_len = z->overflow ? (uint64_t)cfg.size + 1 : z->mlen;
    if (z->overflow || (int)z->mlen != cfg.size) return 0; /* on_message counts a size error */
    if (!pool_check(pool, cfg.size, z->msg, z->mlen)) st.content_errors++;
    else if (z->collect) { /* right: remember these compressed bytes */
        free(vcache[slot].data);
        vcache[slot].data = malloc(z->clen);
        memcpy(vcache[slot].data, z->cmsg, z->clen);
        vcache[slot].len = z->clen;
    }
    return 0;
}

/* Check the answer's Sec-WebSocket-Extensions: none unless we offered, and with
 * --deflate an acceptable permessage-deflate one; then set up the connection's state. */
static int check_extensions(struct conn *c)
{
    char *v = NULL;
    for (char *line = strstr(c->hs, "\r\n"); line; line = strstr(line + 2, "\r\n"))
        if (!strncasecmp(line + 2, "sec-websocket-extensions:", 25)) { v = line + 27; break; }
    if (!cfg.deflate) {
        if (v && !deflate_error) deflate_error = "an extension we did not offer";
        return v ? -1 : 0;
    }
    if (!v) { st.deflate_declined++; return -1; }
    char *e = strstr(v, "\r\n");
    if (!e) e = v + strlen(v);
    struct pmd_params pm;
    const char *why = pmd_parse(v, e, strstr(cfg.offer, "client_max_window_bits") != NULL, &pm);
    if (why) {
        if (!deflate_error) deflate_error = why;
        return -1;
    }
    if (strstr(cfg.offer, "client_no_context_takeover")) pm.client_no_context_takeover = 1;
    if (!deflate_answer[0]) {
        size_t n = 0;
        for (const char *q = skip_ws(v, e); q < e && n < sizeof deflate_answer - 1; q++)
            deflate_answer[n++] = *q == '"' || *q == '\\' || (unsigned char)*q < 32 ? '\'' : *q;
    }
    c->z = calloc(1, sizeof *c->z);
    c->z->pm = pm;
    c->z->msg = malloc(cfg.size + 1);
    c->z->next = (uint32_t)(c - conns) * 37; /* connections start at different messages */
    return 0;
}

static void z_free(struct conn *c)
{
    if (!c->z) return;
    if (c->z->def_ready) deflateEnd(&c->z->def);
    if (c->z->inf_ready) inflateEnd(&c->z->inf);
    free(c->z->out);
    free(c->z->msg);
    free(c->z->cmsg);
    free(c->z);
    c->z = NULL;
}

static void queue_ctrl(struct conn *c, int opcode, const uint8_t *payload, size_t len)
{
    uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    if (c->z) { /* after the whole frames already queued */
        c->z->out_len += build_frame(z_reserve(c->z, len + 6), opcode, payload, len, mask);
        return;
    }
    if (c->out_ctrl_len) return; /* one pending control frame is enough here */
    c->out_ctrl_len = build_frame(c->out_ctrl, opcode, payload, len, mask);
    c->out_ctrl_off = 0;
}

/* ---- connection lifecycle ----------------------------------------------- */

static void conn_close(struct conn *c)
{
    if (c->state == S_CONNECTING || c->state == S_HANDSHAKE) pending_opens--;
    if (c->state == S_OPEN || c->state == S_CLOSING) st.open--;
    if (cfg.mode == M_HANDSHAKE && phase == P_MEASURE && c->t_start > 0) {
        double d = now() - c->t_start; /* > 0.2 s: a SYN or FIN was retransmitted */
        if (d > st.max_cycle) st.max_cycle = d;
        if (d > 0.2) st.slow_cycles++;
    }
    if (c->fd >= 0) close(c->fd);
    free(c->hs);
    z_free(c);
    free(c->sbuf);
    int fd = -1;
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->state = S_FREE;
}

static void conn_start(struct conn *c)
{
    static uint32_t src_rr;
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    if (cfg.mode != M_HANDSHAKE) /* handshake mode never has two small writes in a row */
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (cfg.sources > 0) { /* 127.0.0.2 ... : more than ~28k ports to one server port */
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000002 + src_rr++ % cfg.sources);
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) die("bind");
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(cfg.port)};
    inet_pton(AF_INET, cfg.host, &dst.sin_addr);
    c->state = S_CONNECTING;
    c->t_mark = c->t_start = now();
    pending_opens++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        st.connect_errors++;
        conn_close(c);
    }
}

static void send_handshake(struct conn *c)
{
    uint8_t nonce[16];
    uint64_t a = rng(), b = rng();
    memcpy(nonce, &a, 8); memcpy(nonce + 8, &b, 8);
    ws_base64(nonce, 16, c->key);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     cfg.path, cfg.host, cfg.port, c->key,
                     cfg.deflate ? "Sec-WebSocket-Extensions: " : "", cfg.deflate ? cfg.offer : "",
                     cfg.deflate ? "\r\n" : "");
    if (send(c->fd, req, n, MSG_NOSIGNAL) != n) { /* fits any fresh socket buffer */
        st.connect_errors++;
        conn_close(c);
        return;
    }
    c->state = S_HANDSHAKE;
}

static void conn_opened(struct conn *c);

/* Collect the 101 response; returns bytes of rbuf consumed, or -1 if closed. */
static ssize_t read_handshake(struct conn *c, const uint8_t *p, size_t n)
{
    if (!c->hs) c->hs = malloc(HS_MAX + 1);
    size_t take = n < (size_t)(HS_MAX - c->hs_len) ? n : (size_t)(HS_MAX - c->hs_len);
    memcpy(c->hs + c->hs_len, p, take);
    size_t old = c->hs_len;
    c->hs_len += take;
    c->hs[c->hs_len] = 0;
    char *end = strstr(c->hs, "\r\n\r\n");
    if (!end) {
        if (c->hs_len >= HS_MAX) { st.handshake_errors++; conn_close(c); return -1; }
        return take;
    }
    size_t used = (size_t)(end + 4 - c->hs) - old; /* the rest are frames */
    *end = 0;
    char expect[29], *acc = NULL;
    ws_accept_for_key(c->key, 24, expect);
    for (char *line = strstr(c->hs, "\r\n"); line; line = strstr(line + 2, "\r\n"))
        if (!strncasecmp(line + 2, "sec-websocket-accept:", 21)) { acc = line + 23; break; }
    while (acc && *acc == ' ') acc++;
    if (strncmp(c->hs, "HTTP/1.1 101", 12) || !acc || strncmp(acc, expect, 28) ||
        check_extensions(c) < 0) {
        st.handshake_errors++;
        conn_close(c);
        return -1;
    }
    free(c->hs);
    c->hs = NULL;
    pending_opens--;
    c->state = S_OPEN;
    st.open++;
    conn_opened(c);
    return used;
}

/* ---- sending -------------------------------------------------------------- */

/* Send what is queued: a pending control frame at the next frame boundary, then
 * the data-frame stream. Stops at a short write (the edge will come back). */
static void flush(struct conn *c)
{
    if (c->z) { z_flush(c); return; }
    if (cfg.session) { /* the connection's own frames, then a control frame at the boundary */
        while (c->sbuf_off < c->sbuf_len) {
            ssize_t w = send(c->fd, c->sbuf + c->sbuf_off, c->sbuf_len - c->sbuf_off, MSG_NOSIGNAL);
            if (w <= 0) return;
            c->sbuf_off += w;
        }
        c->sbuf_off = c->sbuf_len = 0;
        if (c->out_ctrl_len) {
            ssize_t w = send(c->fd, c->out_ctrl + c->out_ctrl_off,
                             c->out_ctrl_len - c->out_ctrl_off, MSG_NOSIGNAL);
            if (w < 0) return;
            c->out_ctrl_off += w;
            if (c->out_ctrl_off == c->out_ctrl_len) c->out_ctrl_len = 0;
        }
        return;
    }
    for (;;) {
        if (c->out_ctrl_len && c->off == 0) {
            ssize_t w = send(c->fd, c->out_ctrl + c->out_ctrl_off,
                             c->out_ctrl_len - c->out_ctrl_off, MSG_NOSIGNAL);
            if (w < 0) return;
            c->out_ctrl_off += w;
            if (c->out_ctrl_off < c->out_ctrl_len) return;
            c->out_ctrl_len = 0;
        }
        if (!c->to_send) return;
        size_t n = slen - c->off;
        if (n > c->to_send) n = c->to_send;
        ssize_t w = send(c->fd, stream + c->off, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        if (phase == P_MEASURE) st.wire_out += w;
        c->to_send -= w;
        c->off = (c->off + w) % flen;
        if ((size_t)w < n) return;
    }
}

static uint8_t *sbuf_grow(struct conn *c, size_t more)
{
    if (c->sbuf_len + more > c->sbuf_cap) {
        size_t cap = c->sbuf_cap ? c->sbuf_cap * 2 : 4096;
        while (cap < c->sbuf_len + more) cap *= 2;
        c->sbuf = realloc(c->sbuf, cap);
        if (!c->sbuf) die("realloc");
        c->sbuf_cap = cap;
    }
    uint8_t *at = c->sbuf + c->sbuf_len;
    c->sbuf_len += more;
    return at;
}

/* --session: "!a<seq in base 36>", everything received so far (sent batched). */
static void session_ack(struct conn *c)
{
    char text[16] = "!a";
    char digits[14];
    int n = 0;
    uint32_t v = c->seq_in;
    do { digits[n++] = B36[v % 36]; v /= 36; } while (v);
    for (int i = 0; i < n; i++) text[2 + i] = digits[n - 1 - i];
    uint8_t out[32];
    size_t len = build_frame(out, 1, (const uint8_t *)text, 2 + n, smask);
    memcpy(sbuf_grow(c, len), out, len);
    c->acked_in = c->seq_in;
}

static void queue_msgs(struct conn *c, uint32_t k)
{
    if (phase == P_MEASURE) st.sent += k;
    if (cfg.session) { /* the numbers are implicit: copies of the frame, acks between them */
        uint8_t *f = sbuf_grow(c, (size_t)k * flen);
        for (uint32_t i = 0; i < k; i++, f += flen) memcpy(f, frame, flen);
        c->seq_out += k;
        c->inflight += k;
        return;
    }
    c->inflight += k;
    if (c->z) {
        for (uint32_t i = 0; i < k; i++) z_queue_msg(c);
        return;
    }
    c->to_send += (uint64_t)k * flen;
}

static void start_close(struct conn *c)
{
    uint8_t code[2] = {0x03, 0xe8}; /* 1000 */
    c->to_send = c->off ? flen - c->off : 0; /* finish the frame on the wire, drop the rest */
    queue_ctrl(c, 8, code, 2);
    c->close_sent = 1;
    c->state = S_CLOSING;
    flush(c);
}

static void conn_opened(struct conn *c)
{
    st.handshakes++;
    if (cfg.mode == M_HANDSHAKE) start_close(c);
    else if (cfg.mode == M_ECHO && phase != P_CONNECT && phase != P_PAUSE) queue_msgs(c, cfg.inflight);
}

/* ---- receiving ------------------------------------------------------------- */

static void on_message(struct conn *c)
{
    if (cfg.session) {
        if (c->first_seen && c->first == '!') return; /* the hello or the server's ack */
        c->seq_in++;
        if (c->seq_in - c->acked_in >= 32) session_ack(c);
        if (phase == P_MEASURE) { st.msgs++; st.bytes += c->msg_len; }
        if (c->msg_len != (uint64_t)cfg.size) st.size_errors++;
    } else {
        if (phase == P_MEASURE) { st.msgs++; st.bytes += c->msg_len; }
        if (c->msg_len != (uint64_t)cfg.size) st.size_errors++;
    }
    if (c->inflight) c->inflight--;
    if (cfg.mode == M_IDLE && phase == P_VERIFY) {
        double rtt = now() - c->t_mark;
        if (rtt > st.verify_max_rtt) st.verify_max_rtt = rtt;
        st.verified++;
        return;
    }
    if (phase == P_DONE || phase == P_AFTER || c->state != S_OPEN) return;
    if (cfg.mode == M_ECHO || (cfg.mode == M_BROADCAST && c == &conns[0]))
        queue_msgs(c, 1);
}

static void on_control(struct conn *c)
{
    int op = c->hdr[0] & 15;
    if (op == 9) { st.pings++; queue_ctrl(c, 10, c->ctrl, c->ctrl_len); }
    if (op != 8 || c->close_received) return;
    c->close_received = 1;
    c->t_mark = now();
    if (c->close_sent) { /* our close answered: one handshake cycle done */
        if (cfg.mode == M_HANDSHAKE && phase == P_MEASURE) st.msgs++;
    } else {
        st.closed_by_server++;
        start_close(c);
    }
}

static int frame_done(struct conn *c)
{
    int fin = c->hdr[0] & 0x80;
    c->hlen = 0;
    if ((c->hdr[0] & 15) >= 8) on_control(c);
    else if (fin) {
        if (c->z && z_message_end(c) < 0) return -1;
        on_message(c);
        c->msg_len = 0;
    }
    return 0;
}

static size_t header_size(const struct conn *c)
{
    if (c->hlen < 2) return 2;
    int l = c->hdr[1] & 127;
    return l == 126 ? 4 : l == 127 ? 10 : 2;
}

/* A frame header is complete: validate it and set up the payload to skip. */
static int header_done(struct conn *c)
{
    if (c->hdr[1] & 0x80) return -1; /* servers never mask */
    int op = c->hdr[0] & 15, rsv = c->hdr[0] & 0x70;
    /* RSV1: only with --deflate, on the first frame of a data message */
    if (rsv && (rsv != 0x40 || !c->z || op == 0 || op >= 8)) return -1;
    uint64_t len = c->hdr[1] & 127;
    if (len >= 126) {
        len = 0;
        for (size_t i = 2; i < c->hlen; i++) len = len << 8 | c->hdr[i];
    }
    if ((c->hdr[0] & 15) >= 8) {
        if (len > 125) return -1;
        c->ctrl_len = 0;
    } else {
        if (c->hdr[0] & 15) c->first_seen = 0; /* the first frame of a message */
        c->msg_len += len;
        if (c->z && op != 0) {
            c->z->compressed = rsv != 0;
            c->z->collect = rsv && c->z->pm.server_no_context_takeover;
            c->z->clen = 0;
            c->z->mlen = 0;
            c->z->overflow = 0;
        }
    }
    c->remaining = len;
    if (len == 0) return frame_done(c);
    return 0;
}

/* Feed received bytes through the frame parser; returns -1 on protocol error.
 * Only the header is copied; payloads are skipped (control payloads kept). */
static int parse(struct conn *c, const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n;
    while (p < end) {
        if (c->hlen < header_size(c)) {
            c->hdr[c->hlen++] = *p++;
            if (c->hlen == header_size(c) && header_done(c) < 0) return -1;
            continue;
        }
        size_t take = (size_t)(end - p) < c->remaining ? (size_t)(end - p) : c->remaining;
        if ((c->hdr[0] & 15) >= 8) { memcpy(c->ctrl + c->ctrl_len, p, take); c->ctrl_len += take; }
        else {
            if (!c->first_seen && take) { c->first = *p; c->first_seen = 1; }
            if (c->z && z_payload(c, p, take) < 0) return -1;
        }
        p += take;
        c->remaining -= take;
        if (!c->remaining && frame_done(c) < 0) return -1;
    }
    return 0;
}

static void on_readable(struct conn *c, int hup)
{
    for (;;) {
        ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            if (c->state == S_CLOSING) { /* the end of a close handshake */
                if (!c->close_received && cfg.mode == M_HANDSHAKE && phase == P_MEASURE)
                    st.msgs++; /* the server answered our close with EOF only */
            } else if (c->state == S_OPEN) st.closed_by_server++;
            else st.connect_errors++;
            conn_close(c);
            return;
        }
        if (n < 0) return;
        if (phase == P_MEASURE) st.wire_in += n;
        size_t off = 0;
        if (c->state == S_HANDSHAKE) {
            ssize_t used = read_handshake(c, rbuf, n);
            if (used < 0) return;
            off = used;
        }
        if (c->state >= S_OPEN && parse(c, rbuf + off, n - off) < 0) {
            st.protocol_errors++;
            conn_close(c);
            return;
        }
        /* A short read drained the socket and the next arrival raises a new edge;
         * but an EOF already reported (hup) raises none, so read on to see it. */
        if (n < (ssize_t)sizeof rbuf && !hup) return;
    }
}

static void on_event(struct conn *c, uint32_t ev)
{
    if (c->state == S_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP)) { st.connect_errors++; conn_close(c); return; }
        if (!(ev & EPOLLOUT)) return;
        send_handshake(c);
        if (c->state != S_HANDSHAKE) return;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        on_readable(c, ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
    if (c->state >= S_OPEN) flush(c);
}

/* ---- phases ------------------------------------------------------------ */

/* Open connections up to the target, never more than --concurrency at once
 * (a burst of SYNs would overflow a small listen backlog and stall for 1 s). */
static void open_more(void)
{
    int target = cfg.mode == M_HANDSHAKE ? cfg.loops : cfg.conns;
    if (cfg.mode == M_HANDSHAKE) {
        if (phase == P_DONE) return;
        for (int i = 0; i < target; i++)
            if (conns[i].state == S_FREE) conn_start(&conns[i]);
        return;
    }
    while (next_to_open < target && pending_opens < cfg.concurrency)
        conn_start(&conns[next_to_open++]);
}

static void start_traffic(void)
{
    if (cfg.mode == M_ECHO)
        for (int i = 0; i < nconns; i++)
            if (conns[i].state == S_OPEN) { queue_msgs(&conns[i], cfg.inflight); flush(&conns[i]); }
    if (cfg.mode == M_BROADCAST && conns[0].state == S_OPEN) {
        queue_msgs(&conns[0], cfg.inflight);
        flush(&conns[0]);
    }
}

/* Idle mode: one message on --verify connections spread over the whole set
 * (first and last included), to show the server still serves them all. */
static void start_verify(void)
{
    if (cfg.verify > nconns) cfg.verify = nconns;
    for (int k = 0; k < cfg.verify; k++) {
        int i = cfg.verify > 1 ? (int)((long long)k * (nconns - 1) / (cfg.verify - 1)) : 0;
        struct conn *c = &conns[i];
        if (c->state != S_OPEN) continue;
        c->t_mark = now();
        queue_msgs(c, 1);
        flush(c);
    }
}

/* Handshake mode: free loops whose server never finished the close (1 s after
 * its close frame, 5 s in all), so a stuck connection cannot stall a loop. */
static void sweep_loops(double t)
{
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->state == S_FREE) continue;
        if (c->close_received ? t - c->t_mark > 1.0 : t - c->t_mark > 5.0) {
            if (!c->close_received) st.handshake_errors++;
            conn_close(c);
        }
    }
}

static void print_result(double measured)
{
    double rate = measured > 0 ? st.msgs / measured : 0;
    printf("{\"mode\": \"%s\", \"conns\": %d, \"size\": %d, \"inflight\": %d, "
           "\"seconds\": %.3f, \"messages\": %llu, \"rate\": %.1f, \"bytes_per_s\": %.1f, "
           "\"open\": %llu, \"handshakes\": %llu, \"connect_errors\": %llu, "
           "\"handshake_errors\": %llu, \"protocol_errors\": %llu, \"closed_by_server\": %llu, "
           "\"size_errors\": %llu, \"pings\": %llu, \"verified\": %llu, "
           "\"verify_expected\": %d, \"verify_max_rtt_ms\": %.3f, \"slow_cycles\": %llu, "
           "\"max_cycle_ms\": %.1f, \"sent\": %llu, \"wire_out\": %llu, \"wire_in\": %llu, "
           "\"wire_out_per_msg\": %.1f, \"wire_in_per_msg\": %.1f, \"deflate\": %d, "
           "\"deflate_answer\": \"%s\", \"compressed_in\": %llu, \"content_errors\": %llu, "
           "\"deflate_declined\": %llu, \"deflate_error\": \"%s\"}\n",
           (const char *[]){"echo", "broadcast", "handshake", "idle"}[cfg.mode],
           cfg.mode == M_HANDSHAKE ? cfg.loops : cfg.conns, cfg.size, cfg.inflight, measured,
           (unsigned long long)st.msgs, rate, measured > 0 ? st.bytes / measured : 0,
           (unsigned long long)st.open, (unsigned long long)st.handshakes,
           (unsigned long long)st.connect_errors, (unsigned long long)st.handshake_errors,
           (unsigned long long)st.protocol_errors, (unsigned long long)st.closed_by_server,
           (unsigned long long)st.size_errors, (unsigned long long)st.pings,
           (unsigned long long)st.verified, cfg.mode == M_IDLE ? cfg.verify : 0,
           st.verify_max_rtt * 1e3, (unsigned long long)st.slow_cycles, st.max_cycle * 1e3,
           (unsigned long long)st.sent, (unsigned long long)st.wire_out,
           (unsigned long long)st.wire_in, st.sent ? (double)st.wire_out / st.sent : 0,
           st.msgs ? (double)st.wire_in / st.msgs : 0, cfg.deflate, deflate_answer,
           (unsigned long long)st.compressed_in, (unsigned long long)st.content_errors,
           (unsigned long long)st.deflate_declined, deflate_error ? deflate_error : "");
    fflush(stdout);
}

/* Advance the phase machine; called after every epoll_wait. */
static void tick(double t)
{
    if (t - t_start > cfg.timeout) {
        printf("{\"error\": \"timeout in phase %d\", \"open\": %llu, \"connect_errors\": %llu, "
               "\"handshake_errors\": %llu}\n", phase, (unsigned long long)st.open,
               (unsigned long long)st.connect_errors, (unsigned long long)st.handshake_errors);
        fflush(stdout);
        exit(3);
    }
    static double last_sweep;
    if (cfg.mode == M_HANDSHAKE && t - last_sweep > 0.1) { sweep_loops(t); last_sweep = t; }
    switch (phase) {
    case P_CONNECT:
        open_more();
        if (cfg.mode == M_HANDSHAKE) { phase = P_WARMUP; t_phase = t; break; }
        if (next_to_open < cfg.conns || pending_opens) break;
        if ((int)st.open < cfg.conns && cfg.mode != M_IDLE) {
            printf("{\"error\": \"only %llu of %d connections opened\", \"connect_errors\": %llu, "
                   "\"handshake_errors\": %llu, \"deflate_declined\": %llu, \"deflate_error\": "
                   "\"%s\"}\n", (unsigned long long)st.open, cfg.conns,
                   (unsigned long long)st.connect_errors, (unsigned long long)st.handshake_errors,
                   (unsigned long long)st.deflate_declined, deflate_error ? deflate_error : "");
            fflush(stdout);
            exit(3);
        }
        t_phase = t;
        if (cfg.mode == M_IDLE || cfg.pause) {
            printf("{\"ready\": %llu, \"connect_seconds\": %.3f, \"connect_errors\": %llu, "
                   "\"handshake_errors\": %llu, \"deflate_answer\": \"%s\"}\n",
                   (unsigned long long)st.open, t - t_start, (unsigned long long)st.connect_errors,
                   (unsigned long long)st.handshake_errors, deflate_answer);
            fflush(stdout);
            phase = cfg.mode == M_IDLE ? P_HOLD : P_PAUSE;
        } else {
            phase = P_WARMUP;
            start_traffic();
        }
        break;
    case P_WARMUP:
        if (cfg.mode == M_HANDSHAKE) open_more();
        if (t - t_phase >= cfg.warmup) { phase = P_MEASURE; t_phase = t; }
        break;
    case P_MEASURE:
        if (cfg.mode == M_HANDSHAKE) open_more();
        if (t - t_phase >= cfg.duration) {
            print_result(t - t_phase);
            phase = cfg.pause ? P_AFTER : P_DONE;
            t_phase = t;
        }
        break;
    case P_HOLD:
        if (t - t_phase >= cfg.hold) { phase = P_VERIFY; t_phase = t; start_verify(); }
        break;
    case P_VERIFY:
        if ((int)st.verified >= cfg.verify || t - t_phase > 10) { print_result(0); phase = P_DONE; }
        break;
    case P_PAUSE: /* until a line on stdin, or --hold seconds */
        if (t - t_phase >= cfg.hold) { phase = P_WARMUP; t_phase = t; start_traffic(); }
        break;
    case P_AFTER:
        if (t - t_phase >= cfg.hold) phase = P_DONE;
        break;
    case P_DONE:
        break;
    }
}

/* ---- main ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --mode echo|broadcast|handshake|idle --port P [--host 127.0.0.1]\n"
            "  [--conns N] [--size M] [--inflight K] [--binary] [--duration T] [--warmup W]\n"
            "  [--loops L] [--sources S] [--concurrency C] [--hold H] [--verify V]\n"
            "  [--timeout S] [--path /] [--pause] [--deflate] [--deflate-offer OFFER]\n"
            "  [--deflate-mem-level 1..9] [--dump-pool] [--session]\n");
    exit(2);
}

static int dump_pool; /* --dump-pool: print the payload pool, one per line, and exit */

static void parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"mode", 1, 0, 'm'}, {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"conns", 1, 0, 'n'},
        {"size", 1, 0, 's'}, {"inflight", 1, 0, 'k'}, {"binary", 0, 0, 'b'},
        {"duration", 1, 0, 'd'}, {"warmup", 1, 0, 'w'}, {"loops", 1, 0, 'l'},
        {"sources", 1, 0, 'S'}, {"concurrency", 1, 0, 'c'}, {"hold", 1, 0, 'H'},
        {"verify", 1, 0, 'v'}, {"timeout", 1, 0, 't'}, {"path", 1, 0, 'P'},
        {"pause", 0, 0, 'q'}, {"deflate", 0, 0, 'z'}, {"deflate-offer", 1, 0, 'o'},
        {"deflate-mem-level", 1, 0, 'L'}, {"dump-pool", 0, 0, 'D'}, {"session", 0, 0, 'x'},
        {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm':
            if (!strcmp(optarg, "echo")) cfg.mode = M_ECHO;
            else if (!strcmp(optarg, "broadcast")) cfg.mode = M_BROADCAST;
            else if (!strcmp(optarg, "handshake")) cfg.mode = M_HANDSHAKE;
            else if (!strcmp(optarg, "idle")) cfg.mode = M_IDLE;
            else usage();
            break;
        case 'h': cfg.host = optarg; break;
        case 'p': cfg.port = atoi(optarg); break;
        case 'n': cfg.conns = atoi(optarg); break;
        case 's': cfg.size = atoi(optarg); break;
        case 'k': cfg.inflight = atoi(optarg); break;
        case 'b': cfg.binary = 1; break;
        case 'd': cfg.duration = atof(optarg); break;
        case 'w': cfg.warmup = atof(optarg); break;
        case 'l': cfg.loops = atoi(optarg); break;
        case 'S': cfg.sources = atoi(optarg); break;
        case 'c': cfg.concurrency = atoi(optarg); break;
        case 'H': cfg.hold = atof(optarg); break;
        case 'v': cfg.verify = atoi(optarg); break;
        case 't': cfg.timeout = atof(optarg); break;
        case 'P': cfg.path = optarg; break;
        case 'q': cfg.pause = 1; break;
        case 'z': cfg.deflate = 1; break;
        case 'o': cfg.offer = optarg; break;
        case 'L': cfg.mem_level = atoi(optarg); break;
        case 'D': dump_pool = 1; break;
        case 'x': cfg.session = 1; break;
        default: usage();
        }
    }
    if (cfg.session && cfg.deflate) usage(); /* the session envelope is measured uncompressed */
    if (dump_pool) {
        if (cfg.size < 10) usage();
        char *p = pool_build(cfg.size);
        for (int i = 0; i < POOL; i++) printf("%.*s\n", cfg.size, p + (size_t)i * cfg.size);
        exit(0);
    }
    if (cfg.deflate && (cfg.size < 10 || cfg.size > (16 << 20) || cfg.mem_level < 1 ||
                        cfg.mem_level > 9 || strlen(cfg.offer) > 200 || strpbrk(cfg.offer, "\r\n")))
        usage(); /* payloads name their pool index: at least 10 bytes */
    struct in_addr a;
    if (!cfg.port || inet_pton(AF_INET, cfg.host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127)
        usage(); /* loopback only */
    if (cfg.conns < 1 || cfg.loops < 1 || cfg.inflight < 1 || cfg.size < 0 || cfg.concurrency < 1)
        usage();
    if (cfg.session) {
        if (cfg.mode != M_ECHO || cfg.binary) usage();
        static char path[512];
        snprintf(path, sizeof path, "%s%swsdaemon_session=new", cfg.path, strchr(cfg.path, '?') ? "&" : "?");
        cfg.path = path;
    }
    if (cfg.timeout <= 0)
        cfg.timeout = 60 + cfg.warmup + cfg.duration + (cfg.mode == M_IDLE || cfg.pause ? cfg.hold : 0);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    rng_state = (uint64_t)now() * 1e9 + getpid();
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    nconns = cfg.mode == M_HANDSHAKE ? cfg.loops : cfg.conns;
    if ((rlim_t)nconns + 16 > rl.rlim_cur) { errno = EMFILE; die("--conns above RLIMIT_NOFILE"); }
    conns = calloc(nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) conns[i].fd = -1;
    build_stream();
    if (cfg.deflate) {
        pool = pool_build(cfg.size);
        zscratch = malloc(pmd_room(cfg.size));
        uint64_t r = rng();
        memcpy(zmask, &r, 4);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (cfg.mode == M_IDLE || cfg.pause) { /* a line on stdin ends the hold or a pause */
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = STDIN_TAG};
        epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
    }
    t_start = now();
    struct epoll_event evs[512];
    while (phase != P_DONE) {
        tick(now());
        if (phase == P_DONE) break;
        int n = epoll_wait(epfd, evs, 512, 20);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == STDIN_TAG) {
                char line[64];
                if (read(0, line, sizeof line) <= 0) epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
                if (phase == P_HOLD) cfg.hold = 0;
                else if (phase == P_PAUSE) { phase = P_WARMUP; t_phase = now(); start_traffic(); }
                else if (phase == P_AFTER) phase = P_DONE;
                continue;
            }
            struct conn *c = evs[i].data.ptr;
            if (c->state != S_FREE) on_event(c, evs[i].events);
        }
    }
    return 0;
}
