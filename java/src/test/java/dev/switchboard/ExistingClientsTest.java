// ExistingClientsTest.java: the Java binding and clients written the classic
// way: a plain JDK WebSocket whose room and user come from a path template,
// app message types relayed with `from`, a MessagePack Java client calling a
// JSON peer, and the host putting users into rooms and taking them out.
package dev.switchboard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import org.junit.jupiter.api.Test;

class ExistingClientsTest {
    @Test
    void urlRoomsAppTypesMessagePackAndHostRoomControl() throws Exception {
        try (SwitchboardServer server = SwitchboardServer.builder()
                .listen("127.0.0.1:0")
                .path("/ws,/signaling/{roomId}/{userId}")
                .appTypes("mute", "hangup")
                .rateLimitRps(0)
                .drainTimeout(Duration.ofSeconds(2))
                .start()) {
            String base = "ws://127.0.0.1:" + server.port();
            try (PlainPeer alice = new PlainPeer(base + "/signaling/call/alice");
                 SwitchboardClient bob = SwitchboardClient.builder(base + "/ws")
                         .userId("bob").encoding("msgpack").connect()) {
                assertTrue(alice.await("room-info").contains("\"roomId\":\"call\""), "joined from the path");
                BlockingQueue<SwitchboardEvent> bobEvents = new LinkedBlockingQueue<>();
                bob.onAny(bobEvents::add);
                bob.join("call");
                alice.send("{\"type\":\"mute\",\"to\":\"bob\",\"track\":\"audio\"}");
                SwitchboardEvent mute = SwitchboardTest.await(bobEvents, "mute");
                assertTrue(mute.json().contains("\"from\":\"alice\""), mute.json());
                bob.sendJson("{\"type\":\"hangup\",\"to\":\"alice\"}");
                assertTrue(alice.await("hangup").contains("\"from\":\"bob\""));
                SwitchboardException unknown = assertThrows(SwitchboardException.class,
                        () -> bob.sendJson("{\"type\":\"dance\",\"to\":\"alice\"}"));
                assertEquals("unknown-type", unknown.codeName());

                server.join("bob", "stage");
                assertTrue(SwitchboardTest.await(bobEvents, "room-info", "\"stage\"").json().contains("\"roomId\":\"stage\""));
                server.leave("bob", "call");
                assertTrue(alice.await("user-left").contains("\"reason\":\"leave\""));
                SwitchboardException ghost = assertThrows(SwitchboardException.class, () -> server.join("ghost", "stage"));
                assertEquals(SwitchboardException.PEER_NOT_FOUND, ghost.code());
            }
        }
        SwitchboardException bad = assertThrows(SwitchboardException.class,
                () -> SwitchboardServer.builder().listen("127.0.0.1:0").appTypes("offer").start());
        assertEquals(SwitchboardException.CONFIG, bad.code());
    }
}
