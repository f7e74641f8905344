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
pub mod spool;
mod status;
pub mod time;
mod tls;
mod token;
mod uuid;
mod values;
