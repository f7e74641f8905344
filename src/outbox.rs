//! Deliver now, or keep for later — in order. A notice that cannot reach prefixd goes to the
//! spool; while the spool holds anything, new notices join its end and the spool is delivered
//! oldest first under one lock, so a stale unban never withdraws a newer ban.

use crate::api::Client;
use crate::config::Config;
use crate::deliver;
use crate::error::Error;
use crate::log::Log;
use crate::notice::{self, Action};
use crate::spool::{Entry, Spool};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
pub fn send(ctx: &Ctx, entry: &Entry, replay: bool) -> Result<(), Error> {
    let args = crate::cli::Args {
        ip: entry.victim_ip.clone(),
        direction: Some(entry.direction.clone()),
        pps: entry.pps.clone(),
        action: Some(entry.action.clone()),
    };
    // Warnings were logged when FastNetMon called; a spooled notice was valid then.
    let (n, _) = notice::from_args(&args).map_err(Error::Usage)?;
    match n.action {
        Action::Ban => deliver::ban(ctx.client, &ctx.cfg.rules, ctx.log, &n, entry, replay),
        // A replayed unban looks once: the ban it might wait for is long delivered or dropped.
        Action::Unban => deliver::unban(
            ctx.client,
            ctx.cfg,
            ctx.log,
            &n,
            if replay {
                1
            } else {
                ctx.cfg.unban_query_retries
            },
        ),
        Action::AttackDetails => Ok(()),
    }
}

/// Writes the notice to the spool; if that fails, the log line is the only copy left.
/// The spool, or why there is none (`PREFIXD_SPOOL=off`, a directory we cannot create).
pub type SpoolOrWhy = Result<Spool, String>;

pub fn open_spool(dir: Option<&std::path::Path>) -> SpoolOrWhy {
    let dir = dir.ok_or("the spool is off (PREFIXD_SPOOL=off)")?;
    Spool::open(dir).map_err(|e| format!("cannot use the spool {}: {e}", dir.display()))
}

pub fn keep(log: &Log, spool: &SpoolOrWhy, entry: &Entry, why: &Error) -> Result<(), Error> {
    let failed = match spool {
        Ok(s) => match s.append(entry) {
            Ok(p) => {
                log.warn(&format!(
                    "{} {} kept in the spool as {} ({why})",
                    entry.action,
                    entry.victim_ip,
                    p.display()
                ));
                return Ok(());
            }
            Err(e) => format!("cannot write to the spool {}: {e}", s.dir().display()),
        },
        Err(none) => none.clone(),
    };
    log.error(&format!(
        "{} {} LOST unless replayed by hand: {failed}; the notice: {}",
        entry.action,
        entry.victim_ip,
        miniserde::json::to_string(entry)
    ));
    Err(Error::NotDelivered(failed))
}

/// A fresh notice from FastNetMon.
pub fn handle(ctx: &Ctx, spool_or_why: &SpoolOrWhy, entry: &Entry) -> Result<(), Error> {
    let spool = spool_or_why.as_ref().ok();
    // Runs for one IP take turns, so their order holds even while they retry.
    let _turn = match spool.map(|s| s.lock_ip(&entry.victim_ip, ctx.deadline)) {
        Some(Ok(None)) => {
            let e = Error::NotDelivered(
                "another run for this IP kept its turn until our deadline".into(),
            );
            keep(ctx.log, spool_or_why, entry, &e)?;
            return Err(e);
        }
        Some(Err(e)) => {
            ctx.log.warn(&format!(
                "spool lock: {e}; sending without waiting for our turn"
            ));
            None
        }
        Some(Ok(turn)) => turn,
        None => None,
    };
    if let Some(spool) = spool {
        let queued = spool.list().map(|l| l.len()).unwrap_or(0);
        if queued > 0 {
            match spool.append(entry) {
                Ok(path) => {
                    ctx.log.info(&format!(
                        "{} {} queued behind {queued} spooled notice(s)",
                        entry.action, entry.victim_ip
                    ));
                    return flush(ctx, spool, true)?.fate(ctx.log, &path);
                }
                // Delivery first, order second.
                Err(e) => ctx.log.warn(&format!(
                    "cannot queue in {}: {e}; sending at once",
                    spool.dir().display()
                )),
            }
        }
    }
    match send(ctx, entry, false) {
        Ok(()) => {
            // prefixd answers: a good moment for what others left in the spool.
            if let Some(spool) = spool.filter(|s| !s.is_empty().unwrap_or(true)) {
                let _ = flush(ctx, spool, false);
            }
            Ok(())
        }
        Err(e) if keepable(&e) => {
            keep(ctx.log, spool_or_why, entry, &e)?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

#[derive(Default)]
pub struct Report {
    /// Another run holds the flush lock.
    pub busy: bool,
    /// Delivered, or dropped as stale (superseded by a later unban, or too old).
    pub done: Vec<PathBuf>,
    pub dropped: Vec<(PathBuf, Error)>,
    /// Why delivery stopped with notices left (prefixd down, token refused, deadline).
    pub stopped: Option<Error>,
    pub left: usize,
}

impl Report {
    /// What became of the notice at `path` that this run queued.
    pub fn fate(&self, log: &Log, path: &PathBuf) -> Result<(), Error> {
        if self.done.contains(path) {
            return Ok(());
        }
        if let Some((_, e)) = self.dropped.iter().find(|(p, _)| p == path) {
            return Err(e.clone());
        }
        if path.exists() {
            return Err(self
                .stopped
                .clone()
                .unwrap_or_else(|| Error::NotDelivered("kept in the spool".into())));
        }
        log.info(&format!(
            "{} was delivered by a concurrent flush (see its log line)",
            path.display()
        ));
        Ok(())
    }
}

/// Delivers the spool, oldest first, within the deadline. `wait`: wait for the flush lock
/// (until the deadline) rather than leave the work to the run that holds it.
pub fn flush(ctx: &Ctx, spool: &Spool, wait: bool) -> Result<Report, Error> {
    let io = |e: std::io::Error| Error::Internal(format!("spool {}: {e}", spool.dir().display()));
    let Some(_lock) = spool.lock_flush(wait.then_some(ctx.deadline)).map_err(io)? else {
        ctx.log.debug("another run is delivering the spool");
        return Ok(Report {
            busy: true,
            ..Report::default()
        });
    };
    spool.sweep_tmp(Duration::from_secs(3600));
    let paths = spool.list().map_err(io)?;
    let mut report = Report::default();

    // An unban drops the spooled bans for its IP that came before it; the names say which
    // notice is what, so the plan needs no notice in memory.
    let mut last_unban: HashMap<&str, usize> = HashMap::new();
    for (i, p) in paths.iter().enumerate() {
        if let Some(("unban", ip)) = Spool::action_and_ip(p) {
            last_unban.insert(ip, i);
        }
    }

    let max_age = ctx.cfg.spool_max_age;
    let total = paths.len();
    let mut removed = 0usize;
    for (i, path) in paths.iter().enumerate() {
        if removed >= 256 {
            spool.sync().map_err(io)?;
            removed = 0;
        }
        if ctx.client.remaining().is_zero() {
            report.stopped = Some(Error::NotDelivered(
                "deadline reached while delivering the spool".into(),
            ));
            report.left = total - i;
            break;
        }
        let entry = match Spool::read(path) {
            Ok(e) => e,
            Err(why) => {
                let to = spool.quarantine(path).map_err(io)?;
                ctx.log.error(&format!(
                    "spooled file {} set aside as {}: {why}",
                    path.display(),
                    to.display()
                ));
                continue;
            }
        };
        if entry.action == "ban" {
            let age = deliver::received(&entry).elapsed().unwrap_or_default();
            let superseded = last_unban
                .get(entry.victim_ip.as_str())
                .is_some_and(|&u| u > i);
            if superseded || age > max_age {
                let why = if superseded {
                    "an unban for it came later".to_string()
                } else {
                    format!("older than PREFIXD_SPOOL_MAX_AGE ({}s)", max_age.as_secs())
                };
                ctx.log.warn(&format!(
                    "dropped spooled ban {} received {}: {why}",
                    entry.victim_ip,
                    crate::time::rfc3339(deliver::received(&entry))
                ));
                spool.remove(path).map_err(io)?;
                removed += 1;
                report.done.push(path.clone());
                continue;
            }
        }
        match send(ctx, &entry, true) {
            Ok(()) => {
                spool.remove(path).map_err(io)?;
                removed += 1;
                report.done.push(path.clone());
            }
            Err(e) if keepable(&e) => {
                report.left = total - i;
                ctx.log.warn(&format!(
                    "spool delivery stopped, {} notice(s) kept: {e}",
                    report.left
                ));
                report.stopped = Some(e);
                break;
            }
            Err(e) => {
                ctx.log.error(&format!(
                    "dropped spooled {} {}: {e}",
                    entry.action, entry.victim_ip
                ));
                spool.remove(path).map_err(io)?;
                removed += 1;
                report.dropped.push((path.clone(), e));
            }
        }
    }
    spool.sync().map_err(io)?;
    Ok(report)
}
