//! What we ask of prefixd and how we read its answers: its wire format, the HTTP client (one
//! ureq Agent: timeouts, TLS, token, retries), and a ban and an unban as prefixd sees them. It
//! uses the configuration, FastNetMon's room and the leaves; never the spool or the modes.

pub mod api;
pub mod deliver;
mod tls;
