/* test_errors.c: every error path of switchboard.h: NULL handles and
 * arguments, invalid UTF-8, invalid JSON, JSON of the wrong shape, invalid
 * configurations, I/O failures, protocol errors mapped to result codes, bounded
 * queues, out-parameters left alone on failure, _free(NULL), result names and
 * the per-thread last error. (Calls after free are undefined behaviour by
 * contract and not tested.) */
#include "harness.h"

static const char BAD_UTF8[] = {'r', (char)0xff, (char)0xfe, 'm', 0};

static void *last_error_on_thread(void *arg) {
    (void)arg;
    /* A fresh thread has its own, empty, last error. */
    return (void *)(size_t)(strcmp(switchboard_last_error_message(), "") == 0);
}

static void result_names(void) {
    CHECK(streq(switchboard_result_name(SWITCHBOARD_RESULT_OK), "ok"));
    CHECK(streq(switchboard_result_name(SWITCHBOARD_RESULT_NULL_ARGUMENT), "null-argument"));
    CHECK(streq(switchboard_result_name(SWITCHBOARD_RESULT_INVALID_UTF8), "invalid-utf8"));
    CHECK(streq(switchboard_result_name(SWITCHBOARD_RESULT_CONFIG), "config"));
    CHECK(streq(switchboard_result_name(SWITCHBOARD_RESULT_TIMEOUT), "timeout"));
    CHECK(streq(switchboard_result_name(SWITCHBOARD_RESULT_PANIC), "panic"));
    CHECK(streq(switchboard_result_name(SWITCHBOARD_RESULT_PEER_NOT_FOUND), "peer-not-found"));
    CHECK(streq(switchboard_result_name(SWITCHBOARD_RESULT_INTERNAL), "internal"));
    CHECK(streq(switchboard_result_name(9999), "unknown"));
    CHECK(streq(switchboard_result_name(SWITCHBOARD_RESULT_REFUSED), "refused"));
    CHECK(SWITCHBOARD_RESULT_REFUSED == 11);
    CHECK(streq(switchboard_result_name(12), "unknown"));
    /* Stable values. */
    CHECK(SWITCHBOARD_RESULT_OK == 0 && SWITCHBOARD_RESULT_CLOSED == 7 &&
          SWITCHBOARD_RESULT_INVALID_JSON == 100 && SWITCHBOARD_RESULT_INTERNAL == 112);
    CHECK(strlen(switchboard_version()) > 0);
}

static void null_handles(void) {
    CHECK_RESULT(switchboard_server_config_set_listen(NULL, "127.0.0.1:0"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK(contains(switchboard_last_error_message(), "cfg is NULL"));
    CHECK_RESULT(switchboard_server_config_set_max_room_size(NULL, 3), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_config_set_auth_callback(NULL, NULL, NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_config_set_demo(NULL, true), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_start(NULL, NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK(switchboard_server_url(NULL) == NULL);
    CHECK(switchboard_server_port(NULL) == 0);
    CHECK(switchboard_server_events_missed(NULL) == 0);
    switchboard_event *ev = NULL;
    CHECK_RESULT(switchboard_server_next_event(NULL, 0, &ev), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_set_event_callback(NULL, NULL, NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_send(NULL, "r", "u", "{}"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_broadcast(NULL, "r", "{}", NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_kick(NULL, "r", "u"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    char *json = NULL;
    CHECK_RESULT(switchboard_server_rooms_json(NULL, &json), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK(json == NULL);
    CHECK_RESULT(switchboard_server_stop(NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);

    CHECK_RESULT(switchboard_client_options_set_user_id(NULL, "a"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_options_set_send_timeout_ms(NULL, 1), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_connect_with_options("ws://127.0.0.1:1/ws", NULL, NULL),
                 SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_join(NULL, "r", 10), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_join_with_info(NULL, "r", 10, &json), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_leave(NULL, "r", 10), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_send_json(NULL, "{}"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_send_offer(NULL, "b", "{}"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_send_answer(NULL, "b", "{}"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_send_candidate(NULL, "b", "{}"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_send_message(NULL, NULL, "{}"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_chat(NULL, "hi"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_next_event(NULL, 0, &ev), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_set_event_callback(NULL, NULL, NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_close(NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK(!switchboard_client_is_connected(NULL));
    CHECK(switchboard_client_events_missed(NULL) == 0);
    CHECK(ev == NULL);

    CHECK(switchboard_event_type(NULL) == NULL);
    CHECK(switchboard_event_json(NULL) == NULL);
    CHECK(switchboard_event_room_id(NULL) == NULL);
    CHECK(switchboard_event_user_id(NULL) == NULL);
    CHECK(switchboard_event_from(NULL) == NULL);
    CHECK(switchboard_event_clone(NULL) == NULL);
    CHECK(switchboard_auth_request_token(NULL) == NULL);
    CHECK(switchboard_auth_request_origin(NULL) == NULL);
    CHECK(switchboard_auth_request_ip(NULL) == NULL);
    CHECK(switchboard_auth_request_path(NULL) == NULL);
    CHECK_RESULT(switchboard_auth_request_allow(NULL, "u", NULL, NULL, 0), SWITCHBOARD_RESULT_NULL_ARGUMENT);

    /* Every _free accepts NULL. */
    switchboard_server_config_free(NULL);
    switchboard_server_free(NULL);
    switchboard_client_options_free(NULL);
    switchboard_client_free(NULL);
    switchboard_event_free(NULL);
    switchboard_string_free(NULL);
    switchboard_auth_request_deny(NULL);
    CHECK(1);
}

static void bad_arguments(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    REQUIRE(cfg != NULL);
    CHECK_RESULT(switchboard_server_config_set_listen(cfg, NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK(contains(switchboard_last_error_message(), "listen is NULL"));
    CHECK_RESULT(switchboard_server_config_set_listen(cfg, BAD_UTF8), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK(contains(switchboard_last_error_message(), "UTF-8"));
    CHECK_RESULT(switchboard_server_config_set_path(cfg, BAD_UTF8), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_server_config_add_allowed_origin(cfg, BAD_UTF8), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_server_config_add_auth_token(cfg, "t", BAD_UTF8), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_server_config_add_auth_token(cfg, "", "u"), SWITCHBOARD_RESULT_CONFIG);
    CHECK_RESULT(switchboard_server_config_set_jwt_secret(cfg, ""), SWITCHBOARD_RESULT_CONFIG);
    CHECK_RESULT(switchboard_server_config_set_tls(cfg, "cert.pem", NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_config_add_trusted_proxy(cfg, BAD_UTF8), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_server_config_set_redis_url(cfg, NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_config_set_redis_ca_cert(cfg, BAD_UTF8), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_server_config_set_turn(cfg, "", 60), SWITCHBOARD_RESULT_CONFIG);
    CHECK_RESULT(switchboard_server_config_set_worker_threads(cfg, 0), SWITCHBOARD_RESULT_CONFIG);
    CHECK_RESULT(switchboard_server_config_set_jwt_public_key_file(cfg, "/nonexistent/key.pem"),
                 SWITCHBOARD_RESULT_IO);
    CHECK(contains(switchboard_last_error_message(), "/nonexistent/key.pem"));
    switchboard_server_config_free(cfg);

    switchboard_client_options *opts = switchboard_client_options_new();
    REQUIRE(opts != NULL);
    CHECK_RESULT(switchboard_client_options_set_user_id(opts, BAD_UTF8), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_client_options_set_metadata_json(opts, "{not json"), SWITCHBOARD_RESULT_INVALID_JSON);
    CHECK(contains(switchboard_last_error_message(), "not valid JSON"));
    CHECK_RESULT(switchboard_client_options_set_metadata_json(opts, BAD_UTF8), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_client_options_set_event_capacity(opts, 0), SWITCHBOARD_RESULT_CONFIG);
    CHECK_OK(switchboard_client_options_set_subprotocol(opts, NULL)); /* NULL: offer none */
    switchboard_client_options_free(opts);

    CHECK_RESULT(switchboard_log_init("=[nonsense"), SWITCHBOARD_RESULT_CONFIG);
}

/* Starts a server from `cfg` expecting `expected`; the output stays untouched. */
static void start_fails(switchboard_server_config *cfg, switchboard_result expected, const char *message) {
    switchboard_server *sentinel = (switchboard_server *)&sentinel;
    switchboard_server *srv = sentinel;
    CHECK_RESULT(switchboard_server_start(cfg, &srv), expected);
    CHECK(srv == sentinel);
    if (message != NULL) CHECK(contains(switchboard_last_error_message(), message));
}

static switchboard_server_config *base_config(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    REQUIRE(cfg != NULL);
    REQUIRE(switchboard_server_config_set_listen(cfg, "127.0.0.1:0") == SWITCHBOARD_RESULT_OK);
    return cfg;
}

static void invalid_configurations(void) {
    switchboard_server_config *cfg = base_config();
    CHECK_OK(switchboard_server_config_set_max_message_bytes(cfg, 100));
    start_fails(cfg, SWITCHBOARD_RESULT_CONFIG, "max_message_bytes");

    cfg = base_config();
    CHECK_OK(switchboard_server_config_set_path(cfg, "ws"));
    start_fails(cfg, SWITCHBOARD_RESULT_CONFIG, "path");

    cfg = base_config();
    CHECK_OK(switchboard_server_config_add_auth_token(cfg, "t1", "alice"));
    CHECK_OK(switchboard_server_config_set_jwt_secret(cfg, "s3cret"));
    start_fails(cfg, SWITCHBOARD_RESULT_CONFIG, "one way to authenticate");

    cfg = base_config();
    CHECK_OK(switchboard_server_config_set_jwt_audience(cfg, "aud"));
    start_fails(cfg, SWITCHBOARD_RESULT_CONFIG, "without a JWT");

    cfg = base_config();
    CHECK_OK(switchboard_server_config_set_turn(cfg, "turn-secret", 600));
    start_fails(cfg, SWITCHBOARD_RESULT_CONFIG, "TURN");

    cfg = base_config();
    CHECK_OK(switchboard_server_config_add_turn_url(cfg, "turn:127.0.0.1:3478"));
    start_fails(cfg, SWITCHBOARD_RESULT_CONFIG, "TURN");

    cfg = base_config();
    CHECK_OK(switchboard_server_config_set_listen(cfg, "not an address"));
    start_fails(cfg, SWITCHBOARD_RESULT_IO, NULL);

    /* The port is taken: I/O error. */
    switchboard_server *first = start_test_server(NULL, NULL);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)switchboard_server_port(first));
    cfg = base_config();
    CHECK_OK(switchboard_server_config_set_listen(cfg, listen));
    start_fails(cfg, SWITCHBOARD_RESULT_IO, NULL);
    switchboard_server_free(first);

    /* A NULL out-parameter: refused, and the configuration is still consumed (LSan checks). */
    cfg = base_config();
    CHECK_RESULT(switchboard_server_start(cfg, NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK(contains(switchboard_last_error_message(), "server_out"));
}

static void client_errors(void) {
    switchboard_client *sentinel = (switchboard_client *)&sentinel;
    switchboard_client *cl = sentinel;
    CHECK_RESULT(switchboard_client_connect("http://127.0.0.1:1/ws", "a", &cl), SWITCHBOARD_RESULT_CONFIG);
    CHECK_RESULT(switchboard_client_connect("ftp://127.0.0.1:1/ws", "a", &cl), SWITCHBOARD_RESULT_CONFIG);
    CHECK_RESULT(switchboard_client_connect(BAD_UTF8, "a", &cl), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_client_connect(NULL, "a", &cl), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK(cl == sentinel);

    /* Nothing listens on a port whose server was freed. */
    switchboard_server *gone = start_test_server(NULL, NULL);
    char url[128];
    snprintf(url, sizeof url, "%s", switchboard_server_url(gone));
    switchboard_server_free(gone);
    switchboard_result r = switchboard_client_connect(url, "a", &cl);
    CHECK(r == SWITCHBOARD_RESULT_IO || r == SWITCHBOARD_RESULT_WEBSOCKET);
    CHECK(cl == sentinel);

    switchboard_server_config *cfg = base_config();
    CHECK_OK(switchboard_server_config_set_max_room_size(cfg, 1));
    CHECK_OK(switchboard_server_config_set_max_rooms_per_session(cfg, 1));
    CHECK_OK(switchboard_server_config_set_heartbeat_ms(cfg, 7000));
    switchboard_server *srv = NULL;
    REQUIRE(switchboard_server_start(cfg, &srv) == SWITCHBOARD_RESULT_OK);
    const char *surl = switchboard_server_url(srv);

    switchboard_client *a = NULL, *b = NULL;
    CHECK_RESULT(switchboard_client_connect(surl, "a", NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    REQUIRE(switchboard_client_connect(surl, "a", &a) == SWITCHBOARD_RESULT_OK);
    REQUIRE(switchboard_client_connect(surl, "b", &b) == SWITCHBOARD_RESULT_OK);

    /* Out-parameters stay untouched on failure. */
    switchboard_event *ev_sentinel = (switchboard_event *)&ev_sentinel;
    switchboard_event *ev = ev_sentinel;
    CHECK_RESULT(switchboard_server_next_event(srv, 0, NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_next_event(a, 0, NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    /* Drain what connect produced (`connected` carries the configured
     * heartbeat), then a short wait times out. */
    int heartbeat_seen = 0;
    while (switchboard_client_next_event(a, 0, &ev) == SWITCHBOARD_RESULT_OK) {
        heartbeat_seen |= contains(switchboard_event_json(ev), "\"heartbeatMs\":7000");
        switchboard_event_free(ev);
        ev = ev_sentinel;
    }
    CHECK(heartbeat_seen);
    CHECK_RESULT(switchboard_client_next_event(a, 50, &ev), SWITCHBOARD_RESULT_TIMEOUT);
    CHECK(ev == ev_sentinel);
    CHECK(contains(switchboard_last_error_message(), "no event within 50 ms"));

    /* Bad arguments to client calls. */
    CHECK_RESULT(switchboard_client_join(a, BAD_UTF8, 1000), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_client_join(a, NULL, 1000), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_send_json(a, "{\"type\":"), SWITCHBOARD_RESULT_INVALID_JSON);
    CHECK_RESULT(switchboard_client_send_json(a, "[1,2]"), SWITCHBOARD_RESULT_INVALID_MESSAGE);
    CHECK_RESULT(switchboard_client_send_json(a, "{\"type\":\"ping\"}"), SWITCHBOARD_RESULT_INVALID_MESSAGE);
    /* Not an app type of this server: refused by the server, not the client. */
    CHECK_RESULT(switchboard_client_send_json(a, "{\"type\":\"bogus\"}"), SWITCHBOARD_RESULT_UNKNOWN_TYPE);
    CHECK_RESULT(switchboard_client_send_json(a, BAD_UTF8), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_client_send_offer(a, "b", "v=0 not json"), SWITCHBOARD_RESULT_INVALID_JSON);
    CHECK_RESULT(switchboard_client_send_offer(a, BAD_UTF8, "{}"), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_client_send_candidate(a, "b", NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_client_send_message(a, NULL, "{"), SWITCHBOARD_RESULT_INVALID_JSON);
    CHECK_RESULT(switchboard_client_chat(a, BAD_UTF8), SWITCHBOARD_RESULT_INVALID_UTF8);
    char *info_sentinel = (char *)&info_sentinel;
    char *info = info_sentinel;
    CHECK_RESULT(switchboard_client_join_with_info(a, "r1", 0, &info), SWITCHBOARD_RESULT_INVALID_ARGUMENT);
    CHECK_RESULT(switchboard_client_join_with_info(a, "r1", 1000, NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK(info == info_sentinel);

    /* Protocol errors come back as their codes. */
    CHECK_RESULT(switchboard_client_send_offer(a, "b", "{}"), SWITCHBOARD_RESULT_NOT_IN_ROOM);
    CHECK_OK(switchboard_client_join(a, "r1", 5000));
    CHECK_RESULT(switchboard_client_join(b, "r1", 5000), SWITCHBOARD_RESULT_ROOM_FULL);
    CHECK(contains(switchboard_last_error_message(), "room-full"));
    CHECK_RESULT(switchboard_client_join(a, "r2", 5000), SWITCHBOARD_RESULT_FORBIDDEN);
    CHECK_RESULT(switchboard_client_send_candidate(a, "nobody", "null"), SWITCHBOARD_RESULT_PEER_NOT_FOUND);

    /* Server calls with bad arguments. */
    CHECK_RESULT(switchboard_server_send(srv, "r1", "a", "{\"type\":"), SWITCHBOARD_RESULT_INVALID_JSON);
    CHECK_RESULT(switchboard_server_send(srv, "r1", BAD_UTF8, "{}"), SWITCHBOARD_RESULT_INVALID_UTF8);
    CHECK_RESULT(switchboard_server_send(srv, "r1", "a", "[]"), SWITCHBOARD_RESULT_INVALID_MESSAGE);
    CHECK_RESULT(switchboard_server_broadcast(srv, "r1", "nope", NULL), SWITCHBOARD_RESULT_INVALID_JSON);
    uint64_t delivered = 77;
    CHECK_RESULT(switchboard_server_broadcast(srv, "nope", "{\"type\":\"message\"}", &delivered),
                 SWITCHBOARD_RESULT_NOT_IN_ROOM);
    CHECK(delivered == 77);
    CHECK_RESULT(switchboard_server_kick(srv, "r1", "nobody"), SWITCHBOARD_RESULT_PEER_NOT_FOUND);
    CHECK_RESULT(switchboard_server_kick(srv, NULL, "a"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    CHECK_RESULT(switchboard_server_rooms_json(srv, NULL), SWITCHBOARD_RESULT_NULL_ARGUMENT);

    switchboard_client_free(a);
    switchboard_client_free(b);

    /* Bounded client queues: a small outbox fills up, a big message is refused. */
    switchboard_client_options *opts = switchboard_client_options_new();
    CHECK_OK(switchboard_client_options_set_user_id(opts, "q"));
    CHECK_OK(switchboard_client_options_set_queue_limits(opts, 4, 1 << 20));
    CHECK_OK(switchboard_client_options_set_max_message_bytes(opts, 300));
    CHECK_OK(switchboard_client_options_set_send_timeout_ms(opts, 0));
    switchboard_client *q = NULL;
    REQUIRE(switchboard_client_connect_with_options(surl, opts, &q) == SWITCHBOARD_RESULT_OK);
    char big[1024];
    memset(big, 'x', sizeof big - 3);
    big[0] = '"';
    big[sizeof big - 3] = '"';
    big[sizeof big - 2] = 0;
    CHECK_RESULT(switchboard_client_send_message(q, NULL, big), SWITCHBOARD_RESULT_MESSAGE_TOO_BIG);
    int full = 0, queued = 0;
    for (int i = 0; i < 64; i++) {
        r = switchboard_client_chat(q, "flood");
        if (r == SWITCHBOARD_RESULT_QUEUE_FULL) full++;
        if (r == SWITCHBOARD_RESULT_OK) queued++;
    }
    CHECK(full > 0);
    CHECK(queued >= 4);
    CHECK(full + queued == 64);
    switchboard_client_free(q);

    CHECK_OK(switchboard_server_stop(srv));
    CHECK_RESULT(switchboard_server_kick(srv, "r1", "a"), SWITCHBOARD_RESULT_CLOSED);
    CHECK_RESULT(switchboard_server_broadcast(srv, "r1", "{\"type\":\"message\"}", NULL), SWITCHBOARD_RESULT_CLOSED);
    switchboard_server_free(srv);
}

int main(void) {
    /* Before any failure on a thread its last error is empty. */
    CHECK(streq(switchboard_last_error_message(), ""));
    result_names();
    null_handles();
    bad_arguments();
    invalid_configurations();
    client_errors();
    /* The last error is per thread. */
    CHECK(strlen(switchboard_last_error_message()) > 0);
    pthread_t t;
    void *fresh = NULL;
    REQUIRE(pthread_create(&t, NULL, last_error_on_thread, NULL) == 0);
    pthread_join(t, &fresh);
    CHECK(fresh != NULL);
    return finish("test_errors");
}
