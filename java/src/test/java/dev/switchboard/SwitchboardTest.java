// SwitchboardTest.java: the Java binding end to end: a server, a Java client
// and a plain JDK WebSocket peer exchange signaling; events reach listeners and
// the pull API; errors carry their result codes; origins, admission budgets
// and the metadata cap refuse who they should; close releases everything.
package dev.switchboard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.ConnectException;
import java.net.Socket;
import java.net.http.WebSocketHandshakeException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

class SwitchboardTest {
    static final String OFFER = "{\"type\":\"offer\",\"sdp\":\"v=0\\r\\no=alice 1 1 IN IP4 127.0.0.1\\r\\n\"}";

    static SwitchboardServer startServer() {
        return SwitchboardServer.builder()
                .listen("127.0.0.1:0")
                .path("/ws")
                .drainTimeout(Duration.ofSeconds(3))
                .drainRetryAfter(Duration.ofMillis(200))
                .start();
    }

    /** Takes events from a listener queue until one of this type arrives. */
    static SwitchboardEvent await(BlockingQueue<SwitchboardEvent> events, String type) throws InterruptedException {
        return await(events, type, "");
    }

    /** Takes events until one of this type whose JSON contains {@code fragment} arrives. */
    static SwitchboardEvent await(BlockingQueue<SwitchboardEvent> events, String type, String fragment)
            throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (System.nanoTime() < deadline) {
            SwitchboardEvent e = events.poll(100, TimeUnit.MILLISECONDS);
            if (e != null && e.type().equals(type) && e.json().contains(fragment)) {
                return e;
            }
        }
        throw new AssertionError("no " + type + " event with " + fragment + " within 10 s");
    }

    /** Native and Java threads of the binding alive in this process (Linux /proc). */
    static List<String> switchboardThreads() throws IOException {
        try (Stream<Path> tasks = Files.list(Path.of("/proc/self/task"))) {
            return tasks.map(t -> {
                try {
                    return Files.readString(t.resolve("comm")).trim();
                } catch (IOException e) {
                    return ""; // the thread ended meanwhile
                }
            }).filter(n -> n.startsWith("switchboard-")).toList();
        }
    }

    @Test
    void javaClientAndPlainWebSocketExchangeSignaling() throws Exception {
        try (SwitchboardServer server = startServer()) {
            BlockingQueue<SwitchboardEvent> serverEvents = new LinkedBlockingQueue<>();
            server.onAny(serverEvents::add);
            assertTrue(server.url().startsWith("ws://127.0.0.1:" + server.port() + "/ws"), server.url());

            try (SwitchboardClient alice = SwitchboardClient.builder(server.url())
                    .userId("alice").displayName("Alice").connect();
                 PlainPeer bob = new PlainPeer(server.url())) {
                BlockingQueue<SwitchboardEvent> aliceEvents = new LinkedBlockingQueue<>();
                alice.onAny(aliceEvents::add);
                assertTrue(alice.isConnected());

                String info = alice.join("room-1");
                assertTrue(info.contains("\"roomId\":\"room-1\""), info);
                bob.await("connected");
                bob.send("{\"type\":\"join\",\"roomId\":\"room-1\",\"userId\":\"bob\"}");
                String bobInfo = bob.await("room-info");
                assertTrue(bobInfo.contains("\"alice\""), bobInfo);

                SwitchboardEvent joined = await(aliceEvents, "user-joined");
                assertEquals("bob", joined.userId());
                assertEquals("room-1", joined.roomId());

                alice.sendOffer("bob", OFFER);
                String offer = bob.await("offer");
                assertTrue(offer.contains("\"from\":\"alice\"") && offer.contains("o=alice 1 1"), offer);

                bob.send("{\"type\":\"answer\",\"to\":\"alice\",\"sdp\":{\"type\":\"answer\",\"sdp\":\"v=0 bob\"}}");
                SwitchboardEvent answer = await(aliceEvents, "answer");
                assertEquals("bob", answer.from());
                assertTrue(answer.json().contains("v=0 bob"), answer.json());

                alice.sendCandidate("bob", "{\"candidate\":\"candidate:1 1 udp 1 192.0.2.1 5000 typ host\",\"sdpMid\":\"0\"}");
                assertTrue(bob.await("candidate").contains("192.0.2.1 5000 typ host"));
                bob.send("{\"type\":\"candidate\",\"to\":\"alice\",\"candidate\":{\"candidate\":\"candidate:2 1 udp 1 192.0.2.2 5001 typ host\"}}");
                assertTrue(await(aliceEvents, "candidate").json().contains("192.0.2.2 5001"));

                alice.chat("hello bob");
                assertTrue(bob.await("chat").contains("hello bob"));

                // The server saw it all, through its listener.
                assertEquals("alice", await(serverEvents, "user-joined").userId());
                assertEquals("bob", await(serverEvents, "user-joined").userId());
                assertEquals("alice", await(serverEvents, "offer").from());
                assertEquals("bob", await(serverEvents, "answer").from());

                String rooms = server.roomsJson();
                assertTrue(rooms.contains("\"userId\":\"alice\"") && rooms.contains("\"userId\":\"bob\""), rooms);
                assertEquals(2, server.broadcast("room-1", "{\"type\":\"message\",\"data\":\"all\"}"));
                assertTrue(bob.await("message").contains("\"data\":\"all\""));
                server.send("room-1", "alice", "{\"type\":\"message\",\"data\":\"just you\"}");
                await(aliceEvents, "message", "\"data\":\"all\"");
                await(aliceEvents, "message", "just you");
            }
            // Both left when they closed.
            assertTrue(await(serverEvents, "user-left").json().contains("\"reason\":\"closed\""));
        }
    }

    @Test
    void pullApiDeliversEventsInOrderUntilClosed() throws Exception {
        try (SwitchboardServer server = startServer();
             SwitchboardClient alice = SwitchboardClient.connect(server.url(), "alice")) {
            assertEquals("connecting", alice.nextEvent(Duration.ofSeconds(10)).orElseThrow().type());
            alice.join("r");
            SwitchboardEvent e;
            do {
                e = alice.nextEvent(Duration.ofSeconds(10)).orElseThrow();
            } while (!e.type().equals("room-info"));
            assertEquals("r", e.roomId());
            assertEquals(Optional.empty(), alice.nextEvent(Duration.ofMillis(50)));
            SwitchboardEvent first = server.nextEvent(Duration.ofSeconds(10)).orElseThrow();
            assertEquals("connected", first.type());
            // From the first listener on, the listeners own the events.
            server.on("user-left", ev -> {});
            assertThrows(IllegalStateException.class, () -> server.nextEvent(Duration.ZERO));
        }
    }

    @Test
    void errorsCarryTheResultCode() {
        try (SwitchboardServer server = startServer();
             SwitchboardClient alice = SwitchboardClient.connect(server.url(), "alice")) {
            alice.join("r");
            SwitchboardException e = assertThrows(SwitchboardException.class, () -> alice.sendOffer("carol", OFFER));
            assertEquals(SwitchboardException.PEER_NOT_FOUND, e.code());
            assertEquals("peer-not-found", e.codeName());
            e = assertThrows(SwitchboardException.class, () -> alice.sendJson("{not json"));
            assertEquals(SwitchboardException.INVALID_JSON, e.code());
            e = assertThrows(SwitchboardException.class, () -> server.kick("r", "nobody"));
            assertEquals("peer-not-found", e.codeName());
            e = assertThrows(SwitchboardException.class,
                    () -> SwitchboardServer.builder().listen("127.0.0.1:0").maxMessageBytes(10).start());
            assertEquals(SwitchboardException.CONFIG, e.code());
            // Admission budgets out of range: refused by the setter or at start, CONFIG alike.
            List<SwitchboardServer.Builder> invalid = List.of(
                    SwitchboardServer.builder().ipv6Prefix(0),
                    SwitchboardServer.builder().ipv6Prefix(129),
                    SwitchboardServer.builder().connRatePerIp(-1),
                    SwitchboardServer.builder().connRatePerIp(5).connBurstPerIp(0),
                    SwitchboardServer.builder().httpWriteTimeout(Duration.ZERO));
            for (SwitchboardServer.Builder b : invalid) {
                e = assertThrows(SwitchboardException.class, () -> b.listen("127.0.0.1:0").start());
                assertEquals(SwitchboardException.CONFIG, e.code(), e.getMessage());
            }
            // A Redis CA needs a rediss:// URL: refused at start, before any connection.
            e = assertThrows(SwitchboardException.class, () -> SwitchboardServer.builder().listen("127.0.0.1:0")
                    .redisUrl("redis://127.0.0.1:1").redisCaCert(Path.of("redis-ca.pem")).start());
            assertEquals(SwitchboardException.CONFIG, e.code());
            assertTrue(e.getMessage().contains("redis_ca_cert"), e.getMessage());
            e = assertThrows(SwitchboardException.class, () -> SwitchboardClient.connect("http://x/ws", "a"));
            assertEquals(SwitchboardException.CONFIG, e.code());
            alice.close();
            e = assertThrows(SwitchboardException.class, () -> alice.chat("after close"));
            assertEquals(SwitchboardException.CLOSED, e.code());
        }
    }

    /** The head of the answer a socket gets at accept, before it sends a byte. */
    static String answerAtAccept(int port) throws IOException {
        try (Socket s = new Socket("127.0.0.1", port)) {
            s.setSoTimeout(5000);
            StringBuilder head = new StringBuilder();
            int b;
            while (!head.toString().endsWith("\r\n\r\n") && (b = s.getInputStream().read()) >= 0) {
                head.append((char) b);
            }
            return head.toString();
        }
    }

    @Test
    void allowedOriginsAdmitOnlyTheirPages() throws Exception {
        try (SwitchboardServer server = SwitchboardServer.builder().listen("127.0.0.1:0")
                .allowedOrigins("https://app.example")
                .maxPendingPerIp(4)
                .maxPending(64)
                .connRatePerIp(1)
                .connBurstPerIp(2)
                .ipv6Prefix(48)
                .httpWriteTimeout(Duration.ofSeconds(5))
                .maxMetadataBytes(64)
                .maxAwayPerIp(4)
                .maxAwayPerUser(2)
                .maxAwaySessions(100)
                .awayReplayBudgetBytes(1 << 20)
                .outboundBudgetBytes(1 << 24)
                .start()) {
            try (PlainPeer ok = new PlainPeer(server.url(), "https://app.example")) {
                ok.await("connected");
                // Member metadata over 64 bytes of JSON: the join is refused.
                String big = "{\"note\":\"" + "x".repeat(80) + "\"}";
                ok.send("{\"type\":\"join\",\"roomId\":\"r\",\"metadata\":" + big + "}");
                String error = ok.await("error");
                assertTrue(error.contains("\"invalid-message\""), error);
                ok.send("{\"type\":\"join\",\"roomId\":\"r\",\"metadata\":{\"role\":\"host\"}}");
                ok.await("room-info");
            }
            Exception refused = assertThrows(Exception.class, () -> new PlainPeer(server.url(), "https://evil.example"));
            WebSocketHandshakeException handshake = (WebSocketHandshakeException) refused.getCause();
            assertEquals(403, handshake.getResponse().statusCode());
            // Two connections spent the burst of 2 (1 per second): the third is
            // answered 429 at accept.
            String head = answerAtAccept(server.port());
            assertTrue(head.startsWith("HTTP/1.1 429"), head);
            assertTrue(head.toLowerCase().contains("retry-after:"), head);
        }
    }

    @Test
    void closeReleasesEverything() throws Exception {
        int port;
        try (SwitchboardServer server = startServer()) {
            port = server.port();
            BlockingQueue<SwitchboardEvent> seen = new LinkedBlockingQueue<>();
            server.on("user-joined", seen::add);
            SwitchboardClient alice = SwitchboardClient.connect(server.url(), "alice");
            alice.on("message", ev -> {});
            alice.join("r");
            await(seen, "user-joined");
            assertTrue(switchboardThreads().size() >= 4, switchboardThreads().toString());
            alice.close();
            alice.close(); // idempotent
        }
        // Every native and Java thread of the binding is gone, and the port is free.
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!switchboardThreads().isEmpty() && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertEquals(List.of(), switchboardThreads());
        assertThrows(ConnectException.class, () -> new Socket("127.0.0.1", port).close());
    }
}
