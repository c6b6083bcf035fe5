//! libFuzzer entry for `rtb_fuzz::bid_response`; the same function is replayed by `tests/replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rtb_fuzz::bid_response(data));
