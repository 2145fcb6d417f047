// SignalingService.java: how a Spring Boot service runs a Switchboard server as
// a bean, shown without Spring itself: construction starts it, listeners feed
// the application, close() (the bean's destroy method) drains and frees it.
package dev.switchboard.examples;

import dev.switchboard.SwitchboardServer;
import java.time.Duration;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A signaling server owned by the application. In Spring Boot:
 *
 * <pre>{@code
 * @Configuration
 * class SignalingConfig {
 *     @Bean(destroyMethod = "close")   // Spring calls close() on shutdown
 *     SignalingService signaling(@Value("${signaling.listen:127.0.0.1:8081}") String listen) {
 *         return new SignalingService(listen, token -> lookUpUser(token));
 *     }
 * }
 * }</pre>
 *
 * Other beans inject it and call {@link #server()} (send, kick, rooms) or read
 * {@link #onlinePeers()}.
 */
public final class SignalingService implements AutoCloseable {
    private final SwitchboardServer server;
    private final ConcurrentHashMap<String, String> roomOf = new ConcurrentHashMap<>();
    private final AtomicLong relayed = new AtomicLong();

    public SignalingService(String listen) {
        server = SwitchboardServer.builder()
                .listen(listen)
                .path("/ws")
                .maxRoomSize(8)
                .drainTimeout(Duration.ofSeconds(5))
                .start();
        // Listeners run on the server's listener thread, in event order.
        server.on("user-joined", e -> roomOf.put(e.userId(), e.roomId()));
        server.on("user-left", e -> roomOf.remove(e.userId()));
        server.on("offer", e -> relayed.incrementAndGet());
        server.on("answer", e -> relayed.incrementAndGet());
    }

    public SwitchboardServer server() {
        return server;
    }

    /** userId -> roomId of the peers currently in a room. */
    public java.util.Map<String, String> onlinePeers() {
        return java.util.Map.copyOf(roomOf);
    }

    /** Offers and answers relayed so far. */
    public long relayed() {
        return relayed.get();
    }

    /** The bean's destroy method: graceful drain, then every native resource freed. */
    @Override
    public void close() {
        server.close();
    }

    /** The same lifecycle from a plain main: start, serve until SIGTERM/Ctrl-C, close. */
    public static void main(String[] args) throws InterruptedException {
        String listen = args.length > 0 ? args[0] : "127.0.0.1:8081";
        SignalingService service = new SignalingService(listen);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            service.close();
            stopped.countDown();
        }));
        System.out.println("signaling on " + service.server().url());
        stopped.await();
    }
}
