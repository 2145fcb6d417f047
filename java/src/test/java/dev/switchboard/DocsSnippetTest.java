// DocsSnippetTest.java: the Java snippet of docs/C-JAVA.md, run as written (the
// page shows the lines between "docs/C-JAVA.md" and the assertions; checked by
// scripts/check-doc-snippets.py): a server with an authenticator and a
// listener, two clients in a room, an offer answered through listeners.
package dev.switchboard;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import org.junit.jupiter.api.Test;

class DocsSnippetTest {
    /** Stands in for the app's SLF4J logger: keeps the formatted lines. */
    static final class Log {
        final List<String> lines = new CopyOnWriteArrayList<>();

        void info(String format, Object... args) {
            String line = format;
            for (Object a : args) {
                line = line.replaceFirst("\\{\\}", Matcher.quoteReplacement(String.valueOf(a)));
            }
            lines.add(line);
        }
    }

    final Log log = new Log();
    final List<SwitchboardEvent> answers = new CopyOnWriteArrayList<>();

    void handleAnswer(SwitchboardEvent answer) {
        answers.add(answer);
    }

    @Test
    void javaSnippetOfTheDocs() throws Exception {
        // docs/C-JAVA.md, "Java":
        Map<String, String> users = Map.of("token-a", "alice", "token-b", "bob"); // token -> user id
        try (SwitchboardServer server = SwitchboardServer.builder()
                .listen("127.0.0.1:0").path("/ws")
                .authenticator(req -> req.token() != null && users.containsKey(req.token())
                        ? Authenticator.Decision.allow(users.get(req.token())) : Authenticator.Decision.deny())
                .start()) {
            server.on("user-joined", e -> log.info("{} joined {}", e.userId(), e.roomId()));
            try (SwitchboardClient alice = SwitchboardClient.builder(server.url()).token("token-a").connect();
                 SwitchboardClient bob = SwitchboardClient.builder(server.url()).token("token-b").connect()) {
                bob.join("room-1");
                bob.on("offer", e -> bob.sendAnswer(e.from(), "{\"type\":\"answer\",\"sdp\":\"v=0...\"}"));
                String roomInfo = alice.join("room-1");              // the room-info message (JSON)
                CompletableFuture<SwitchboardEvent> answer = new CompletableFuture<>();
                alice.on("answer", answer::complete);
                alice.sendOffer("bob", "{\"type\":\"offer\",\"sdp\":\"v=0...\"}");
                handleAnswer(answer.get(10, TimeUnit.SECONDS));      // bob's, through his listener
            }
        }

        assertEquals(1, answers.size());
        assertEquals("bob", answers.get(0).from());
        assertTrue(answers.get(0).json().contains("\"sdp\":\"v=0...\""), answers.get(0).json());
        // The server's listener logged the joins it had delivered before close
        // (in order; close may end the listener thread before the last one).
        assertTrue(List.of("bob joined room-1", "alice joined room-1").subList(0, log.lines.size())
                .equals(log.lines), log.lines.toString());
    }
}
