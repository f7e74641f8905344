//! What the spool keeps and holds: the notices prefixd has not taken yet (one file each, in
//! order per victim) and the leases of the victims FastNetMon still bans; a notice delivered
//! now or kept for later; `--flush`, which delivers what waits and renews what is held. It
//! uses prefixd's room, the configuration, FastNetMon's room and the leaves; never the
//! operator's room or the modes.
//!
//! Inside, from the bottom: `queue` (the notices' files and locks) and `lease` (the leases'
//! files) ← `send` (one notice to prefixd, `Ctx`) ← `waiting` (a victim's waiting notices, in
//! order), `reconcile` (held victims FastNetMon no longer bans) and `renew` (the held
//! victims) ← `outbox` (a fresh notice: now, behind its victim's, or kept) and `flush`
//! (waiting, reconcile, renew). No module imports the one that calls it.

pub(crate) mod flush;
pub(crate) mod lease;
pub(crate) mod outbox;
pub mod queue;
pub(crate) mod reconcile;
pub(crate) mod renew;
pub(crate) mod send;
pub(crate) mod waiting;
