// RawSocket.java: a minimal WebSocket client over a plain socket, for what
// java.net.http can not do: pick the source address, send any header, read a
// refusal's status, send a binary or oversized frame, cut without a close.
package dev.switchboard.spring;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;

final class RawSocket implements AutoCloseable {
    final Socket socket;
    final int status;
    private final InputStream in;
    private final OutputStream out;

    RawSocket(String source, int port, String... headers) throws IOException {
        socket = new Socket(InetAddress.getByName("127.0.0.1"), port, InetAddress.getByName(source), 0);
        socket.setSoTimeout(10_000);
        in = socket.getInputStream();
        out = socket.getOutputStream();
        StringBuilder req = new StringBuilder("GET /signaling HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: webrtc-signaling\r\n");
        for (String h : headers) {
            req.append(h).append("\r\n");
        }
        out.write(req.append("\r\n").toString().getBytes(StandardCharsets.ISO_8859_1));
        out.flush();
        String head = readHead();
        status = Integer.parseInt(head.substring(9, 12));
    }

    private String readHead() throws IOException {
        ByteArrayOutputStream head = new ByteArrayOutputStream();
        int matched = 0;
        while (matched < 4) {
            int b = in.read();
            if (b < 0) {
                break;
            }
            head.write(b);
            matched = (b == "\r\n\r\n".charAt(matched)) ? matched + 1 : (b == '\r' ? 1 : 0);
        }
        return head.toString(StandardCharsets.ISO_8859_1);
    }

    /** A masked client frame (zero mask: the payload goes as is). */
    void send(int opcode, byte[] payload) throws IOException {
        ByteArrayOutputStream f = new ByteArrayOutputStream();
        f.write(0x80 | opcode);
        if (payload.length < 126) {
            f.write(0x80 | payload.length);
        } else {
            f.write(0x80 | 126);
            f.write(payload.length >> 8);
            f.write(payload.length & 0xff);
        }
        f.write(new byte[4]);
        f.write(payload);
        out.write(f.toByteArray());
        out.flush();
    }

    void sendText(String text) throws IOException {
        send(1, text.getBytes(StandardCharsets.UTF_8));
    }

    /** The next text frame, or null when a close frame came (its code in {@link #closeCode}). */
    String nextText() throws IOException {
        for (;;) {
            int b0 = in.read();
            int b1 = in.read();
            if (b0 < 0 || b1 < 0) {
                return null;
            }
            int len = b1 & 0x7f;
            if (len == 126) {
                len = (in.read() << 8) | in.read();
            }
            byte[] p = in.readNBytes(len);
            int op = b0 & 0x0f;
            if (op == 8) {
                closeCode = p.length >= 2 ? ((p[0] & 0xff) << 8 | (p[1] & 0xff)) : 1005;
                return null;
            }
            if (op == 1) {
                return new String(p, StandardCharsets.UTF_8);
            }
        }
    }

    /** The next text frame containing {@code needle}. */
    String next(String needle) throws IOException {
        for (;;) {
            String t = nextText();
            if (t == null || t.contains(needle)) {
                return t;
            }
        }
    }

    int closeCode = -1;

    /** Cuts the TCP connection without a close frame. */
    void cut() throws IOException {
        socket.setSoLinger(true, 0);
        socket.close();
    }

    @Override
    public void close() throws IOException {
        socket.close();
    }
}
