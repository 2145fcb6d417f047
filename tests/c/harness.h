/* harness.h: the small test harness shared by the C tests of switchboard.h:
 * checks that count failures, a closing "N passed, N failed" line, and helpers
 * that wait (pull API, generous timeouts) for an event of a given type. */
#ifndef SWITCHBOARD_TEST_HARNESS_H
#define SWITCHBOARD_TEST_HARNESS_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "switchboard.h"

static int g_passed = 0;
static int g_failed = 0;

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (cond) {                                                                \
            g_passed++;                                                            \
        } else {                                                                   \
            g_failed++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, \
                    __LINE__, #cond, switchboard_last_error_message());            \
        }                                                                          \
    } while (0)

/* A call that must return `expected`. */
#define CHECK_RESULT(call, expected)                                                  \
    do {                                                                              \
        switchboard_result r_ = (call);                                               \
        if (r_ == (switchboard_result)(expected)) {                                   \
            g_passed++;                                                               \
        } else {                                                                      \
            g_failed++;                                                               \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n",  \
                    __FILE__, __LINE__, #call, switchboard_result_name(r_),           \
                    switchboard_result_name(expected),                                \
                    switchboard_last_error_message());                                \
        }                                                                             \
    } while (0)

#define CHECK_OK(call) CHECK_RESULT(call, SWITCHBOARD_RESULT_OK)

/* A check whose failure makes the rest of the test meaningless. */
#define REQUIRE(cond)                                                               \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s (last error: %s)\n", __FILE__, \
                    __LINE__, #cond, switchboard_last_error_message());             \
            exit(2);                                                                \
        }                                                                           \
    } while (0)

static inline int finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

static inline int streq(const char *a, const char *b) {
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* True when `json` contains `needle` (enough to check a field's value). */
static inline int contains(const char *json, const char *needle) {
    return json != NULL && strstr(json, needle) != NULL;
}

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef switchboard_result (*next_event_fn)(const void *handle, uint32_t timeout_ms,
                                            switchboard_event **event_out);

static inline switchboard_result next_server_event(const void *h, uint32_t t, switchboard_event **e) {
    return switchboard_server_next_event((const switchboard_server *)h, t, e);
}

static inline switchboard_result next_client_event(const void *h, uint32_t t, switchboard_event **e) {
    return switchboard_client_next_event((const switchboard_client *)h, t, e);
}

/* Pulls events until one of `type` arrives (skipping others) or `seconds`
 * pass; returns it (caller frees) or NULL. */
static inline switchboard_event *wait_for(next_event_fn next, const void *handle,
                                          const char *type, double seconds) {
    double deadline = now_s() + seconds;
    while (now_s() < deadline) {
        switchboard_event *ev = NULL;
        switchboard_result r = next(handle, 200, &ev);
        if (r == SWITCHBOARD_RESULT_TIMEOUT) continue;
        if (r != SWITCHBOARD_RESULT_OK) return NULL;
        if (streq(switchboard_event_type(ev), type)) return ev;
        switchboard_event_free(ev);
    }
    return NULL;
}

#define WAIT_SERVER(srv, type) wait_for(next_server_event, (srv), (type), 10.0)
#define WAIT_CLIENT(cl, type) wait_for(next_client_event, (cl), (type), 10.0)

/* Events seen by a push callback, for tests to wait on. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char types[256][32];
    char from[256][32];
    int count;
    pthread_t thread;
    int on_library_thread;
} recorder;

static inline void recorder_init(recorder *r) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->changed, NULL);
}

static inline void recorder_destroy(recorder *r) {
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->changed);
}

/* The push callback: records the type and sender; notes the thread. */
static inline void record_event(void *userdata, const switchboard_event *ev) {
    recorder *r = (recorder *)userdata;
    pthread_mutex_lock(&r->lock);
    if (r->count < 256) {
        const char *t = switchboard_event_type(ev);
        const char *f = switchboard_event_from(ev);
        snprintf(r->types[r->count], sizeof r->types[0], "%s", t ? t : "?");
        snprintf(r->from[r->count], sizeof r->from[0], "%s", f ? f : "");
        r->count++;
    }
    r->thread = pthread_self();
    r->on_library_thread = 1;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
}

/* Waits until the recorder saw `type` (from `from`, if not NULL). */
static inline int recorder_wait(recorder *r, const char *type, const char *from, double seconds) {
    double deadline = now_s() + seconds;
    int found = 0;
    pthread_mutex_lock(&r->lock);
    while (!found) {
        for (int i = 0; i < r->count && !found; i++) {
            if (strcmp(r->types[i], type) == 0 && (from == NULL || strcmp(r->from[i], from) == 0)) {
                found = 1;
            }
        }
        if (found || now_s() >= deadline) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec += 1;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->changed, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);
    return found;
}

/* A server on 127.0.0.1, port 0, with test-friendly limits. */
static inline switchboard_server *start_test_server(switchboard_event_callback cb, void *userdata) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    REQUIRE(cfg != NULL);
    REQUIRE(switchboard_server_config_set_listen(cfg, "127.0.0.1:0") == SWITCHBOARD_RESULT_OK);
    REQUIRE(switchboard_server_config_set_path(cfg, "/ws") == SWITCHBOARD_RESULT_OK);
    REQUIRE(switchboard_server_config_set_drain_timeout_ms(cfg, 3000) == SWITCHBOARD_RESULT_OK);
    REQUIRE(switchboard_server_config_set_drain_retry_after_ms(cfg, 200) == SWITCHBOARD_RESULT_OK);
    if (cb != NULL) {
        REQUIRE(switchboard_server_config_set_event_callback(cfg, cb, userdata) ==
                SWITCHBOARD_RESULT_OK);
    }
    switchboard_server *srv = NULL;
    REQUIRE(switchboard_server_start(cfg, &srv) == SWITCHBOARD_RESULT_OK);
    REQUIRE(srv != NULL);
    return srv;
}

#endif
