// SpringShutdownTest.java: closing the Spring app drains the hub (a connected
// client gets `draining` and a 1001 close while Tomcat still runs) and leaves no
// native thread of Switchboard running.
package dev.switchboard.spring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.springframework.boot.builder.SpringApplicationBuilder;
import org.springframework.boot.web.context.WebServerApplicationContext;
import org.springframework.context.ConfigurableApplicationContext;

class SpringShutdownTest {
    /** Threads of this library: the hub's runtime and the handler's writers. */
    private static long switchboardThreads() {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.isAlive() && t.getName().startsWith("switchboard-"))
                .count();
    }

    @Test
    void closingTheAppDrainsAndLeavesNoNativeThread() throws Exception {
        long before = switchboardThreads();
        ConfigurableApplicationContext app = new SpringApplicationBuilder(SignalingApp.class)
                .properties("server.port=0", "spring.main.banner-mode=off")
                .run();
        int port = ((WebServerApplicationContext) app).getWebServer().getPort();
        RawSocket client = new RawSocket("127.0.0.12", port);
        assertNotNull(client.next("\"type\":\"connected\""));
        assertTrue(switchboardThreads() > before, "the app runs native and writer threads");
        CompletableFuture<Void> closing = CompletableFuture.runAsync(app::close);
        assertNotNull(client.next("\"type\":\"draining\""), "draining before the web server stops");
        assertNull(client.nextText());
        assertEquals(1001, client.closeCode);
        client.close();
        closing.get(30, TimeUnit.SECONDS);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (switchboardThreads() > before && System.nanoTime() < deadline) {
            Thread.sleep(50);
        }
        assertTrue(switchboardThreads() <= before, "no Switchboard thread left after close()");
    }
}
