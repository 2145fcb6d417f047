// HostUpgrade.java: one WebSocket upgrade that a host (a Spring handler, any
// Java server that owns its sockets) asked the core to admit: the decision of
// the connection kit (101, or the HTTP status to answer) and, when admitted,
// the way to open the connection.
package dev.switchboard;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;
import com.sun.jna.ptr.ShortByReference;
import java.util.List;
import java.util.Map;

/**
 * The core's decision on one upgrade (see {@link SwitchboardServer#admit}).
 * {@link #status()} is 101 when admitted: answer the upgrade (selecting
 * {@link #subprotocol()}), then {@link #open}. Otherwise answer that HTTP status
 * with {@link #refusalHeader()}. Closing an admitted upgrade that was never
 * opened gives its connection slot back.
 */
public final class HostUpgrade implements AutoCloseable {
    private static final NativeLib LIB = NativeLib.INSTANCE;

    /** Who keeps the connection alive. */
    public enum Liveness {
        /** The host pings when {@link HostConnection#next} says {@code PING}. */
        PINGS,
        /** The host's WebSocket server pings and reports dead peers itself. */
        HOST
    }

    private final SwitchboardServer server;
    private final int status;
    private final String subprotocol;
    private final String refusalHeader;
    private Pointer upgrade;

    HostUpgrade(SwitchboardServer server, String peerIp, String target, Map<String, ? extends List<String>> headers) {
        this.server = server;
        Pointer u = LIB.switchboard_upgrade_new(peerIp, target);
        if (u == null) {
            throw new SwitchboardException(SwitchboardException.INVALID_ARGUMENT, "invalid-argument",
                    "the upgrade target is not valid: " + target);
        }
        for (Map.Entry<String, ? extends List<String>> h : headers.entrySet()) {
            for (String value : h.getValue()) {
                NativeLib.check(LIB.switchboard_upgrade_header(u, h.getKey(), value));
            }
        }
        ShortByReference out = new ShortByReference();
        int r = server.handle().apply(s -> LIB.switchboard_server_admit(s, u, out));
        if (r != NativeLib.OK && r != NativeLib.REFUSED) {
            LIB.switchboard_upgrade_free(u);
            NativeLib.check(r);
        }
        this.upgrade = u;
        this.status = Short.toUnsignedInt(out.getValue());
        this.subprotocol = LIB.switchboard_upgrade_subprotocol(u);
        this.refusalHeader = LIB.switchboard_upgrade_refusal_header(u);
    }

    /** 101 when admitted, else the HTTP status to answer (401, 403, 429, 503). */
    public int status() {
        return status;
    }

    /** Whether the kit admitted the upgrade. */
    public boolean admitted() {
        return status == 101;
    }

    /** The subprotocol to select ({@code webrtc-signaling} when offered), or null. */
    public String subprotocol() {
        return subprotocol;
    }

    /** A header line for the refusal ({@code www-authenticate: Bearer} with 401), or null. */
    public String refusalHeader() {
        return refusalHeader;
    }

    /** Opens the admitted connection; its {@code connected} message is the first output. */
    public synchronized HostConnection open(Liveness liveness) {
        if (upgrade == null || !admitted()) {
            throw new SwitchboardException(SwitchboardException.INVALID_ARGUMENT, "invalid-argument",
                    "only an admitted upgrade opens, once");
        }
        PointerByReference out = new PointerByReference();
        server.handle().call(s -> LIB.switchboard_upgrade_open(s, upgrade, liveness.ordinal(), out));
        upgrade = null; // consumed
        return new HostConnection(out.getValue());
    }

    /** Frees the upgrade if it was not opened (an admitted one gives its slot back). Idempotent. */
    @Override
    public synchronized void close() {
        if (upgrade != null) {
            LIB.switchboard_upgrade_free(upgrade);
            upgrade = null;
        }
    }
}
