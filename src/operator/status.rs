//! `--status`: what the spool holds and why, oldest first, for an operator or a monitoring
//! check. Read-only: it reads the spool's files and takes no lock a delivering run waits on.

use crate::config::Config;
use crate::operator::metrics;
use crate::spool::queue::{Name, Spool};
use crate::spool::reconcile;
use std::time::Duration;

/// The report, and whether anything waits.
pub fn report(cfg: &Config, verbose: bool) -> (String, bool) {
    let Some(dir) = cfg.spool.as_deref() else {
        return (
            "the spool is off (PREFIXD_SPOOL=off): nothing is kept\n".into(),
            false,
        );
    };
    let now_ms = crate::time::now_ms();
    let mut out = String::new();
    let mut oldest = None;
    // A spool never written to does not exist yet: nothing waits.
    let paths = if dir.exists() {
        match Spool::open(dir).and_then(|s| s.list()) {
            Ok(p) => p,
            Err(e) => {
                return (
                    format!("cannot read the spool {}: {e}\n", dir.display()),
                    false,
                );
            }
        }
    } else {
        Vec::new()
    };
    for path in &paths {
        let Some(name) = Name::of(path) else {
            continue;
        };
        let age = Duration::from_millis(now_ms.saturating_sub(name.received_ms));
        oldest = oldest.max(Some(age));
        let why = match Spool::read(path) {
            // Delivered while we looked.
            Err(_) => continue,
            Ok(Err(e)) => e,
            Ok(Ok(entry)) => match (entry.attempts, entry.last_error) {
                (Some(n), Some(e)) => format!("{n} attempt{}  {e}", if n == 1 { "" } else { "s" }),
                _ => format!("queued behind an earlier notice of {}", name.victim_ip),
            },
        };
        out.push_str(&format!(
            "{:<5} {:<15} {:>7}  {why}",
            name.action.as_str(),
            name.victim_ip,
            human(age)
        ));
        if verbose {
            out.push_str(&format!("  [{}]", path.display()));
        }
        out.push('\n');
    }
    let waiting = oldest.is_some();
    let count = out.lines().count();
    let held = held_victims(cfg, dir, now_ms);
    match oldest {
        Some(age) => out.push_str(&format!(
            "{count} notice(s) waiting in {}, oldest {}; ",
            dir.display(),
            human(age)
        )),
        None => out.push_str(&format!("nothing waiting in {}; ", dir.display())),
    }
    let last = cfg
        .metrics
        .as_deref()
        .and_then(|m| metrics::stored(&metrics::state_path(Some(dir), m)).last_delivery());
    match last {
        Some(t) => {
            let secs = t.max(0.0) as u64;
            let ago = Duration::from_millis(now_ms.saturating_sub(secs * 1000));
            out.push_str(&format!(
                "last delivery {} ({} ago)\n",
                crate::time::rfc3339_from_unix(secs),
                human(ago)
            ));
        }
        None if cfg.metrics.is_some() => out.push_str("no delivery recorded yet\n"),
        None => out.push_str("last delivery not recorded (set PREFIXD_METRICS)\n"),
    }
    out.push_str(&held);
    (out, waiting)
}

/// The held victims (leases), soonest to end first: what `--flush` keeps mitigated until
/// FastNetMon's unban, and whether FastNetMon still banned each at the last look.
fn held_victims(cfg: &Config, dir: &std::path::Path, now_ms: u64) -> String {
    use crate::fastnetmon::ports;
    let mut leases = match crate::spool::lease::all(dir) {
        Ok(l) => l,
        Err(_) => return String::new(),
    };
    if leases.is_empty() {
        return String::new();
    }
    leases.sort_by_key(|l| l.as_ref().map_or(0, |l| l.expires_ms.unwrap_or(0)));
    let ago = |ms: u64| human(Duration::from_millis(now_ms.saturating_sub(ms)));
    let mut out = format!(
        "{} held victim(s), renewed by --flush until FastNetMon's unban:\n",
        leases.len()
    );
    let look = reconcile::last_look(dir);
    out.push_str(&match (&cfg.banlist, &look) {
        (None, _) => "FastNetMon's ban list: not asked (FASTNETMON_BANLIST, or fastnetmon_api_client not on PATH): leases end only by FastNetMon's unbans\n".into(),
        (Some(_), None) => "FastNetMon's ban list: not looked at yet\n".into(),
        (Some(_), Some(k)) => match (k.listed, &k.why) {
            (Some(n), _) => format!(
                "FastNetMon's ban list: read {} ago ({}), {n} entr{}\n",
                ago(k.looked_ms),
                crate::time::rfc3339_from_unix(k.looked_ms / 1000),
                if n == 1 { "y" } else { "ies" }
            ),
            (None, why) => format!(
                "FastNetMon's ban list: NOT READ {} ago: {}; leases go on\n",
                ago(k.looked_ms),
                why.as_deref().unwrap_or("?")
            ),
        },
    });
    for l in &leases {
        let l = match l {
            Ok(l) => l,
            Err(path) => {
                out.push_str(&format!("held  {} is not a lease\n", path.display()));
                continue;
            }
        };
        let expires = match l.expires_ms {
            Some(e) if e >= now_ms => {
                format!("expires in {}", human(Duration::from_millis(e - now_ms)))
            }
            Some(_) => "expired at the last look".into(),
            None => "expiry looked at next flush".into(),
        };
        let renewed = l.renewed_ms.map_or_else(
            || "never renewed".into(),
            |r| format!("renewed {} ago ({}x)", ago(r), l.renewals),
        );
        let state = match (&l.mitigation_id, &l.waiting) {
            (_, Some(w)) if l.quota => format!("WAITING FOR QUOTA: {w}"),
            (_, Some(w)) => format!("held by prefixd's correlation, nothing mitigated: {w}"),
            (Some(id), None) => format!("mitigation {id}, {expires}"),
            (None, None) => "mitigation not known yet".into(),
        };
        let fastnetmon = match (&cfg.banlist, &look, l.unlisted_ms) {
            (None, _, _) => String::new(),
            (_, _, Some(since)) => format!(
                "; NOT IN FASTNETMON'S BAN LIST for {}: unbanned after {}s",
                ago(since),
                cfg.banlist_grace.as_secs()
            ),
            (_, Some(k), None) if k.listed.is_some() && k.looked_ms >= l.banned_ms => {
                "; FastNetMon bans it".into()
            }
            (_, Some(k), None) if k.listed.is_none() && k.looked_ms >= l.banned_ms => {
                "; FastNetMon did not say at the last look".into()
            }
            _ => "; FastNetMon not asked since its ban".into(),
        };
        let ports = match l.top_dst_ports.as_deref() {
            Some(p) if !p.is_empty() => format!(" top_dst_ports={}", ports::list(p)),
            _ => String::new(),
        };
        let more = l.earlier.as_ref().map_or_else(String::new, |e| {
            format!("; and {} mitigation(s) of its earlier bans", e.len())
        });
        out.push_str(&format!(
            "held  {:<15} {:>7}  {} {}{ports}  {state}; {renewed}{more}{fastnetmon}\n",
            l.victim_ip,
            ago(l.banned_ms),
            l.vector,
            l.confidence
        ));
    }
    out
}

/// `45s`, `4m12s`, `2h03m`, `3d04h`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_clock() {
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m00s"),
            (252, "4m12s"),
            (3600, "1h00m"),
            (7380, "2h03m"),
            (86_400 * 3 + 4 * 3600, "3d04h"),
        ] {
            assert_eq!(human(Duration::from_secs(secs)), want);
        }
    }
}
