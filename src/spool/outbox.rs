//! Deliver now, or keep for later — in order per victim. A notice that cannot reach prefixd
//! goes to the spool. Runs for one victim IP take turns (the spool's per-victim lock); a run
//! whose victim has notices waiting queues behind them and delivers them first, so a stale
//! unban never withdraws a newer ban. A victim with nothing waiting never waits for anyone.

use crate::action::Action;
use crate::config::Config;
use crate::error::Error;
use crate::fastnetmon::notice::Notice;
use crate::log::Log;
use crate::prefixd::ban::{self, Delivered};
use crate::prefixd::client::Client;
use crate::prefixd::unban;
use crate::spool::lease;
use crate::spool::queue::{Entry, Name, Spool};
use crate::tally::{self, Fate};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A replayed unban withdraws only mitigations that were not updated after FastNetMon called
/// it; this much later still counts, for the clock difference between the two hosts.
pub const CLOCK_ALLOWANCE: Duration = Duration::from_secs(5);

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
        unban::unban(ctx.client, ctx.cfg, ctx.log, notice, lookups, not_after)
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

/// The spool, or why there is none (`PREFIXD_SPOOL=off`, a directory we cannot create).
pub type SpoolOrWhy = Result<Spool, String>;

pub fn open_spool(dir: Option<&Path>) -> SpoolOrWhy {
    let dir = dir.ok_or("the spool is off (PREFIXD_SPOOL=off)")?;
    Spool::open(dir).map_err(|e| format!("cannot use the spool {}: {e}", dir.display()))
}

/// The notice of this run while it is neither delivered nor kept, for the watchdog to keep if
/// it has to end the run. Whoever settles it holds the slot meanwhile, so the watchdog waits
/// for a keep in progress instead of writing the notice a second time.
#[derive(Default)]
pub struct Pending(Mutex<Option<Arc<Entry>>>);

impl Pending {
    pub fn with<R>(&self, f: impl FnOnce(&mut Option<Arc<Entry>>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The notice, if it is waiting and nobody holds the slot (a panic inside a keep holds
    /// it: then the keep was under way, and waiting for it would never end).
    pub fn try_take(&self) -> Option<Arc<Entry>> {
        match self.0.try_lock() {
            Ok(mut slot) => slot.take(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// Writes the notice to the spool, with this failure as its latest. Returns the cause (its
/// exit code tells why it was kept), or `Lost` when it could not be kept anywhere: then the
/// log line is the only copy left.
pub fn keep(log: &Log, spool: &SpoolOrWhy, entry: &Entry, why: Error) -> Error {
    let mut entry = entry.clone();
    entry.attempts = Some(entry.attempts.unwrap_or(0) + 1);
    entry.last_error = Some(log.redact(&why.to_string()));
    let failed = match spool {
        Ok(s) => match s.append(&entry) {
            Ok(kept) => {
                tally::count(entry.action, Fate::Kept);
                log.warn(&format!(
                    "{} {} kept in the spool as {} ({why})",
                    entry.action,
                    entry.victim_ip,
                    kept.path.display()
                ));
                if let Some(w) = kept.warning {
                    log.warn(&format!("{} {}: {w}", entry.action, entry.victim_ip));
                }
                return why;
            }
            Err(e) => format!("cannot write to the spool {}: {e}", s.dir().display()),
        },
        Err(none) => none.clone(),
    };
    log.error(&format!(
        "{} {} LOST unless replayed by hand: {failed}; the notice: {}",
        entry.action,
        entry.victim_ip,
        miniserde::json::to_string(&entry)
    ));
    Error::Lost(format!(
        "{} {} not delivered and not kept: {failed}",
        entry.action, entry.victim_ip
    ))
}

/// Keeps this run's notice unless the watchdog got to it first.
fn keep_pending(ctx: &Ctx, spool: &SpoolOrWhy, pending: &Pending, why: Error) -> Error {
    pending.with(|slot| match slot.take() {
        Some(entry) => keep(ctx.log, spool, &entry, why),
        None => why,
    })
}

/// A fresh notice from FastNetMon (`entry`: the same, as the spool keeps it). `pending` holds
/// it until it is delivered or kept.
pub fn handle(
    ctx: &Ctx,
    spool_or_why: &SpoolOrWhy,
    notice: &Notice,
    entry: &Arc<Entry>,
    pending: &Pending,
) -> Result<(), Error> {
    pending.with(|slot| *slot = Some(entry.clone()));
    // Debug builds only, for tests: a bug while the notice is on its way (lifecycle's keeper).
    if cfg!(debug_assertions) && std::env::var_os("PREFIXD_TEST_PANIC").is_some() {
        panic!("PREFIXD_TEST_PANIC is set");
    }
    let (what, ip) = (entry.action, &entry.victim_ip);
    let spool = spool_or_why.as_ref().ok();
    if let (Action::Unban, Some(s)) = (what, spool) {
        end_lease(ctx, s.dir(), ip);
    }
    // Runs for one victim take turns, so their order holds even while they retry.
    let turn = match spool.map(|s| s.lock_ip(ip, Some(ctx.deadline))) {
        Some(Ok(None)) => {
            let e = Error::NotDelivered(format!(
                "another run for {ip} kept its turn until our deadline"
            ));
            return Err(keep_pending(ctx, spool_or_why, pending, e));
        }
        Some(Err(e)) => {
            ctx.log.warn(&format!(
                "{what} {ip}: spool lock: {e}; sending without waiting for our turn"
            ));
            None
        }
        Some(Ok(turn)) => turn,
        None => None,
    };
    if let (Some(spool), Some(_)) = (spool, &turn) {
        let queue = spool.queue_of(ip).unwrap_or_default();
        if !queue.is_empty() {
            let queued = pending.with(|slot| {
                let r = spool.append(entry);
                if r.is_ok() {
                    *slot = None;
                }
                r
            });
            match queued {
                Ok(kept) => {
                    if let Some(w) = kept.warning {
                        ctx.log.warn(&format!("{what} {ip}: {w}"));
                    }
                    ctx.log.info(&format!(
                        "{what} {ip} queued behind {} earlier notice(s) of {ip}",
                        queue.len()
                    ));
                    let mut queue = queue;
                    queue.push(kept.path.clone());
                    let mut report = FlushReport::default();
                    let fate =
                        deliver_victim(ctx, spool, ip, &queue, Some(&kept.path), &mut report);
                    if let Err(e) = spool.sync() {
                        ctx.log.warn(&format!(
                            "{what} {ip}: spool {}: removals not synced: {e}",
                            spool.dir().display()
                        ));
                    }
                    if let Some(Err(e)) = &fate
                        && keepable(e)
                    {
                        tally::count(what, Fate::Kept);
                    }
                    return fate.unwrap_or(Ok(()));
                }
                // Delivery first, order second.
                Err(e) => ctx.log.warn(&format!(
                    "{what} {ip}: cannot queue in {}: {e}; sending at once",
                    spool.dir().display()
                )),
            }
        }
    }
    if let (Action::Unban, Some(s), Some(_)) = (what, spool, &turn) {
        // Under the lock now: a ban delivered while we waited for it may have written one.
        end_lease(ctx, s.dir(), ip);
    }
    let result = send(ctx, notice, false);
    match &result {
        Err(e) if keepable(e) => return Err(keep_pending(ctx, spool_or_why, pending, e.clone())),
        Ok(d) => {
            settle(ctx, spool, d, ip);
            tally::count(what, fate_of(d));
        }
        Err(Error::Refused(_)) => tally::count(what, Fate::Refused),
        Err(_) => {}
    }
    pending.with(|slot| *slot = None);
    result.map(|_| ())
}

/// How the metrics count a delivery: a ban prefixd held is its own result.
fn fate_of(d: &Delivered) -> Fate {
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
fn settle(ctx: &Ctx, spool: Option<&Spool>, d: &Delivered, ip: &str) {
    let Some(spool) = spool else {
        return;
    };
    match d {
        Delivered::Ban(l) if !ctx.cfg.renew_max.is_zero() => {
            // No fsync on a ban's path (README "How it works"); the flush's renewals are.
            if let Err(e) = lease::write(spool, l, false) {
                ctx.log.warn(&format!(
                    "ban {ip}: delivered, but its lease could not be written ({e}): not renewed"
                ));
            }
        }
        // An unban's lease was ended before it was sent, under the same lock.
        Delivered::Ban(_) | Delivered::Unban => {}
    }
}

/// What a flush did, in notices.
#[derive(Default, Debug)]
pub struct FlushReport {
    /// Another run holds the flush lock.
    pub busy: bool,
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
    /// What became of the held victims' renewals.
    pub renewed: crate::spool::renew::Renewed,
    /// Victims whose ban this flush delivered: their mitigations are fresh, so the renewal
    /// pass does not look at them (the next flush does).
    pub banned: std::collections::BTreeSet<String>,
}

/// Delivers one victim's spooled notices in order, holding its lock. A notice that cannot go
/// stays (with its attempt counted) and so do the ones behind it. Returns the fate of `own`,
/// the notice of this run, if it is among them.
fn deliver_victim(
    ctx: &Ctx,
    spool: &Spool,
    ip: &str,
    queue: &[PathBuf],
    own: Option<&Path>,
    report: &mut FlushReport,
) -> Option<Result<(), Error>> {
    let last_unban = queue
        .iter()
        .rposition(|p| Name::of(p).is_some_and(|n| n.action == Action::Unban));
    let mut fate = None;
    for (i, path) in queue.iter().enumerate() {
        let is_own = own == Some(path.as_path());
        let stop = |e: Error, report: &mut FlushReport| {
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

/// Delivers the spool within the deadline, victim by victim (each in order, under its lock),
/// going past a victim whose notice cannot go. `wait`: wait for the flush lock (until the
/// deadline) rather than leave the work to the run that holds it.
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
    let mut report = FlushReport::default();
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
    // The held victims, after the notices (an unban among them ends its victim's lease).
    report.renewed = crate::spool::renew::renew_all(ctx, spool, &report.banned);
    Ok(report)
}
