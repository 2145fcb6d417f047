// SwitchboardException.java: the one exception type of the binding; it carries
// the C result code (`switchboard_result`) and its stable name.
package dev.switchboard;

/** A failed call: {@link #code()} is the C result code, {@link #codeName()} its stable name. */
public class SwitchboardException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** {@code SWITCHBOARD_RESULT_TIMEOUT}: no outcome in time. */
    public static final int TIMEOUT = 9;
    /** {@code SWITCHBOARD_RESULT_CLOSED}: the server is stopped or the client closed. */
    public static final int CLOSED = 7;
    /** {@code SWITCHBOARD_RESULT_CONFIG}: an invalid configuration value. */
    public static final int CONFIG = 3;
    /** {@code SWITCHBOARD_RESULT_INVALID_ARGUMENT}: an argument the call can not accept. */
    public static final int INVALID_ARGUMENT = 4;
    /** {@code SWITCHBOARD_RESULT_INVALID_JSON}. */
    public static final int INVALID_JSON = 100;
    /** {@code SWITCHBOARD_RESULT_PEER_NOT_FOUND}. */
    public static final int PEER_NOT_FOUND = 106;
    /** {@code SWITCHBOARD_RESULT_UNAUTHORIZED}. */
    public static final int UNAUTHORIZED = 103;

    private final int code;
    private final String codeName;

    public SwitchboardException(int code, String codeName, String message) {
        super(codeName + ": " + message);
        this.code = code;
        this.codeName = codeName;
    }

    static SwitchboardException fromLastError(int code) {
        NativeLib lib = NativeLib.INSTANCE;
        return new SwitchboardException(code, lib.switchboard_result_name(code),
                lib.switchboard_last_error_message());
    }

    /** The {@code switchboard_result} value (e.g. 106 for peer-not-found). */
    public int code() {
        return code;
    }

    /** The stable name: the protocol error code ({@code "peer-not-found"}) or {@code "closed"}, {@code "timeout"}, ... */
    public String codeName() {
        return codeName;
    }
}
