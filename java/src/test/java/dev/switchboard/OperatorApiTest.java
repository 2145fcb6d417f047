// OperatorApiTest.java: the operator API and the admin page through the Java
// binding, as a Spring or other host that owns its port mounts them.
package dev.switchboard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class OperatorApiTest {
    static final String KEY = "java-api-key-0123456789";

    @Test
    void apiAndAdminPage() throws Exception {
        try (SwitchboardServer server = SwitchboardServer.builder()
                .listen("127.0.0.1:0").apiKey(KEY).rateLimitRps(0).drainTimeout(Duration.ofSeconds(2)).start();
             PlainPeer alice = new PlainPeer(server.url() + "?room=ops&userId=alice")) {
            alice.await("room-info");
            SwitchboardServer.HttpAnswer room = server.api("GET", "/api/v1/rooms/ops", null, "Bearer " + KEY, new byte[0]);
            assertEquals(200, room.status(), room.body());
            assertEquals("application/json", room.contentType());
            assertTrue(room.body().contains("\"userId\":\"alice\""), room.body());
            byte[] notice = "{\"type\":\"notice\",\"n\":3}".getBytes(StandardCharsets.UTF_8);
            SwitchboardServer.HttpAnswer sent = server.api("POST", "/api/v1/rooms/ops/users/alice/send", null,
                    "Bearer " + KEY, notice);
            assertEquals(200, sent.status(), sent.body());
            assertTrue(alice.await("notice").contains("\"n\":3"));
            SwitchboardServer.HttpAnswer refused = server.api("GET", "/api/v1/info", null, null, new byte[0]);
            assertEquals(401, refused.status());
            assertTrue(refused.body().contains("\"code\":\"unauthorized\""));
            assertTrue(server.apiBodyLimit() > 1024);
            SwitchboardServer.HttpAnswer page = server.endpoint("/admin");
            assertEquals(200, page.status());
            assertTrue(page.contentType().startsWith("text/html"));
            assertEquals(404, server.endpoint("/nothing").status());
        }
    }
}
