//! prefixd-fastnetmon as a library: the binary in `main.rs` wires these together; the fuzz
//! targets and tests call the pure parsers directly.

pub mod api;
pub mod check;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod details;
pub mod envfile;
pub mod error;
pub mod log;
pub mod metrics;
pub mod modes;
pub mod notice;
pub mod outbox;
pub mod pretty;
pub mod rules;
pub mod spool;
pub mod status;
pub mod time;
pub mod tls;
pub mod uuid;
