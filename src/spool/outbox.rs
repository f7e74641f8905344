//! Deliver now, or keep for later — in order per victim. A notice that cannot reach prefixd
//! goes to the spool. Runs for one victim IP take turns (the spool's per-victim lock); a run
//! whose victim has notices waiting queues behind them and delivers them first, so a stale
//! unban never withdraws a newer ban. A victim with nothing waiting never waits for anyone.

use crate::action::Action;
use crate::error::Error;
use crate::fastnetmon::notice::Notice;
use crate::log::Log;
use crate::spool::queue::{Entry, Spool};
use crate::spool::send::{Ctx, end_lease, fate_of, keepable, send, settle};
use crate::spool::waiting::{self, deliver_victim};
use crate::tally::{self, Fate};
use std::path::Path;
use std::sync::{Arc, Mutex};

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
    // FastNetMon's arguments again: what an operator runs to send it (a ban's details are in
    // the notice below; the ban goes without them).
    let stdin = match entry.action {
        Action::Ban => " </dev/null",
        _ => "",
    };
    log.shout(
        crate::log::Level::Error,
        &format!(
            "{} {} LOST unless replayed by hand: {failed}; replay: prefixd-fastnetmon {} {} {} {}{stdin}; the notice: {}",
            entry.action,
            entry.victim_ip,
            entry.victim_ip,
            shell_word(&entry.direction),
            shell_word(entry.pps.as_deref().unwrap_or("0")),
            entry.action,
            miniserde::json::to_string(&entry)
        ),
    );
    Error::Lost(format!(
        "{} {} not delivered and not kept: {failed}",
        entry.action, entry.victim_ip
    ))
}

/// A word a shell reads back as it is: single-quoted unless it is plain.
fn shell_word(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._:-/".contains(c);
    match !w.is_empty() && w.chars().all(plain) {
        true => w.to_string(),
        false => format!("'{}'", w.replace('\'', r"'\''")),
    }
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
                    let mut report = waiting::Report::default();
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
