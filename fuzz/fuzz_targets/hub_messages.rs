//! libFuzzer target: the hub driven by several connections (see `switchboard_fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::hub_messages(data));
