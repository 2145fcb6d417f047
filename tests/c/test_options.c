/* test_options.c: server options set through C, checked end to end over real
 * sockets: the browser client and demo page, allowed origins, per-IP and
 * server-wide connection limits, room and rate limits, the upgrade path. */
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

int main(void) {
    demo_and_client_script();
    allowed_origins();
    connection_and_room_limits();
    rate_limit();
    return finish("test_options");
}
