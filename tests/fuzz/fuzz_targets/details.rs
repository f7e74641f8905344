#![no_main]
//! cargo-fuzz target; the checks live in ../checks.rs (also replayed by tests/fuzz_inputs.rs).
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::details(data));
