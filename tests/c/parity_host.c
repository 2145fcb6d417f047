/* parity_host.c: the parity host of the C host-socket mode (tests/parity/
 * HOSTS.md). Reads the config JSON named by SWITCHBOARD_PARITY_CONFIG (a flat
 * object of numbers, strings, string lists and one string map), creates a
 * server without a listener, serves it with the native WebSocket host of
 * ws_host.h on 127.0.0.1, prints its URL, and on SIGTERM drains and exits 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_host.h"

/* ---- a small reader for the flat config object ---- */

typedef struct { const char *p; } json_in;

static void ws_skip(json_in *in) { while (*in->p == ' ' || *in->p == '\n' || *in->p == '\t' || *in->p == '\r') in->p++; }

/* A string without escapes beyond \" and \\ (enough for config values). */
static int json_string(json_in *in, char *out, size_t cap) {
    ws_skip(in);
    if (*in->p != '"') return -1;
    in->p++;
    size_t n = 0;
    while (*in->p && *in->p != '"') {
        if (*in->p == '\\' && in->p[1]) in->p++;
        if (n + 1 < cap) out[n++] = *in->p;
        in->p++;
    }
    if (*in->p != '"') return -1;
    in->p++;
    out[n] = '\0';
    return 0;
}

static int expect(json_in *in, char c) {
    ws_skip(in);
    if (*in->p != c) return -1;
    in->p++;
    return 0;
}

static int fail(const char *what) {
    fprintf(stderr, "parity_host: %s\n", what);
    return 2;
}

typedef switchboard_result (*set_u64)(switchboard_server_config *, uint64_t);

static set_u64 number_setter(const char *key) {
    static const struct { const char *key; set_u64 set; } table[] = {
        {"max_message_bytes", switchboard_server_config_set_max_message_bytes},
        {"max_conns", switchboard_server_config_set_max_conns},
        {"max_conns_per_ip", switchboard_server_config_set_max_conns_per_ip},
        {"max_pending_per_ip", switchboard_server_config_set_max_pending_per_ip},
        {"max_pending", switchboard_server_config_set_max_pending},
        {"conn_rate_per_ip", switchboard_server_config_set_conn_rate_per_ip},
        {"conn_burst_per_ip", switchboard_server_config_set_conn_burst_per_ip},
        {"max_room_size", switchboard_server_config_set_max_room_size},
        {"max_rooms_per_session", switchboard_server_config_set_max_rooms_per_session},
        {"max_metadata_bytes", switchboard_server_config_set_max_metadata_bytes},
        {"max_away_per_ip", switchboard_server_config_set_max_away_per_ip},
        {"max_away_per_user", switchboard_server_config_set_max_away_per_user},
        {"max_away_sessions", switchboard_server_config_set_max_away_sessions},
        {"away_replay_budget_bytes", switchboard_server_config_set_away_replay_budget_bytes},
        {"outbound_budget_bytes", switchboard_server_config_set_outbound_budget_bytes},
        {"heartbeat_interval_ms", switchboard_server_config_set_heartbeat_ms},
        {"heartbeat_timeout_ms", switchboard_server_config_set_heartbeat_timeout_ms},
        {"resume_window_ms", switchboard_server_config_set_resume_window_ms},
        {"drain_timeout_ms", switchboard_server_config_set_drain_timeout_ms},
        {"http_write_timeout_ms", switchboard_server_config_set_http_write_timeout_ms},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(key, table[i].key) == 0) return table[i].set;
    return NULL;
}

static int apply(switchboard_server_config *cfg, json_in *in, const char *key, char *path) {
    char s[512], t[512];
    ws_skip(in);
    if (*in->p == '"') {
        if (json_string(in, s, sizeof s) != 0) return fail("bad string");
        if (strcmp(key, "path") == 0) {
            if (strlen(s) >= 256) return fail("path too long");
            memcpy(path, s, strlen(s) + 1);
        }
        else if (strcmp(key, "redis_url") == 0) switchboard_server_config_set_redis_url(cfg, s);
        else if (strcmp(key, "redis_ca_cert") == 0) switchboard_server_config_set_redis_ca_cert(cfg, s);
        else return fail(key);
        return 0;
    }
    if (*in->p == '[') {
        in->p++;
        for (ws_skip(in); *in->p != ']';) {
            if (json_string(in, s, sizeof s) != 0) return fail("bad list");
            if (strcmp(key, "allowed_origins") == 0) switchboard_server_config_add_allowed_origin(cfg, s);
            else if (strcmp(key, "trusted_proxies") == 0) switchboard_server_config_add_trusted_proxy(cfg, s);
            else if (strcmp(key, "app_types") == 0) switchboard_server_config_add_app_type(cfg, s);
            else return fail(key);
            ws_skip(in);
            if (*in->p == ',') in->p++;
            ws_skip(in);
        }
        in->p++;
        return 0;
    }
    if (*in->p == '{') {
        if (strcmp(key, "auth_tokens") != 0) return fail(key);
        in->p++;
        for (ws_skip(in); *in->p != '}';) {
            if (json_string(in, s, sizeof s) != 0 || expect(in, ':') != 0 || json_string(in, t, sizeof t) != 0)
                return fail("bad auth_tokens");
            switchboard_server_config_add_auth_token(cfg, s, t);
            ws_skip(in);
            if (*in->p == ',') in->p++;
            ws_skip(in);
        }
        in->p++;
        return 0;
    }
    char *end = NULL;
    unsigned long long v = strtoull(in->p, &end, 10);
    if (end == in->p) return fail("bad value");
    in->p = end;
    /* A value a setter refuses (an IPv6 prefix outside 1 to 128) fails the host. */
    switchboard_result r;
    if (strcmp(key, "rate_limit_burst") == 0) r = switchboard_server_config_set_rate_limit_burst(cfg, (uint32_t)v);
    else if (strcmp(key, "rate_limit_rps") == 0) r = switchboard_server_config_set_rate_limit_rps(cfg, (uint32_t)v);
    else if (strcmp(key, "ipv6_prefix") == 0)
        r = switchboard_server_config_set_ipv6_prefix(cfg, v > UINT32_MAX ? UINT32_MAX : (uint32_t)v);
    else if (number_setter(key)) r = number_setter(key)(cfg, v);
    else return fail(key);
    return r == SWITCHBOARD_RESULT_OK ? 0 : fail(switchboard_last_error_message());
}

static char *read_file(const char *name) {
    FILE *f = fopen(name, "rb");
    if (f == NULL) return NULL;
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

int main(void) {
    const char *name = getenv("SWITCHBOARD_PARITY_CONFIG");
    char *text = name ? read_file(name) : NULL;
    if (text == NULL) return fail("SWITCHBOARD_PARITY_CONFIG names no readable file");
    switchboard_server_config *cfg = switchboard_server_config_new();
    char path[256] = "/ws", key[128];
    json_in in = {text};
    if (expect(&in, '{') != 0) return fail("the config is not an object");
    for (ws_skip(&in); *in.p != '}';) {
        if (json_string(&in, key, sizeof key) != 0 || expect(&in, ':') != 0) return fail("bad key");
        int r = apply(cfg, &in, key, path);
        if (r != 0) return r;
        ws_skip(&in);
        if (*in.p == ',') in.p++;
        ws_skip(&in);
    }
    switchboard_server_config_set_path(cfg, path);
    /* SIGTERM is waited for, not handled: block it before any thread starts. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
    switchboard_server *srv = NULL;
    if (switchboard_server_create(cfg, &srv) != SWITCHBOARD_RESULT_OK) return fail(switchboard_last_error_message());
    ws_host host;
    if (ws_host_start(&host, srv) != 0) return fail("cannot listen");
    /* The URL names the first fixed entry of the path list (the root when all are templates). */
    char first[256] = "/";
    for (char *entry = strtok(path, ","); entry; entry = strtok(NULL, ",")) {
        while (*entry == ' ') entry++;
        if (strchr(entry, '{') == NULL) {
            snprintf(first, sizeof first, "%s", entry);
            break;
        }
    }
    printf("listening on ws://127.0.0.1:%u%s\n", host.port, first);
    fflush(stdout);
    int sig = 0;
    sigwait(&term, &sig);
    switchboard_server_stop(srv); /* drain: `draining` and 1001 to every client */
    ws_host_stop(&host);
    switchboard_server_free(srv);
    return 0;
}
