/*
 * ws_accept.h - SHA-1 and base64, just enough for the RFC 6455 handshake.
 *
 * Shared by loadgen.c (checks Sec-WebSocket-Accept) and peers/c_echo.c
 * (computes it). Header-only so that each benchmark program stays one gcc
 * command with no library dependency. Not for any security use.
 */
#ifndef WS_ACCEPT_H
#define WS_ACCEPT_H

#include <stdint.h>
#include <string.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static uint32_t ws_rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void ws_sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = ws_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)      { f = (b & c) | (~b & d);           k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d;                    k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d);  k = 0x8F1BBCDC; }
        else             { f = b ^ c ^ d;                    k = 0xCA62C1D6; }
        uint32_t t = ws_rol(a, 5) + f + e + k + w[i];
        e = d; d = c; c = ws_rol(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

/* SHA-1 of a short message (len < 120 bytes is all the handshake needs). */
static void ws_sha1(const uint8_t *msg, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    uint8_t buf[128] = {0};
    size_t full = len & ~(size_t)63;
    for (size_t i = 0; i < full; i += 64)
        ws_sha1_block(h, msg + i);
    size_t rest = len - full, blocks = rest + 9 > 64 ? 2 : 1;
    memcpy(buf, msg + full, rest);
    buf[rest] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        buf[blocks * 64 - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t i = 0; i < blocks; i++)
        ws_sha1_block(h, buf + 64 * i);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = h[i] >> 24; out[4 * i + 1] = h[i] >> 16;
        out[4 * i + 2] = h[i] >> 8; out[4 * i + 3] = h[i];
    }
}

/* Standard base64 with padding; out needs 4*ceil(len/3)+1 bytes. */
static void ws_base64(const uint8_t *in, size_t len, char *out)
{
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = t[v >> 18]; *out++ = t[(v >> 12) & 63];
        *out++ = t[(v >> 6) & 63]; *out++ = t[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        *out++ = t[v >> 18]; *out++ = t[(v >> 12) & 63];
        *out++ = i + 1 < len ? t[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = 0;
}

/* Sec-WebSocket-Accept for a key (the 24-char base64 client nonce). */
static void ws_accept_for_key(const char *key, size_t keylen, char out[29])
{
    uint8_t buf[128], digest[20];
    if (keylen > sizeof(buf) - sizeof(WS_GUID))
        keylen = sizeof(buf) - sizeof(WS_GUID);
    memcpy(buf, key, keylen);
    memcpy(buf + keylen, WS_GUID, sizeof(WS_GUID) - 1);
    ws_sha1(buf, keylen + sizeof(WS_GUID) - 1, digest);
    ws_base64(digest, 20, out);
}

#endif
