// HostConnection.java: one WebSocket owned by a Java host, attached to the hub
// through the core's connection kit: frames in, what to do next out (frames to
// send, a close, a ping, a drop), the peer's close at the end.
package dev.switchboard;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.LongByReference;
import com.sun.jna.ptr.PointerByReference;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * A connection opened by {@link HostUpgrade#open}. Feed it what the socket
 * receives ({@link #text}, {@link #violation}, {@link #heard}); one writer thread
 * pulls {@link #next} and does what it says; {@link #finish} when the socket is
 * gone; {@link #close} frees it. Thread-safe.
 */
public final class HostConnection implements AutoCloseable {
    private static final NativeLib LIB = NativeLib.INSTANCE;

    /** What the host should do next. */
    public enum Kind {
        /**
         * Send {@link Output#frames()} as text frames in order (or
         * {@link Output#binaryFrames()} as binary ones on a MessagePack
         * connection), then {@link #written()}.
         */
        FRAMES,
        /** Send a close frame with {@link Output#closeCode()} and stop writing. */
        CLOSE,
        /** Send a WebSocket ping. */
        PING,
        /** Cut the socket without a close frame (a silent peer or one that takes no frames). */
        DROP
    }

    /** One output of {@link #next}. */
    public record Output(Kind kind, List<String> frames, List<byte[]> binaryFrames, int closeCode, String closeReason) {}

    private final NativeHandle handle;
    private final String clientId;

    HostConnection(Pointer conn) {
        this.handle = new NativeHandle(conn, "connection");
        this.clientId = LIB.switchboard_conn_client_id(conn);
    }

    /** This connection's {@code clientId}. */
    public String clientId() {
        return clientId;
    }

    /** One received text frame. */
    public void text(String text) {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        handle.call(c -> LIB.switchboard_conn_text(c, bytes, bytes.length));
    }

    /** One received binary frame: MessagePack on its subprotocol, a 1003 close on JSON. */
    public void binary(byte[] data) {
        handle.call(c -> LIB.switchboard_conn_binary(c, data, data.length));
    }

    /** A violation the socket layer saw: 1002 (framing), 1003 (binary), 1009 (too big). */
    public void violation(int closeCode) {
        handle.call(c -> LIB.switchboard_conn_violation(c, (short) closeCode));
    }

    /** The peer was heard (a pong, a ping, any frame). */
    public void heard() {
        handle.call(LIB::switchboard_conn_heard);
    }

    /** What to do next, waiting up to {@code timeout}; empty when nothing yet. */
    public Optional<Output> next(Duration timeout) {
        PointerByReference out = new PointerByReference();
        int r = handle.apply(c -> LIB.switchboard_conn_next(c, (int) Math.min(timeout.toMillis(), Integer.MAX_VALUE), out));
        if (r == NativeLib.TIMEOUT) {
            return Optional.empty();
        }
        NativeLib.check(r);
        Pointer o = out.getValue();
        try {
            Kind kind = Kind.values()[LIB.switchboard_output_get_kind(o)];
            List<String> frames = new ArrayList<>();
            List<byte[]> binaryFrames = new ArrayList<>();
            boolean binary = LIB.switchboard_output_is_binary(o) != 0;
            long n = LIB.switchboard_output_count(o);
            LongByReference len = new LongByReference();
            for (long i = 0; i < n; i++) {
                Pointer f = LIB.switchboard_output_frame(o, i, len);
                byte[] bytes = f.getByteArray(0, (int) len.getValue());
                if (binary) {
                    binaryFrames.add(bytes);
                } else {
                    frames.add(new String(bytes, StandardCharsets.UTF_8));
                }
            }
            return Optional.of(new Output(kind, frames, binaryFrames,
                    Short.toUnsignedInt(LIB.switchboard_output_close_code(o)), LIB.switchboard_output_close_reason(o)));
        } finally {
            LIB.switchboard_output_free(o);
        }
    }

    /** The frames of the last {@code FRAMES} output were sent. */
    public void written() {
        handle.call(LIB::switchboard_conn_written);
    }

    /** The socket is gone: the peer's close code, or -1 when it sent none (a cut: resumable). */
    public void finish(int clientClose) {
        handle.call(c -> LIB.switchboard_conn_finish(c, clientClose));
    }

    /** Frees the connection (a cut if {@link #finish} was not called). Idempotent. */
    @Override
    public void close() {
        handle.free(LIB::switchboard_conn_free);
    }
}
