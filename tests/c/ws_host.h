/* ws_host.h: a minimal native WebSocket server (RFC 6455: the HTTP upgrade,
 * framing, ping/pong, close) that serves a switchboard_server purely through
 * the host-socket ABI, as any native host would: every request header goes to
 * the kit, which admits or refuses; frames go in, the kit's output comes out.
 * A thread per connection reads; a second one writes what
 * switchboard_conn_next gives. Test code: no TLS, no extensions. */
#ifndef SWITCHBOARD_WS_HOST_H
#define SWITCHBOARD_WS_HOST_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "switchboard.h"

/* Frames larger than this are cut off here (1009) before the kit sees them;
 * the kit applies the configured, smaller, limit itself. */
#define WS_HOST_MAX_FRAME (1u << 20)
#define WS_HOST_MAX_HEAD 8192

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept ---- */

static uint32_t ws_rol(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

static void ws_sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    unsigned char *buf = calloc(total, 1);
    if (buf == NULL) abort();
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) buf[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)buf[off + 4 * i] << 24 | (uint32_t)buf[off + 4 * i + 1] << 16 |
                   (uint32_t)buf[off + 4 * i + 2] << 8 | buf[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = ws_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = ws_rol(a, 5) + f + e + k + w[i];
            e = d; d = c; c = ws_rol(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(buf);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

static void ws_base64(const unsigned char *in, size_t len, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < len ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

static void ws_accept_key(const char *key, char out[32]) {
    char joined[128];
    snprintf(joined, sizeof joined, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    unsigned char digest[20];
    ws_sha1((const unsigned char *)joined, strlen(joined), digest);
    ws_base64(digest, 20, out);
}

/* ---- socket helpers ---- */

static int ws_write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int ws_read_all(int fd, void *data, size_t len) {
    char *p = data;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One unmasked server frame. */
static int ws_send_frame(int fd, pthread_mutex_t *lock, int opcode, const void *data, size_t len) {
    unsigned char head[10];
    size_t h = 0;
    head[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        head[h++] = (unsigned char)len;
    } else if (len < 65536) {
        head[h++] = 126;
        head[h++] = (unsigned char)(len >> 8);
        head[h++] = (unsigned char)len;
    } else {
        head[h++] = 127;
        for (int i = 7; i >= 0; i--) head[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    pthread_mutex_lock(lock);
    int r = ws_write_all(fd, head, h);
    if (r == 0 && len > 0) r = ws_write_all(fd, data, len);
    pthread_mutex_unlock(lock);
    return r;
}

static int ws_send_close(int fd, pthread_mutex_t *lock, uint16_t code, const char *reason) {
    unsigned char body[125];
    size_t n = reason ? strlen(reason) : 0;
    if (n > 123) n = 123;
    body[0] = (unsigned char)(code >> 8);
    body[1] = (unsigned char)code;
    if (n) memcpy(body + 2, reason, n);
    return ws_send_frame(fd, lock, 8, body, n + 2);
}

/* ---- the host ---- */

typedef struct ws_host {
    switchboard_server *server;
    int listen_fd;
    uint16_t port;
    pthread_t acceptor;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    int live; /* connection threads still running */
    struct ws_conn *conns[1024]; /* their sockets, cut at stop (past the bound: not tracked) */
    volatile int stopping;
} ws_host;

typedef struct ws_conn {
    ws_host *host;
    int fd;
    char peer[INET6_ADDRSTRLEN];
    switchboard_conn *conn;
    pthread_mutex_t write_lock;
    volatile int done;     /* the reader ended: the writer stops */
    volatile int closing;  /* a close frame went out */
} ws_conn;

static void ws_http_answer(int fd, int status, const char *extra) {
    char buf[256];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\n%s%sContent-Length: 0\r\nConnection: close\r\n\r\n", status,
                     status == 404 ? "Not Found" : "Refused", extra ? extra : "", extra ? "\r\n" : "");
    if (n > 0) ws_write_all(fd, buf, (size_t)n);
}

/* The writer: what the kit says to do, until a close, a drop or the reader's end. */
static void *ws_writer(void *arg) {
    ws_conn *c = arg;
    while (!c->done) {
        switchboard_output *out = NULL;
        switchboard_result r = switchboard_conn_next(c->conn, 100, &out);
        if (r == SWITCHBOARD_RESULT_TIMEOUT) continue;
        if (r != SWITCHBOARD_RESULT_OK) break;
        switchboard_output_kind kind = switchboard_output_get_kind(out);
        int stop = 0;
        if (kind == SWITCHBOARD_OUTPUT_KIND_FRAMES) {
            for (size_t i = 0; i < switchboard_output_count(out); i++) {
                size_t len = 0;
                const char *frame = switchboard_output_frame(out, i, &len);
                /* Binary on the MessagePack subprotocol, text otherwise. */
                int op = switchboard_output_is_binary(out) ? 2 : 1;
                if (ws_send_frame(c->fd, &c->write_lock, op, frame, len) != 0) stop = 1;
            }
            switchboard_conn_written(c->conn);
        } else if (kind == SWITCHBOARD_OUTPUT_KIND_CLOSE) {
            c->closing = 1;
            ws_send_close(c->fd, &c->write_lock, switchboard_output_close_code(out),
                          switchboard_output_close_reason(out));
            stop = 1;
        } else if (kind == SWITCHBOARD_OUTPUT_KIND_PING) {
            ws_send_frame(c->fd, &c->write_lock, 9, NULL, 0);
        } else {
            shutdown(c->fd, SHUT_RDWR); /* DROP: no close frame */
            stop = 1;
        }
        switchboard_output_free(out);
        if (stop) break;
    }
    if (c->closing) {
        /* Give the peer 2 s to answer the close, then cut it (the reader ends). */
        for (int i = 0; i < 20 && !c->done; i++) {
            struct timespec pause = {0, 100 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
        if (!c->done) shutdown(c->fd, SHUT_RDWR);
    }
    return NULL;
}

/* Reads frames into the kit; returns the peer's close code, or -1 without one. */
static int ws_read_loop(ws_conn *c) {
    unsigned char *msg = NULL;
    size_t msg_len = 0;
    int msg_op = 0;
    int client_close = -1;
    for (;;) {
        unsigned char h[2];
        if (ws_read_all(c->fd, h, 2) != 0) break;
        int fin = h[0] & 0x80, op = h[0] & 0x0f, masked = h[1] & 0x80;
        uint64_t len = h[1] & 0x7f;
        if (len == 126) {
            unsigned char e[2];
            if (ws_read_all(c->fd, e, 2) != 0) break;
            len = (uint64_t)e[0] << 8 | e[1];
        } else if (len == 127) {
            unsigned char e[8];
            if (ws_read_all(c->fd, e, 8) != 0) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | e[i];
        }
        if (!masked) { switchboard_conn_violation(c->conn, 1002); break; }
        if (msg_len + len > WS_HOST_MAX_FRAME) { switchboard_conn_violation(c->conn, 1009); break; }
        unsigned char key[4];
        if (ws_read_all(c->fd, key, 4) != 0) break;
        unsigned char *payload = malloc(len + 1);
        if (payload == NULL) break;
        if (len > 0 && ws_read_all(c->fd, payload, len) != 0) { free(payload); break; }
        for (uint64_t i = 0; i < len; i++) payload[i] ^= key[i % 4];
        switchboard_conn_heard(c->conn);
        if (op == 8) { /* close */
            client_close = len >= 2 ? (payload[0] << 8 | payload[1]) : 1005;
            if (!c->closing) ws_send_frame(c->fd, &c->write_lock, 8, payload, len >= 2 ? 2 : 0);
            free(payload);
            break;
        } else if (op == 9) { /* ping */
            ws_send_frame(c->fd, &c->write_lock, 10, payload, len);
        } else if (op == 10) { /* pong */
        } else if (op == 0 || op == 1 || op == 2) {
            if (op != 0) msg_op = op;
            unsigned char *grown = realloc(msg, msg_len + len + 1);
            if (grown == NULL) { free(payload); break; }
            msg = grown;
            memcpy(msg + msg_len, payload, len);
            msg_len += len;
            if (fin) {
                /* The kit decides what a binary frame is (MessagePack, or a 1003 close). */
                if (c->closing) {
                } else if (msg_op == 2) switchboard_conn_binary(c->conn, msg, msg_len);
                else switchboard_conn_text(c->conn, (const char *)msg, msg_len);
                msg_len = 0;
            }
        } else {
            switchboard_conn_violation(c->conn, 1002);
        }
        free(payload);
    }
    free(msg);
    return client_close;
}

/* Reads the request head; returns its length, 0 when the peer went away. */
static size_t ws_read_head(int fd, char *buf) {
    size_t n = 0;
    while (n < WS_HOST_MAX_HEAD - 1) {
        ssize_t r = recv(fd, buf + n, 1, 0);
        if (r <= 0) return 0;
        n++;
        buf[n] = '\0';
        if (n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0) return n;
    }
    return 0;
}

static void *ws_serve(void *arg) {
    ws_conn *c = arg;
    char head[WS_HOST_MAX_HEAD];
    switchboard_upgrade *u = NULL;
    if (ws_read_head(c->fd, head) == 0) goto out;
    char method[8], target[2048];
    if (sscanf(head, "%7s %2047s", method, target) != 2) goto out;
    if (strcmp(method, "GET") == 0 && strcmp(target, "/metrics") == 0) {
        /* The kit's OpenMetrics text, on the host's own port. */
        char *text = NULL;
        if (switchboard_server_metrics(c->host->server, &text) == SWITCHBOARD_RESULT_OK) {
            char h[160];
            int n = snprintf(h, sizeof h,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; "
                             "version=1.0.0; charset=utf-8\r\nContent-Length: %zu\r\n"
                             "Connection: close\r\n\r\n",
                             strlen(text));
            ws_write_all(c->fd, h, (size_t)n);
            ws_write_all(c->fd, text, strlen(text));
        }
        switchboard_string_free(text);
        goto out;
    }
    /* The kit knows the upgrade paths (fixed ones and templates). */
    char path_only[2048];
    snprintf(path_only, sizeof path_only, "%.*s", (int)strcspn(target, "?"), target);
    if (!switchboard_server_serves_path(c->host->server, path_only)) {
        ws_http_answer(c->fd, 404, NULL);
        goto out;
    }
    u = switchboard_upgrade_new(c->peer, target);
    const char *key = NULL;
    for (char *line = strstr(head, "\r\n") + 2; *line && strncmp(line, "\r\n", 2) != 0;) {
        char *end = strstr(line, "\r\n");
        *end = '\0';
        char *colon = strchr(line, ':');
        if (colon) {
            *colon = '\0';
            char *value = colon + 1;
            while (*value == ' ') value++;
            switchboard_upgrade_header(u, line, value);
            if (strcasecmp(line, "sec-websocket-key") == 0) key = value;
        }
        line = end + 2;
    }
    uint16_t status = 0;
    switchboard_result r = switchboard_server_admit(c->host->server, u, &status);
    if (r != SWITCHBOARD_RESULT_OK) {
        ws_http_answer(c->fd, status ? status : 500, switchboard_upgrade_refusal_header(u));
        goto out;
    }
    if (key == NULL) { ws_http_answer(c->fd, 400, NULL); goto out; }
    char accept[32], answer[512];
    ws_accept_key(key, accept);
    const char *proto = switchboard_upgrade_subprotocol(u);
    int n = snprintf(answer, sizeof answer,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     accept, proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "", proto ? "\r\n" : "");
    if (ws_write_all(c->fd, answer, (size_t)n) != 0) goto out;
    if (switchboard_upgrade_open(c->host->server, u, SWITCHBOARD_LIVENESS_PINGS, &c->conn) != SWITCHBOARD_RESULT_OK)
        goto out;
    u = NULL; /* consumed */
    pthread_t writer;
    pthread_create(&writer, NULL, ws_writer, c);
    int client_close = ws_read_loop(c);
    c->done = 1;
    switchboard_conn_finish(c->conn, client_close);
    pthread_join(writer, NULL);
    switchboard_conn_free(c->conn);
out:
    switchboard_upgrade_free(u);
    pthread_mutex_lock(&c->host->lock); /* stop() may be cutting this socket */
    close(c->fd);
    c->fd = -1;
    pthread_mutex_unlock(&c->host->lock);
    pthread_mutex_destroy(&c->write_lock);
    ws_host *h = c->host;
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < sizeof h->conns / sizeof h->conns[0]; i++)
        if (h->conns[i] == c) h->conns[i] = NULL;
    free(c);
    if (--h->live == 0) pthread_cond_broadcast(&h->idle);
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static void *ws_accept_loop(void *arg) {
    ws_host *h = arg;
    while (!h->stopping) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = accept(h->listen_fd, (struct sockaddr *)&peer, &plen);
        if (fd < 0) {
            if (h->stopping) break;
            continue;
        }
        ws_conn *c = calloc(1, sizeof *c);
        if (c == NULL) { close(fd); continue; }
        c->host = h;
        c->fd = fd;
        inet_ntop(AF_INET, &peer.sin_addr, c->peer, sizeof c->peer);
        pthread_mutex_init(&c->write_lock, NULL);
        pthread_mutex_lock(&h->lock);
        h->live++;
        for (size_t i = 0; i < sizeof h->conns / sizeof h->conns[0]; i++)
            if (h->conns[i] == NULL) { h->conns[i] = c; break; }
        pthread_mutex_unlock(&h->lock);
        pthread_t t;
        pthread_create(&t, NULL, ws_serve, c);
        pthread_detach(t);
    }
    return NULL;
}

/* Serves `server` at its configured paths on 127.0.0.1 (a free port: h->port). */
static int ws_host_start(ws_host *h, switchboard_server *server) {
    memset(h, 0, sizeof *h);
    h->server = server;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->idle, NULL);
    h->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (bind(h->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(h->listen_fd, 64) != 0 ||
        getsockname(h->listen_fd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    h->port = ntohs(a.sin_port);
    return pthread_create(&h->acceptor, NULL, ws_accept_loop, h);
}

/* Stops accepting, cuts the connections still open (drain the server first:
 * they are the ones the drain timeout gave up on), and waits for their threads. */
static void ws_host_stop(ws_host *h) {
    h->stopping = 1;
    shutdown(h->listen_fd, SHUT_RDWR);
    close(h->listen_fd);
    pthread_join(h->acceptor, NULL);
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < sizeof h->conns / sizeof h->conns[0]; i++)
        if (h->conns[i] != NULL && h->conns[i]->fd >= 0) shutdown(h->conns[i]->fd, SHUT_RDWR);
    while (h->live > 0) pthread_cond_wait(&h->idle, &h->lock);
    pthread_mutex_unlock(&h->lock);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->idle);
}

#endif
