// Authenticator.java: the Java side of the C auth callback: decides who a
// connecting client is, from its token (and origin, IP, path).
package dev.switchboard;

import java.time.Instant;

/**
 * Decides whether a connection is admitted. Called on a native blocking thread
 * of the server (never one that drives sockets), possibly several at once, so
 * it may block (a database lookup) and must be thread-safe. A decision later
 * than the server's auth timeout refuses the connection; an exception refuses it.
 */
@FunctionalInterface
public interface Authenticator {
    /** Returns {@link Decision#allow(String)} (or a richer allow) or {@link Decision#deny()}. */
    Decision authenticate(Request request);

    /** What the server knows about the connection; fields are null when absent. */
    record Request(String token, String origin, String ip, String path) {}

    /**
     * An admission ({@code userId} set) or a refusal. {@code roomsJson}: a JSON
     * array of the rooms it may join (exact ids or {@code "prefix*"}), null = any;
     * {@code metadataJson}: any JSON its peers see, null = none; {@code expiresAt}:
     * when the credential expires, null = never.
     */
    record Decision(String userId, String roomsJson, String metadataJson, Instant expiresAt) {
        public static Decision allow(String userId) {
            return new Decision(userId, null, null, null);
        }

        public static Decision deny() {
            return new Decision(null, null, null, null);
        }

        public boolean allowed() {
            return userId != null;
        }
    }
}
