//! One notice to prefixd, and what its delivery leaves in the spool: the context every step
//! of the room shares (`Ctx`), which failures are worth keeping, a delivered ban's lease and
//! an unban's end of it. The bottom of the spool's delivering: outbox, waiting, renew and
//! flush all use it, and it uses none of them.

use crate::action::Action;
use crate::config::Config;
use crate::error::Error;
use crate::fastnetmon::notice::Notice;
use crate::log::Log;
use crate::prefixd::ban::{self, Delivered};
use crate::prefixd::client::Client;
use crate::prefixd::unban;
use crate::spool::lease;
use crate::spool::queue::Spool;
use crate::tally::Fate;
use std::path::Path;
use std::time::{Duration, Instant};

/// A replayed unban withdraws only mitigations that were not updated after FastNetMon called
/// it; this much later still counts, for the clock difference between the two hosts.
pub const CLOCK_ALLOWANCE: Duration = Duration::from_secs(5);

/// What every step of the spool's room works with.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub log: &'a Log,
    pub client: &'a Client,
    pub deadline: Instant,
}

/// Worth keeping: it may go through later (prefixd down, token or configuration fixed).
pub fn keepable(e: &Error) -> bool {
    matches!(
        e,
        Error::NotDelivered(_) | Error::Unauthorized(_) | Error::Config(_)
    )
}

/// Sends one notice, fresh or replayed from the spool.
pub fn send(ctx: &Ctx, notice: &Notice, replay: bool) -> Result<Delivered, Error> {
    let unban = |lookups, not_after| {
        let why = unban::unban_reason(notice);
        unban::unban(
            ctx.client,
            ctx.cfg,
            ctx.log,
            (notice, &why),
            lookups,
            not_after,
        )
        .map(|()| Delivered::Unban)
    };
    match notice.action {
        Action::Ban => ban::ban(ctx.cfg, ctx.client, ctx.log, notice, replay),
        // The ban it might wait for is long delivered or dropped: one look.
        Action::Unban if replay => unban(1, Some(notice.received() + CLOCK_ALLOWANCE)),
        Action::Unban => unban(ctx.cfg.unban_query_retries, None),
        Action::AttackDetails => Ok(Delivered::Unban),
    }
}

/// How the metrics count a delivery: a ban prefixd held is its own result.
pub(super) fn fate_of(d: &Delivered) -> Fate {
    match d {
        Delivered::Ban(l) if l.mitigation_id.is_none() && l.waiting.is_some() => Fate::Held,
        _ => Fate::Delivered,
    }
}

/// FastNetMon's unban ends the victim's lease at once, before anything is sent or kept, so
/// that no renewal races it; a run delivering it ends it again under the victim's lock (a ban
/// delivered meanwhile may have written one).
pub fn end_lease(ctx: &Ctx, dir: &Path, ip: &str) {
    match lease::remove(dir, ip) {
        Ok(true) => ctx
            .log
            .info(&format!("unban {ip}: lease ended: no more renewals")),
        Ok(false) => {}
        Err(e) => ctx.log.error(&format!(
            "unban {ip}: lease {} could not be removed ({e}): it may be renewed until PREFIXD_RENEW_MAX",
            lease::path(dir, ip).display()
        )),
    }
}

/// After a delivery, under the victim's lock: a ban's victim is held (its lease written).
/// Without a spool, or with PREFIXD_RENEW_MAX=0, there are no leases.
pub(super) fn settle(ctx: &Ctx, spool: Option<&Spool>, d: &Delivered, ip: &str) {
    let Some(spool) = spool else {
        return;
    };
    match d {
        Delivered::Ban(l) if !ctx.cfg.renew_max.is_zero() => {
            // The mitigations of earlier bans of another scope stay followed. A lease that does
            // not read is replaced, as before there were several.
            let old = lease::read(spool.dir(), ip).ok().flatten();
            let (l, dropped) = lease::follow(old, (**l).clone());
            if dropped > 0 {
                ctx.log.warn(&format!(
                    "ban {ip}: its lease follows at most {} mitigations; {dropped} earlier one(s) no longer renewed",
                    lease::MAX_SCOPES
                ));
            }
            // No fsync on a ban's path (README "How it works"); the flush's renewals are.
            if let Err(e) = lease::write(spool, &l, false) {
                ctx.log.warn(&format!(
                    "ban {ip}: delivered, but its lease could not be written ({e}): not renewed"
                ));
            }
        }
        // An unban's lease was ended before it was sent, under the same lock.
        Delivered::Ban(_) | Delivered::Unban => {}
    }
}
