/* example.c: the C example of docs/C-JAVA.md (shown there as written; built and
 * run by scripts/test-cjava.sh, which checks that bob's offer arrives). */
#include <stdio.h>
#include <string.h>
#include "switchboard.h"

static void on_server_event(void *userdata, const switchboard_event *ev) { /* a library thread */
    (void)userdata;
    printf("server: %s\n", switchboard_event_json(ev));
}

int main(void) {
    switchboard_server_config *cfg = switchboard_server_config_new();
    switchboard_server_config_set_listen(cfg, "127.0.0.1:0");
    switchboard_server_config_set_event_callback(cfg, on_server_event, NULL);
    switchboard_server *srv = NULL;
    if (switchboard_server_start(cfg, &srv) != SWITCHBOARD_RESULT_OK) { /* consumes cfg */
        fprintf(stderr, "start: %s\n", switchboard_last_error_message());
        return 1;
    }
    switchboard_client *alice = NULL, *bob = NULL;
    switchboard_result r = switchboard_client_connect(switchboard_server_url(srv), "alice", &alice);
    if (r == SWITCHBOARD_RESULT_OK) r = switchboard_client_connect(switchboard_server_url(srv), "bob", &bob);
    if (r == SWITCHBOARD_RESULT_OK) r = switchboard_client_join(bob, "room-1", 5000);
    if (r == SWITCHBOARD_RESULT_OK) r = switchboard_client_join(alice, "room-1", 5000); /* waits for room-info */
    if (r == SWITCHBOARD_RESULT_OK) /* waits for the server's ack */
        r = switchboard_client_send_offer(alice, "bob", "{\"type\":\"offer\",\"sdp\":\"v=0...\"}");
    switchboard_event *ev = NULL;
    while (r == SWITCHBOARD_RESULT_OK && switchboard_client_next_event(bob, 1000, &ev) == SWITCHBOARD_RESULT_OK) { /* pull */
        int offer = strcmp(switchboard_event_type(ev), "offer") == 0;
        printf("bob: %s %s\n", switchboard_event_type(ev), switchboard_event_json(ev));
        switchboard_event_free(ev);
        if (offer) break;
    }
    if (r != SWITCHBOARD_RESULT_OK) fprintf(stderr, "%s: %s\n", switchboard_result_name(r), switchboard_last_error_message());
    switchboard_client_free(alice); /* closes; joins its threads */
    switchboard_client_free(bob);
    switchboard_server_free(srv);   /* drains; joins its threads */
    return r == SWITCHBOARD_RESULT_OK ? 0 : 1;
}
