//! FastNetMon forgets its bans when it restarts (it keeps them in memory) and never sends their
//! unbans (its issues #326, #945): a lease would then keep renewing a mitigation for
//! PREFIXD_RENEW_MAX after the attack ended. So `--flush`, when it holds victims, asks
//! FastNetMon for its ban list first; a held victim the list has not shown for
//! FASTNETMON_BANLIST_GRACE is treated as FastNetMon's unban: its lease ends and every
//! mitigation of the victim is withdrawn, the reason saying FastNetMon no longer bans it.
//!
//! Only a whole answer decides. FastNetMon down, its API off, an answer that is not a list, a
//! non-zero exit or a timeout each mean "FastNetMon did not say": the leases go on (a
//! FastNetMon that is down unbans no one — the attack may still be on). The command runs before
//! any victim's lock is taken; a victim is then handled under its lock, after its waiting
//! notices (as renewals are), and a victim this flush has just banned is left alone.

use crate::action::Action;
use crate::fastnetmon::banlist::{self, BanList};
use crate::fastnetmon::notice::Notice;
use crate::prefixd::ban::Lease;
use crate::prefixd::unban;
use crate::spool::lease;
use crate::spool::queue::{Name, Spool};
use crate::spool::send::{Ctx, keepable};
use crate::tally::{self, Reconcile};
use crate::time;
use miniserde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// What one flush learnt from FastNetMon and did about it.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// FastNetMon was asked (there were held victims and a command).
    pub asked: bool,
    /// Why FastNetMon did not say, when it did not.
    pub unanswered: Option<String>,
    /// Held victims its list did not show.
    pub unlisted: usize,
    /// Of those, past the grace period: withdrawn, or their unban kept in the spool.
    pub withdrawn: usize,
    pub kept: usize,
}

/// The last look at FastNetMon's ban list, for `--status`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LastLook {
    /// Milliseconds since the epoch.
    pub looked_ms: u64,
    /// Entries in the list; None: FastNetMon did not say (then `why`).
    pub listed: Option<usize>,
    pub why: Option<String>,
}

const LAST_LOOK: &str = ".fastnetmon-banlist";

/// Where the last look is kept.
pub fn last_look_path(dir: &Path) -> PathBuf {
    dir.join(LAST_LOOK)
}

/// The last look, if a flush has made one.
pub fn last_look(dir: &Path) -> Option<LastLook> {
    let text = std::fs::read_to_string(last_look_path(dir)).ok()?;
    miniserde::json::from_str(&text).ok()
}

/// Asks FastNetMon and acts on its answer; `fresh`: victims this flush has just banned.
pub fn reconcile(ctx: &Ctx, spool: &Spool, fresh: &BTreeSet<String>) -> Reconciled {
    let mut done = Reconciled::default();
    let Some(words) = &ctx.cfg.banlist else {
        if ctx.cfg.banlist_given {
            return done; // FASTNETMON_BANLIST=off
        }
        ctx.log.debug(&format!(
            "FastNetMon's ban list not asked: {} is not on PATH (FASTNETMON_BANLIST)",
            banlist::DEFAULT_COMMAND
        ));
        return done;
    };
    let dir = spool.dir();
    // By name first: after a flush that delivered thousands of bans, none is read for nothing.
    let held: Vec<String> = lease::victims(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|ip| !fresh.contains(ip))
        .collect();
    if held.is_empty() {
        return done;
    }
    let limit = banlist::MAX_WAIT.min(ctx.client.remaining());
    if limit.is_zero() {
        return done;
    }
    done.asked = true;
    let now = time::now_ms();
    let list = banlist::read(words, limit);
    let look = LastLook {
        looked_ms: now,
        listed: list.as_ref().ok().map(|l| l.prefixes.len()),
        why: list.as_ref().err().cloned(),
    };
    if let Err(e) = spool.replace_text(
        &last_look_path(dir),
        &miniserde::json::to_string(&look),
        false,
    ) {
        ctx.log.debug(&format!("{LAST_LOOK} not written: {e}"));
    }
    let list = match list {
        Ok(list) => list,
        Err(why) => {
            // Once per flush, not per victim.
            ctx.log.warn(&format!(
                "FastNetMon's ban list not read ({why}): {} held victim(s) stay held; a FastNetMon that is down unbans no one",
                held.len()
            ));
            tally::reconcile(Reconcile::Unanswered);
            done.unanswered = Some(why);
            return done;
        }
    };
    tally::reconcile(Reconcile::Read);
    let waiting: BTreeSet<String> = spool
        .list()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| Some(Name::of(p)?.victim_ip))
        .collect();
    for ip in &held {
        let Ok(Some(l)) = lease::read(dir, ip) else {
            continue; // ended since, or not a lease (renew sets it aside)
        };
        let listed = ip.parse().is_ok_and(|a| list.covers(a));
        if listed && l.unlisted_ms.is_none() {
            continue; // listed, as at the last look
        }
        if !listed {
            done.unlisted += 1;
        }
        if ctx.client.remaining().is_zero() {
            break;
        }
        match one(ctx, spool, ip, &list, waiting.contains(ip), now) {
            Some(Fate::Withdrawn) => done.withdrawn += 1,
            Some(Fate::Kept) => done.kept += 1,
            None => {}
        }
    }
    done
}

enum Fate {
    Withdrawn,
    Kept,
}

/// One held victim, under its lock: notes that FastNetMon lists it again, or since when it does
/// not; past the grace period, its unban.
fn one(ctx: &Ctx, spool: &Spool, ip: &str, list: &BanList, queued: bool, now: u64) -> Option<Fate> {
    let dir = spool.dir();
    let Ok(Some(_turn)) = spool.lock_ip(ip, None) else {
        return None; // a run is delivering for it: the next flush looks again
    };
    // Its own notices go first (an unban among them ends the lease; a ban renews it).
    if queued {
        return None;
    }
    // Read again under the lock: a ban may have replaced it since the list.
    let Ok(Some(mut l)) = lease::read(dir, ip) else {
        return None;
    };
    let listed = ip.parse().is_ok_and(|a| list.covers(a));
    if listed {
        if l.unlisted_ms.take().is_some() {
            ctx.log
                .info(&format!("{ip}: in FastNetMon's ban list again: still held"));
            keep_lease(ctx, spool, &l);
        }
        return None;
    }
    let grace = u64::try_from(ctx.cfg.banlist_grace.as_millis()).unwrap_or(u64::MAX);
    let since = match l.unlisted_ms {
        Some(since) => since,
        None => {
            ctx.log.info(&format!(
                "{ip}: not in FastNetMon's ban list (restarted, or the ban was lost); its unban in {}s unless FastNetMon bans it again",
                ctx.cfg.banlist_grace.as_secs()
            ));
            l.unlisted_ms = Some(now);
            keep_lease(ctx, spool, &l);
            now
        }
    };
    // Absent for the whole grace period, and banned longer ago than that (a ban being
    // recorded must not race the list).
    if now.saturating_sub(since) < grace || now.saturating_sub(l.banned_ms) < grace {
        return None;
    }
    Some(withdraw(ctx, spool, &l, since, now))
}

/// FastNetMon's unban, on its behalf: the lease ends first (as an unban's does), then every
/// mitigation of the victim is withdrawn; an unban prefixd cannot take now is kept in the
/// spool, behind nothing (the victim's queue was empty), and sent by a later flush.
fn withdraw(ctx: &Ctx, spool: &Spool, l: &Lease, since: u64, now: u64) -> Fate {
    let ip = &l.victim_ip;
    let unlisted = Duration::from_millis(now.saturating_sub(since));
    let since_text = time::rfc3339(UNIX_EPOCH + Duration::from_millis(since));
    ctx.log.warn(&format!(
        "{ip}: FastNetMon no longer bans it (not in its ban list since {since_text}, {}s): treated as its unban",
        unlisted.as_secs()
    ));
    if let Err(e) = lease::remove(spool.dir(), ip) {
        ctx.log.error(&format!("lease of {ip}: not removed ({e})"));
    }
    let notice = match Notice::parse(
        ip,
        Some(&l.direction),
        Some("0"),
        Some(Action::Unban.as_str()),
    ) {
        Ok((n, _)) => Notice {
            received_ms: now,
            ..n
        },
        Err(e) => {
            ctx.log.error(&format!("lease of {ip}: {e}; not withdrawn"));
            return Fate::Kept;
        }
    };
    let why = format!(
        "FastNetMon no longer bans {ip} (not in its ban list since {since_text}: it restarted or lost the ban)"
    );
    match unban::unban(ctx.client, ctx.cfg, ctx.log, (&notice, &why), 1, None) {
        Ok(()) => {
            tally::reconcile(Reconcile::Withdrawn);
            Fate::Withdrawn
        }
        Err(e) => {
            let mut entry = notice.entry();
            entry.attempts = Some(1);
            entry.last_error = Some(ctx.log.redact(&e.to_string()));
            if keepable(&e) {
                match spool.append(&entry) {
                    Ok(kept) => ctx.log.warn(&format!(
                        "unban {ip} kept in the spool as {} ({e})",
                        kept.path.display()
                    )),
                    Err(w) => ctx.log.error(&format!(
                        "unban {ip} not withdrawn ({e}) and not kept ({w}): its mitigation ends at prefixd's TTL"
                    )),
                }
            } else {
                ctx.log.error(&format!("unban {ip}: {e}"));
            }
            tally::reconcile(Reconcile::Kept);
            Fate::Kept
        }
    }
}

fn keep_lease(ctx: &Ctx, spool: &Spool, l: &Lease) {
    if let Err(e) = lease::write(spool, l, true) {
        ctx.log
            .warn(&format!("lease of {}: not written ({e})", l.victim_ip));
    }
}
