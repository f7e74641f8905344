//! prefixd-fastnetmon as a library: the binary in `main.rs` wires these together. Only what the
//! integration tests, the fuzz targets and the bench need is public; the rest is the crate's
//! own, so the compiler reports what nothing uses.

pub mod action;
pub mod api;
mod check;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod details;
pub mod envfile;
pub mod error;
mod files;
mod lease;
pub mod lifecycle;
pub mod log;
mod metrics;
pub mod modes;
pub mod notice;
mod outbox;
pub mod pretty;
mod renew;
pub mod rules;
mod service_user;
pub mod spool;
mod status;
pub mod time;
mod tls;
mod token;
mod uuid;
mod values;

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
