//! What the operator sees: `--check` (the doctor), `--status` (what the spool holds and
//! why) and the metrics file node_exporter reads. It reads the rooms below; only the modes
//! use it.

pub(crate) mod check;
pub(crate) mod metrics;
pub(crate) mod status;
