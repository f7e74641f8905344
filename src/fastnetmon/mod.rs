//! What FastNetMon told us: its call (victim IP, direction, pps, action, and the details text
//! on stdin), what the details say (vector, bandwidth, ports), and the operator's rules over
//! them. The bottom of the data path: it uses only the leaves, never the configuration,
//! prefixd's side or the spool.

pub mod details;
pub mod notice;
pub mod rules;
pub mod vector;
