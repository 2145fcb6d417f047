// AuthTest.java: authentication configured from Java, end to end: static
// tokens and a Java Authenticator (over the C auth callback) admitting,
// refusing, and restricting rooms.
package dev.switchboard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;

class AuthTest {
    static SwitchboardClient connect(String url, String token) {
        return SwitchboardClient.builder(url).token(token).maxReconnectAttempts(0).connect();
    }

    @Test
    void staticTokens() {
        try (SwitchboardServer server = SwitchboardServer.builder().listen("127.0.0.1:0")
                .authToken("t-alice", "alice").start();
             SwitchboardClient alice = connect(server.url(), "t-alice")) {
            assertTrue(alice.join("room").contains("alice"));
            SwitchboardException e = assertThrows(SwitchboardException.class, () -> connect(server.url(), "t-nope"));
            assertEquals(SwitchboardException.UNAUTHORIZED, e.code());
        }
    }

    @Test
    void tokenProviderIsAskedForEachConnection() {
        java.util.concurrent.atomic.AtomicInteger asked = new java.util.concurrent.atomic.AtomicInteger();
        try (SwitchboardServer server = SwitchboardServer.builder().listen("127.0.0.1:0")
                .authToken("t-alice", "alice").start();
             SwitchboardClient alice = SwitchboardClient.builder(server.url())
                     .tokenProvider(() -> {
                         asked.incrementAndGet();
                         return "t-alice";
                     }).connect()) {
            assertTrue(alice.join("room").contains("alice"));
            assertEquals(1, asked.get());
            SwitchboardException e = assertThrows(SwitchboardException.class, () -> SwitchboardClient
                    .builder(server.url()).tokenProvider(() -> null).connect());
            assertEquals(SwitchboardException.UNAUTHORIZED, e.code());
        }
    }

    @Test
    void authenticatorAdmitsRefusesAndRestrictsRooms() {
        List<Authenticator.Request> seen = new CopyOnWriteArrayList<>();
        List<String> threads = new CopyOnWriteArrayList<>();
        Authenticator auth = request -> {
            seen.add(request);
            threads.add(Thread.currentThread().getName());
            if ("let-me-in".equals(request.token())) {
                return new Authenticator.Decision("carol", "[\"room-*\"]", "{\"plan\":\"pro\"}", null);
            }
            if ("boom".equals(request.token())) {
                throw new IllegalStateException("the user store is down");
            }
            return Authenticator.Decision.deny();
        };
        try (SwitchboardServer server = SwitchboardServer.builder().listen("127.0.0.1:0")
                .authenticator(auth).start();
             SwitchboardClient carol = connect(server.url(), "let-me-in")) {
            String info = carol.join("room-1");
            assertTrue(info.contains("carol"), info);
            SwitchboardException e = assertThrows(SwitchboardException.class, () -> carol.join("lobby"));
            assertEquals("forbidden", e.codeName());
            e = assertThrows(SwitchboardException.class, () -> connect(server.url(), "nope"));
            assertEquals(SwitchboardException.UNAUTHORIZED, e.code());
            // An exception in the authenticator refuses too.
            e = assertThrows(SwitchboardException.class, () -> connect(server.url(), "boom"));
            assertEquals(SwitchboardException.UNAUTHORIZED, e.code());
            assertTrue(seen.stream().anyMatch(r -> "127.0.0.1".equals(r.ip()) && "/ws".equals(r.path())));
            // Never on the calling (test) thread.
            assertFalse(threads.contains(Thread.currentThread().getName()));
        }
    }
}
