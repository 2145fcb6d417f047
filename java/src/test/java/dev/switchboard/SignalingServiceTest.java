// SignalingServiceTest.java: the Spring-style example's lifecycle: the bean
// starts a server, its listeners track peers and relayed offers, close() ends it.
package dev.switchboard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.switchboard.examples.SignalingService;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;

class SignalingServiceTest {
    static void waitUntil(BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("condition not met within 10 s");
            }
            Thread.sleep(10);
        }
    }

    @Test
    void beanLifecycle() throws Exception {
        SignalingService service = new SignalingService("127.0.0.1:0");
        String url = service.server().url();
        try (SwitchboardClient alice = SwitchboardClient.connect(url, "alice");
             SwitchboardClient bob = SwitchboardClient.connect(url, "bob")) {
            alice.join("call");
            bob.join("call");
            waitUntil(() -> service.onlinePeers().size() == 2);
            assertEquals(Map.of("alice", "call", "bob", "call"), service.onlinePeers());
            alice.sendOffer("bob", SwitchboardTest.OFFER);
            bob.sendAnswer("alice", "{\"type\":\"answer\",\"sdp\":\"v=0\"}");
            waitUntil(() -> service.relayed() == 2);
            bob.leave("call");
            waitUntil(() -> service.onlinePeers().size() == 1);
        }
        service.close();
        SwitchboardException e = assertThrows(SwitchboardException.class,
                () -> SwitchboardClient.builder(url).connectTimeout(Duration.ofSeconds(2)).connect());
        assertEquals("io", e.codeName());
    }
}
