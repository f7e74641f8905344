//! What the operator sees: `--check` (the doctor), `--status` (what the spool holds and
//! why), the metrics file node_exporter reads, and who FastNetMon runs the hook as (for
//! `--check` and the package's scripts). It reads the rooms below; only the modes use it.

pub(crate) mod check;
pub(crate) mod metrics;
pub(crate) mod service_user;
pub(crate) mod status;
