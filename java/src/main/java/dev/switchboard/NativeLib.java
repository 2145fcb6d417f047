// NativeLib.java: the JNA mapping of include/switchboard.h (one method per C
// function, same names); loaded once with UTF-8 strings. Internal: the public
// classes wrap it.
package dev.switchboard;

import com.sun.jna.Callback;
import com.sun.jna.Library;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.LongByReference;
import com.sun.jna.ptr.PointerByReference;
import com.sun.jna.ptr.ShortByReference;
import java.util.Map;

interface NativeLib extends Library {
    NativeLib INSTANCE = Native.load("switchboard", NativeLib.class,
            Map.of(Library.OPTION_STRING_ENCODING, "UTF-8"));

    int OK = 0;
    int TIMEOUT = 9;
    int CLOSED = 7;
    int REFUSED = 11;

    /** switchboard_auth_callback: runs on a native blocking thread (JNA attaches it). */
    interface AuthCallback extends Callback {
        void invoke(Pointer userdata, Pointer request);
    }

    /** switchboard_token_callback: runs on a native blocking thread (JNA attaches it). */
    interface TokenCallback extends Callback {
        void invoke(Pointer userdata, Pointer request);
    }

    String switchboard_result_name(int result);
    String switchboard_last_error_message();
    String switchboard_version();
    void switchboard_string_free(Pointer s);
    int switchboard_log_init(String filter);

    String switchboard_auth_request_token(Pointer request);
    String switchboard_auth_request_origin(Pointer request);
    String switchboard_auth_request_ip(Pointer request);
    String switchboard_auth_request_path(Pointer request);
    int switchboard_auth_request_allow(Pointer request, String userId, String roomsJson,
            String metadataJson, long expiresAtUnixMs);
    void switchboard_auth_request_deny(Pointer request);

    Pointer switchboard_server_config_new();
    void switchboard_server_config_free(Pointer cfg);
    int switchboard_server_config_set_listen(Pointer cfg, String listen);
    int switchboard_server_config_set_path(Pointer cfg, String path);
    int switchboard_server_config_add_app_type(Pointer cfg, String name);
    int switchboard_server_config_set_api_key(Pointer cfg, String key);
    int switchboard_server_config_set_max_message_bytes(Pointer cfg, long bytes);
    int switchboard_server_config_set_max_conns(Pointer cfg, long conns);
    int switchboard_server_config_set_max_conns_per_ip(Pointer cfg, long conns);
    int switchboard_server_config_set_max_pending_per_ip(Pointer cfg, long sockets);
    int switchboard_server_config_set_max_pending(Pointer cfg, long sockets);
    int switchboard_server_config_set_conn_rate_per_ip(Pointer cfg, long perSecond);
    int switchboard_server_config_set_conn_burst_per_ip(Pointer cfg, long connections);
    int switchboard_server_config_set_ipv6_prefix(Pointer cfg, int bits);
    int switchboard_server_config_set_max_room_size(Pointer cfg, long peers);
    int switchboard_server_config_set_max_rooms_per_session(Pointer cfg, long rooms);
    int switchboard_server_config_set_max_metadata_bytes(Pointer cfg, long bytes);
    int switchboard_server_config_set_max_away_per_ip(Pointer cfg, long sessions);
    int switchboard_server_config_set_max_away_per_user(Pointer cfg, long sessions);
    int switchboard_server_config_set_max_away_sessions(Pointer cfg, long sessions);
    int switchboard_server_config_set_away_replay_budget_bytes(Pointer cfg, long bytes);
    int switchboard_server_config_set_rate_limit_burst(Pointer cfg, int messages);
    int switchboard_server_config_set_rate_limit_rps(Pointer cfg, int perSecond);
    int switchboard_server_config_set_heartbeat_ms(Pointer cfg, long ms);
    int switchboard_server_config_set_heartbeat_timeout_ms(Pointer cfg, long ms);
    int switchboard_server_config_set_resume_window_ms(Pointer cfg, long ms);
    int switchboard_server_config_set_replay_buffer_messages(Pointer cfg, long messages);
    int switchboard_server_config_set_replay_buffer_bytes(Pointer cfg, long bytes);
    int switchboard_server_config_set_outbound_queue_bytes(Pointer cfg, long bytes);
    int switchboard_server_config_set_outbound_budget_bytes(Pointer cfg, long bytes);
    int switchboard_server_config_add_allowed_origin(Pointer cfg, String origin);
    int switchboard_server_config_set_handshake_timeout_ms(Pointer cfg, long ms);
    int switchboard_server_config_set_http_write_timeout_ms(Pointer cfg, long ms);
    int switchboard_server_config_set_drain_timeout_ms(Pointer cfg, long ms);
    int switchboard_server_config_set_drain_retry_after_ms(Pointer cfg, long ms);
    int switchboard_server_config_set_event_buffer(Pointer cfg, long events);
    int switchboard_server_config_set_worker_threads(Pointer cfg, int threads);
    int switchboard_server_config_add_auth_token(Pointer cfg, String token, String userId);
    int switchboard_server_config_set_jwt_secret(Pointer cfg, String secret);
    int switchboard_server_config_set_jwt_public_key_pem(Pointer cfg, String pem);
    int switchboard_server_config_set_jwt_public_key_file(Pointer cfg, String path);
    int switchboard_server_config_set_jwt_audience(Pointer cfg, String audience);
    int switchboard_server_config_set_jwt_issuer(Pointer cfg, String issuer);
    int switchboard_server_config_set_jwt_leeway_ms(Pointer cfg, long ms);
    int switchboard_server_config_set_auth_callback(Pointer cfg, AuthCallback callback, Pointer userdata);
    int switchboard_server_config_set_auth_timeout_ms(Pointer cfg, long ms);
    int switchboard_server_config_set_tls(Pointer cfg, String certPath, String keyPath);
    int switchboard_server_config_add_trusted_proxy(Pointer cfg, String cidr);
    int switchboard_server_config_set_turn(Pointer cfg, String secret, long ttlSecs);
    int switchboard_server_config_add_turn_url(Pointer cfg, String url);
    int switchboard_server_config_set_redis_url(Pointer cfg, String url);
    int switchboard_server_config_set_redis_ca_cert(Pointer cfg, String path);
    int switchboard_server_config_set_demo(Pointer cfg, boolean on);
    int switchboard_server_config_set_serve_client(Pointer cfg, boolean on);

    int switchboard_server_start(Pointer cfg, PointerByReference serverOut);
    int switchboard_server_create(Pointer cfg, PointerByReference serverOut);
    int switchboard_server_metrics(Pointer server, PointerByReference textOut);

    // The host-socket mode (HostUpgrade, HostConnection).
    Pointer switchboard_upgrade_new(String peerIp, String target);
    int switchboard_upgrade_header(Pointer upgrade, String name, String value);
    int switchboard_server_admit(Pointer server, Pointer upgrade, com.sun.jna.ptr.ShortByReference statusOut);
    String switchboard_upgrade_subprotocol(Pointer upgrade);
    String switchboard_upgrade_refusal_header(Pointer upgrade);
    int switchboard_upgrade_open(Pointer server, Pointer upgrade, int liveness, PointerByReference connOut);
    void switchboard_upgrade_free(Pointer upgrade);
    String switchboard_conn_client_id(Pointer conn);
    int switchboard_conn_text(Pointer conn, byte[] data, long len);
    int switchboard_conn_binary(Pointer conn, byte[] data, long len);
    int switchboard_conn_violation(Pointer conn, short closeCode);
    int switchboard_conn_heard(Pointer conn);
    int switchboard_conn_next(Pointer conn, int timeoutMs, PointerByReference outputOut);
    int switchboard_conn_written(Pointer conn);
    int switchboard_conn_finish(Pointer conn, int clientClose);
    void switchboard_conn_free(Pointer conn);
    int switchboard_output_get_kind(Pointer output);
    long switchboard_output_count(Pointer output);
    Pointer switchboard_output_frame(Pointer output, long index, LongByReference lenOut);
    /** C {@code bool}: one byte. */
    byte switchboard_output_is_binary(Pointer output);
    short switchboard_output_close_code(Pointer output);
    String switchboard_output_close_reason(Pointer output);
    void switchboard_output_free(Pointer output);
    String switchboard_server_url(Pointer server);
    short switchboard_server_port(Pointer server);
    int switchboard_server_next_event(Pointer server, int timeoutMs, PointerByReference eventOut);
    long switchboard_server_events_missed(Pointer server);
    int switchboard_server_send(Pointer server, String roomId, String userId, String json);
    int switchboard_server_broadcast(Pointer server, String roomId, String json, LongByReference delivered);
    int switchboard_server_kick(Pointer server, String roomId, String userId);
    int switchboard_server_join(Pointer server, String userId, String roomId);
    int switchboard_server_leave(Pointer server, String userId, String roomId);
    int switchboard_server_rooms_json(Pointer server, PointerByReference jsonOut);
    int switchboard_server_api(Pointer server, String method, String path, String query, String authorization,
            byte[] body, long bodyLen, ShortByReference statusOut, PointerByReference contentTypeOut,
            PointerByReference bodyOut);
    long switchboard_server_api_body_limit(Pointer server);
    int switchboard_server_endpoint(Pointer server, String path, ShortByReference statusOut,
            PointerByReference contentTypeOut, PointerByReference bodyOut);
    int switchboard_server_stop(Pointer server);
    void switchboard_server_free(Pointer server);

    Pointer switchboard_client_options_new();
    void switchboard_client_options_free(Pointer opts);
    int switchboard_client_options_set_user_id(Pointer opts, String userId);
    int switchboard_client_options_set_token(Pointer opts, String token);
    int switchboard_client_options_set_display_name(Pointer opts, String name);
    int switchboard_client_options_set_metadata_json(Pointer opts, String metadataJson);
    int switchboard_client_options_set_subprotocol(Pointer opts, String subprotocol);
    int switchboard_client_options_set_encoding(Pointer opts, String encoding);
    int switchboard_client_options_set_reconnect_backoff_ms(Pointer opts, long baseMs, long maxMs);
    int switchboard_client_options_set_max_reconnect_attempts(Pointer opts, long attempts);
    int switchboard_client_options_set_stable_after_ms(Pointer opts, long ms);
    int switchboard_client_options_set_heartbeat_ms(Pointer opts, long ms);
    int switchboard_client_options_set_heartbeat_timeout_ms(Pointer opts, long ms);
    int switchboard_client_options_set_connect_timeout_ms(Pointer opts, long ms);
    int switchboard_client_options_set_queue_limits(Pointer opts, long maxMessages, long maxBytes);
    int switchboard_client_options_set_max_in_flight(Pointer opts, long messages);
    int switchboard_client_options_set_max_message_bytes(Pointer opts, long bytes);
    int switchboard_client_options_set_event_capacity(Pointer opts, long events);
    int switchboard_client_options_set_send_timeout_ms(Pointer opts, long ms);

    int switchboard_client_options_set_token_callback(Pointer opts, TokenCallback callback, Pointer userdata);
    int switchboard_token_request_provide(Pointer request, String token);
    void switchboard_token_request_fail(Pointer request);

    int switchboard_client_connect_with_options(String url, Pointer opts, PointerByReference clientOut);
    int switchboard_client_join_with_info(Pointer client, String roomId, int timeoutMs, PointerByReference info);
    int switchboard_client_leave(Pointer client, String roomId, int timeoutMs);
    int switchboard_client_send_json(Pointer client, String json);
    int switchboard_client_send_offer(Pointer client, String to, String sdpJson);
    int switchboard_client_send_answer(Pointer client, String to, String sdpJson);
    int switchboard_client_send_candidate(Pointer client, String to, String candidateJson);
    int switchboard_client_send_message(Pointer client, String to, String dataJson);
    int switchboard_client_chat(Pointer client, String content);
    int switchboard_client_next_event(Pointer client, int timeoutMs, PointerByReference eventOut);
    long switchboard_client_events_missed(Pointer client);
    /** C `bool`: one byte, so read as a byte, never as a 4-byte int. */
    byte switchboard_client_is_connected(Pointer client);
    int switchboard_client_close(Pointer client);
    void switchboard_client_free(Pointer client);

    String switchboard_event_type(Pointer event);
    String switchboard_event_json(Pointer event);
    String switchboard_event_room_id(Pointer event);
    String switchboard_event_user_id(Pointer event);
    String switchboard_event_from(Pointer event);
    void switchboard_event_free(Pointer event);

    /** Throws the exception for a failed call; the message is the thread's last error. */
    static void check(int result) {
        if (result != OK) {
            throw SwitchboardException.fromLastError(result);
        }
    }

    /**
     * A new native config/options object with every setting applied; freed again
     * when a setting fails (its exception is thrown).
     */
    static Pointer configure(java.util.function.Supplier<Pointer> create,
            java.util.function.Consumer<Pointer> free, java.util.List<java.util.function.Consumer<Pointer>> settings) {
        Pointer p = create.get();
        if (p == null) {
            throw SwitchboardException.fromLastError(10);
        }
        try {
            for (java.util.function.Consumer<Pointer> s : settings) {
                s.accept(p);
            }
        } catch (RuntimeException e) {
            free.accept(p);
            throw e;
        }
        return p;
    }

    /** Takes a library-allocated string out of a `char **` and frees it. */
    static String takeString(PointerByReference out) {
        Pointer p = out.getValue();
        if (p == null) {
            return null;
        }
        try {
            return p.getString(0, "UTF-8");
        } finally {
            INSTANCE.switchboard_string_free(p);
        }
    }
}
