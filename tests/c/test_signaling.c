/* test_signaling.c: a server on port 0 and two C clients in one room exchange
 * offer/answer/candidates, messages and chat; every event is checked through
 * both event APIs (pull on alice and the server, push callbacks on bob and the
 * server); then the server's send/broadcast/kick/rooms, leave and close. */
#include "harness.h"

static const char *OFFER = "{\"type\":\"offer\",\"sdp\":\"v=0\\r\\no=alice 1 1 IN IP4 127.0.0.1\\r\\n\"}";
static const char *ANSWER = "{\"type\":\"answer\",\"sdp\":\"v=0\\r\\no=bob 2 2 IN IP4 127.0.0.1\\r\\n\"}";
static const char *CANDIDATE_A =
    "{\"candidate\":\"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0}";
static const char *CANDIDATE_B =
    "{\"candidate\":\"candidate:2 1 udp 2122260223 192.0.2.2 54401 typ host\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0}";

/* Waits for a client event of `type` and checks its sender and a JSON fragment. */
static void expect_client(switchboard_client *cl, const char *type, const char *from,
                          const char *fragment) {
    switchboard_event *ev = WAIT_CLIENT(cl, type);
    CHECK(ev != NULL);
    if (ev == NULL) {
        fprintf(stderr, "  (no %s event)\n", type);
        return;
    }
    if (from != NULL) CHECK(streq(switchboard_event_from(ev), from));
    if (fragment != NULL) CHECK(contains(switchboard_event_json(ev), fragment));
    switchboard_event_free(ev);
}

static void expect_server(switchboard_server *srv, const char *type, const char *user,
                          const char *fragment) {
    switchboard_event *ev = WAIT_SERVER(srv, type);
    CHECK(ev != NULL);
    if (ev == NULL) {
        fprintf(stderr, "  (no server %s event)\n", type);
        return;
    }
    if (user != NULL) {
        const char *u = switchboard_event_user_id(ev);
        const char *f = switchboard_event_from(ev);
        CHECK(streq(u, user) || streq(f, user));
    }
    if (fragment != NULL) CHECK(contains(switchboard_event_json(ev), fragment));
    CHECK(streq(switchboard_event_room_id(ev), "room-1") || switchboard_event_room_id(ev) == NULL);
    switchboard_event_free(ev);
}

int main(void) {
    CHECK_OK(switchboard_log_init("switchboard=warn"));
    recorder server_seen;
    recorder_init(&server_seen);
    switchboard_server *srv = start_test_server(record_event, &server_seen);
    const char *url = switchboard_server_url(srv);
    CHECK(strncmp(url, "ws://127.0.0.1:", 15) == 0);
    CHECK(switchboard_server_port(srv) > 0);
    CHECK(contains(url, "/ws"));

    /* alice: the plain connect, read through the pull API. */
    switchboard_client *alice = NULL;
    CHECK_OK(switchboard_client_connect(url, "alice", &alice));
    REQUIRE(alice != NULL);
    CHECK(switchboard_client_is_connected(alice));

    /* bob: options, and a push callback that sees every event from the first. */
    recorder bob_seen;
    recorder_init(&bob_seen);
    switchboard_client_options *opts = switchboard_client_options_new();
    REQUIRE(opts != NULL);
    CHECK_OK(switchboard_client_options_set_user_id(opts, "bob"));
    CHECK_OK(switchboard_client_options_set_display_name(opts, "Bob"));
    CHECK_OK(switchboard_client_options_set_metadata_json(opts, "{\"role\":\"callee\"}"));
    CHECK_OK(switchboard_client_options_set_heartbeat_ms(opts, 5000));
    CHECK_OK(switchboard_client_options_set_reconnect_backoff_ms(opts, 100, 1000));
    CHECK_OK(switchboard_client_options_set_event_callback(opts, record_event, &bob_seen));
    switchboard_client *bob = NULL;
    CHECK_OK(switchboard_client_connect_with_options(url, opts, &bob));
    REQUIRE(bob != NULL);

    /* The first events of each client: the connection states, then `connected`. */
    expect_client(alice, "connecting", NULL, "\"attempt\":0");
    expect_client(alice, "connected", NULL, "\"sessionId\"");
    CHECK(recorder_wait(&bob_seen, "connecting", NULL, 10));
    CHECK(recorder_wait(&bob_seen, "connected", NULL, 10));

    CHECK_OK(switchboard_client_join(alice, "room-1", 5000));
    expect_client(alice, "room-info", NULL, "\"roomId\":\"room-1\"");
    char *info = NULL;
    CHECK_OK(switchboard_client_join_with_info(bob, "room-1", 5000, &info));
    CHECK(contains(info, "\"type\":\"room-info\""));
    CHECK(contains(info, "\"alice\""));
    switchboard_string_free(info);

    {
        switchboard_event *ev = WAIT_CLIENT(alice, "user-joined");
        CHECK(ev != NULL);
        if (ev != NULL) {
            CHECK(streq(switchboard_event_user_id(ev), "bob"));
            CHECK(streq(switchboard_event_room_id(ev), "room-1"));
            CHECK(contains(switchboard_event_json(ev), "\"displayName\":\"Bob\""));
            CHECK(contains(switchboard_event_json(ev), "\"role\":\"callee\""));
            /* A clone outlives the original. */
            switchboard_event *copy = switchboard_event_clone(ev);
            switchboard_event_free(ev);
            CHECK(streq(switchboard_event_type(copy), "user-joined"));
            CHECK(switchboard_event_from(copy) == NULL);
            switchboard_event_free(copy);
        }
    }

    /* Offer / answer / candidates both ways. */
    CHECK_OK(switchboard_client_send_offer(alice, "bob", OFFER));
    CHECK(recorder_wait(&bob_seen, "offer", "alice", 10));
    CHECK_OK(switchboard_client_send_answer(bob, "alice", ANSWER));
    expect_client(alice, "answer", "bob", "o=bob 2 2");
    CHECK_OK(switchboard_client_send_candidate(alice, "bob", CANDIDATE_A));
    CHECK_OK(switchboard_client_send_candidate(alice, "bob", "null"));
    CHECK(recorder_wait(&bob_seen, "candidate", "alice", 10));
    CHECK_OK(switchboard_client_send_candidate(bob, "alice", CANDIDATE_B));
    expect_client(alice, "candidate", "bob", "192.0.2.2 54401 typ host");

    /* Application data, chat, and a raw protocol message. */
    CHECK_OK(switchboard_client_send_message(bob, NULL, "{\"hello\":[1,2,3]}"));
    expect_client(alice, "message", "bob", "\"hello\":[1,2,3]");
    CHECK_OK(switchboard_client_chat(alice, "hi all"));
    CHECK(recorder_wait(&bob_seen, "chat", "alice", 10));
    CHECK_OK(switchboard_client_send_json(
        bob, "{\"type\":\"message\",\"to\":\"alice\",\"roomId\":\"room-1\",\"data\":\"raw\"}"));
    expect_client(alice, "message", "bob", "\"data\":\"raw\"");
    /* A peer that is not there: the server's error comes back as the result. */
    CHECK_RESULT(switchboard_client_send_offer(alice, "carol", OFFER), SWITCHBOARD_RESULT_PEER_NOT_FOUND);
    CHECK(contains(switchboard_last_error_message(), "carol"));

    /* The server saw all of it, through the pull API ... */
    expect_server(srv, "connected", NULL, "\"clientId\"");
    expect_server(srv, "user-joined", "alice", NULL);
    expect_server(srv, "user-joined", "bob", NULL);
    expect_server(srv, "offer", "alice", "o=alice 1 1");
    expect_server(srv, "answer", "bob", NULL);
    expect_server(srv, "candidate", "alice", "typ host");
    /* ... and through its push callback, on a library thread. */
    CHECK(recorder_wait(&server_seen, "user-joined", NULL, 10));
    CHECK(recorder_wait(&server_seen, "offer", "alice", 10));
    CHECK(recorder_wait(&server_seen, "chat", "alice", 10));
    pthread_mutex_lock(&server_seen.lock);
    CHECK(server_seen.on_library_thread && !pthread_equal(server_seen.thread, pthread_self()));
    pthread_mutex_unlock(&server_seen.lock);

    /* The server's own operations. */
    char *rooms = NULL;
    CHECK_OK(switchboard_server_rooms_json(srv, &rooms));
    CHECK(contains(rooms, "\"roomId\":\"room-1\""));
    CHECK(contains(rooms, "\"userId\":\"alice\""));
    CHECK(contains(rooms, "\"userId\":\"bob\""));
    switchboard_string_free(rooms);
    CHECK_OK(switchboard_server_send(srv, "room-1", "alice",
                                     "{\"type\":\"message\",\"data\":{\"notice\":\"from the host\"}}"));
    expect_client(alice, "message", NULL, "from the host");
    uint64_t delivered = 0;
    CHECK_OK(switchboard_server_broadcast(srv, "room-1", "{\"type\":\"message\",\"data\":\"to all\"}",
                                          &delivered));
    CHECK(delivered == 2);
    expect_client(alice, "message", NULL, "to all");
    CHECK_OK(switchboard_server_broadcast(srv, "room-1", "{\"type\":\"message\",\"data\":\"again\"}", NULL));
    CHECK_RESULT(switchboard_server_send(srv, "room-1", "nobody", "{\"type\":\"message\"}"),
                 SWITCHBOARD_RESULT_PEER_NOT_FOUND);
    CHECK_RESULT(switchboard_server_send(srv, "no-such-room", "alice", "{\"type\":\"message\"}"),
                 SWITCHBOARD_RESULT_NOT_IN_ROOM);
    CHECK_RESULT(switchboard_server_send(srv, "room-1", "alice", "{\"no\":\"type\"}"),
                 SWITCHBOARD_RESULT_INVALID_MESSAGE);

    /* Kick bob: a final close for him, `user-left` (kicked) for the others. */
    CHECK_OK(switchboard_server_kick(srv, "room-1", "bob"));
    expect_client(alice, "user-left", NULL, "\"reason\":\"kicked\"");
    CHECK(recorder_wait(&bob_seen, "closed", NULL, 10));
    CHECK_RESULT(switchboard_client_chat(bob, "still here?"), SWITCHBOARD_RESULT_CLOSED);
    expect_server(srv, "user-left", "bob", "kicked");

    /* Leave, then close: `closed` ends alice's stream. */
    CHECK_OK(switchboard_client_leave(alice, "room-1", 5000));
    expect_server(srv, "user-left", "alice", "\"reason\":\"leave\"");
    CHECK_RESULT(switchboard_client_send_offer(alice, "bob", OFFER), SWITCHBOARD_RESULT_NOT_IN_ROOM);
    CHECK_OK(switchboard_client_close(alice));
    CHECK_OK(switchboard_client_close(alice)); /* idempotent */
    CHECK(!switchboard_client_is_connected(alice));
    expect_client(alice, "closed", NULL, "\"code\"");
    switchboard_event *ev = NULL;
    CHECK_RESULT(switchboard_client_next_event(alice, 100, &ev), SWITCHBOARD_RESULT_CLOSED);
    CHECK(ev == NULL);
    CHECK_RESULT(switchboard_client_join(alice, "room-1", 1000), SWITCHBOARD_RESULT_CLOSED);

    switchboard_client_free(alice);
    switchboard_client_free(bob);
    CHECK_OK(switchboard_server_stop(srv));
    /* After stop: what was queued, then the end of the stream. */
    int drained = 0;
    switchboard_result r;
    while ((r = switchboard_server_next_event(srv, 100, &ev)) == SWITCHBOARD_RESULT_OK) {
        switchboard_event_free(ev);
        drained++;
    }
    CHECK_RESULT(r, SWITCHBOARD_RESULT_CLOSED);
    CHECK(drained > 0);
    CHECK(switchboard_server_events_missed(srv) == 0);
    CHECK_RESULT(switchboard_server_send(srv, "room-1", "alice", "{\"type\":\"message\"}"),
                 SWITCHBOARD_RESULT_CLOSED);
    CHECK(strncmp(switchboard_server_url(srv), "ws://", 5) == 0);
    switchboard_server_free(srv);
    recorder_destroy(&server_seen);
    recorder_destroy(&bob_seen);
    return finish("test_signaling");
}
