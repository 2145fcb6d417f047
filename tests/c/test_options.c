/* test_options.c: server options set through C, checked end to end over real
 * sockets: the browser client and demo page, allowed origins, per-IP and
 * server-wide connection limits, room and rate limits, the upgrade path, the
 * admission budgets (pending sockets, new connections per second), the join
 * and away budgets (member metadata size, away sessions), and the Redis CA
 * (refused at start without a rediss:// URL). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"

/* Sends one raw HTTP request to 127.0.0.1:port; returns the status code (or -1)
 * and copies up to `cap` bytes of the response into `out` when given. */
static int http_request(uint16_t port, const char *request, char *out, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int status = -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        write(fd, request, strlen(request)) == (ssize_t)strlen(request)) {
        char buf[4096];
        size_t len = 0;
        ssize_t n;
        /* Read until the status line and headers are in (or the peer closes). */
        while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0) {
            len += (size_t)n;
            buf[len] = 0;
            if (strstr(buf, "\r\n\r\n") != NULL && strncmp(buf, "HTTP/1.1 101", 12) == 0) break;
        }
        buf[len] = 0;
        if (len > 12 && strncmp(buf, "HTTP/1.1 ", 9) == 0) status = atoi(buf + 9);
        if (out != NULL && cap > 0) snprintf(out, cap, "%s", buf);
    }
    close(fd);
    return status;
}

static int http_get(uint16_t port, const char *path, char *out, size_t cap) {
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    return http_request(port, req, out, cap);
}

static int upgrade(uint16_t port, const char *path, const char *origin) {
    char req[1024];
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
             path, origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : "");
    return http_request(port, req, NULL, 0);
}

/* A TCP connection to 127.0.0.1:port that sends nothing (-1 on failure). */
static int silent_socket(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The status of the answer a socket gets at accept, before it sends anything
 * (-1 when none comes within 5 s); the head is copied into `out`. Nothing is
 * written: a request the server never reads could turn its close into a reset. */
static int status_at_accept(uint16_t port, char *out, size_t cap) {
    int fd = silent_socket(port);
    if (fd < 0) return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[1024];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0) {
        len += (size_t)n;
        buf[len] = 0;
        if (strstr(buf, "\r\n\r\n") != NULL) break;
    }
    buf[len] = 0;
    close(fd);
    snprintf(out, cap, "%s", buf);
    return len > 12 && strncmp(buf, "HTTP/1.1 ", 9) == 0 ? atoi(buf + 9) : -1;
}

static switchboard_server *start(switchboard_server_config *cfg) {
    REQUIRE(switchboard_server_config_set_listen(cfg, "127.0.0.1:0") == SWITCHBOARD_RESULT_OK);
    switchboard_server *srv = NULL;
    REQUIRE(switchboard_server_start(cfg, &srv) == SWITCHBOARD_RESULT_OK);
    return srv;
}

static void demo_and_client_script(void) {
    /* Off by default. */
    switchboard_server *plain = start(switchboard_server_config_new());
    CHECK(http_get(switchboard_server_port(plain), "/switchboard.js", NULL, 0) == 404);
    CHECK(http_get(switchboard_server_port(plain), "/health", NULL, 0) == 200);
    switchboard_server_free(plain);

    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_serve_client(cfg, true));
    switchboard_server *client_only = start(cfg);
    char body[4096];
    CHECK(http_get(switchboard_server_port(client_only), "/switchboard.js", body, sizeof body) == 200);
    CHECK(contains(body, "javascript"));
    CHECK(http_get(switchboard_server_port(client_only), "/", NULL, 0) == 404);
    switchboard_server_free(client_only);

    cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_demo(cfg, true));
    CHECK_OK(switchboard_server_config_set_path(cfg, "/signal"));
    switchboard_server *demo = start(cfg);
    CHECK(contains(switchboard_server_url(demo), "/signal"));
    CHECK(http_get(switchboard_server_port(demo), "/", body, sizeof body) == 200);
    CHECK(contains(body, "text/html"));
    CHECK(http_get(switchboard_server_port(demo), "/switchboard.js", NULL, 0) == 200);
    /* The upgrade path moved: /ws is now a plain 404, /signal upgrades. */
    CHECK(upgrade(switchboard_server_port(demo), "/ws", NULL) == 404);
    CHECK(upgrade(switchboard_server_port(demo), "/signal", NULL) == 101);
    switchboard_server_free(demo);
}

static void allowed_origins(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_add_allowed_origin(cfg, "https://app.example"));
    CHECK_OK(switchboard_server_config_add_allowed_origin(cfg, "https://www.example"));
    switchboard_server *srv = start(cfg);
    uint16_t port = switchboard_server_port(srv);
    CHECK(upgrade(port, "/ws", "https://app.example") == 101);
    CHECK(upgrade(port, "/ws", "https://www.example") == 101);
    CHECK(upgrade(port, "/ws", "https://evil.example") == 403);
    CHECK(upgrade(port, "/ws", NULL) == 101); /* not a browser */
    switchboard_server_free(srv);
}

static void connection_and_room_limits(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_max_conns_per_ip(cfg, 2));
    CHECK_OK(switchboard_server_config_set_max_room_size(cfg, 1));
    switchboard_server *srv = start(cfg);
    const char *url = switchboard_server_url(srv);
    switchboard_client *a = NULL, *b = NULL, *c = NULL;
    REQUIRE(switchboard_client_connect(url, "a", &a) == SWITCHBOARD_RESULT_OK);
    REQUIRE(switchboard_client_connect(url, "b", &b) == SWITCHBOARD_RESULT_OK);
    /* The third connection from 127.0.0.1 is refused before the upgrade (429). */
    switchboard_result r = switchboard_client_connect(url, "c", &c);
    CHECK(r == SWITCHBOARD_RESULT_WEBSOCKET || r == SWITCHBOARD_RESULT_IO);
    CHECK(contains(switchboard_last_error_message(), "429"));
    CHECK(c == NULL);
    CHECK(upgrade(switchboard_server_port(srv), "/ws", NULL) == 429);
    CHECK_OK(switchboard_client_join(a, "solo", 5000));
    CHECK_RESULT(switchboard_client_join(b, "solo", 5000), SWITCHBOARD_RESULT_ROOM_FULL);
    switchboard_client_free(a);
    switchboard_client_free(b);
    switchboard_server_free(srv);

    cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_max_conns(cfg, 1));
    srv = start(cfg);
    REQUIRE(switchboard_client_connect(switchboard_server_url(srv), "a", &a) == SWITCHBOARD_RESULT_OK);
    CHECK(upgrade(switchboard_server_port(srv), "/ws", NULL) == 503);
    switchboard_client_free(a);
    switchboard_server_free(srv);
}

static void rate_limit(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_rate_limit_burst(cfg, 3));
    CHECK_OK(switchboard_server_config_set_rate_limit_rps(cfg, 1));
    switchboard_server *srv = start(cfg);
    /* Fire-and-forget sends: the server drops those over the burst and says so. */
    switchboard_client_options *opts = switchboard_client_options_new();
    CHECK_OK(switchboard_client_options_set_user_id(opts, "chatty"));
    CHECK_OK(switchboard_client_options_set_send_timeout_ms(opts, 0));
    switchboard_client *a = NULL;
    REQUIRE(switchboard_client_connect_with_options(switchboard_server_url(srv), opts, &a) == SWITCHBOARD_RESULT_OK);
    CHECK_OK(switchboard_client_join(a, "r", 5000));
    for (int i = 0; i < 8; i++) CHECK_OK(switchboard_client_chat(a, "spam"));
    switchboard_event *ev = NULL;
    int limited = 0;
    double deadline = now_s() + 10;
    while (!limited && now_s() < deadline && (ev = WAIT_CLIENT(a, "error")) != NULL) {
        limited = contains(switchboard_event_json(ev), "rate-limited");
        switchboard_event_free(ev);
    }
    CHECK(limited);
    switchboard_client_free(a);
    switchboard_server_free(srv);
}

/* Starting with `cfg` fails with CONFIG, naming `what`. */
static void start_refused(switchboard_server_config *cfg, const char *what) {
    CHECK_OK(switchboard_server_config_set_listen(cfg, "127.0.0.1:0"));
    switchboard_server *none = NULL;
    CHECK_RESULT(switchboard_server_start(cfg, &none), SWITCHBOARD_RESULT_CONFIG);
    CHECK(contains(switchboard_last_error_message(), what));
    CHECK(none == NULL);
}

static void admission_budgets(void) {
    /* Out of range: refused by the setter, or at start when it takes two values. */
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_RESULT(switchboard_server_config_set_ipv6_prefix(cfg, 0), SWITCHBOARD_RESULT_CONFIG);
    CHECK(contains(switchboard_last_error_message(), "ipv6_prefix"));
    CHECK_RESULT(switchboard_server_config_set_ipv6_prefix(cfg, 129), SWITCHBOARD_RESULT_CONFIG);
    CHECK_OK(switchboard_server_config_set_ipv6_prefix(cfg, 128));
    CHECK_RESULT(switchboard_server_config_set_conn_rate_per_ip(cfg, UINT64_C(1) << 32), SWITCHBOARD_RESULT_CONFIG);
    CHECK_RESULT(switchboard_server_config_set_conn_burst_per_ip(cfg, UINT64_MAX), SWITCHBOARD_RESULT_CONFIG);
    CHECK_RESULT(switchboard_server_config_set_max_pending(NULL, 1), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    switchboard_server_config_free(cfg);
    cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_conn_rate_per_ip(cfg, 5));
    CHECK_OK(switchboard_server_config_set_conn_burst_per_ip(cfg, 0));
    start_refused(cfg, "conn_burst_per_ip");
    cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_http_write_timeout_ms(cfg, 0));
    start_refused(cfg, "http_write_timeout");

    /* Sockets per IP waiting for their upgrade decision: the third is answered
     * 429 at accept; closing one gives its place back. */
    cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_max_pending_per_ip(cfg, 2));
    CHECK_OK(switchboard_server_config_set_ipv6_prefix(cfg, 56));
    CHECK_OK(switchboard_server_config_set_http_write_timeout_ms(cfg, 5000));
    switchboard_server *srv = start(cfg);
    uint16_t port = switchboard_server_port(srv);
    int silent[2] = {silent_socket(port), silent_socket(port)};
    CHECK(silent[0] >= 0 && silent[1] >= 0);
    char head[1024];
    CHECK(status_at_accept(port, head, sizeof head) == 429);
    CHECK(contains(head, "Retry-After") || contains(head, "retry-after"));
    close(silent[0]);
    int status = -1;
    struct timespec pause = {0, 20 * 1000 * 1000};
    for (double deadline = now_s() + 10; status != 101 && now_s() < deadline;) {
        status = upgrade(port, "/ws", NULL);
        if (status != 101) nanosleep(&pause, NULL);
    }
    CHECK(status == 101);
    close(silent[1]);
    switchboard_server_free(srv);

    /* The same server-wide: 503. */
    cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_max_pending_per_ip(cfg, 0));
    CHECK_OK(switchboard_server_config_set_max_pending(cfg, 2));
    srv = start(cfg);
    port = switchboard_server_port(srv);
    silent[0] = silent_socket(port);
    silent[1] = silent_socket(port);
    CHECK(silent[0] >= 0 && silent[1] >= 0);
    CHECK(status_at_accept(port, head, sizeof head) == 503);
    close(silent[0]);
    close(silent[1]);
    switchboard_server_free(srv);

    /* New connections per second per IP: the burst, then 429 + Retry-After. */
    cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_conn_rate_per_ip(cfg, 1));
    CHECK_OK(switchboard_server_config_set_conn_burst_per_ip(cfg, 2));
    srv = start(cfg);
    port = switchboard_server_port(srv);
    CHECK(upgrade(port, "/ws", NULL) == 101);
    CHECK(upgrade(port, "/ws", NULL) == 101);
    CHECK(status_at_accept(port, head, sizeof head) == 429);
    CHECK(contains(head, "Retry-After") || contains(head, "retry-after"));
    switchboard_server_free(srv);
}

/* A client `user_id` whose every join carries `metadata_json` (NULL: none). */
static switchboard_client *connect_with_metadata(const char *url, const char *user_id,
                                                 const char *metadata_json) {
    switchboard_client_options *opts = switchboard_client_options_new();
    CHECK_OK(switchboard_client_options_set_user_id(opts, user_id));
    if (metadata_json != NULL) CHECK_OK(switchboard_client_options_set_metadata_json(opts, metadata_json));
    switchboard_client *cl = NULL;
    REQUIRE(switchboard_client_connect_with_options(url, opts, &cl) == SWITCHBOARD_RESULT_OK);
    return cl;
}

static void join_and_away_budgets(void) {
    /* Values land: 0 (unlimited, no metadata) and any size start. */
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_max_metadata_bytes(cfg, 0));
    CHECK_OK(switchboard_server_config_set_max_away_per_ip(cfg, 0));
    CHECK_OK(switchboard_server_config_set_max_away_per_user(cfg, 0));
    CHECK_OK(switchboard_server_config_set_max_away_sessions(cfg, 0));
    CHECK_OK(switchboard_server_config_set_away_replay_budget_bytes(cfg, 0));
    CHECK_OK(switchboard_server_config_set_outbound_budget_bytes(cfg, 0));
    CHECK_RESULT(switchboard_server_config_set_max_away_sessions(NULL, 1), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_config_set_max_away_per_user(NULL, 1), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_config_set_outbound_budget_bytes(NULL, 1), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    switchboard_server_free(start(cfg));

    /* Metadata over 64 bytes of JSON: the join gets `invalid-message`; 64 and
     * under joins. */
    cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_max_metadata_bytes(cfg, 64));
    CHECK_OK(switchboard_server_config_set_max_away_per_ip(cfg, 4));
    CHECK_OK(switchboard_server_config_set_max_away_per_user(cfg, 2));
    CHECK_OK(switchboard_server_config_set_max_away_sessions(cfg, 100));
    CHECK_OK(switchboard_server_config_set_away_replay_budget_bytes(cfg, 1 << 20));
    CHECK_OK(switchboard_server_config_set_outbound_budget_bytes(cfg, 1 << 24));
    switchboard_server *srv = start(cfg);
    const char *url = switchboard_server_url(srv);
    switchboard_client *small = connect_with_metadata(url, "small", "{\"role\":\"host\"}");
    CHECK_OK(switchboard_client_join(small, "r", 5000));
    char big_json[128];
    snprintf(big_json, sizeof big_json, "{\"note\":\"%080d\"}", 0); /* 91 bytes */
    switchboard_client *big = connect_with_metadata(url, "big", big_json);
    CHECK_RESULT(switchboard_client_join(big, "r", 5000), SWITCHBOARD_RESULT_INVALID_MESSAGE);
    switchboard_event *ev = WAIT_CLIENT(big, "error");
    CHECK(ev != NULL && contains(switchboard_event_json(ev), "invalid-message"));
    switchboard_event_free(ev);
    switchboard_client_free(big);
    switchboard_client_free(small);
    switchboard_server_free(srv);
}

/* A Redis CA needs a rediss:// URL: with redis:// the start fails with CONFIG
 * before any connection is tried (nothing listens on port 1). */
static void redis_ca_cert_needs_rediss(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_redis_url(cfg, "redis://127.0.0.1:1"));
    CHECK_OK(switchboard_server_config_set_redis_ca_cert(cfg, "/etc/ssl/redis-ca.pem"));
    start_refused(cfg, "redis_ca_cert needs a rediss:// redis_url");
}

int main(void) {
    demo_and_client_script();
    allowed_origins();
    connection_and_room_limits();
    rate_limit();
    admission_budgets();
    join_and_away_budgets();
    redis_ca_cert_needs_rediss();
    return finish("test_options");
}
