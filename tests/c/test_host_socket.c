/* test_host_socket.c: the host-socket mode from C. A native WebSocket server
 * (ws_host.h) owns the sockets and serves a switchboard_server created without
 * a listener; the library's own C clients and raw sockets check that it
 * answers as the standalone server does: join and relay with `from` stamped,
 * origin 403, token 401, binary 1003, oversized 1009, server events, drain;
 * and the existing-client features: rooms from a path template, app types,
 * a MessagePack client calling a JSON one, host-side join/leave. */
#include "harness.h"
#include "ws_host.h"

static switchboard_server *create(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    switchboard_server_config_set_rate_limit_rps(cfg, 0);
    switchboard_server_config_set_max_conns_per_ip(cfg, 0);
    switchboard_server_config_set_max_message_bytes(cfg, 1024);
    switchboard_server_config_add_allowed_origin(cfg, "https://app.example");
    switchboard_server_config_set_drain_timeout_ms(cfg, 3000);
    switchboard_server *srv = NULL;
    CHECK_OK(switchboard_server_create(cfg, &srv));
    REQUIRE(srv != NULL);
    return srv;
}

/* A raw upgrade with one extra header line (or NULL); returns the socket (or
 * -1) and writes the HTTP status. */
static int raw_upgrade(uint16_t port, const char *extra, int *status) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: webrtc-signaling\r\n%s%s\r\n",
                     extra ? extra : "", extra ? "\r\n" : "");
    ws_write_all(fd, req, (size_t)n);
    char head[WS_HOST_MAX_HEAD];
    *status = ws_read_head(fd, head) ? atoi(head + 9) : 0;
    if (*status == 101) CHECK(contains(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    return fd;
}

/* Sends one masked client frame. */
static void raw_send(int fd, int opcode, const char *data, size_t len) {
    unsigned char head[14];
    size_t h = 0;
    head[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) head[h++] = (unsigned char)(0x80 | len);
    else { head[h++] = 0x80 | 126; head[h++] = (unsigned char)(len >> 8); head[h++] = (unsigned char)len; }
    memset(head + h, 0, 4); /* a zero mask: the payload goes as is */
    h += 4;
    ws_write_all(fd, head, h);
    ws_write_all(fd, data, len);
}

/* Reads server frames until a close; returns its code (0 when none came). */
static int raw_close_code(int fd) {
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (;;) {
        unsigned char h[2];
        if (ws_read_all(fd, h, 2) != 0) return 0;
        size_t len = h[1] & 0x7f;
        if (len == 126) { unsigned char e[2]; ws_read_all(fd, e, 2); len = (size_t)e[0] << 8 | e[1]; }
        char *p = malloc(len + 1);
        if (len && ws_read_all(fd, p, len) != 0) { free(p); return 0; }
        int code = (h[0] & 0x0f) == 8 && len >= 2 ? ((unsigned char)p[0] << 8 | (unsigned char)p[1]) : -1;
        free(p);
        if (code >= 0) return code;
    }
}

static void relay_between_two_clients(uint16_t port, switchboard_server *srv) {
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/ws", port);
    switchboard_client *a = NULL, *b = NULL;
    CHECK_OK(switchboard_client_connect(url, "alice", &a));
    CHECK_OK(switchboard_client_connect(url, "bob", &b));
    REQUIRE(a != NULL && b != NULL);
    CHECK_OK(switchboard_client_join(a, "room", 5000));
    CHECK_OK(switchboard_client_join(b, "room", 5000));
    switchboard_event *joined = wait_for(next_server_event, srv, "user-joined", 5);
    CHECK(joined != NULL);
    switchboard_event_free(joined);

    CHECK_OK(switchboard_client_send_json(a, "{\"type\":\"offer\",\"to\":\"bob\",\"from\":\"mallory\",\"sdp\":{\"type\":\"offer\",\"sdp\":\"v=0\"}}"));
    switchboard_event *offer = wait_for(next_client_event, b, "offer", 5);
    CHECK(offer != NULL && contains(switchboard_event_json(offer), "\"from\":\"alice\""));
    CHECK(offer != NULL && contains(switchboard_event_json(offer), "\"sdp\":\"v=0\""));
    switchboard_event_free(offer);
    CHECK_OK(switchboard_client_send_json(b, "{\"type\":\"answer\",\"to\":\"alice\",\"sdp\":{\"type\":\"answer\",\"sdp\":\"v=1\"}}"));
    switchboard_event *answer = wait_for(next_client_event, a, "answer", 5);
    CHECK(answer != NULL && contains(switchboard_event_json(answer), "\"from\":\"bob\""));
    switchboard_event_free(answer);
    CHECK_OK(switchboard_client_send_json(a, "{\"type\":\"candidate\",\"to\":\"bob\",\"candidate\":{\"candidate\":\"c1\",\"sdpMid\":\"0\"}}"));
    switchboard_event *cand = wait_for(next_client_event, b, "candidate", 5);
    CHECK(cand != NULL && contains(switchboard_event_json(cand), "\"candidate\":\"c1\""));
    switchboard_event_free(cand);
    /* Host operations reach host-socket peers too. */
    CHECK_OK(switchboard_server_send(srv, "room", "bob", "{\"type\":\"message\",\"data\":\"from the host\"}"));
    switchboard_event *msg = wait_for(next_client_event, b, "message", 5);
    CHECK(msg != NULL && contains(switchboard_event_json(msg), "from the host"));
    switchboard_event_free(msg);
    switchboard_client_close(a);
    switchboard_client_close(b);
    switchboard_client_free(a);
    switchboard_client_free(b);
}

static void admission_and_violations(uint16_t port) {
    int status = 0;
    int fd = raw_upgrade(port, "Origin: https://evil.example", &status);
    CHECK(status == 403);
    if (fd >= 0) close(fd);
    fd = raw_upgrade(port, "Origin: https://app.example", &status);
    CHECK(status == 101);
    raw_send(fd, 2, "\x01\x02", 2);
    CHECK(raw_close_code(fd) == 1003);
    close(fd);
    fd = raw_upgrade(port, NULL, &status);
    CHECK(status == 101);
    char big[2000];
    memset(big, 'x', sizeof big);
    raw_send(fd, 1, big, sizeof big);
    CHECK(raw_close_code(fd) == 1009);
    close(fd);
}

static void token_refused_with_401(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    switchboard_server_config_add_auth_token(cfg, "tok-alice", "alice");
    switchboard_server *srv = NULL;
    CHECK_OK(switchboard_server_create(cfg, &srv));
    ws_host host;
    REQUIRE(ws_host_start(&host, srv) == 0);
    int status = 0;
    int fd = raw_upgrade(host.port, "Authorization: Bearer wrong", &status);
    CHECK(status == 401);
    if (fd >= 0) close(fd);
    fd = raw_upgrade(host.port, "Authorization: Bearer tok-alice", &status);
    CHECK(status == 101);
    if (fd >= 0) close(fd);
    switchboard_server_stop(srv);
    ws_host_stop(&host);
    switchboard_server_free(srv);
}

static void existing_clients(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    switchboard_server_config_set_rate_limit_rps(cfg, 0);
    switchboard_server_config_set_path(cfg, "/ws,/signaling/{roomId}/{userId}");
    CHECK_OK(switchboard_server_config_add_app_type(cfg, "mute"));
    CHECK_OK(switchboard_server_config_set_api_key(cfg, "c-host-api-key-0123456789"));
    switchboard_server *srv = NULL;
    CHECK_OK(switchboard_server_create(cfg, &srv));
    REQUIRE(srv != NULL);
    CHECK(switchboard_server_serves_path(srv, "/signaling/r/alice"));
    CHECK(!switchboard_server_serves_path(srv, "/signaling/r"));
    ws_host host;
    REQUIRE(ws_host_start(&host, srv) == 0);
    char url[96];
    /* The room and user from the path: joined at connect, no join sent. */
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/signaling/call/alice", host.port);
    switchboard_client *json_peer = NULL;
    CHECK_OK(switchboard_client_connect(url, NULL, &json_peer));
    switchboard_event *info = wait_for(next_client_event, json_peer, "room-info", 5);
    CHECK(info != NULL && contains(switchboard_event_json(info), "\"roomId\":\"call\""));
    switchboard_event_free(info);
    /* A MessagePack client (binary frames through the host's socket both ways). */
    switchboard_client_options *opts = switchboard_client_options_new();
    CHECK_OK(switchboard_client_options_set_user_id(opts, "bob"));
    CHECK_RESULT(switchboard_client_options_set_encoding(opts, "cbor"), SWITCHBOARD_RESULT_INVALID_ARGUMENT);
    CHECK_OK(switchboard_client_options_set_encoding(opts, "msgpack"));
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/ws", host.port);
    switchboard_client *packed = NULL;
    CHECK_OK(switchboard_client_connect_with_options(url, opts, &packed));
    CHECK_OK(switchboard_client_join(packed, "call", 5000));
    CHECK_OK(switchboard_client_send_json(packed, "{\"type\":\"mute\",\"to\":\"alice\",\"track\":\"audio\"}"));
    switchboard_event *mute = wait_for(next_client_event, json_peer, "mute", 5);
    CHECK(mute != NULL && contains(switchboard_event_json(mute), "\"from\":\"bob\""));
    switchboard_event_free(mute);
    CHECK_OK(switchboard_client_send_json(json_peer, "{\"type\":\"offer\",\"to\":\"bob\",\"sdp\":{\"sdp\":\"v=0\"}}"));
    switchboard_event *offer = wait_for(next_client_event, packed, "offer", 5);
    CHECK(offer != NULL && contains(switchboard_event_json(offer), "\"from\":\"alice\""));
    switchboard_event_free(offer);
    CHECK_RESULT(switchboard_client_send_json(packed, "{\"type\":\"dance\",\"to\":\"alice\"}"),
                 SWITCHBOARD_RESULT_UNKNOWN_TYPE);
    /* The host moves users between rooms. */
    CHECK_OK(switchboard_server_join(srv, "bob", "stage"));
    switchboard_event *staged = wait_for(next_client_event, packed, "room-info", 5);
    CHECK(staged != NULL && contains(switchboard_event_json(staged), "\"roomId\":\"stage\""));
    switchboard_event_free(staged);
    CHECK_OK(switchboard_server_leave(srv, "bob", "call"));
    switchboard_event *left = wait_for(next_client_event, json_peer, "user-left", 5);
    CHECK(left != NULL && contains(switchboard_event_json(left), "\"reason\":\"leave\""));
    switchboard_event_free(left);
    CHECK_RESULT(switchboard_server_join(srv, "ghost", "stage"), SWITCHBOARD_RESULT_PEER_NOT_FOUND);
    /* The operator API and the admin page, for a host that owns its port. */
    uint16_t status = 0;
    const char *type = NULL;
    char *body = NULL;
    CHECK_OK(switchboard_server_api(srv, "GET", "/api/v1/rooms/stage", NULL,
                                    "Bearer c-host-api-key-0123456789", NULL, 0, &status, &type, &body));
    CHECK(status == 200 && strcmp(type, "application/json") == 0 && contains(body, "\"userId\":\"bob\""));
    switchboard_string_free(body);
    CHECK_OK(switchboard_server_api(srv, "GET", "/api/v1/info", NULL, "Bearer wrong", NULL, 0, &status, NULL, &body));
    CHECK(status == 401 && contains(body, "unauthorized"));
    switchboard_string_free(body);
    const char *notice = "{\"type\":\"notice\"}";
    CHECK_OK(switchboard_server_api(srv, "POST", "/api/v1/rooms/stage/broadcast", NULL,
                                    "Bearer c-host-api-key-0123456789", (const uint8_t *)notice, strlen(notice),
                                    &status, NULL, &body));
    CHECK(status == 200 && contains(body, "\"delivered\":1"));
    switchboard_string_free(body);
    CHECK(switchboard_server_api_body_limit(srv) > 1024);
    CHECK_OK(switchboard_server_endpoint(srv, "/admin", &status, &type, &body));
    CHECK(status == 200 && strncmp(type, "text/html", 9) == 0 && contains(body, "/admin.js"));
    switchboard_string_free(body);
    switchboard_client_close(json_peer);
    switchboard_client_close(packed);
    switchboard_client_free(json_peer);
    switchboard_client_free(packed);
    switchboard_server_stop(srv);
    ws_host_stop(&host);
    switchboard_server_free(srv);
}

int main(void) {
    switchboard_server *srv = create();
    CHECK(switchboard_server_url(srv) == NULL);
    CHECK(switchboard_server_port(srv) == 0);
    ws_host host;
    REQUIRE(ws_host_start(&host, srv) == 0);
    relay_between_two_clients(host.port, srv);
    admission_and_violations(host.port);
    /* TLS needs the listener. */
    switchboard_server_config *tls = switchboard_server_config_new();
    switchboard_server_config_set_tls(tls, "cert.pem", "key.pem");
    switchboard_server *none = NULL;
    CHECK_RESULT(switchboard_server_create(tls, &none), SWITCHBOARD_RESULT_CONFIG);
    CHECK(none == NULL);
    token_refused_with_401();
    existing_clients();
    /* Drain: a connected client gets `draining`, then the server stops. */
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/ws", host.port);
    switchboard_client *c = NULL;
    CHECK_OK(switchboard_client_connect(url, "carol", &c));
    CHECK_OK(switchboard_client_join(c, "drain", 5000));
    CHECK_OK(switchboard_server_stop(srv));
    switchboard_event *draining = wait_for(next_client_event, c, "draining", 5);
    CHECK(draining != NULL);
    switchboard_event_free(draining);
    switchboard_client_close(c);
    switchboard_client_free(c);
    ws_host_stop(&host);
    switchboard_server_free(srv);
    return finish("test_host_socket");
}
