// SwitchboardServer.java: a Switchboard signaling server in a Java process:
// every option of the Rust ServerBuilder, start/stop as AutoCloseable, listeners
// on an executor fed by the C pull API, and send/broadcast/kick/rooms.
package dev.switchboard;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.LongByReference;
import com.sun.jna.ptr.PointerByReference;
import com.sun.jna.ptr.ShortByReference;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Executor;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * A running signaling server. Start one with {@link #builder()}; {@link #close()}
 * drains it gracefully and releases everything (native threads, memory, the
 * port). Thread-safe.
 *
 * <pre>{@code
 * try (SwitchboardServer server = SwitchboardServer.builder().listen("127.0.0.1:0").start()) {
 *     server.on("user-joined", e -> System.out.println(e.userId() + " joined " + e.roomId()));
 *     System.out.println(server.url());
 * }
 * }</pre>
 */
public final class SwitchboardServer implements AutoCloseable {
    private static final NativeLib LIB = NativeLib.INSTANCE;

    private final NativeHandle handle;
    private final String url;
    private final int port;
    private final EventPump events;
    /** Kept reachable while the native side may call it. */
    @SuppressWarnings("unused")
    private final NativeLib.AuthCallback authCallback;
    private boolean closed;

    private SwitchboardServer(Pointer handle, Executor executor, NativeLib.AuthCallback authCallback) {
        this.handle = new NativeHandle(handle, "server");
        this.url = LIB.switchboard_server_url(handle);
        this.port = Short.toUnsignedInt(LIB.switchboard_server_port(handle));
        this.authCallback = authCallback;
        this.events = new EventPump((t, out) -> this.handle.apply(p -> LIB.switchboard_server_next_event(p, t, out)),
                "switchboard-server", executor);
    }

    /** A builder with the protocol's defaults (listen 127.0.0.1:8080, path /ws). */
    public static Builder builder() {
        return new Builder();
    }

    /** {@code ws://HOST:PORT/PATH}, with the real port when bound to port 0; null without a listener. */
    public String url() {
        return url;
    }

    /** The bound TCP port; 0 without a listener. */
    public int port() {
        return port;
    }

    NativeHandle handle() {
        return handle;
    }

    /**
     * The host-socket mode: asks the core's connection kit to admit one WebSocket
     * upgrade that the host owns (origin, per-IP after trusted proxies, capacity,
     * draining, handshake token). {@code peerIp} is the socket's remote address,
     * {@code target} the path with its query, {@code headers} every request header.
     * Blocks while an {@link Authenticator} decides.
     */
    public HostUpgrade admit(String peerIp, String target, java.util.Map<String, ? extends List<String>> headers) {
        return new HostUpgrade(this, peerIp, target, headers);
    }

    /** A plain HTTP answer of the kit: status, content type, body. */
    public record HttpAnswer(int status, String contentType, String body) {}

    /**
     * The operator API ({@code /api/v1/…}, docs/API.md; on with {@link Builder#apiKey}) for a
     * host that owns its port: the request's method, path (without the query), query string (or
     * null), {@code Authorization} header (or null) and body. Refuse a body longer than
     * {@link #apiBodyLimit()} with 413 before reading it.
     */
    public HttpAnswer api(String method, String path, String query, String authorization, byte[] body) {
        ShortByReference status = new ShortByReference();
        PointerByReference type = new PointerByReference();
        PointerByReference out = new PointerByReference();
        handle.call(p -> LIB.switchboard_server_api(p, method, path, query, authorization, body, body.length,
                status, type, out));
        return new HttpAnswer(Short.toUnsignedInt(status.getValue()), type.getValue().getString(0),
                NativeLib.takeString(out));
    }

    /** The largest API request body this server takes. */
    public long apiBodyLimit() {
        return handle.apply(LIB::switchboard_server_api_body_limit);
    }

    /**
     * A plain GET endpoint of the kit: {@code /health}, {@code /ready}, {@code /metrics}, and with
     * the API on the admin page {@code /admin} and {@code /admin.js}; status 404 for another path.
     */
    public HttpAnswer endpoint(String path) {
        ShortByReference status = new ShortByReference();
        PointerByReference type = new PointerByReference();
        PointerByReference out = new PointerByReference();
        handle.call(p -> LIB.switchboard_server_endpoint(p, path, status, type, out));
        return new HttpAnswer(Short.toUnsignedInt(status.getValue()), type.getValue().getString(0),
                NativeLib.takeString(out));
    }

    /** The OpenMetrics text of this server (what its {@code /metrics} answers). */
    public String metrics() {
        PointerByReference out = new PointerByReference();
        handle.call(p -> LIB.switchboard_server_metrics(p, out));
        return NativeLib.takeString(out);
    }

    /**
     * Calls {@code listener} for every event of this type ({@code "user-joined"},
     * {@code "offer"}, {@code "disconnected"}, ...) on the listener executor, in
     * order. From the first listener on, the events belong to the listeners and
     * {@link #nextEvent} is refused.
     */
    public void on(String type, Consumer<SwitchboardEvent> listener) {
        events.on(type, listener);
    }

    /** Calls {@code listener} for every event. */
    public void onAny(Consumer<SwitchboardEvent> listener) {
        events.onAny(listener);
    }

    /** The pull API: the next event within {@code timeout}, or empty. Throws CLOSED after stop. */
    public Optional<SwitchboardEvent> nextEvent(Duration timeout) {
        return events.next(timeout);
    }

    /** Events dropped because nobody read them in time (bounded by the event buffer). */
    public long eventsMissed() {
        return handle.apply(LIB::switchboard_server_events_missed);
    }

    /** Sends {@code json} (an object with a string {@code type}) to one peer of a room. */
    public void send(String roomId, String userId, String json) {
        handle.call(p -> LIB.switchboard_server_send(p, roomId, userId, json));
    }

    /** Sends {@code json} to every peer of a room; returns how many got it. */
    public long broadcast(String roomId, String json) {
        LongByReference delivered = new LongByReference();
        handle.call(p -> LIB.switchboard_server_broadcast(p, roomId, json, delivered));
        return delivered.getValue();
    }

    /** Removes a peer: {@code user-left} ({@code kicked}) for the others, close 4403 for it. */
    public void kick(String roomId, String userId) {
        handle.call(p -> LIB.switchboard_server_kick(p, roomId, userId));
    }

    /**
     * Puts a connected user into a room, as if it had sent {@code join}
     * ({@code room-info} to it, {@code user-joined} to the others); a
     * {@link SwitchboardException} with code {@code peer-not-found} when no
     * connection carries {@code userId}.
     */
    public void join(String userId, String roomId) {
        handle.call(p -> LIB.switchboard_server_join(p, userId, roomId));
    }

    /** Takes a user out of a room ({@code user-left} with {@code leave}); it stays connected. */
    public void leave(String userId, String roomId) {
        handle.call(p -> LIB.switchboard_server_leave(p, userId, roomId));
    }

    /** Every room with its peers, as a JSON array ({@code [{"roomId":..,"peers":[..]}]}). */
    public String roomsJson() {
        PointerByReference out = new PointerByReference();
        handle.call(p -> LIB.switchboard_server_rooms_json(p, out));
        return NativeLib.takeString(out);
    }

    /**
     * Graceful drain (clients get {@code draining} and a 1001 close) up to the
     * drain timeout; then the queued events are delivered to the listeners.
     * Idempotent.
     */
    public synchronized void stop() {
        if (closed) {
            return;
        }
        handle.call(LIB::switchboard_server_stop);
        events.finish();
    }

    /** Stops (see {@link #stop()}) and frees the native server and its threads. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        stop();
        closed = true;
        handle.free(LIB::switchboard_server_free);
    }

    /** Server options; every option of the Rust {@code ServerBuilder}. */
    public static final class Builder {
        private final List<Consumer<Pointer>> settings = new ArrayList<>();
        private Authenticator authenticator;
        private Executor executor;

        private Builder() {}

        private Builder set(Function<Pointer, Integer> setter) {
            settings.add(cfg -> NativeLib.check(setter.apply(cfg)));
            return this;
        }

        /** Address to bind, {@code host:port} (port 0 picks a free one). */
        public Builder listen(String address) {
            return set(c -> LIB.switchboard_server_config_set_listen(c, address));
        }

        /**
         * WebSocket upgrade paths, comma-separated (default {@code /ws}): fixed
         * paths ({@code /ws}, {@code /}) or templates whose {@code {roomId}} /
         * {@code {userId}} segments join that room at connect.
         */
        public Builder path(String path) {
            return set(c -> LIB.switchboard_server_config_set_path(c, path));
        }

        /** Largest accepted message (default 65536). */
        public Builder maxMessageBytes(long bytes) {
            return set(c -> LIB.switchboard_server_config_set_max_message_bytes(c, bytes));
        }

        /** Server-wide connection limit (0 = unlimited). */
        public Builder maxConns(long conns) {
            return set(c -> LIB.switchboard_server_config_set_max_conns(c, conns));
        }

        /** Connections per client IP (default 20, 0 = unlimited). */
        public Builder maxConnsPerIp(long conns) {
            return set(c -> LIB.switchboard_server_config_set_max_conns_per_ip(c, conns));
        }

        /**
         * Sockets per client IP waiting for their upgrade decision (default 8, 0 =
         * unlimited); past it a new socket is answered 429 at once.
         */
        public Builder maxPendingPerIp(long sockets) {
            return set(c -> LIB.switchboard_server_config_set_max_pending_per_ip(c, sockets));
        }

        /** Sockets server-wide waiting for their upgrade decision (default 1024, 0 = unlimited); past it 503. */
        public Builder maxPending(long sockets) {
            return set(c -> LIB.switchboard_server_config_set_max_pending(c, sockets));
        }

        /**
         * New connections per second per client IP (default 20, 0 = off; at most
         * 4294967295); past it 429 with {@code Retry-After}.
         */
        public Builder connRatePerIp(long perSecond) {
            return set(c -> LIB.switchboard_server_config_set_conn_rate_per_ip(c, perSecond));
        }

        /** Burst of new connections per client IP (default 40; at least 1 while the rate is on). */
        public Builder connBurstPerIp(long connections) {
            return set(c -> LIB.switchboard_server_config_set_conn_burst_per_ip(c, connections));
        }

        /** IPv6 clients count per prefix of this many bits (default 64; 1 to 128). */
        public Builder ipv6Prefix(int bits) {
            return set(c -> LIB.switchboard_server_config_set_ipv6_prefix(c, bits));
        }

        /** Peers per room (0 = unlimited). */
        public Builder maxRoomSize(long peers) {
            return set(c -> LIB.switchboard_server_config_set_max_room_size(c, peers));
        }

        /** Rooms one session may be in (default 16). */
        public Builder maxRoomsPerSession(long rooms) {
            return set(c -> LIB.switchboard_server_config_set_max_rooms_per_session(c, rooms));
        }

        /**
         * Largest member {@code metadata} a client may join with, in bytes of JSON
         * (default 4096; 0 refuses any); a bigger one gets {@code invalid-message}.
         * Metadata the auth vouches for (a JWT claim, an {@link Authenticator}) is not capped.
         */
        public Builder maxMetadataBytes(long bytes) {
            return set(c -> LIB.switchboard_server_config_set_max_metadata_bytes(c, bytes));
        }

        /**
         * Away sessions (connection lost, resumable) per client IP (default 32, 0 =
         * unlimited); past it the IP's oldest away session ends ({@code user-left},
         * reason {@code evicted}).
         */
        public Builder maxAwayPerIp(long sessions) {
            return set(c -> LIB.switchboard_server_config_set_max_away_per_ip(c, sessions));
        }

        /**
         * Away sessions per authenticated user (default 8, 0 = unlimited); past it the
         * user's oldest away session ends ({@code user-left}, reason {@code evicted}).
         */
        public Builder maxAwayPerUser(long sessions) {
            return set(c -> LIB.switchboard_server_config_set_max_away_per_user(c, sessions));
        }

        /** Away sessions server-wide (default 10000, 0 = unlimited); past it the oldest ends. */
        public Builder maxAwaySessions(long sessions) {
            return set(c -> LIB.switchboard_server_config_set_max_away_sessions(c, sessions));
        }

        /**
         * Replay bytes all away sessions may hold together (default 256 MiB, 0 =
         * unlimited); past it the oldest away sessions end until the rest fit.
         */
        public Builder awayReplayBudgetBytes(long bytes) {
            return set(c -> LIB.switchboard_server_config_set_away_replay_budget_bytes(c, bytes));
        }

        /** Rate limit burst per connection (default 50). */
        public Builder rateLimitBurst(int messages) {
            return set(c -> LIB.switchboard_server_config_set_rate_limit_burst(c, messages));
        }

        /** Sustained messages per second per connection (default 20, 0 = off). */
        public Builder rateLimitRps(int perSecond) {
            return set(c -> LIB.switchboard_server_config_set_rate_limit_rps(c, perSecond));
        }

        /** WebSocket ping interval (default 30 s). */
        public Builder heartbeat(Duration interval) {
            return set(c -> LIB.switchboard_server_config_set_heartbeat_ms(c, interval.toMillis()));
        }

        /** Silence allowed past the ping interval (default 10 s). */
        public Builder heartbeatTimeout(Duration timeout) {
            return set(c -> LIB.switchboard_server_config_set_heartbeat_timeout_ms(c, timeout.toMillis()));
        }

        /** How long a lost session can resume (default 20 s). */
        public Builder resumeWindow(Duration window) {
            return set(c -> LIB.switchboard_server_config_set_resume_window_ms(c, window.toMillis()));
        }

        /** Replay buffer per session in messages (default 256). */
        public Builder replayBufferMessages(long messages) {
            return set(c -> LIB.switchboard_server_config_set_replay_buffer_messages(c, messages));
        }

        /** Replay buffer per session in bytes (default 262144). */
        public Builder replayBufferBytes(long bytes) {
            return set(c -> LIB.switchboard_server_config_set_replay_buffer_bytes(c, bytes));
        }

        /** Outbound queue per connection in bytes (default 1048576). */
        public Builder outboundQueueBytes(long bytes) {
            return set(c -> LIB.switchboard_server_config_set_outbound_queue_bytes(c, bytes));
        }

        /**
         * Bytes all outbound queues may hold together (default 256 MiB, 0 = unlimited);
         * while over it, a relayed message to a reader behind by more than 1/64 of its
         * queue is refused to its sender ({@code rate-limited}).
         */
        public Builder outboundBudgetBytes(long bytes) {
            return set(c -> LIB.switchboard_server_config_set_outbound_budget_bytes(c, bytes));
        }

        /** Browser origins allowed to connect (default: all). */
        /** Turns on the operator API ({@code /api/v1}) and the admin page ({@code /admin}); at least 16 characters. */
        public Builder apiKey(String key) {
            return set(c -> LIB.switchboard_server_config_set_api_key(c, key));
        }

        /** The application's own message types ({@code hangup}, {@code mute}, …), relayed like {@code message}. */
        public Builder appTypes(String... names) {
            for (String n : names) {
                set(c -> LIB.switchboard_server_config_add_app_type(c, n));
            }
            return this;
        }

        public Builder allowedOrigins(String... origins) {
            for (String o : origins) {
                set(c -> LIB.switchboard_server_config_add_allowed_origin(c, o));
            }
            return this;
        }

        /** Longest wait for an HTTP request head (default 10 s). */
        public Builder handshakeTimeout(Duration timeout) {
            return set(c -> LIB.switchboard_server_config_set_handshake_timeout_ms(c, timeout.toMillis()));
        }

        /** Longest time writing one HTTP answer; a client that does not read is cut (default 10 s). */
        public Builder httpWriteTimeout(Duration timeout) {
            return set(c -> LIB.switchboard_server_config_set_http_write_timeout_ms(c, timeout.toMillis()));
        }

        /** Longest graceful drain in {@link #stop()} (default 10 s). */
        public Builder drainTimeout(Duration timeout) {
            return set(c -> LIB.switchboard_server_config_set_drain_timeout_ms(c, timeout.toMillis()));
        }

        /** Upper bound of the reconnect delay suggested in {@code draining} (default 5 s). */
        public Builder drainRetryAfter(Duration delay) {
            return set(c -> LIB.switchboard_server_config_set_drain_retry_after_ms(c, delay.toMillis()));
        }

        /** Events buffered for the listeners / pull API (default 1024; oldest dropped past it). */
        public Builder eventBuffer(long events) {
            return set(c -> LIB.switchboard_server_config_set_event_buffer(c, events));
        }

        /** Native runtime threads (default 2). */
        public Builder workerThreads(int threads) {
            return set(c -> LIB.switchboard_server_config_set_worker_threads(c, threads));
        }

        /** A static token: a client presenting {@code token} is {@code userId}. */
        public Builder authToken(String token, String userId) {
            return set(c -> LIB.switchboard_server_config_add_auth_token(c, token, userId));
        }

        /** JWT authentication, HS256 with this secret. */
        public Builder jwtSecret(String secret) {
            return set(c -> LIB.switchboard_server_config_set_jwt_secret(c, secret));
        }

        /** JWT authentication, RS256/ES256 with this PEM public key. */
        public Builder jwtPublicKeyPem(String pem) {
            return set(c -> LIB.switchboard_server_config_set_jwt_public_key_pem(c, pem));
        }

        /** JWT authentication, RS256/ES256 with the PEM public key in this file. */
        public Builder jwtPublicKeyFile(Path pem) {
            return set(c -> LIB.switchboard_server_config_set_jwt_public_key_file(c, pem.toString()));
        }

        /** Required JWT {@code aud}. */
        public Builder jwtAudience(String audience) {
            return set(c -> LIB.switchboard_server_config_set_jwt_audience(c, audience));
        }

        /** Required JWT {@code iss}. */
        public Builder jwtIssuer(String issuer) {
            return set(c -> LIB.switchboard_server_config_set_jwt_issuer(c, issuer));
        }

        /** Clock skew allowed on JWT {@code exp}/{@code nbf} (default 30 s). */
        public Builder jwtLeeway(Duration leeway) {
            return set(c -> LIB.switchboard_server_config_set_jwt_leeway_ms(c, leeway.toMillis()));
        }

        /** Authentication by Java code (see {@link Authenticator} for its threads). */
        public Builder authenticator(Authenticator authenticator) {
            this.authenticator = authenticator;
            return this;
        }

        /** Time for a first {@code auth} message, and for the authenticator to decide (default 5 s). */
        public Builder authTimeout(Duration timeout) {
            return set(c -> LIB.switchboard_server_config_set_auth_timeout_ms(c, timeout.toMillis()));
        }

        /** Serve {@code wss://} with this PEM certificate chain and key. */
        public Builder tls(Path certChain, Path privateKey) {
            return set(c -> LIB.switchboard_server_config_set_tls(c, certChain.toString(), privateKey.toString()));
        }

        /** Proxies (CIDRs or addresses) whose forwarding headers are believed. */
        public Builder trustedProxies(String... cidrs) {
            for (String cidr : cidrs) {
                set(c -> LIB.switchboard_server_config_add_trusted_proxy(c, cidr));
            }
            return this;
        }

        /** TURN REST credentials in {@code room-info}: the shared secret, lifetime and URLs. */
        public Builder turn(String secret, Duration ttl, String... urls) {
            set(c -> LIB.switchboard_server_config_set_turn(c, secret, ttl.toSeconds()));
            for (String u : urls) {
                set(c -> LIB.switchboard_server_config_add_turn_url(c, u));
            }
            return this;
        }

        /** Cluster mode over Redis ({@code redis://host:port}). */
        public Builder redisUrl(String url) {
            return set(c -> LIB.switchboard_server_config_set_redis_url(c, url));
        }

        /**
         * Cluster mode over {@code rediss://}: the PEM file of the CA that signed
         * Redis' certificate (read at start; default: the system's roots). With a
         * {@code redis://} URL, {@link #start()} and {@link #create()} throw
         * {@link SwitchboardException} ({@code CONFIG}).
         */
        public Builder redisCaCert(Path caCert) {
            return set(c -> LIB.switchboard_server_config_set_redis_ca_cert(c, caCert.toString()));
        }

        /** Serve the demo page at {@code /} and the browser client. */
        public Builder demo(boolean on) {
            return set(c -> LIB.switchboard_server_config_set_demo(c, on));
        }

        /** Serve the browser client at {@code /switchboard.js}. */
        public Builder serveClient(boolean on) {
            return set(c -> LIB.switchboard_server_config_set_serve_client(c, on));
        }

        /** Where listeners run (default: one thread of the server's own, in event order). */
        public Builder listenerExecutor(Executor executor) {
            this.executor = executor;
            return this;
        }

        /** Starts the server; throws {@link SwitchboardException} (CONFIG, IO, ...) on failure. */
        public SwitchboardServer start() {
            return build(true);
        }

        /**
         * Creates the server without a listener, for the host-socket mode: the
         * host (a Spring {@code WebSocketHandler}, any Java server) owns the
         * sockets and calls {@link SwitchboardServer#admit} per upgrade. The event
         * API, send, broadcast, kick and rooms work as with {@link #start()}.
         */
        public SwitchboardServer create() {
            return build(false);
        }

        private SwitchboardServer build(boolean listen) {
            NativeLib.AuthCallback callback = authenticator == null ? null : new AuthBridge(authenticator);
            List<Consumer<Pointer>> all = new ArrayList<>(settings);
            if (callback != null) {
                all.add(c -> NativeLib.check(LIB.switchboard_server_config_set_auth_callback(c, callback, null)));
            }
            Pointer cfg = NativeLib.configure(LIB::switchboard_server_config_new,
                    LIB::switchboard_server_config_free, all);
            PointerByReference out = new PointerByReference();
            // Consumes cfg whatever the outcome.
            NativeLib.check(listen ? LIB.switchboard_server_start(cfg, out) : LIB.switchboard_server_create(cfg, out));
            return new SwitchboardServer(out.getValue(), executor, callback);
        }
    }

    /** The C auth callback calling an {@link Authenticator}; completes every request once. */
    private static final class AuthBridge implements NativeLib.AuthCallback {
        private static final System.Logger LOG = System.getLogger("dev.switchboard");
        private final Authenticator authenticator;

        AuthBridge(Authenticator authenticator) {
            this.authenticator = authenticator;
        }

        @Override
        public void invoke(Pointer userdata, Pointer request) {
            Authenticator.Decision decision;
            try {
                decision = authenticator.authenticate(new Authenticator.Request(
                        LIB.switchboard_auth_request_token(request),
                        LIB.switchboard_auth_request_origin(request),
                        LIB.switchboard_auth_request_ip(request),
                        LIB.switchboard_auth_request_path(request)));
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "the authenticator threw; connection refused", e);
                decision = Authenticator.Decision.deny();
            }
            if (decision == null || !decision.allowed()) {
                LIB.switchboard_auth_request_deny(request);
                return;
            }
            long expires = decision.expiresAt() == null ? 0 : decision.expiresAt().toEpochMilli();
            int r = LIB.switchboard_auth_request_allow(request, decision.userId(), decision.roomsJson(),
                    decision.metadataJson(), expires);
            if (r != NativeLib.OK) {
                LOG.log(System.Logger.Level.WARNING, "authenticator decision refused: "
                        + SwitchboardException.fromLastError(r).getMessage());
            }
        }
    }
}
