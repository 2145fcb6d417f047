// SpringSignalingTest.java: a real Spring Boot app (Tomcat, random port) serving
// Switchboard through SwitchboardWebSocketHandler, driven by plain WebSocket
// clients: the same answers as the standalone server.
package dev.switchboard.spring;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.boot.test.web.server.LocalServerPort;

@SpringBootTest(classes = SignalingApp.class, webEnvironment = SpringBootTest.WebEnvironment.RANDOM_PORT)
class SpringSignalingTest {
    @LocalServerPort
    int port;

    private static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + name + "\":\"([^\"]*)\"").matcher(json);
        return m.find() ? m.group(1) : null;
    }

    private static int seq(String json) {
        Matcher m = Pattern.compile("\"seq\":(\\d+)").matcher(json);
        return m.find() ? Integer.parseInt(m.group(1)) : 0;
    }

    @Test
    void twoClientsRelayOfferAnswerCandidateWithTheSenderStamped() throws Exception {
        try (RawSocket a = new RawSocket("127.0.0.5", port); RawSocket b = new RawSocket("127.0.0.6", port)) {
            assertEquals(101, a.status);
            assertNotNull(a.next("\"type\":\"connected\""));
            assertNotNull(b.next("\"type\":\"connected\""));
            a.sendText("{\"type\":\"join\",\"roomId\":\"call\",\"userId\":\"alice\"}");
            assertNotNull(a.next("\"type\":\"room-info\""));
            b.sendText("{\"type\":\"join\",\"roomId\":\"call\",\"userId\":\"bob\"}");
            String info = b.next("\"type\":\"room-info\"");
            assertTrue(info.contains("\"users\":[\"alice\"]"), info);
            assertTrue(a.next("\"type\":\"user-joined\"").contains("\"userId\":\"bob\""));
            a.sendText("{\"type\":\"offer\",\"to\":\"bob\",\"from\":\"mallory\",\"sdp\":{\"type\":\"offer\",\"sdp\":\"v=0\"},\"id\":1}");
            assertTrue(a.next("\"type\":\"ack\"").contains("\"id\":1"));
            String offer = b.next("\"type\":\"offer\"");
            assertEquals("alice", field(offer, "from"), offer);
            assertTrue(offer.contains("\"sdp\":{\"type\":\"offer\",\"sdp\":\"v=0\"}"), offer);
            b.sendText("{\"type\":\"answer\",\"to\":\"alice\",\"sdp\":{\"type\":\"answer\",\"sdp\":\"v=1\"}}");
            assertEquals("bob", field(a.next("\"type\":\"answer\""), "from"));
            a.sendText("{\"type\":\"candidate\",\"to\":\"bob\",\"candidate\":{\"candidate\":\"c1\",\"sdpMid\":\"0\"}}");
            String cand = b.next("\"type\":\"candidate\"");
            assertEquals("alice", field(cand, "from"));
            assertTrue(cand.contains("\"candidate\":\"c1\""), cand);
            b.sendText("{\"type\":\"offer\",\"to\":\"ghost\",\"sdp\":{},\"id\":\"x\"}");
            String err = b.next("\"type\":\"error\"");
            assertEquals("peer-not-found", field(err, "code"), err);
        }
    }

    @Test
    void originAllowListAnswers403BeforeTheUpgrade() throws Exception {
        try (RawSocket evil = new RawSocket("127.0.0.7", port, "Origin: https://evil.example")) {
            assertEquals(403, evil.status);
        }
        try (RawSocket good = new RawSocket("127.0.0.7", port, "Origin: https://app.example")) {
            assertEquals(101, good.status);
        }
    }

    @Test
    void perIpLimitIsKeyedOnTheForwardedAddressFromATrustedProxy() throws Exception {
        try (RawSocket c1 = new RawSocket("127.0.0.1", port, "X-Forwarded-For: 198.51.100.1");
                RawSocket c2 = new RawSocket("127.0.0.1", port, "X-Forwarded-For: 198.51.100.1");
                RawSocket c3 = new RawSocket("127.0.0.1", port, "X-Forwarded-For: 198.51.100.1");
                RawSocket other = new RawSocket("127.0.0.1", port, "X-Forwarded-For: 198.51.100.2")) {
            assertEquals(101, c1.status);
            assertEquals(101, c2.status);
            assertEquals(429, c3.status, "the same forwarded client, over its limit of 2");
            assertEquals(101, other.status);
        }
        // From an untrusted peer the header is ignored: keyed on the socket address.
        try (RawSocket u1 = new RawSocket("127.0.0.8", port, "X-Forwarded-For: 203.0.113.1");
                RawSocket u2 = new RawSocket("127.0.0.8", port, "X-Forwarded-For: 203.0.113.2");
                RawSocket u3 = new RawSocket("127.0.0.8", port, "X-Forwarded-For: 203.0.113.3")) {
            assertEquals(101, u1.status);
            assertEquals(101, u2.status);
            assertEquals(429, u3.status, "a spoofed header from an untrusted peer does not help");
        }
    }

    @Test
    void binaryFrameCloses1003AndOversizedFrameCloses1009() throws Exception {
        try (RawSocket s = new RawSocket("127.0.0.11", port)) {
            s.next("\"type\":\"connected\"");
            s.send(2, new byte[] {1, 2, 3});
            assertNull(s.nextText());
            assertEquals(1003, s.closeCode);
        }
        try (RawSocket s = new RawSocket("127.0.0.11", port)) {
            s.next("\"type\":\"connected\"");
            s.send(1, "x".repeat(5000).getBytes(StandardCharsets.UTF_8));
            assertNull(s.nextText());
            assertEquals(1009, s.closeCode);
        }
    }

    @Test
    void aDroppedTcpConnectionResumesWithReplay() throws Exception {
        RawSocket a = new RawSocket("127.0.0.9", port);
        String connected = a.next("\"type\":\"connected\"");
        a.sendText("{\"type\":\"join\",\"roomId\":\"cut\",\"userId\":\"alice\"}");
        int lastSeq = seq(a.next("\"type\":\"room-info\""));
        try (RawSocket b = new RawSocket("127.0.0.10", port)) {
            b.next("\"type\":\"connected\"");
            b.sendText("{\"type\":\"join\",\"roomId\":\"cut\",\"userId\":\"bob\"}");
            b.next("\"type\":\"room-info\"");
            lastSeq = Math.max(lastSeq, seq(a.next("\"type\":\"user-joined\"")));
            a.cut();
            Thread.sleep(300);
            b.sendText("{\"type\":\"offer\",\"to\":\"alice\",\"sdp\":{\"n\":\"while away\"},\"id\":7}");
            assertTrue(b.next("\"type\":\"ack\"").contains("\"id\":7"));
            try (RawSocket again = new RawSocket("127.0.0.9", port)) {
                again.next("\"type\":\"connected\"");
                again.sendText("{\"type\":\"resume\",\"sessionId\":\"" + field(connected, "sessionId")
                        + "\",\"resumeToken\":\"" + field(connected, "resumeToken") + "\",\"lastSeq\":" + lastSeq + "}");
                String resumed = again.next("\"type\":\"resumed\"");
                assertTrue(resumed.contains("\"replayed\":1"), resumed);
                String offer = again.next("\"type\":\"offer\"");
                assertEquals("bob", field(offer, "from"));
                assertTrue(offer.contains("while away"), offer);
            }
        }
    }
}
