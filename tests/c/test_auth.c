/* test_auth.c: authentication configured through C, end to end: static
 * tokens, HS256 JWT (audience, expiry, room claims), and the C auth callback
 * allowing, refusing, deciding later from another thread, and deciding too
 * late (the auth timeout refuses; the late completion still frees); and the
 * client's token callback, asked again on reconnect. */
#include "harness.h"

/* HS256 with secret "c-test-secret", exp 2100-01-01, made once with Python's hmac. */
static const char *JWT_OK = /* sub dave, aud switchboard-c, rooms ["jwt-*"] */
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkYXZlIiwiZXhwIjo0MTAyNDQ0ODAwLCJhdWQiOiJzd2l0Y2hib2FyZC1jIiwicm9vbXMiOlsiand0LSoiXX0.RWAvj6IoRWBRqihyGldp8jJUJa4FQE8Cd8R2wNnL-xQ";
static const char *JWT_BAD_SIGNATURE =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkYXZlIiwiZXhwIjo0MTAyNDQ0ODAwLCJhdWQiOiJzd2l0Y2hib2FyZC1jIn0.cpewznZ4FSbYL_FVmJ5h_oJ5icKP2MUHxiAfiEPgpyY";
static const char *JWT_EXPIRED = /* exp 2001 */
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkYXZlIiwiZXhwIjoxMDAwMDAwMDAwLCJhdWQiOiJzd2l0Y2hib2FyZC1jIn0.xVrbYiaZsFlNfa8zl_FArs1OqSG0fWnCKHwu4IctTyA";
static const char *JWT_OTHER_AUDIENCE =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkYXZlIiwiZXhwIjo0MTAyNDQ0ODAwLCJhdWQiOiJzb21lb25lLWVsc2UifQ.uAEqNe2ZKDPlGYukXwaGoXK0v739LVaGcslCBrFXmU0";

static switchboard_result connect_with_token(const char *url, const char *token, switchboard_client **out) {
    switchboard_client_options *opts = switchboard_client_options_new();
    REQUIRE(opts != NULL);
    if (token != NULL) REQUIRE(switchboard_client_options_set_token(opts, token) == SWITCHBOARD_RESULT_OK);
    REQUIRE(switchboard_client_options_set_max_reconnect_attempts(opts, 0) == SWITCHBOARD_RESULT_OK);
    return switchboard_client_connect_with_options(url, opts, out);
}

static switchboard_server *start_with(switchboard_server_config *cfg) {
    REQUIRE(switchboard_server_config_set_listen(cfg, "127.0.0.1:0") == SWITCHBOARD_RESULT_OK);
    REQUIRE(switchboard_server_config_set_auth_timeout_ms(cfg, 500) == SWITCHBOARD_RESULT_OK);
    switchboard_server *srv = NULL;
    REQUIRE(switchboard_server_start(cfg, &srv) == SWITCHBOARD_RESULT_OK);
    return srv;
}

static void static_tokens(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_add_auth_token(cfg, "t-alice", "alice"));
    CHECK_OK(switchboard_server_config_add_auth_token(cfg, "t-bob", "bob"));
    switchboard_server *srv = start_with(cfg);
    const char *url = switchboard_server_url(srv);

    switchboard_client *alice = NULL;
    CHECK_OK(connect_with_token(url, "t-alice", &alice));
    char *info = NULL;
    CHECK_OK(switchboard_client_join_with_info(alice, "room", 5000, &info));
    CHECK(contains(info, "\"you\":\"alice\"") || contains(info, "\"userId\":\"alice\""));
    switchboard_string_free(info);
    switchboard_event *ev = WAIT_SERVER(srv, "user-joined");
    CHECK(ev != NULL && streq(switchboard_event_user_id(ev), "alice"));
    switchboard_event_free(ev);

    /* A wrong token is refused at the handshake. */
    switchboard_client *sentinel = (switchboard_client *)&sentinel;
    switchboard_client *mallory = sentinel;
    CHECK_RESULT(connect_with_token(url, "t-wrong", &mallory), SWITCHBOARD_RESULT_UNAUTHORIZED);
    CHECK(mallory == sentinel);

    /* No token: connected, but nothing is served before an `auth` message. */
    switchboard_client *anon = NULL;
    CHECK_OK(connect_with_token(url, NULL, &anon));
    CHECK_RESULT(switchboard_client_join(anon, "room", 5000), SWITCHBOARD_RESULT_UNAUTHORIZED);
    CHECK_OK(switchboard_client_send_json(anon, "{\"type\":\"auth\",\"token\":\"t-bob\"}"));
    CHECK_OK(switchboard_client_join(anon, "room", 5000));
    ev = WAIT_SERVER(srv, "user-joined");
    CHECK(ev != NULL && streq(switchboard_event_user_id(ev), "bob"));
    switchboard_event_free(ev);

    switchboard_client_free(alice);
    switchboard_client_free(anon);
    switchboard_server_free(srv);
}

static void jwt(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_jwt_secret(cfg, "c-test-secret"));
    CHECK_OK(switchboard_server_config_set_jwt_audience(cfg, "switchboard-c"));
    CHECK_OK(switchboard_server_config_set_jwt_leeway_ms(cfg, 1000));
    switchboard_server *srv = start_with(cfg);
    const char *url = switchboard_server_url(srv);

    switchboard_client *dave = NULL;
    CHECK_OK(connect_with_token(url, JWT_OK, &dave));
    CHECK_OK(switchboard_client_join(dave, "jwt-1", 5000));
    /* The token's `rooms` claim: only jwt-*. */
    CHECK_RESULT(switchboard_client_join(dave, "elsewhere", 5000), SWITCHBOARD_RESULT_FORBIDDEN);
    switchboard_client_free(dave);

    switchboard_client *x = NULL;
    CHECK_RESULT(connect_with_token(url, JWT_BAD_SIGNATURE, &x), SWITCHBOARD_RESULT_UNAUTHORIZED);
    CHECK_RESULT(connect_with_token(url, JWT_EXPIRED, &x), SWITCHBOARD_RESULT_UNAUTHORIZED);
    CHECK_RESULT(connect_with_token(url, JWT_OTHER_AUDIENCE, &x), SWITCHBOARD_RESULT_UNAUTHORIZED);
    CHECK(x == NULL);
    switchboard_server_free(srv);

    /* A bad public key fails at start, as a configuration error. */
    cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_jwt_public_key_pem(cfg, "not a PEM key"));
    CHECK_OK(switchboard_server_config_set_listen(cfg, "127.0.0.1:0"));
    switchboard_server *none = NULL;
    CHECK_RESULT(switchboard_server_start(cfg, &none), SWITCHBOARD_RESULT_CONFIG);
    CHECK(none == NULL);
}

/* The C auth callback: what it saw, and how it decides. */
typedef struct {
    pthread_mutex_t lock;
    int calls;
    int null_tokens;
    int on_main_thread;
    char last_ip[64];
    char last_path[64];
    pthread_t main_thread;
    pthread_t deferred[8];
    int deferred_count;
} auth_state;

static void *complete_later(void *arg) {
    /* A decision from another thread, after the callback returned. */
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    switchboard_result r = switchboard_auth_request_allow((switchboard_auth_request *)arg, "erin", NULL,
                                                          "{\"plan\":\"pro\"}", 0);
    return (void *)(size_t)(r == SWITCHBOARD_RESULT_OK);
}

static void *complete_too_late(void *arg) {
    /* Past the 500 ms auth timeout: the connection was refused meanwhile. */
    struct timespec pause = {1, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    switchboard_auth_request_allow((switchboard_auth_request *)arg, "late", NULL, NULL, 0);
    return NULL;
}

static void authenticate(void *userdata, switchboard_auth_request *req) {
    auth_state *s = (auth_state *)userdata;
    const char *token = switchboard_auth_request_token(req);
    pthread_mutex_lock(&s->lock);
    s->calls++;
    if (token == NULL) s->null_tokens++;
    if (pthread_equal(pthread_self(), s->main_thread)) s->on_main_thread++;
    const char *ip = switchboard_auth_request_ip(req);
    const char *path = switchboard_auth_request_path(req);
    snprintf(s->last_ip, sizeof s->last_ip, "%s", ip ? ip : "");
    snprintf(s->last_path, sizeof s->last_path, "%s", path ? path : "");
    pthread_mutex_unlock(&s->lock);

    if (streq(token, "let-me-in")) {
        switchboard_auth_request_allow(req, "carol", "[\"room-*\"]", NULL, 0);
    } else if (streq(token, "ask-later") || streq(token, "too-late")) {
        pthread_mutex_lock(&s->lock);
        pthread_t t;
        if (pthread_create(&t, NULL, streq(token, "ask-later") ? complete_later : complete_too_late, req) == 0) {
            s->deferred[s->deferred_count++] = t;
        } else {
            switchboard_auth_request_deny(req);
        }
        pthread_mutex_unlock(&s->lock);
    } else if (streq(token, "bad-rooms")) {
        /* A decision with invalid arguments refuses, and says why. */
        switchboard_result r = switchboard_auth_request_allow(req, "x", "{\"not\":\"an array\"}", NULL, 0);
        CHECK_RESULT(r, SWITCHBOARD_RESULT_INVALID_ARGUMENT);
    } else {
        switchboard_auth_request_deny(req);
    }
}

static void auth_callback(void) {
    auth_state s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    s.main_thread = pthread_self();
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_auth_callback(cfg, authenticate, &s));
    switchboard_server *srv = start_with(cfg);
    const char *url = switchboard_server_url(srv);

    /* Allowed: carol, limited to room-*. */
    switchboard_client *carol = NULL;
    CHECK_OK(connect_with_token(url, "let-me-in", &carol));
    CHECK_OK(switchboard_client_join(carol, "room-1", 5000));
    CHECK_RESULT(switchboard_client_join(carol, "lobby", 5000), SWITCHBOARD_RESULT_FORBIDDEN);
    switchboard_event *ev = WAIT_SERVER(srv, "user-joined");
    CHECK(ev != NULL && streq(switchboard_event_user_id(ev), "carol"));
    switchboard_event_free(ev);

    /* Refused. */
    switchboard_client *x = NULL;
    CHECK_RESULT(connect_with_token(url, "nope", &x), SWITCHBOARD_RESULT_UNAUTHORIZED);
    CHECK_RESULT(connect_with_token(url, "bad-rooms", &x), SWITCHBOARD_RESULT_UNAUTHORIZED);
    CHECK(x == NULL);

    /* Decided later, on another thread; metadata reaches the peers. */
    switchboard_client *erin = NULL;
    CHECK_OK(connect_with_token(url, "ask-later", &erin));
    CHECK_OK(switchboard_client_join(erin, "room-1", 5000));
    ev = WAIT_CLIENT(carol, "user-joined");
    CHECK(ev != NULL && streq(switchboard_event_user_id(ev), "erin"));
    CHECK(ev != NULL && contains(switchboard_event_json(ev), "\"plan\":\"pro\""));
    switchboard_event_free(ev);

    /* Decided after the auth timeout: refused. */
    CHECK_RESULT(connect_with_token(url, "too-late", &x), SWITCHBOARD_RESULT_UNAUTHORIZED);

    /* No token at the handshake: the callback sees NULL and refuses; the client
     * then authenticates with an `auth` message, which the callback admits. */
    switchboard_client *late = NULL;
    CHECK_OK(connect_with_token(url, NULL, &late));
    CHECK_RESULT(switchboard_client_join(late, "room-1", 5000), SWITCHBOARD_RESULT_UNAUTHORIZED);
    CHECK_OK(switchboard_client_send_json(late, "{\"type\":\"auth\",\"token\":\"let-me-in\"}"));
    CHECK_OK(switchboard_client_join(late, "room-2", 5000));

    pthread_mutex_lock(&s.lock);
    CHECK(s.calls >= 7);
    CHECK(s.null_tokens >= 1);
    CHECK(s.on_main_thread == 0); /* never on the caller's thread */
    CHECK(streq(s.last_ip, "127.0.0.1"));
    CHECK(streq(s.last_path, "/ws"));
    int deferred = s.deferred_count;
    pthread_mutex_unlock(&s.lock);
    for (int i = 0; i < deferred; i++) pthread_join(s.deferred[i], NULL);

    switchboard_client_free(carol);
    switchboard_client_free(erin);
    switchboard_client_free(late);
    switchboard_server_free(srv);
    pthread_mutex_destroy(&s.lock);
}

/* A token provider: counts its calls; "fail" mode refuses. */
typedef struct {
    pthread_mutex_t lock;
    int calls;
    int fail;
} token_source;

static void provide_token(void *userdata, switchboard_token_request *req) {
    token_source *t = (token_source *)userdata;
    pthread_mutex_lock(&t->lock);
    t->calls++;
    int fail = t->fail;
    pthread_mutex_unlock(&t->lock);
    if (fail) {
        switchboard_token_request_fail(req);
    } else {
        CHECK_OK(switchboard_token_request_provide(req, "t-alice"));
    }
}

static int token_calls(token_source *t) {
    pthread_mutex_lock(&t->lock);
    int n = t->calls;
    pthread_mutex_unlock(&t->lock);
    return n;
}

static switchboard_server *token_server(const char *listen) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_add_auth_token(cfg, "t-alice", "alice"));
    CHECK_OK(switchboard_server_config_set_listen(cfg, listen));
    CHECK_OK(switchboard_server_config_set_drain_retry_after_ms(cfg, 100));
    switchboard_server *srv = NULL;
    REQUIRE(switchboard_server_start(cfg, &srv) == SWITCHBOARD_RESULT_OK);
    return srv;
}

static void token_callback(void) {
    token_source t;
    memset(&t, 0, sizeof t);
    pthread_mutex_init(&t.lock, NULL);
    switchboard_server *srv = token_server("127.0.0.1:0");
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)switchboard_server_port(srv));

    switchboard_client_options *opts = switchboard_client_options_new();
    CHECK_OK(switchboard_client_options_set_token(opts, "t-stale")); /* the callback wins */
    CHECK_OK(switchboard_client_options_set_token_callback(opts, provide_token, &t));
    CHECK_OK(switchboard_client_options_set_reconnect_backoff_ms(opts, 50, 200));
    switchboard_client *alice = NULL;
    CHECK_OK(switchboard_client_connect_with_options(switchboard_server_url(srv), opts, &alice));
    CHECK_OK(switchboard_client_join(alice, "room", 5000));
    CHECK(token_calls(&t) == 1);

    /* The server restarts on the same port: the reconnect asks for a token again. */
    switchboard_server_free(srv);
    srv = token_server(listen);
    switchboard_event *ev = WAIT_CLIENT(alice, "rejoined");
    CHECK(ev != NULL);
    switchboard_event_free(ev);
    CHECK(token_calls(&t) >= 2);
    ev = WAIT_SERVER(srv, "user-joined");
    CHECK(ev != NULL && streq(switchboard_event_user_id(ev), "alice"));
    switchboard_event_free(ev);
    switchboard_client_free(alice);

    /* A provider that refuses: the first connect fails. */
    pthread_mutex_lock(&t.lock);
    t.fail = 1;
    pthread_mutex_unlock(&t.lock);
    opts = switchboard_client_options_new();
    CHECK_OK(switchboard_client_options_set_token_callback(opts, provide_token, &t));
    switchboard_client *none = NULL;
    CHECK_RESULT(switchboard_client_connect_with_options(switchboard_server_url(srv), opts, &none),
                 SWITCHBOARD_RESULT_UNAUTHORIZED);
    CHECK(none == NULL);
    CHECK_RESULT(switchboard_token_request_provide(NULL, "x"), SWITCHBOARD_RESULT_NULL_ARGUMENT);
    switchboard_token_request_fail(NULL);
    switchboard_server_free(srv);
    pthread_mutex_destroy(&t.lock);
}

int main(void) {
    CHECK_OK(switchboard_log_init(NULL));
    static_tokens();
    jwt();
    auth_callback();
    token_callback();
    return finish("test_auth");
}
