//! What the spool keeps and holds: the notices prefixd has not taken yet (one file each, in
//! order per victim) and the leases of the victims FastNetMon still bans; a notice delivered
//! now or kept for later; `--flush`, which delivers what waits and renews what is held. It
//! uses prefixd's room, the configuration, FastNetMon's room and the leaves; never the
//! operator's room or the modes.

pub(crate) mod lease;
pub(crate) mod outbox;
pub mod queue;
pub(crate) mod renew;
