// SwitchboardWebSocketHandler.java: Spring's WebSocketHandler for Switchboard.
// An adapter of the core's connection kit through the C host-socket mode: the
// handshake interceptor hands every request fact to the kit (admit or the HTTP
// status), the handler moves frames in and does what the kit's output says.
// It decides nothing itself: limits, origins, trusted proxies, auth, liveness,
// protocol messages and close codes are the core's.
package dev.switchboard.spring;

import dev.switchboard.HostConnection;
import dev.switchboard.HostUpgrade;
import dev.switchboard.SwitchboardServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.springframework.context.SmartLifecycle;
import org.springframework.http.HttpStatusCode;
import org.springframework.http.server.ServerHttpRequest;
import org.springframework.http.server.ServerHttpResponse;
import org.springframework.web.socket.BinaryMessage;
import org.springframework.web.socket.CloseStatus;
import org.springframework.web.socket.PingMessage;
import org.springframework.web.socket.PongMessage;
import org.springframework.web.socket.SubProtocolCapable;
import org.springframework.web.socket.TextMessage;
import org.springframework.web.socket.WebSocketHandler;
import org.springframework.web.socket.WebSocketMessage;
import org.springframework.web.socket.WebSocketSession;
import org.springframework.web.socket.server.HandshakeInterceptor;

/**
 * Serves a Switchboard hub on the Spring app's own port:
 *
 * <pre>{@code
 * SwitchboardServer hub = SwitchboardServer.builder().allowedOrigins(...).create();
 * SwitchboardWebSocketHandler handler = new SwitchboardWebSocketHandler(hub);
 * registry.addHandler(handler, "/signaling").addInterceptors(handler).setAllowedOrigins("*");
 * }</pre>
 *
 * {@code setAllowedOrigins("*")} leaves the origin check to the core (its
 * {@code allowedOrigins}), as every other host mode does. As a Spring bean it is
 * a {@link SmartLifecycle} that drains the hub (clients get {@code draining} and
 * a 1001 close) before the web server stops, then frees it.
 *
 * <p>Threads: one writer thread per connection, blocking in the core for the
 * next output (frames, close, ping); it ends with the connection. Simple and
 * bounded by the hub's connection limits; a host with very many connections
 * would multiplex instead.
 */
public final class SwitchboardWebSocketHandler
        implements WebSocketHandler, HandshakeInterceptor, SubProtocolCapable, SmartLifecycle {
    private static final String UPGRADE = "switchboard.upgrade";
    private static final String CONNECTION = "switchboard.connection";
    private static final Duration POLL = Duration.ofMillis(200);

    private final SwitchboardServer hub;
    private volatile boolean running;

    public SwitchboardWebSocketHandler(SwitchboardServer hub) {
        this.hub = hub;
    }

    /** The hub this handler serves. */
    public SwitchboardServer hub() {
        return hub;
    }

    // ---- the handshake: every request fact to the kit ----

    @Override
    public boolean beforeHandshake(ServerHttpRequest request, ServerHttpResponse response,
            WebSocketHandler wsHandler, Map<String, Object> attributes) {
        InetSocketAddress remote = request.getRemoteAddress();
        String peer = remote == null || remote.getAddress() == null ? null : remote.getAddress().getHostAddress();
        URI uri = request.getURI();
        String target = uri.getRawPath() + (uri.getRawQuery() == null ? "" : "?" + uri.getRawQuery());
        Map<String, List<String>> headers = request.getHeaders();
        HostUpgrade upgrade = hub.admit(peer, target, headers);
        if (!upgrade.admitted()) {
            response.setStatusCode(HttpStatusCode.valueOf(upgrade.status()));
            String extra = upgrade.refusalHeader();
            if (extra != null) {
                int colon = extra.indexOf(':');
                response.getHeaders().add(extra.substring(0, colon).trim(), extra.substring(colon + 1).trim());
            }
            upgrade.close();
            return false;
        }
        attributes.put(UPGRADE, upgrade);
        return true;
    }

    @Override
    public void afterHandshake(ServerHttpRequest request, ServerHttpResponse response,
            WebSocketHandler wsHandler, Exception exception) {}

    @Override
    public List<String> getSubProtocols() {
        // Spring selects the first the client offers; so does the core. A
        // `bearer.<token>` entry is never selected (the kit reads the token).
        return List.of("webrtc-signaling", "webrtc-signaling.msgpack");
    }

    // ---- the connection ----

    @Override
    public void afterConnectionEstablished(WebSocketSession session) {
        HostUpgrade upgrade = (HostUpgrade) session.getAttributes().remove(UPGRADE);
        if (upgrade == null) {
            // Registered without this handler as its interceptor: nothing was admitted.
            closeQuietly(session, CloseStatus.SERVER_ERROR);
            return;
        }
        // The container does not ping raw WebSockets: the kit says when.
        HostConnection conn = upgrade.open(HostUpgrade.Liveness.PINGS);
        session.getAttributes().put(CONNECTION, conn);
        Thread writer = new Thread(() -> pump(session, conn), "switchboard-ws-" + conn.clientId());
        writer.setDaemon(true);
        writer.start();
    }

    /** Does what the kit says until a close, a drop or the end of the session. */
    private void pump(WebSocketSession session, HostConnection conn) {
        try {
            while (session.isOpen()) {
                HostConnection.Output out = conn.next(POLL).orElse(null);
                if (out == null) {
                    continue;
                }
                switch (out.kind()) {
                    case FRAMES -> {
                        for (String frame : out.frames()) {
                            session.sendMessage(new TextMessage(frame));
                        }
                        for (byte[] frame : out.binaryFrames()) {
                            session.sendMessage(new BinaryMessage(frame));
                        }
                        conn.written();
                    }
                    case PING -> session.sendMessage(new PingMessage());
                    case CLOSE -> {
                        session.close(new CloseStatus(out.closeCode(), out.closeReason()));
                        return;
                    }
                    case DROP -> {
                        // No close frame: the session stays resumable, as after a cut.
                        conn.finish(-1);
                        closeQuietly(session, CloseStatus.SESSION_NOT_RELIABLE);
                        return;
                    }
                }
            }
        } catch (IOException | RuntimeException e) {
            // The socket failed under us: a cut (resumable), whatever close the container reports.
            cut(session);
        }
    }

    @Override
    public void handleMessage(WebSocketSession session, WebSocketMessage<?> message) {
        HostConnection conn = connection(session);
        if (conn == null) {
            return;
        }
        if (message instanceof TextMessage text) {
            conn.text(text.getPayload());
        } else if (message instanceof BinaryMessage binary) {
            // MessagePack on its subprotocol; the kit closes JSON connections with 1003.
            java.nio.ByteBuffer payload = binary.getPayload();
            byte[] bytes = new byte[payload.remaining()];
            payload.get(bytes);
            conn.binary(bytes);
        } else if (message instanceof PongMessage || message instanceof PingMessage) {
            conn.heard();
        }
    }

    @Override
    public void handleTransportError(WebSocketSession session, Throwable exception) {
        // A reset or failed read: no close frame came, so the session stays resumable.
        cut(session);
    }

    private static void cut(WebSocketSession session) {
        HostConnection conn = connection(session);
        if (conn != null) {
            conn.finish(-1);
        }
        closeQuietly(session, CloseStatus.SESSION_NOT_RELIABLE);
    }

    @Override
    public void afterConnectionClosed(WebSocketSession session, CloseStatus status) {
        HostConnection conn = (HostConnection) session.getAttributes().remove(CONNECTION);
        if (conn == null) {
            return;
        }
        int code = status.getCode();
        if (code == 1009 || code == 1003) {
            // The container refused a frame itself (its buffer limit): the kit learns why.
            conn.violation(code);
        }
        // 1006: no close frame (a cut): the session waits for a resume.
        conn.finish(code == 1006 ? -1 : code);
        conn.close();
    }

    @Override
    public boolean supportsPartialMessages() {
        return false;
    }

    private static HostConnection connection(WebSocketSession session) {
        return (HostConnection) session.getAttributes().get(CONNECTION);
    }

    private static void closeQuietly(WebSocketSession session, CloseStatus status) {
        try {
            session.close(status);
        } catch (IOException e) {
            // Already gone.
        }
    }

    // ---- life cycle: drain before the web server stops ----

    @Override
    public void start() {
        running = true;
    }

    /** Drains the hub (clients get {@code draining} and 1001) and frees it. */
    @Override
    public void stop() {
        running = false;
        hub.close();
    }

    @Override
    public boolean isRunning() {
        return running;
    }

    /** Stops first, while the web server still carries the drain's close frames. */
    @Override
    public int getPhase() {
        return Integer.MAX_VALUE;
    }
}
