//! What FastNetMon told us: its call (victim IP, direction, pps, action, and the details text
//! on stdin), what the details say (vector, bandwidth, ports), the operator's rules over them,
//! and so which vector, confidence and `top_dst_ports` a ban carries; and what it bans now (its
//! ban list). The bottom of the data path: it uses only the leaves, never the configuration,
//! prefixd's side or the spool.
//!
//! Inside, from the bottom: `notice` and `details` ← `ports` (what `top_dst_ports` to send) ←
//! `rules` ← `vector`; `banlist` alone.

pub mod banlist;
pub mod details;
pub mod notice;
pub mod ports;
pub mod rules;
pub mod vector;
