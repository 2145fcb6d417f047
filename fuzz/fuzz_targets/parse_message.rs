//! libFuzzer target: the client frame and token parsers (see `switchboard_fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::parse_message(data));
