/* test_lifecycle.c: stopping a server while clients are connected (they get
 * `draining` and reconnect; their free ends that), callbacks that call back
 * into the library (send, stop, free from inside a callback), replacing and
 * removing callbacks, and the bounded event queues (oldest dropped, counted). */
#include "harness.h"

/* Server callback: greets every peer that joins (a call back into the server). */
typedef struct {
    switchboard_server *srv;
    recorder seen;
    int greeted;
} greeter;

static void greet(void *userdata, const switchboard_event *ev) {
    greeter *g = (greeter *)userdata;
    record_event(&g->seen, ev);
    if (streq(switchboard_event_type(ev), "user-joined")) {
        switchboard_result r = switchboard_server_send(
            g->srv, switchboard_event_room_id(ev), switchboard_event_user_id(ev),
            "{\"type\":\"message\",\"data\":\"welcome\"}");
        pthread_mutex_lock(&g->seen.lock);
        if (r == SWITCHBOARD_RESULT_OK) g->greeted++;
        pthread_mutex_unlock(&g->seen.lock);
    }
}

static void stop_with_clients_connected(void) {
    greeter g;
    memset(&g, 0, sizeof g);
    recorder_init(&g.seen);
    /* The callback needs the server handle: set it after start. */
    switchboard_server *srv = start_test_server(NULL, NULL);
    g.srv = srv;
    CHECK_OK(switchboard_server_set_event_callback(srv, greet, &g));
    const char *url = switchboard_server_url(srv);

    switchboard_client *alice = NULL;
    REQUIRE(switchboard_client_connect(url, "alice", &alice) == SWITCHBOARD_RESULT_OK);
    recorder bob_seen;
    recorder_init(&bob_seen);
    switchboard_client_options *opts = switchboard_client_options_new();
    CHECK_OK(switchboard_client_options_set_user_id(opts, "bob"));
    CHECK_OK(switchboard_client_options_set_reconnect_backoff_ms(opts, 50, 200));
    CHECK_OK(switchboard_client_options_set_event_callback(opts, record_event, &bob_seen));
    switchboard_client *bob = NULL;
    REQUIRE(switchboard_client_connect_with_options(url, opts, &bob) == SWITCHBOARD_RESULT_OK);
    CHECK_OK(switchboard_client_join(alice, "room", 5000));
    CHECK_OK(switchboard_client_join(bob, "room", 5000));

    /* The server callback greeted both through switchboard_server_send. */
    switchboard_event *ev = WAIT_CLIENT(alice, "message");
    CHECK(ev != NULL && contains(switchboard_event_json(ev), "welcome"));
    switchboard_event_free(ev);
    CHECK(recorder_wait(&bob_seen, "message", NULL, 10));

    /* Stop with both connected: a graceful drain. */
    CHECK_OK(switchboard_server_stop(srv));
    pthread_mutex_lock(&g.seen.lock);
    CHECK(g.greeted == 2);
    int seen_at_stop = g.seen.count;
    pthread_mutex_unlock(&g.seen.lock);
    ev = WAIT_CLIENT(alice, "draining");
    /* The configured drain_retry_after (200 ms, see harness.h). */
    CHECK(ev != NULL && contains(switchboard_event_json(ev), "\"retryAfterMs\":200"));
    switchboard_event_free(ev);
    ev = WAIT_CLIENT(alice, "reconnecting");
    CHECK(ev != NULL);
    switchboard_event_free(ev);
    CHECK(recorder_wait(&bob_seen, "draining", NULL, 10));
    CHECK(recorder_wait(&bob_seen, "reconnecting", NULL, 10));
    CHECK(!switchboard_client_is_connected(alice));

    /* The server's streams ended: the pull API drains, then says closed; the
     * callback thread was joined by stop, so it saw its last event already. */
    int left = 0;
    switchboard_result r;
    while ((r = switchboard_server_next_event(srv, 1000, &ev)) == SWITCHBOARD_RESULT_OK) {
        if (streq(switchboard_event_type(ev), "disconnected")) left++;
        switchboard_event_free(ev);
    }
    CHECK_RESULT(r, SWITCHBOARD_RESULT_CLOSED);
    CHECK(left == 2);
    pthread_mutex_lock(&g.seen.lock);
    CHECK(g.seen.count == seen_at_stop);
    pthread_mutex_unlock(&g.seen.lock);
    CHECK_OK(switchboard_server_stop(srv)); /* idempotent */
    /* A callback set after the end gets nothing and ends at once. */
    CHECK_OK(switchboard_server_set_event_callback(srv, record_event, &g.seen));

    /* Clients that keep reconnecting to a stopped server are freed promptly. */
    switchboard_client_free(alice);
    switchboard_client_free(bob);
    switchboard_server_free(srv);
    recorder_destroy(&g.seen);
    recorder_destroy(&bob_seen);
}

/* A server callback that stops its own server when "stopper" joins. */
static void stop_from_callback(void *userdata, const switchboard_event *ev) {
    switchboard_server **srv = (switchboard_server **)userdata;
    if (streq(switchboard_event_type(ev), "user-joined") && streq(switchboard_event_user_id(ev), "stopper")) {
        CHECK_OK(switchboard_server_stop(*srv));
    }
}

/* A client callback that frees its own client on a message saying "bye". */
typedef struct {
    switchboard_client *self;
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    int done;
} self_freeing;

static void free_self(void *userdata, const switchboard_event *ev) {
    self_freeing *s = (self_freeing *)userdata;
    if (streq(switchboard_event_type(ev), "message") && contains(switchboard_event_json(ev), "bye")) {
        switchboard_client_free(s->self);
        pthread_mutex_lock(&s->lock);
        s->done = 1;
        pthread_cond_broadcast(&s->done_cond);
        pthread_mutex_unlock(&s->lock);
    }
}

static void calls_from_callbacks(void) {
    switchboard_server *srv = NULL;
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_listen(cfg, "127.0.0.1:0"));
    CHECK_OK(switchboard_server_config_set_drain_timeout_ms(cfg, 2000));
    CHECK_OK(switchboard_server_config_set_event_callback(cfg, stop_from_callback, &srv));
    REQUIRE(switchboard_server_start(cfg, &srv) == SWITCHBOARD_RESULT_OK);

    self_freeing s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.done_cond, NULL);
    switchboard_client_options *opts = switchboard_client_options_new();
    CHECK_OK(switchboard_client_options_set_user_id(opts, "self"));
    switchboard_client *self = NULL;
    REQUIRE(switchboard_client_connect_with_options(switchboard_server_url(srv), opts, &self) ==
            SWITCHBOARD_RESULT_OK);
    s.self = self;
    CHECK_OK(switchboard_client_set_event_callback(self, free_self, &s));
    CHECK_OK(switchboard_client_join(self, "room", 5000));
    CHECK_OK(switchboard_server_send(srv, "room", "self", "{\"type\":\"message\",\"data\":\"bye\"}"));
    pthread_mutex_lock(&s.lock);
    double deadline = now_s() + 10;
    while (!s.done && now_s() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&s.done_cond, &s.lock, &ts);
    }
    CHECK(s.done);
    pthread_mutex_unlock(&s.lock);

    /* The server stops itself from its callback when "stopper" joins. */
    switchboard_client *stopper = NULL;
    REQUIRE(switchboard_client_connect(switchboard_server_url(srv), "stopper", &stopper) == SWITCHBOARD_RESULT_OK);
    CHECK_OK(switchboard_client_join(stopper, "room", 5000));
    switchboard_event *ev = WAIT_CLIENT(stopper, "draining");
    CHECK(ev != NULL);
    switchboard_event_free(ev);
    switchboard_result r;
    while ((r = switchboard_server_next_event(srv, 1000, &ev)) == SWITCHBOARD_RESULT_OK) switchboard_event_free(ev);
    CHECK_RESULT(r, SWITCHBOARD_RESULT_CLOSED);
    switchboard_client_free(stopper);
    switchboard_server_free(srv);
    pthread_mutex_destroy(&s.lock);
    pthread_cond_destroy(&s.done_cond);
}

static void replace_and_remove_callbacks(void) {
    recorder first, second;
    recorder_init(&first);
    recorder_init(&second);
    switchboard_server *srv = start_test_server(record_event, &first);
    const char *url = switchboard_server_url(srv);
    switchboard_client *a = NULL;
    REQUIRE(switchboard_client_connect(url, "a", &a) == SWITCHBOARD_RESULT_OK);
    CHECK_OK(switchboard_client_join(a, "one", 5000));
    CHECK(recorder_wait(&first, "user-joined", NULL, 10));

    CHECK_OK(switchboard_server_set_event_callback(srv, record_event, &second));
    pthread_mutex_lock(&first.lock);
    int first_count = first.count;
    pthread_mutex_unlock(&first.lock);
    CHECK_OK(switchboard_client_chat(a, "to the second callback"));
    CHECK(recorder_wait(&second, "chat", "a", 10));
    CHECK_OK(switchboard_server_set_event_callback(srv, NULL, NULL));
    pthread_mutex_lock(&second.lock);
    int second_count = second.count;
    pthread_mutex_unlock(&second.lock);
    CHECK_OK(switchboard_client_chat(a, "to nobody"));
    /* The pull queue still gets everything; once it has the chat, the removed
     * callbacks would have had their chance too. */
    switchboard_event *ev = NULL;
    int chats = 0;
    while (chats < 2 && (ev = WAIT_SERVER(srv, "chat")) != NULL) {
        chats++;
        switchboard_event_free(ev);
    }
    CHECK(chats == 2);
    switchboard_client_free(a);
    switchboard_server_free(srv);
    /* Counts taken after free: every callback thread was joined. */
    CHECK(first.count == first_count);
    CHECK(second.count == second_count);
    recorder_destroy(&first);
    recorder_destroy(&second);
}

static void bounded_event_queues(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    CHECK_OK(switchboard_server_config_set_listen(cfg, "127.0.0.1:0"));
    CHECK_OK(switchboard_server_config_set_event_buffer(cfg, 4));
    switchboard_server *srv = NULL;
    REQUIRE(switchboard_server_start(cfg, &srv) == SWITCHBOARD_RESULT_OK);
    switchboard_client *a = NULL;
    REQUIRE(switchboard_client_connect(switchboard_server_url(srv), "a", &a) == SWITCHBOARD_RESULT_OK);
    CHECK_OK(switchboard_client_join(a, "r", 5000));
    /* Nobody reads the server's events: more than 4 of them pile up. */
    for (int i = 0; i < 10; i++) {
        char line[32];
        snprintf(line, sizeof line, "line %d", i);
        CHECK_OK(switchboard_client_chat(a, line));
    }
    /* 12 events (connected, user-joined, 10 chats) through a queue of 4: the
     * 8 oldest are dropped once the pump has published them all. */
    double deadline = now_s() + 10;
    while (switchboard_server_events_missed(srv) < 8 && now_s() < deadline) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    CHECK(switchboard_server_events_missed(srv) == 8);
    /* What is left are the newest events, ending with the last chat. */
    switchboard_event *ev = NULL;
    int kept = 0, last_is_newest = 0;
    while (switchboard_server_next_event(srv, 0, &ev) == SWITCHBOARD_RESULT_OK) {
        kept++;
        last_is_newest = contains(switchboard_event_json(ev), "line 9");
        switchboard_event_free(ev);
    }
    CHECK(kept == 4);
    CHECK(last_is_newest);
    CHECK(switchboard_client_events_missed(a) == 0);
    switchboard_client_free(a);
    switchboard_server_free(srv);
}

int main(int argc, char **argv) {
    /* An argument runs one part only (for debugging): 1-4. */
    int only = argc > 1 ? atoi(argv[1]) : 0;
    CHECK_OK(switchboard_log_init(NULL));
    if (only == 0 || only == 1) { fprintf(stderr, "part 1\n"); stop_with_clients_connected(); }
    if (only == 0 || only == 2) { fprintf(stderr, "part 2\n"); calls_from_callbacks(); }
    if (only == 0 || only == 3) { fprintf(stderr, "part 3\n"); replace_and_remove_callbacks(); }
    if (only == 0 || only == 4) { fprintf(stderr, "part 4\n"); bounded_event_queues(); }
    return finish("test_lifecycle");
}
