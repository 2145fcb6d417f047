//! The scanner against serde_json as the reference grammar: the same
//! documents accepted, the same keys and values cut out.

use super::*;

/// serde_json's verdict on a whole document (its strict string decoding
/// refuses lone surrogates too).
fn serde_accepts(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok()
}

/// A deterministic pseudo-random stream for the generated cases (xorshift64).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Our verdict on a whole document, object or not.
fn accepts(text: &str) -> bool {
    !matches!(
        object(text),
        Err(JsonError::Syntax { .. } | JsonError::LoneSurrogate { .. } | JsonError::TooDeep)
    )
}

const DOCUMENTS: &[&str] = &[
    r#"{}"#,
    r#" { } "#,
    r#"{"a":1}"#,
    r#"{"a":-0.5e+10,"b":[true,false,null],"c":{"d":"\u00e9\n"}}"#,
    "{\"a\" :\t[ 1 , 2 ]\r\n}",
    r#"{"type":"candidate","to":"bob","candidate":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
    r#"[1,2]"#,
    r#"42"#,
    r#""str""#,
    r#"null"#,
    r#"{"a":"\ud83d\ude00"}"#,
    r#"{"a":"\\ud800"}"#,
    r#"{"é":"ü","k":"\"quoted\""}"#,
    "",
    " ",
    "{",
    "}",
    "{\"a\"}",
    "{\"a\":}",
    "{\"a\":1,}",
    "{,}",
    "{\"a\":1 \"b\":2}",
    "{\"a\":01}",
    "{\"a\":1.}",
    "{\"a\":.5}",
    "{\"a\":1e}",
    "{\"a\":-}",
    "{\"a\":+1}",
    "{\"a\":tru}",
    "{\"a\":truex}",
    "{\"a\":nul}",
    "{\"a\":[1,]}",
    "{\"a\":[,1]}",
    "{\"a\":[1 2]}",
    "{\"a\":{\"b\"}}",
    "{\"a\":{\"b\":1,}}",
    "{\"a\":{1:2}}",
    "{\"a\":\"x\ty\"}",
    "{\"a\":\"\\x\"}",
    "{\"a\":\"\\u12\"}",
    "{\"a\":\"\\u12G4\"}",
    r#"{"a":"\ud800"}"#,
    r#"{"a":"\ude00"}"#,
    r#"{"a":"\ud800\u0041"}"#,
    r#"{"a":"\ud800\ud800"}"#,
    r#"{"\ud800":1}"#,
    r#"{"a":["\udbff"]}"#,
    "{\"a\":1}x",
    "{\"a\":1}{}",
    "{\"a\":\"unterminated",
    "{'a':1}",
    "{\"a\":NaN}",
    "{\"a\":Infinity}",
    "\u{feff}{}",
    "{\"a\":[[[[]]]]}",
    "{\"a\":[{},{\"b\":[]}]}",
];

#[test]
fn the_same_documents_as_serde_json() {
    for doc in DOCUMENTS {
        assert_eq!(
            accepts(doc),
            serde_accepts(doc),
            "{doc:?}: {:?}",
            object(doc)
        );
    }
}

#[test]
fn objects_are_cut_into_decoded_keys_and_raw_values() {
    let text =
        r#" {"type":"offer", "k\u00e9y" : [1, {"x":"}"}] ,"n":-1.5e3,"s":"a\"b","type":null} "#;
    let entries = object(text).unwrap();
    let got: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (&*k.0, v.get())).collect();
    assert_eq!(
        got,
        [
            ("type", r#""offer""#),
            ("kéy", r#"[1, {"x":"}"}]"#),
            ("n", "-1.5e3"),
            ("s", r#""a\"b""#),
            ("type", "null"),
        ]
    );
    assert!(matches!(entries[0].0 .0, Cow::Borrowed(_)));
    assert!(matches!(entries[1].0 .0, Cow::Owned(_)));
    assert_eq!(object(r#"{}"#).unwrap(), []);
    assert_eq!(object("[1]"), Err(JsonError::NotAnObject));
    assert_eq!(
        object(r#"{"a":1,}"#),
        Err(JsonError::Syntax {
            at: 7,
            expected: "a string key"
        })
    );
}

#[test]
fn strings_decode_like_serde_json() {
    for s in [
        r#""plain""#,
        r#""\"\\\/\b\f\n\r\t""#,
        r#""\u0041\u00e9\u20ac\ud83d\ude00 x""#,
        r#""é and \u00e9""#,
        r#""""#,
    ] {
        let want: String = serde_json::from_str(s).unwrap();
        assert_eq!(Raw(s).as_str().unwrap(), want, "{s}");
    }
    assert!(matches!(
        Raw(r#""plain""#).as_str(),
        Some(Cow::Borrowed("plain"))
    ));
    assert_eq!(Raw("12").as_str(), None);
    assert_eq!(Raw::parse(" 7\n").unwrap().as_u64(), Some(7));
    assert_eq!(
        Raw::parse("\t\"x\" ").unwrap().as_str().as_deref(),
        Some("x")
    );
    assert!(Raw::parse("7 8").is_err());
    assert!(Raw::parse("").is_err());
    assert_eq!(Raw("12").as_u64(), Some(12));
    assert_eq!(Raw("18446744073709551615").as_u64(), Some(u64::MAX));
    for not in ["18446744073709551616", "-1", "1.0", "1e2", r#""1""#] {
        assert_eq!(Raw(not).as_u64(), None, "{not}");
    }
}

#[test]
fn nesting_stops_at_the_limit_counting_the_top_object() {
    let nested = |levels: usize| {
        let inner = levels - 1; // the top-level object is one level
        format!(r#"{{"x":{}1{}}}"#, "[".repeat(inner), "]".repeat(inner))
    };
    assert!(object(&nested(MAX_NESTING)).is_ok());
    assert_eq!(object(&nested(MAX_NESTING + 1)), Err(JsonError::TooDeep));
    let objects = format!(
        r#"{{"x":{}1{}}}"#,
        r#"{"a":"#.repeat(MAX_NESTING - 1),
        "}".repeat(MAX_NESTING - 1)
    );
    assert!(object(&objects).is_ok());
    let deep_array = format!(
        "{}{}",
        "[".repeat(MAX_NESTING + 1),
        "]".repeat(MAX_NESTING + 1)
    );
    assert_eq!(object(&deep_array), Err(JsonError::TooDeep));
    let in_string = format!(r#"{{"x":"{}"}}"#, "[".repeat(300));
    assert!(
        object(&in_string).is_ok(),
        "brackets in strings do not count"
    );
}

/// The first stop `string_stops` finds in `word` is the first `"`, `\\` or
/// control byte.
fn assert_first_stop(word: [u8; 8]) {
    let stops = string_stops(u64::from_le_bytes(word));
    let want = word
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
    let got = (stops != 0).then(|| (stops.trailing_zeros() / 8) as usize);
    assert_eq!(got, want, "{word:?}");
}

#[test]
fn string_stops_finds_the_first_stop_in_every_word() {
    for pos in 0..8 {
        for byte in 0..=255u8 {
            let mut word = *b"abcdefgh";
            word[pos] = byte;
            assert_first_stop(word);
        }
    }
    // Several stops, and bytes that make a borrow run across the word.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..100_000 {
        let word = next_random(&mut state)
            .to_le_bytes()
            .map(|b| if b % 3 == 0 { b % 0x24 } else { b });
        assert_first_stop(word);
    }
}

/// Mutations of real frames (a byte replaced, dropped or doubled, a cut)
/// judged by both parsers: the verdicts and, when accepted, the values agree.
#[test]
fn mutated_frames_get_the_same_verdict_as_serde_json() {
    let seeds = [
        r#"{"type":"candidate","to":"bob","candidate":{"candidate":"candidate:842163049 1 udp 1677729535 203.0.113.7 50123 typ srflx","sdpMid":"0","sdpMLineIndex":0,"n":12,"t":-1.5e-3}}"#,
        r#"{"type":"join","roomId":"r\u00e9","metadata":{"a":[true,false,null,{"b":"\ud83d\ude00"}]},"id":"m1"}"#,
        r#"{ "type" : "message" , "data" : [ 1 , "two\n" , { } , [ ] ] }"#,
    ];
    let alphabet = b"{}[]:,\"\\ u0123456789abcdefEtrn-+.\x01\t\xc3\xa9";
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |n: usize| (next_random(&mut state) % n as u64) as usize;
    let mut checked = 0;
    for seed in seeds {
        for _ in 0..4_000 {
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..1 + next(3) {
                let at = next(bytes.len());
                match next(4) {
                    0 => bytes[at] = alphabet[next(alphabet.len())],
                    1 => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, bytes[at]),
                    _ => bytes.truncate(at),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            assert_eq!(
                accepts(text),
                serde_accepts(text),
                "{text:?}: {:?}",
                object(text)
            );
            if let Ok(entries) = object(text) {
                let map: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(text).unwrap();
                for (k, v) in entries {
                    let want = &map[&*k.0];
                    // serde keeps the last of duplicate keys.
                    let got: serde_json::Value = serde_json::from_str(v.get()).unwrap();
                    if map.len() == object(text).unwrap().len() {
                        assert_eq!(&got, want, "{text:?} at {k:?}");
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 10_000, "only {checked} mutations were UTF-8");
}

#[test]
fn needs_no_escape_matches_a_byte_by_byte_check() {
    let naive = |s: &str| s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    let mut state = 0xD1B5_4A32_D192_ED03u64;
    for len in 0..40 {
        for _ in 0..200 {
            let s: String = (0..len)
                .map(|_| match next_random(&mut state) % 40 {
                    0 => '"',
                    1 => '\\',
                    2 => '\n',
                    3 => 'é',
                    n => char::from(b'a' + (n % 26) as u8),
                })
                .collect();
            assert_eq!(needs_no_escape(&s), naive(&s), "{s:?}");
        }
    }
}
