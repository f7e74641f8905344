//! `--flush`: what waits in the spool delivered, then FastNetMon's ban list asked (a held
//! victim it no longer bans is unbanned), then the held victims renewed, within the deadline
//! and under the flush lock. Only this orchestrates; each step is a module of its own
//! (`waiting`, `reconcile`, `renew`) that imports nothing above it.

use crate::error::Error;
use crate::spool::queue::Spool;
use crate::spool::reconcile::{self, Reconciled};
use crate::spool::renew::{self, Renewed};
use crate::spool::send::Ctx;
use crate::spool::waiting;

/// What a flush did.
#[derive(Default, Debug)]
pub struct FlushReport {
    /// Another run holds the flush lock.
    pub busy: bool,
    /// What became of the notices that waited.
    pub waiting: waiting::Report,
    /// What FastNetMon's ban list said, and the unbans it gave.
    pub reconciled: Reconciled,
    /// What became of the held victims' renewals.
    pub renewed: Renewed,
}

/// Delivers what waits in the spool, asks FastNetMon what it still bans, then renews the held
/// victims, within the deadline.
/// `wait`: wait for the flush lock (until the deadline) rather than leave the work to the run
/// that holds it.
pub fn flush(ctx: &Ctx, spool: &Spool, wait: bool) -> Result<FlushReport, Error> {
    let io = |e: std::io::Error| Error::Internal(format!("spool {}: {e}", spool.dir().display()));
    let Some(_lock) = spool.lock_flush(wait.then_some(ctx.deadline)).map_err(io)? else {
        ctx.log.debug("another run is delivering the spool");
        return Ok(FlushReport {
            busy: true,
            ..FlushReport::default()
        });
    };
    for p in spool.sweep() {
        ctx.log.warn(&format!(
            "recovered {}: a run was stopped while keeping it",
            p.display()
        ));
    }
    let waiting = waiting::deliver_all(ctx, spool)?;
    // The held victims, after the notices (an unban among them ends its victim's lease): first
    // those FastNetMon no longer bans let go, then the others renewed.
    let reconciled = reconcile::reconcile(ctx, spool, &waiting.banned);
    let renewed = renew::renew_all(ctx, spool, &waiting.banned);
    Ok(FlushReport {
        busy: false,
        waiting,
        reconciled,
        renewed,
    })
}
