//! What we ask of prefixd and how we read its answers: its wire format, the HTTP client (one
//! ureq Agent: timeouts, TLS, token, retries), and a ban and an unban as prefixd sees them. It
//! uses the configuration, FastNetMon's room and the leaves; never the spool or the modes.
//!
//! Inside, from the bottom: `wire` (the JSON) ← `reply` (what came back) ← `answer` (what it
//! means) ← `client` (the exchange, with `tls`); `event` (a notice as a ban's body) and
//! `rule` (what the mitigation's rule matches of the attack) ← `ban` and `unban` (a notice
//! delivered), and `dry_run` (what they would send).

pub(crate) mod answer;
pub(crate) mod ban;
pub(crate) mod client;
pub(crate) mod dry_run;
pub mod event;
pub mod reply;
pub(crate) mod rule;
mod tls;
pub mod unban;
pub mod wire;
