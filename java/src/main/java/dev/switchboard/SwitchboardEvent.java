// SwitchboardEvent.java: one event, copied out of the native event (which is
// freed at once): its protocol type, its JSON, and the fields used for routing.
package dev.switchboard;

import com.sun.jna.Pointer;

/**
 * An event of a server or client. {@code type} is the protocol's {@code type}
 * string ({@code "user-joined"}, {@code "offer"}, ...) or a client connection
 * state ({@code "reconnecting"}, {@code "closed"}, ...); {@code json} is the
 * whole event as a JSON object; {@code roomId}, {@code userId} and {@code from}
 * are null when the event has none.
 */
public record SwitchboardEvent(String type, String json, String roomId, String userId, String from) {
    /** Copies a native event and frees it. */
    static SwitchboardEvent take(Pointer ev) {
        NativeLib lib = NativeLib.INSTANCE;
        try {
            return new SwitchboardEvent(lib.switchboard_event_type(ev), lib.switchboard_event_json(ev),
                    lib.switchboard_event_room_id(ev), lib.switchboard_event_user_id(ev),
                    lib.switchboard_event_from(ev));
        } finally {
            lib.switchboard_event_free(ev);
        }
    }
}
