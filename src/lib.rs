//! prefixd-fastnetmon as a library: the binary in `main.rs` wires these together. Only what the
//! integration tests, the fuzz targets and the bench need is public; the rest is the crate's
//! own, so the compiler reports what nothing uses.

pub mod action;
pub mod cli;
pub mod config;
pub mod error;
pub mod fastnetmon;
pub mod lifecycle;
pub mod log;
pub mod modes;
mod operator;
pub mod prefixd;
pub mod pretty;
pub mod spool;
mod tally;
pub mod time;
mod uuid;

/// Few proptest cases by default so `cargo test` stays fast; `PROPTEST_CASES=100000` digs
/// deeper. (tests/fuzz_inputs.rs, a crate of its own, keeps a copy.)
#[cfg(test)]
fn proptest_cases(n: u32) -> proptest::prelude::ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    proptest::prelude::ProptestConfig::with_cases(n)
}
