//! The MessagePack subprotocol (`webrtc-signaling.msgpack`): the same messages
//! as binary frames. The hub works on JSON text; a MessagePack connection's
//! frames are transcoded at its edge, token by token (no value tree), so the
//! peer that chose MessagePack pays for the conversion and JSON peers pay nothing.

use serde_json::ser::Serializer as JsonSerializer;

/// Deepest nesting a client frame may have: serde_json's own limit for the
/// JSON the hub parses next, and far below what would exhaust a worker
/// thread's stack while transcoding.
const MAX_DEPTH: usize = 128;

/// Encodes one server frame (JSON text) as MessagePack.
///
/// A relayed frame may hold a number beyond the f64 range (valid JSON, which a
/// JSON peer gets verbatim) that MessagePack can not carry: the receiver then
/// gets an `error` (`invalid-message`) under the frame's `seq` instead, so its
/// sequence stays whole and it learns that a message was not deliverable.
pub fn encode(json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut de = serde_json::Deserializer::from_str(json);
    if serde_transcode::transcode(&mut de, &mut rmp_serde::Serializer::new(&mut out)).is_ok() {
        return out;
    }
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: Option<u64>,
    }
    // Skipping values checks their syntax only: a huge number does not fail it.
    let seq = serde_json::from_str::<Seq>(json).ok().and_then(|s| s.seq);
    let mut w = super::ObjectWriter::with_capacity(160);
    if let Some(seq) = seq {
        w.u64("seq", seq);
    }
    w.str("type", "error").str("code", "invalid-message").str(
        "message",
        "a relayed message holds a number MessagePack can not carry",
    );
    encode(&w.finish())
}

/// Decodes one client frame (MessagePack) into JSON text. The error says why it
/// is not a message (answered like bad JSON: `invalid-json`).
pub fn decode(bytes: &[u8]) -> Result<String, String> {
    let mut rest = bytes;
    let mut de = rmp_serde::Deserializer::new(&mut rest);
    de.set_max_depth(MAX_DEPTH);
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 4 + 16);
    {
        let mut ser = JsonSerializer::new(&mut out);
        serde_transcode::transcode(&mut de, &mut ser)
            .map_err(|e| format!("the frame is not valid MessagePack ({e})"))?;
    }
    drop(de);
    if !rest.is_empty() {
        return Err("the frame has bytes after its MessagePack value".to_owned());
    }
    // serde_json writes UTF-8 only (MessagePack strings are checked as they are read).
    String::from_utf8(out).map_err(|_| "the frame is not valid UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_reach_a_messagepack_receiver_as_a_json_receiver_reads_them() {
        // Found by the parse_message fuzz target: without correctly rounded
        // parsing this exponent came back one ulp off.
        for text in [
            r#"{"type":"ping","x":1786890e080}"#,
            r#"{"type":"ping","x":2.2250738585072011e-308}"#,
            r#"{"type":"ping","x":0.1}"#,
        ] {
            let back = decode(&encode(text)).unwrap();
            let (a, b): (serde_json::Value, serde_json::Value) = (
                serde_json::from_str(text).unwrap(),
                serde_json::from_str(&back).unwrap(),
            );
            assert_eq!(a, b, "{text} came back as {back}");
        }
    }

    #[test]
    fn round_trips_a_message() {
        let json = r#"{"seq":3,"type":"offer","to":"bob","sdp":{"type":"offer","sdp":"v=0\r\n"},"n":-2.5,"ok":true,"x":null,"big":18446744073709551615}"#;
        let packed = encode(json);
        assert!(packed.len() < json.len());
        let back: serde_json::Value = serde_json::from_str(&decode(&packed).unwrap()).unwrap();
        let orig: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn a_number_beyond_f64_becomes_an_error_under_its_seq() {
        let out = encode(r#"{"seq":9,"type":"message","data":1e400,"from":"a"}"#);
        let v: serde_json::Value = serde_json::from_str(&decode(&out).unwrap()).unwrap();
        assert_eq!(v["seq"], 9);
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str()),
            (Some("error"), Some("invalid-message"))
        );
    }

    #[test]
    fn bad_frames_are_refused() {
        assert!(decode(&[0xc1]).is_err(), "never-used byte");
        assert!(decode(&[0x92, 0x01]).is_err(), "truncated array");
        assert!(decode(&[0x01, 0x02]).is_err(), "trailing bytes");
        // Integer keys become JSON strings; an array key has no JSON form.
        assert_eq!(decode(&[0x81, 0x01, 0x02]).unwrap(), r#"{"1":2}"#);
        assert!(decode(&[0x81, 0x90, 0x01]).is_err());
        // A string with invalid UTF-8 is no string: it comes out as its bytes
        // (so it can never pass as a `type`, `to` or `roomId`).
        assert_eq!(decode(&[0xa2, 0xff, 0xfe]).unwrap(), "[255,254]");
        // Nesting deeper than JSON allows is refused before any recursion runs deep.
        let mut deep = vec![0x91u8; 60_000];
        deep.push(0x01);
        assert!(decode(&deep).is_err());
        let mut ok = vec![0x91u8; 100];
        ok.push(0x01);
        assert!(decode(&ok).is_ok());
        // A non-object still decodes; the hub answers it `invalid-message`.
        assert_eq!(decode(&[0x2a]).unwrap(), "42");
    }
}
