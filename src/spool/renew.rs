//! Renewals: `--flush` keeps each held victim's mitigation alive for exactly as long as
//! FastNetMon's ban. prefixd ends a mitigation at its playbook's TTL (120 s by default) unless
//! another ban for the same scope extends it (shared/prefixd-0.19.md §5); FastNetMon calls us
//! once per ban and once per unban, `ban_time` (1900 s) or more apart. So a held victim whose
//! mitigation ends within PREFIXD_RENEW_BEFORE gets its ban sent again — never after the
//! unban, never against a person's withdrawal, never past PREFIXD_RENEW_MAX.

use crate::error::Error;
use crate::fastnetmon::ports;
use crate::prefixd::ban::{self, Lease, Posted};
use crate::prefixd::unban;
use crate::prefixd::wire::Mitigation;
use crate::spool::lease;
use crate::spool::queue::Spool;
use crate::spool::send::Ctx;
use crate::tally::{self, Renewal};
use crate::time;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

/// Renewals in flight at once: 1,000 held victims at 100 ms a request (a look and a ban
/// each) take about 13 s, inside one 60-s timer period and the default deadline.
const WORKERS: usize = 16;

/// What one flush did with the held victims.
#[derive(Debug, Default)]
pub struct Renewed {
    pub held: usize,
    /// Bans sent again (extended, re-created, or still held by prefixd).
    pub sent: usize,
    /// Leases ended (PREFIXD_RENEW_MAX, a person's withdrawal, a refusal for good).
    pub ended: usize,
    /// Could not be looked at or renewed this time (prefixd unreachable, the deadline).
    pub failed: usize,
    /// A run was delivering for the victim, or its notices wait in the spool.
    pub skipped: usize,
}

/// Renews what is due, `WORKERS` victims at a time, most urgent first, within the deadline;
/// `fresh`: victims this flush has just banned, left for the next one.
pub fn renew_all(ctx: &Ctx, spool: &Spool, fresh: &BTreeSet<String>) -> Renewed {
    let dir = spool.dir();
    let mut leases = match lease::all(dir) {
        Ok(l) => l,
        Err(e) => {
            ctx.log.error(&format!("leases in {}: {e}", dir.display()));
            return Renewed::default();
        }
    };
    let mut report = Renewed {
        held: leases.len(),
        ..Renewed::default()
    };
    leases.retain(|l| match l {
        Ok(_) => true,
        Err(path) => {
            match spool.quarantine(path) {
                Ok(to) => ctx.log.error(&format!(
                    "{} is not a lease; set aside as {}",
                    path.display(),
                    to.display()
                )),
                Err(e) => ctx
                    .log
                    .error(&format!("{} is not a lease ({e})", path.display())),
            }
            report.failed += 1;
            false
        }
    });
    if ctx.cfg.renew_max.is_zero() {
        for l in leases.iter().flatten() {
            let _ = lease::remove(dir, &l.victim_ip);
        }
        return report;
    }
    // Unknown expiry first (a look is due), then the soonest to end, of all the mitigations
    // each lease follows.
    let mut ips: Vec<(u64, String)> = leases
        .into_iter()
        .flatten()
        .filter(|l| !fresh.contains(&l.victim_ip))
        .map(|l| {
            let earlier = l
                .earlier
                .iter()
                .flatten()
                .map(|e| e.expires_ms.unwrap_or(0));
            let soonest = earlier.fold(l.expires_ms.unwrap_or(0), u64::min);
            (soonest, l.victim_ip)
        })
        .collect();
    ips.sort();
    if ips.is_empty() {
        return report;
    }
    // The victims with notices waiting, from one listing: a lookup per victim would read the
    // whole spool a thousand times. (A notice kept after this is kept under the victim's lock,
    // which renew_one takes; and an unban ends the lease before it is kept.)
    let waiting: BTreeSet<String> = spool
        .list()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| Some(crate::spool::queue::Name::of(p)?.victim_ip))
        .collect();
    let next = AtomicUsize::new(0);
    let report = Mutex::new(report);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(ips.len()) {
            scope.spawn(|| {
                // A Spool of its own: one holds a counter that is not shared between threads.
                let Ok(spool) = Spool::open(dir) else {
                    return;
                };
                // Bounded: each turn takes one victim.
                for _ in 0..ips.len() {
                    let Some((_, ip)) = ips.get(next.fetch_add(1, Ordering::SeqCst)) else {
                        break;
                    };
                    let done = if ctx.client.remaining().is_zero() {
                        Done::Failed
                    } else {
                        renew_one(ctx, &spool, ip, waiting.contains(ip))
                    };
                    let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                    match done {
                        Done::NotDue => {}
                        Done::Sent => r.sent += 1,
                        Done::Ended => r.ended += 1,
                        Done::Failed => r.failed += 1,
                        Done::Skipped => r.skipped += 1,
                    }
                }
            });
        }
    });
    // The leases written by the workers, durable together.
    if let Err(e) = spool.sync() {
        ctx.log
            .warn(&format!("spool {}: leases not synced: {e}", dir.display()));
    }
    report.into_inner().unwrap_or_else(|p| p.into_inner())
}

enum Done {
    NotDue,
    Sent,
    Ended,
    Failed,
    Skipped,
}

/// One held victim, under its lock: each mitigation its lease follows looked at, and renewed
/// if due. `queued`: notices of its own wait in the spool.
fn renew_one(ctx: &Ctx, spool: &Spool, ip: &str, queued: bool) -> Done {
    let dir = spool.dir();
    let Ok(Some(_turn)) = spool.lock_ip(ip, None) else {
        ctx.log
            .debug(&format!("{ip}: a run is delivering for it; renewed later"));
        return Done::Skipped;
    };
    // In the per-victim order: after the notices that wait for it (an unban among them).
    if queued {
        return Done::Skipped;
    }
    // Read again under the lock: an unban may have ended it since the list.
    let mut l = match lease::read(dir, ip) {
        Ok(Some(l)) => l,
        Ok(None) => return Done::NotDue,
        Err(e) => {
            ctx.log.error(&format!("lease of {ip}: {e}"));
            return Done::Failed;
        }
    };
    let now = time::now_ms();
    let mut scopes = l.earlier.take().unwrap_or_default();
    scopes.insert(0, l);
    scopes.truncate(lease::MAX_SCOPES);
    let several = scopes.len() > 1;
    let (mut kept, mut steps) = (Vec::new(), Vec::new());
    for mut l in scopes {
        // With several, each line says which of the victim's mitigations it is about.
        let label = if several {
            format!(
                "{ip} ({} top_dst_ports={})",
                l.vector,
                ports::list(l.top_dst_ports.as_deref().unwrap_or_default())
            )
        } else {
            ip.to_string()
        };
        let step = renew_scope(ctx, &label, &mut l, now);
        if step != Step::Ended {
            kept.push(l);
        }
        steps.push(step);
    }
    let sent = steps.contains(&Step::Sent);
    if kept.is_empty() {
        end(ctx, dir, ip);
        return Done::Ended;
    }
    if sent || steps.contains(&Step::Noted) || steps.contains(&Step::Ended) {
        let mut l = kept.remove(0);
        l.earlier = (!kept.is_empty()).then_some(kept);
        // A note of when to look again needs no fsync; a renewal does.
        keep(ctx, spool, &l, sent || steps.contains(&Step::Ended));
    }
    if sent {
        Done::Sent
    } else if steps.contains(&Step::Failed) {
        Done::Failed
    } else if steps.contains(&Step::Ended) {
        Done::Ended
    } else {
        Done::NotDue
    }
}

/// What became of one mitigation a lease follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    NotDue,
    /// Not due; when it expires was noted.
    Noted,
    /// Its ban was sent again.
    Sent,
    /// No longer followed (PREFIXD_RENEW_MAX, a person's withdrawal, our own unban, a refusal
    /// for good).
    Ended,
    Failed,
}

/// One mitigation of the victim `label` names: look, and renew if due.
fn renew_scope(ctx: &Ctx, label: &str, l: &mut Lease, now: u64) -> Step {
    let age_s = now.saturating_sub(l.banned_ms) / 1000;
    if age_s > ctx.cfg.renew_max.as_secs() {
        ctx.log.warn(&format!(
            "lease of {label} ended: banned {} ({age_s}s ago), longer than PREFIXD_RENEW_MAX ({}s) without FastNetMon's unban; its mitigation ends at prefixd's TTL",
            time::rfc3339(UNIX_EPOCH + std::time::Duration::from_millis(l.banned_ms)),
            ctx.cfg.renew_max.as_secs()
        ));
        tally::renewal(Renewal::Ended);
        return Step::Ended;
    }
    let Some(id) = l.mitigation_id.clone() else {
        // Held by prefixd, waiting for quota, or its mitigation unknown: the ban again.
        let why = match &l.waiting {
            Some(w) if l.quota => format!("waiting for prefixd's quota ({w})"),
            Some(w) => format!("held by prefixd ({w})"),
            None => "no mitigation known for it".to_string(),
        };
        return send(ctx, label, l, &why, now);
    };
    let renew_before_ms = u64::try_from(ctx.cfg.renew_before.as_millis()).unwrap_or(u64::MAX);
    if l.expires_ms
        .is_some_and(|e| e.saturating_sub(now) > renew_before_ms)
    {
        return Step::NotDue;
    }
    let m: Mitigation = match unban::mitigation(ctx.client, ctx.log, &id) {
        Ok(Some(m)) => m,
        Ok(None) => {
            ctx.log.warn(&format!(
                "mitigation {id} of {label} is unknown to prefixd; FastNetMon still bans it: banned again"
            ));
            return send(ctx, label, l, "its mitigation is unknown to prefixd", now);
        }
        Err(e) => {
            ctx.log.warn(&format!(
                "lease of {label}: mitigation {id}: {e}; looked at again next flush"
            ));
            tally::renewal(Renewal::Failed);
            return Step::Failed;
        }
    };
    let at = |t: &Option<String>| t.as_deref().and_then(time::parse_rfc3339_ms);
    match m.status.as_deref().unwrap_or("") {
        "pending" | "active" | "escalated" => {
            let expires = at(&m.expires_at).and_then(|e| u64::try_from(e).ok());
            if expires.is_some_and(|e| e.saturating_sub(now) > renew_before_ms) {
                l.expires_ms = expires;
                return Step::Noted;
            }
            send(
                ctx,
                label,
                l,
                "its mitigation ends within PREFIXD_RENEW_BEFORE",
                now,
            )
        }
        "withdrawn" => {
            let reason = m.reason.as_deref().unwrap_or("");
            match unban::marker_host(reason) {
                Some(host) if host == unban::hostname() => {
                    ctx.log.info(&format!(
                        "lease of {label} ended: mitigation {id} was withdrawn by this host's unban"
                    ));
                    Step::Ended
                }
                Some(host) => {
                    ctx.log.info(&format!(
                        "mitigation {id} of {label} was withdrawn by prefixd-fastnetmon on {host} (its FastNetMon saw the attack end); ours still bans: banned again"
                    ));
                    send(
                        ctx,
                        label,
                        l,
                        &format!("withdrawn by prefixd-fastnetmon on {host}"),
                        now,
                    )
                }
                None => {
                    ctx.log.warn(&format!(
                        "lease of {label} ended: mitigation {id} was withdrawn by hand ({}); not brought back",
                        crate::pretty::printable(reason, 200)
                    ));
                    tally::renewal(Renewal::Ended);
                    Step::Ended
                }
            }
        }
        status => {
            // expired (the timer was late, prefixd was down), rejected, or anything newer.
            let since = at(&m.withdrawn_at).or(at(&m.expires_at));
            let uncovered = since.map_or_else(
                || "for an unknown time".to_string(),
                |t| {
                    format!(
                        "for {}s",
                        now.saturating_sub(u64::try_from(t).unwrap_or(0)) / 1000
                    )
                },
            );
            ctx.log.warn(&format!(
                "mitigation {id} of {label} is {status} while FastNetMon still bans it: banned again; the victim was uncovered {uncovered}"
            ));
            send(ctx, label, l, &format!("its mitigation was {status}"), now)
        }
    }
}

/// Sends the ban again (its own ports, so its own scope) and records what prefixd did.
fn send(ctx: &Ctx, label: &str, l: &mut Lease, why: &str, now: u64) -> Step {
    let before = l.mitigation_id.clone();
    match ban::renew(ctx.client, ctx.log, l, why) {
        Ok(posted) => {
            tally::renewal(match &posted {
                Posted::Mitigated(id) if before.as_ref() == Some(id) => Renewal::Extended,
                Posted::Mitigated(_) => Renewal::Recreated,
                Posted::Held(_) | Posted::Quota(_) => Renewal::Held,
                Posted::Taken => Renewal::Extended,
            });
            let taken = matches!(posted, Posted::Taken);
            let mut next = posted.lease(Lease {
                mitigation_id: None,
                waiting: None,
                quota: false,
                expires_ms: None,
                ..l.clone()
            });
            if taken {
                next.mitigation_id = before;
            }
            next.renewed_ms = Some(now);
            next.renewals = l.renewals.saturating_add(1);
            *l = next;
            Step::Sent
        }
        Err(e @ Error::Refused(_)) => {
            ctx.log.warn(&format!(
                "lease of {label} ended: prefixd refused its renewal for good ({e})"
            ));
            tally::renewal(Renewal::Ended);
            Step::Ended
        }
        Err(e) => {
            ctx.log.warn(&format!(
                "renewal of {label} not delivered ({e}); tried again next flush"
            ));
            tally::renewal(Renewal::Failed);
            Step::Failed
        }
    }
}

fn keep(ctx: &Ctx, spool: &Spool, l: &Lease, durable: bool) {
    if let Err(e) = lease::write(spool, l, durable) {
        ctx.log
            .warn(&format!("lease of {}: not written ({e})", l.victim_ip));
    }
}

fn end(ctx: &Ctx, dir: &Path, ip: &str) {
    if let Err(e) = lease::remove(dir, ip) {
        ctx.log.error(&format!("lease of {ip}: not removed ({e})"));
    }
}
