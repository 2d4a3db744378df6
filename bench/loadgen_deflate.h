/*
 * loadgen_deflate.h - the self-contained parts of loadgen's permessage-deflate
 * mode (RFC 7692): the pool of JSON game-state payloads, the parser of the
 * server's Sec-WebSocket-Extensions answer, and compressing one message into
 * one masked client frame. The glue to connections lives in loadgen.c.
 */
#include <ctype.h>
#include <zlib.h>

/* ---- payload pool --------------------------------------------------------- */

/* Distinct messages of exactly --size bytes each; a message names its pool
 * index in bytes 7..9 ({"id":"NNN",...) so a receiver can check any message it
 * gets against the pool, whatever order a server delivered them in. */
#define POOL 256

static const char *const NAMES[] = {
    "Aria", "Bjorn", "Chen", "Dara", "Emeka", "Freya", "Goran", "Hana", "Ivo", "Jun",
    "Kofi", "Lena", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
    "Uma", "Vik", "Wen", "Ximena", "Yusuf", "Zoe", "Astrid", "Bao", "Cyrus", "Dmitri"};
static const char *const STATES[] = {"idle", "run", "jump", "attack", "dead", "spawn", "crouch"};
static const char *const WORDS[] = {"gg", "nice", "push", "mid", "left", "heal", "wait", "go",
                                    "lol", "regroup", "flank", "boss", "loot", "ok", "help"};

static uint64_t pool_rng = 0x9e3779b97f4a7c15ULL; /* fixed seed: the same pool every run */

static uint32_t prand(uint32_t n)
{
    pool_rng ^= pool_rng >> 12; pool_rng ^= pool_rng << 25; pool_rng ^= pool_rng >> 27;
    return (uint32_t)((pool_rng * 2685821657736338717ULL) >> 33) % n;
}

/* Fill out[0..size) with message number id: a game-state tick with as many
 * players as fit, then a chat line padding it to exactly size bytes. */
static void pool_message(char *out, int size, int id)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "{\"id\":\"%03d\",\"type\":\"state\",\"tick\":%u,\"players\":[",
                     id, 40000 + prand(20000));
    int first = 1;
    for (;;) {
        char p[128];
        int k = snprintf(p, sizeof p, "%s{\"n\":\"%s\",\"x\":%d.%u,\"y\":%d.%u,\"hp\":%u,\"st\":\"%s\"}",
                         first ? "" : ",", NAMES[prand(30)], (int)prand(2000) - 1000, prand(100),
                         (int)prand(2000) - 1000, prand(100), prand(101), STATES[prand(7)]);
        if (n + k + 2 + 8 + 1 > size || n + k >= (int)sizeof buf - 16) break;
        memcpy(buf + n, p, k);
        n += k;
        first = 0;
    }
    n += snprintf(buf + n, sizeof buf - n, "]");
    /* ,"m":"<chat>"} : 8 bytes of syntax around the chat text */
    int text = size - n - 8;
    if (text < 0) { /* too small for even one player: a bare padded object */
        n = snprintf(buf, sizeof buf, "{\"id\":\"%03d\"", id);
        text = size - n - 8;
    }
    n += snprintf(buf + n, sizeof buf - n, ",\"m\":\"");
    while (text > 0) {
        const char *w = WORDS[prand(15)];
        int k = strlen(w);
        if (k + 1 > text) { memset(buf + n, '!', text); n += text; break; }
        memcpy(buf + n, w, k);
        buf[n + k] = ' ';
        n += k + 1;
        text -= k + 1;
    }
    memcpy(buf + n, "\"}", 2);
    memcpy(out, buf, size);
}

/* The pool: POOL messages of size bytes, one after another. */
static char *pool_build(int size)
{
    char *pool = malloc((size_t)POOL * size);
    for (int i = 0; i < POOL; i++) pool_message(pool + (size_t)i * size, size, i);
    return pool;
}

/* Is msg (len bytes) exactly the pool message it names? */
static int pool_check(const char *pool, int size, const uint8_t *msg, size_t len)
{
    if ((int)len != size || size < 10 || memcmp(msg, "{\"id\":\"", 7)) return 0;
    int id = 0;
    for (int i = 7; i < 10; i++) {
        if (msg[i] < '0' || msg[i] > '9') return 0;
        id = id * 10 + msg[i] - '0';
    }
    return id < POOL && !memcmp(msg, pool + (size_t)id * size, size);
}

/* ---- negotiation ------------------------------------------------------------- */

struct pmd_params {
    int server_no_context_takeover, client_no_context_takeover;
    int server_max_window_bits, client_max_window_bits; /* 0: not in the answer */
};

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    return p;
}

static const char *token_end(const char *p, const char *end)
{
    while (p < end && (isalnum((unsigned char)*p) || strchr("!#$%&'*+-.^_`|~", *p))) p++;
    return p;
}

/* Parse the server's answer [v, end) to our single permessage-deflate offer.
 * Returns NULL and fills out, or a reason the answer is not acceptable (another
 * extension, unknown or duplicated parameter, bad value, a parameter we did not
 * allow). */
static const char *pmd_parse(const char *v, const char *end, int offered_client_bits,
                             struct pmd_params *out)
{
    memset(out, 0, sizeof *out);
    const char *p = skip_ws(v, end), *t = token_end(p, end);
    if (t - p != 18 || strncasecmp(p, "permessage-deflate", 18)) return "not permessage-deflate";
    p = skip_ws(t, end);
    int seen = 0;
    while (p < end) {
        if (*p == ',') return "more than one extension";
        if (*p != ';') return "bad syntax";
        p = skip_ws(p + 1, end);
        t = token_end(p, end);
        if (t == p) return "empty parameter";
        const char *name = p;
        size_t nlen = t - p;
        char value[16] = "";
        int has_value = 0;
        p = skip_ws(t, end);
        if (p < end && *p == '=') {
            p = skip_ws(p + 1, end);
            int quoted = p < end && *p == '"';
            if (quoted) p++;
            t = token_end(p, end);
            if (t == p || t - p >= (long)sizeof value) return "bad parameter value";
            memcpy(value, p, t - p);
            value[t - p] = 0;
            p = t;
            if (quoted) {
                if (p >= end || *p != '"') return "unterminated quoted value";
                p++;
            }
            has_value = 1;
            p = skip_ws(p, end);
        }
        static const char *const known[] = {"server_no_context_takeover", "client_no_context_takeover",
                                            "server_max_window_bits", "client_max_window_bits"};
        int which = -1;
        for (int i = 0; i < 4; i++)
            if (nlen == strlen(known[i]) && !strncasecmp(name, known[i], nlen)) which = i;
        if (which < 0) return "unknown parameter";
        if (seen & (1 << which)) return "duplicated parameter";
        seen |= 1 << which;
        if (which < 2) {
            if (has_value) return "no_context_takeover with a value";
            *(which ? &out->client_no_context_takeover : &out->server_no_context_takeover) = 1;
            continue;
        }
        int bits = atoi(value);
        if (!has_value || strlen(value) > 2 || bits < 8 || bits > 15) return "window bits not 8..15";
        if (which == 3 && !offered_client_bits) return "client_max_window_bits we did not offer";
        if (which == 3 && bits == 8) return "client_max_window_bits=8 (zlib raw deflate needs 9+)";
        *(which == 3 ? &out->client_max_window_bits : &out->server_max_window_bits) = bits;
    }
    return NULL;
}

/* ---- compression ----------------------------------------------------------------- */

/* Compress one message with the connection's deflater into out (room:
 * pmd_room(len)), the 00 00 ff ff tail stripped: the payload of a frame with
 * RSV1. Returns its length, or -1 on a zlib failure. */
static size_t pmd_room(size_t len) { return compressBound(len) + 16; }

static long pmd_compress(z_stream *zs, const uint8_t *msg, size_t len, uint8_t *out)
{
    size_t room = pmd_room(len);
    zs->next_in = (Bytef *)msg;
    zs->avail_in = len;
    zs->next_out = out;
    zs->avail_out = room;
    if (deflate(zs, Z_SYNC_FLUSH) != Z_OK || zs->avail_in || !zs->avail_out) return -1;
    size_t clen = room - zs->avail_out;
    if (clen >= 4 && !memcmp(out + clen - 4, "\x00\x00\xff\xff", 4)) clen -= 4;
    return clen;
}
