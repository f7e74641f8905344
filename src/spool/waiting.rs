//! The notices that wait in the spool, delivered victim by victim: each victim's in the order
//! FastNetMon called us, under its lock; a notice that cannot go stays, and so do the ones
//! behind it (a stale unban never withdraws a newer ban); one that is out of date is
//! dropped with a log line. Used by a run queued behind its victim's notices and by `--flush`.

use crate::action::Action;
use crate::config::Config;
use crate::error::Error;
use crate::fastnetmon::notice::Notice;
use crate::prefixd::ban::Delivered;
use crate::spool::queue::{Entry, Name, Spool};
use crate::spool::send::{Ctx, end_lease, fate_of, keepable, send, settle};
use crate::tally::{self, Fate};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// What became of the waiting notices.
#[derive(Default, Debug)]
pub struct Report {
    pub delivered: usize,
    /// Dropped as stale: superseded by a later unban, or older than its limit.
    pub stale: usize,
    /// Refused by prefixd for good (400/422 in its own shape), so dropped.
    pub refused: usize,
    /// Kept for later: notices that failed, and their victims' notices behind them.
    pub left: usize,
    /// Notices of victims that another run was delivering.
    pub skipped: usize,
    /// Why the first notice left was not delivered.
    pub stopped: Option<Error>,
    /// Victims whose ban was delivered: their mitigations are fresh, so the renewal pass of
    /// the same flush does not look at them (the next flush does).
    pub banned: BTreeSet<String>,
}

/// Delivers the waiting notices within the deadline, victim by victim (each in order, under
/// its lock), going past a victim whose notice cannot go. The caller holds the flush lock.
pub fn deliver_all(ctx: &Ctx, spool: &Spool) -> Result<Report, Error> {
    let io = |e: std::io::Error| Error::Internal(format!("spool {}: {e}", spool.dir().display()));
    // Victims in the order of their oldest notice; each victim's notices in order.
    let mut victims: Vec<(String, Vec<PathBuf>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for path in spool.list().map_err(io)? {
        let Some(name) = Name::of(&path) else {
            let to = spool.quarantine(&path).map_err(io)?;
            ctx.log.error(&format!(
                "spooled file {} set aside as {}: not a notice's name",
                path.display(),
                to.display()
            ));
            continue;
        };
        let i = *index.entry(name.victim_ip.clone()).or_insert_with(|| {
            victims.push((name.victim_ip, Vec::new()));
            victims.len() - 1
        });
        victims[i].1.push(path);
    }
    let mut report = Report::default();
    for (ip, queue) in &victims {
        if ctx.client.remaining().is_zero() {
            report.left += queue.len();
            report.stopped.get_or_insert(Error::NotDelivered(
                "deadline reached while delivering the spool".into(),
            ));
            continue;
        }
        match spool.lock_ip(ip, None).map_err(io)? {
            Some(_turn) => {
                deliver_victim(ctx, spool, ip, queue, None, &mut report);
            }
            None => {
                ctx.log
                    .debug(&format!("{ip}: another run is delivering its notices"));
                report.skipped += queue.len();
            }
        }
    }
    spool.sync().map_err(io)?;
    Ok(report)
}

/// Delivers one victim's spooled notices in order, holding its lock. A notice that cannot go
/// stays (with its attempt counted) and so do the ones behind it. Returns the fate of `own`,
/// the notice of this run, if it is among them.
pub fn deliver_victim(
    ctx: &Ctx,
    spool: &Spool,
    ip: &str,
    queue: &[PathBuf],
    own: Option<&Path>,
    report: &mut Report,
) -> Option<Result<(), Error>> {
    let last_unban = queue
        .iter()
        .rposition(|p| Name::of(p).is_some_and(|n| n.action == Action::Unban));
    let mut fate = None;
    for (i, path) in queue.iter().enumerate() {
        let is_own = own == Some(path.as_path());
        let stop = |e: Error, report: &mut Report| {
            report.left += queue.len() - i;
            report.stopped.get_or_insert(e.clone());
            own.filter(|o| queue[i..].iter().any(|p| p == o))
                .map(|_| Err(e))
        };
        if ctx.client.remaining().is_zero() {
            let e = Error::NotDelivered(format!(
                "deadline reached with {} notice(s) of {ip} still in the spool",
                queue.len() - i
            ));
            return stop(e, report).or(fate);
        }
        let mut entry = match Spool::read(path) {
            Ok(Ok(e)) => e,
            // Delivered by a run that held the turn before us.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                let e = Error::Internal(format!("spool {}: {e}", path.display()));
                ctx.log.error(&e.to_string());
                return stop(e, report).or(fate);
            }
            Ok(Err(why)) => {
                match spool.quarantine(path) {
                    Ok(to) => ctx.log.error(&format!(
                        "spooled file {} set aside as {}: {why}",
                        path.display(),
                        to.display()
                    )),
                    Err(e) => ctx
                        .log
                        .error(&format!("spool {}: {why}; {e}", path.display())),
                }
                continue;
            }
        };
        let what = entry.action;
        let notice = match Notice::from_entry(&entry) {
            Ok(n) => n,
            Err(why) => {
                ctx.log
                    .error(&format!("dropped spooled {what} {ip}: usage: {why}"));
                remove(ctx, spool, path);
                report.refused += 1;
                continue;
            }
        };
        let unban_follows = last_unban.is_some_and(|u| u > i);
        if !is_own && let Some(why) = stale(ctx.cfg, &notice, &entry, unban_follows) {
            ctx.log.warn(&format!(
                "dropped spooled {what} {ip} received {}: {why}",
                crate::time::rfc3339(notice.received())
            ));
            remove(ctx, spool, path);
            if what == Action::Unban {
                end_lease(ctx, spool.dir(), ip);
            }
            report.stale += 1;
            tally::count(what, Fate::Dropped);
            continue;
        }
        if what == Action::Unban {
            end_lease(ctx, spool.dir(), ip);
        }
        match send(ctx, &notice, !is_own) {
            Ok(d) => {
                settle(ctx, Some(spool), &d, ip);
                if matches!(d, Delivered::Ban(_)) {
                    report.banned.insert(ip.to_string());
                }
                if let Err(e) = spool.remove(path) {
                    let e = Error::Internal(format!(
                        "{what} {ip} delivered, but {} could not be removed: {e}",
                        path.display()
                    ));
                    ctx.log.error(&e.to_string());
                    return stop(e, report).or(fate);
                }
                report.delivered += 1;
                tally::count(what, fate_of(&d));
                if is_own {
                    fate = Some(Ok(()));
                }
            }
            Err(e) if keepable(&e) => {
                entry.attempts = Some(entry.attempts.unwrap_or(0) + 1);
                entry.last_error = Some(ctx.log.redact(&e.to_string()));
                if let Err(w) = spool.update(path, &entry) {
                    ctx.log.warn(&format!(
                        "{what} {ip}: cannot record the attempt in {}: {w}",
                        path.display()
                    ));
                }
                ctx.log.warn(&format!(
                    "{what} {ip} kept in the spool (attempt {}): {e}; {} later notice(s) of {ip} wait behind it",
                    entry.attempts.unwrap_or(1),
                    queue.len() - i - 1
                ));
                return stop(e, report).or(fate);
            }
            Err(e) => {
                ctx.log.error(&format!("dropped spooled {what} {ip}: {e}"));
                remove(ctx, spool, path);
                report.refused += 1;
                if matches!(e, Error::Refused(_)) {
                    tally::count(what, Fate::Refused);
                }
                if is_own {
                    fate = Some(Err(e));
                }
            }
        }
    }
    fate
}

/// Removes a spooled notice that is done with; one that stays is said, since a later flush
/// will meet it again.
fn remove(ctx: &Ctx, spool: &Spool, path: &Path) {
    if let Err(e) = spool.remove(path) {
        ctx.log.warn(&format!(
            "{} could not be removed ({e}); a later flush will see it again",
            path.display()
        ));
    }
}

/// Why a spooled notice is no longer worth sending, if it is not.
fn stale(cfg: &Config, notice: &Notice, entry: &Entry, unban_follows: bool) -> Option<String> {
    let age = notice.received().elapsed().unwrap_or_default();
    let last = || match &entry.last_error {
        Some(e) => format!("; last error: {e}"),
        None => String::new(),
    };
    match notice.action {
        Action::Ban if unban_follows => Some("an unban for it came later".into()),
        Action::Ban if age > cfg.spool_max_age => Some(format!(
            "older than PREFIXD_SPOOL_MAX_AGE ({}s){}",
            cfg.spool_max_age.as_secs(),
            last()
        )),
        Action::Unban if age > cfg.unban_max_age => Some(format!(
            "{:.1}s old, older than PREFIXD_UNBAN_MAX_AGE ({:.1}s): prefixd's TTL has ended what it was about{}",
            age.as_secs_f64(),
            cfg.unban_max_age.as_secs_f64(),
            last()
        )),
        _ => None,
    }
}
