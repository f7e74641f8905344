//! prefixd-fastnetmon as a library: the binary in `main.rs` wires these together. Only what
//! `main.rs`, the integration tests, the fuzz targets and the bench need is public; the rest
//! is the crate's own, so the compiler reports what nothing uses. The rooms, and the rule that
//! imports run down between them: src/DESIGN.md (kept by tests/layers.rs).

#![forbid(unsafe_code)]

// The leaves every room uses.
pub mod action;
pub mod error;
pub mod log;
pub mod pretty;
mod tally;
pub mod time;
mod uuid;

// The rooms of the data path.
pub mod config;
pub mod fastnetmon;
mod operator;
pub mod prefixd;
pub mod spool;

// The modes and their wiring.
pub mod cli;
pub mod lifecycle;
pub mod modes;

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
