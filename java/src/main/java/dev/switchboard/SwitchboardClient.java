// SwitchboardClient.java: a Switchboard signaling client in a Java process
// (reconnect, heartbeat and session resume come from the Rust core): join,
// leave, the typed sends, listeners or the pull API, AutoCloseable.
package dev.switchboard;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Executor;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * A connected signaling client. Sends wait for the server's acknowledgement up
 * to the send timeout (default 10 s) and throw {@link SwitchboardException} with
 * the server's error code ({@code peer-not-found}, ...). Thread-safe.
 *
 * <pre>{@code
 * try (SwitchboardClient alice = SwitchboardClient.connect(url, "alice")) {
 *     alice.on("answer", e -> System.out.println(e.from() + ": " + e.json()));
 *     alice.join("room-1");
 *     alice.sendOffer("bob", "{\"type\":\"offer\",\"sdp\":\"v=0...\"}");
 * }
 * }</pre>
 */
public final class SwitchboardClient implements AutoCloseable {
    private static final NativeLib LIB = NativeLib.INSTANCE;
    private static final Duration JOIN_TIMEOUT = Duration.ofSeconds(10);

    private final NativeHandle handle;
    private final EventPump events;
    /** Kept reachable while the native side may call it. */
    @SuppressWarnings("unused")
    private final NativeLib.TokenCallback tokenCallback;
    private boolean closed;

    private SwitchboardClient(Pointer handle, Executor executor, NativeLib.TokenCallback tokenCallback) {
        this.tokenCallback = tokenCallback;
        this.handle = new NativeHandle(handle, "client");
        this.events = new EventPump((t, out) -> this.handle.apply(p -> LIB.switchboard_client_next_event(p, t, out)),
                "switchboard-client", executor);
    }

    /** Connects to {@code url} as {@code userId} (null: the server assigns one). */
    public static SwitchboardClient connect(String url, String userId) {
        Builder b = builder(url);
        return (userId == null ? b : b.userId(userId)).connect();
    }

    /** Options for a client of {@code url} ({@code ws://host:port/path}). */
    public static Builder builder(String url) {
        return new Builder(url);
    }

    /** Joins a room; returns the {@code room-info} message as JSON. */
    public String join(String roomId) {
        return join(roomId, JOIN_TIMEOUT);
    }

    /** Joins a room, waiting up to {@code timeout} for the {@code room-info}. */
    public String join(String roomId, Duration timeout) {
        PointerByReference out = new PointerByReference();
        handle.call(p -> LIB.switchboard_client_join_with_info(p, roomId, millis(timeout), out));
        return NativeLib.takeString(out);
    }

    /** Leaves a room (null: every room). */
    public void leave(String roomId) {
        handle.call(p -> LIB.switchboard_client_leave(p, roomId, millis(JOIN_TIMEOUT)));
    }

    /** Sends an SDP offer to {@code to}; {@code sdpJson} is the {@code sdp} field as JSON. */
    public void sendOffer(String to, String sdpJson) {
        handle.call(p -> LIB.switchboard_client_send_offer(p, to, sdpJson));
    }

    /** Sends an SDP answer to {@code to}. */
    public void sendAnswer(String to, String sdpJson) {
        handle.call(p -> LIB.switchboard_client_send_answer(p, to, sdpJson));
    }

    /** Sends an ICE candidate to {@code to} ({@code "null"}: end of candidates). */
    public void sendCandidate(String to, String candidateJson) {
        handle.call(p -> LIB.switchboard_client_send_candidate(p, to, candidateJson));
    }

    /** Sends application data (any JSON) to {@code to}, or to the whole room when null. */
    public void send(String to, String dataJson) {
        handle.call(p -> LIB.switchboard_client_send_message(p, to, dataJson));
    }

    /** Sends a chat line to the room. */
    public void chat(String content) {
        handle.call(p -> LIB.switchboard_client_chat(p, content));
    }

    /** Sends any protocol message given as a JSON object with its {@code type}. */
    public void sendJson(String json) {
        handle.call(p -> LIB.switchboard_client_send_json(p, json));
    }

    /** Calls {@code listener} for every event of this type, on the listener executor, in order. */
    public void on(String type, Consumer<SwitchboardEvent> listener) {
        events.on(type, listener);
    }

    /** Calls {@code listener} for every event. */
    public void onAny(Consumer<SwitchboardEvent> listener) {
        events.onAny(listener);
    }

    /** The pull API: the next event within {@code timeout}, or empty; CLOSED after the last one. */
    public Optional<SwitchboardEvent> nextEvent(Duration timeout) {
        return events.next(timeout);
    }

    /** Whether a session is established right now. */
    public boolean isConnected() {
        return handle.apply(LIB::switchboard_client_is_connected) != 0;
    }

    /** Events dropped because nobody read them in time. */
    public long eventsMissed() {
        return handle.apply(LIB::switchboard_client_events_missed);
    }

    /** Closes the connection (no more reconnects) and frees the native client. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        handle.call(LIB::switchboard_client_close);
        events.finish();
        handle.free(LIB::switchboard_client_free);
    }

    private static int millis(Duration d) {
        return (int) Math.min(Integer.MAX_VALUE, Math.max(1, d.toMillis()));
    }

    /** Client options (the Rust {@code ClientBuilder}'s). */
    public static final class Builder {
        private final String url;
        private final List<Consumer<Pointer>> settings = new ArrayList<>();
        private Executor executor;
        private Supplier<String> tokenProvider;

        private Builder(String url) {
            this.url = url;
        }

        private Builder set(Function<Pointer, Integer> setter) {
            settings.add(o -> NativeLib.check(setter.apply(o)));
            return this;
        }

        public Builder userId(String userId) {
            return set(o -> LIB.switchboard_client_options_set_user_id(o, userId));
        }

        /** Sent as {@code Authorization: Bearer} on every connection. */
        public Builder token(String token) {
            return set(o -> LIB.switchboard_client_options_set_token(o, token));
        }

        /**
         * Asked for a token before every connection attempt (the first and each
         * reconnect), on a native blocking thread, so an expiring token can be
         * refreshed; null or an exception fails that attempt. Wins over {@link #token}.
         */
        public Builder tokenProvider(Supplier<String> provider) {
            this.tokenProvider = provider;
            return this;
        }

        public Builder displayName(String name) {
            return set(o -> LIB.switchboard_client_options_set_display_name(o, name));
        }

        /** {@code "json"} (default) or {@code "msgpack"}: MessagePack binary frames. */
        public Builder encoding(String encoding) {
            return set(o -> LIB.switchboard_client_options_set_encoding(o, encoding));
        }

        /** {@code metadata} (any JSON) sent with every join. */
        public Builder metadataJson(String json) {
            return set(o -> LIB.switchboard_client_options_set_metadata_json(o, json));
        }

        /** Reconnect backoff bounds (default 1 s and 30 s, full jitter). */
        public Builder reconnectBackoff(Duration base, Duration max) {
            return set(o -> LIB.switchboard_client_options_set_reconnect_backoff_ms(o, base.toMillis(), max.toMillis()));
        }

        /** Reconnect attempts in a row before giving up (negative: forever, the default). */
        public Builder maxReconnectAttempts(long attempts) {
            return set(o -> LIB.switchboard_client_options_set_max_reconnect_attempts(o, attempts));
        }

        public Builder heartbeat(Duration interval) {
            return set(o -> LIB.switchboard_client_options_set_heartbeat_ms(o, interval.toMillis()));
        }

        public Builder heartbeatTimeout(Duration timeout) {
            return set(o -> LIB.switchboard_client_options_set_heartbeat_timeout_ms(o, timeout.toMillis()));
        }

        public Builder connectTimeout(Duration timeout) {
            return set(o -> LIB.switchboard_client_options_set_connect_timeout_ms(o, timeout.toMillis()));
        }

        /** How long sends wait for the acknowledgement (default 10 s; zero: return once queued). */
        public Builder sendTimeout(Duration timeout) {
            return set(o -> LIB.switchboard_client_options_set_send_timeout_ms(o, timeout.toMillis()));
        }

        /** The outbox bound (default 256 messages, 1 MiB). */
        public Builder queueLimits(long maxMessages, long maxBytes) {
            return set(o -> LIB.switchboard_client_options_set_queue_limits(o, maxMessages, maxBytes));
        }

        /** Events buffered for the listeners / pull API (default 1024). */
        public Builder eventCapacity(long events) {
            return set(o -> LIB.switchboard_client_options_set_event_capacity(o, events));
        }

        /** Where listeners run (default: one thread of the client's own). */
        public Builder listenerExecutor(Executor executor) {
            this.executor = executor;
            return this;
        }

        /** Connects; throws {@link SwitchboardException} (IO, WEBSOCKET, TIMEOUT, UNAUTHORIZED, CONFIG). */
        public SwitchboardClient connect() {
            NativeLib.TokenCallback callback = tokenProvider == null ? null : new TokenBridge(tokenProvider);
            List<Consumer<Pointer>> all = new ArrayList<>(settings);
            if (callback != null) {
                all.add(o -> NativeLib.check(LIB.switchboard_client_options_set_token_callback(o, callback, null)));
            }
            Pointer opts = NativeLib.configure(LIB::switchboard_client_options_new,
                    LIB::switchboard_client_options_free, all);
            PointerByReference out = new PointerByReference();
            // Consumes opts whatever the outcome.
            NativeLib.check(LIB.switchboard_client_connect_with_options(url, opts, out));
            return new SwitchboardClient(out.getValue(), executor, callback);
        }
    }

    /** The C token callback calling a {@link Supplier}; completes every request once. */
    private static final class TokenBridge implements NativeLib.TokenCallback {
        private static final System.Logger LOG = System.getLogger("dev.switchboard");
        private final Supplier<String> provider;

        TokenBridge(Supplier<String> provider) {
            this.provider = provider;
        }

        @Override
        public void invoke(Pointer userdata, Pointer request) {
            String token = null;
            try {
                token = provider.get();
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "the token provider threw; this attempt fails", e);
            }
            if (token == null) {
                LIB.switchboard_token_request_fail(request);
            } else {
                LIB.switchboard_token_request_provide(request, token);
            }
        }
    }
}
