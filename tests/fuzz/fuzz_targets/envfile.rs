#![no_main]
//! The env-file parser on any bytes: no panic, and every assignment names a valid variable.
use libfuzzer_sys::fuzz_target;
use prefixd_fastnetmon::envfile::{Line, parse};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in parse(&text) {
        if let Line::Assign { key, .. } = line {
            assert!(!key.is_empty() && !key.starts_with(|c: char| c.is_ascii_digit()));
        }
    }
});
