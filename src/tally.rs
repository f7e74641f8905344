//! This run's tally: what became of its notices, what its renewals did, how long prefixd took
//! to answer. One process-wide tally, like the log: every room may add to it and needs no
//! more than this; `operator::metrics` adds it to the running totals and publishes them.
//! Here too, with no I/O: the totals' two texts, the state file's `key value` lines and
//! Prometheus's exposition format.

use crate::action::Action;
use crate::time::unix_now;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fate {
    /// prefixd accepted it.
    Delivered,
    /// Written to the spool, to be sent later.
    Kept,
    /// prefixd said no for good (400/422 …).
    Refused,
    /// Aged out or superseded in the spool.
    Dropped,
    /// prefixd recorded the ban and mitigated nothing (held by its correlation engine, not in
    /// its inventory, no playbook): delivered, and the victim still unprotected.
    Held,
}

const FATES: [(Fate, &str); 5] = [
    (Fate::Delivered, "delivered"),
    (Fate::Kept, "kept"),
    (Fate::Refused, "refused"),
    (Fate::Dropped, "dropped"),
    (Fate::Held, "held"),
];
const ACTIONS: [(Action, &str); 2] = [(Action::Ban, "ban"), (Action::Unban, "unban")];
/// Upper bounds of the request-duration buckets, seconds: 5 ms to 10 s.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What a renewal of a held victim did (README "Leases").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Renewal {
    /// prefixd extended the mitigation.
    Extended,
    /// The mitigation had ended (expired, withdrawn by another host, unknown): a new one.
    Recreated,
    /// Sent again and held by prefixd (correlation, quota).
    Held,
    /// The lease ended: PREFIXD_RENEW_MAX, a person's withdrawal, a refusal for good.
    Ended,
    /// Not looked at or not renewed this time (prefixd unreachable, the deadline).
    Failed,
}

const RENEWALS: [(Renewal, &str); 5] = [
    (Renewal::Extended, "extended"),
    (Renewal::Recreated, "recreated"),
    (Renewal::Held, "held"),
    (Renewal::Ended, "ended"),
    (Renewal::Failed, "failed"),
];

/// What `--flush` learnt from FastNetMon's ban list (README "When FastNetMon restarts").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reconcile {
    /// A flush read the list.
    Read,
    /// A flush asked and FastNetMon did not say (down, its API off, garbage, a timeout).
    Unanswered,
    /// A held victim it no longer listed, past the grace period: treated as its unban.
    Withdrawn,
    /// The same, with the unban kept in the spool (prefixd unreachable).
    Kept,
}

const RECONCILE: [(Reconcile, &str); 4] = [
    (Reconcile::Read, "banlist.read"),
    (Reconcile::Unanswered, "banlist.unanswered"),
    (Reconcile::Withdrawn, "unlisted.withdrawn"),
    (Reconcile::Kept, "unlisted.kept"),
];

/// What prefixd's rule for a ban matches of the attack in FastNetMon's dump (README "Which
/// ports are sent").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RuleFit {
    /// Half of the attack's packets or more.
    Matches,
    /// Less than half: a WARN names the rule and the attack's busiest ports.
    Misses,
    /// Not measured: the details hold no packets, or the rule could not be read.
    Unchecked,
}

const RULE_FITS: [(RuleFit, &str); 3] = [
    (RuleFit::Matches, "matches"),
    (RuleFit::Misses, "misses"),
    (RuleFit::Unchecked, "unchecked"),
];

/// Running totals: this run's, or all runs' (the state file).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Totals {
    /// `[action][fate]`, in `ACTIONS` × `FATES` order.
    notices: [[u64; FATES.len()]; 2],
    /// In `RENEWALS` order.
    renewals: [u64; RENEWALS.len()],
    /// In `RECONCILE` order.
    reconcile: [u64; RECONCILE.len()],
    /// In `RULE_FITS` order.
    rules: [u64; RULE_FITS.len()],
    /// Per bucket (not cumulative), then everything above the last bound.
    buckets: [u64; BUCKETS.len() + 1],
    duration_sum: f64,
    /// Unix seconds.
    last_delivery: Option<f64>,
}

static RUN: Mutex<Totals> = Mutex::new(Totals {
    notices: [[0; FATES.len()]; 2],
    renewals: [0; RENEWALS.len()],
    reconcile: [0; RECONCILE.len()],
    rules: [0; RULE_FITS.len()],
    buckets: [0; BUCKETS.len() + 1],
    duration_sum: 0.0,
    last_delivery: None,
});

fn run() -> std::sync::MutexGuard<'static, Totals> {
    RUN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts what became of one notice.
pub fn count(action: Action, fate: Fate) {
    let Some(a) = ACTIONS.iter().position(|(x, _)| *x == action) else {
        return;
    };
    let f = FATES.iter().position(|(x, _)| *x == fate).unwrap_or(0);
    let mut t = run();
    t.notices[a][f] += 1;
    if matches!(fate, Fate::Delivered | Fate::Held) {
        t.last_delivery = Some(unix_now());
    }
}

/// Counts one renewal's outcome.
pub fn renewal(r: Renewal) {
    let i = RENEWALS.iter().position(|(x, _)| *x == r).unwrap_or(0);
    run().renewals[i] += 1;
}

/// Counts what a flush learnt from FastNetMon's ban list.
pub fn reconcile(r: Reconcile) {
    let i = RECONCILE.iter().position(|(x, _)| *x == r).unwrap_or(0);
    run().reconcile[i] += 1;
}

/// Counts what one ban's rule matched.
pub fn rule(r: RuleFit) {
    let i = RULE_FITS.iter().position(|(x, _)| *x == r).unwrap_or(0);
    run().rules[i] += 1;
}

/// Records how long one request to prefixd took (it answered).
pub fn took(d: Duration) {
    let secs = d.as_secs_f64();
    let i = BUCKETS
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(BUCKETS.len());
    let mut t = run();
    t.buckets[i] += 1;
    t.duration_sum += secs;
}

/// This run's tally so far, for `operator::metrics` to add to the running totals.
pub fn this_run() -> Totals {
    run().clone()
}

/// Starts this run's tally again: it has been added to the running totals.
pub fn clear() {
    *run() = Totals::default();
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        for (a, row) in self.notices.iter_mut().enumerate() {
            for (f, n) in row.iter_mut().enumerate() {
                *n += o.notices[a][f];
            }
        }
        for (i, n) in self.renewals.iter_mut().enumerate() {
            *n += o.renewals[i];
        }
        for (i, n) in self.reconcile.iter_mut().enumerate() {
            *n += o.reconcile[i];
        }
        for (i, n) in self.rules.iter_mut().enumerate() {
            *n += o.rules[i];
        }
        for (b, n) in self.buckets.iter_mut().enumerate() {
            *n += o.buckets[b];
        }
        self.duration_sum += o.duration_sum;
        self.last_delivery = match (self.last_delivery, o.last_delivery) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
    }

    /// `key value` lines; unknown or broken lines are ignored (a damaged state file costs
    /// history, never a run).
    pub fn parse(text: &str) -> Totals {
        let mut t = Totals::default();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            let (Some(key), Some(value)) = (w.next(), w.next_back()) else {
                continue;
            };
            let n = value.parse::<u64>().ok();
            let x = value.parse::<f64>().ok().filter(|x| x.is_finite());
            if let Some(i) = RECONCILE.iter().position(|(_, s)| *s == key) {
                if let Some(n) = n {
                    t.reconcile[i] = n;
                }
            } else if let Some(r) = key.strip_prefix("renewal.") {
                let i = RENEWALS.iter().position(|(_, s)| *s == r);
                if let (Some(i), Some(n)) = (i, n) {
                    t.renewals[i] = n;
                }
            } else if let Some(r) = key.strip_prefix("rule.") {
                let i = RULE_FITS.iter().position(|(_, s)| *s == r);
                if let (Some(i), Some(n)) = (i, n) {
                    t.rules[i] = n;
                }
            } else if let Some((a, f)) = key.split_once('.') {
                let a = ACTIONS.iter().position(|(_, s)| *s == a);
                let f = FATES.iter().position(|(_, s)| *s == f);
                if let (Some(a), Some(f), Some(n)) = (a, f, n) {
                    t.notices[a][f] = n;
                }
            } else if let Some(i) = key
                .strip_prefix("bucket")
                .and_then(|i| i.parse::<usize>().ok())
            {
                if let (Some(slot), Some(n)) = (t.buckets.get_mut(i), n) {
                    *slot = n;
                }
            } else if key == "duration_sum" {
                t.duration_sum = x.unwrap_or(0.0);
            } else if key == "last_delivery" {
                t.last_delivery = x;
            }
        }
        t
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (a, (_, an)) in ACTIONS.iter().enumerate() {
            for (f, (_, fname)) in FATES.iter().enumerate() {
                s.push_str(&format!("{an}.{fname} {}\n", self.notices[a][f]));
            }
        }
        for (i, (_, name)) in RENEWALS.iter().enumerate() {
            s.push_str(&format!("renewal.{name} {}\n", self.renewals[i]));
        }
        for (i, (_, name)) in RECONCILE.iter().enumerate() {
            s.push_str(&format!("{name} {}\n", self.reconcile[i]));
        }
        for (i, (_, name)) in RULE_FITS.iter().enumerate() {
            s.push_str(&format!("rule.{name} {}\n", self.rules[i]));
        }
        for (i, n) in self.buckets.iter().enumerate() {
            s.push_str(&format!("bucket{i} {n}\n"));
        }
        s.push_str(&format!("duration_sum {}\n", self.duration_sum));
        if let Some(t) = self.last_delivery {
            s.push_str(&format!("last_delivery {t}\n"));
        }
        s
    }

    pub fn last_delivery(&self) -> Option<f64> {
        self.last_delivery
    }
}

/// Prometheus text exposition format, with HELP and TYPE lines.
pub fn render(t: &Totals, spooled: usize, oldest_age: f64, held: usize) -> String {
    let mut s = String::new();
    s.push_str("# HELP prefixd_fastnetmon_notices_total FastNetMon notices by action and what became of them (refused: prefixd said no for good; dropped: aged out or superseded in the spool; kept: written to the spool; held: prefixd recorded the ban and mitigated nothing).\n");
    s.push_str("# TYPE prefixd_fastnetmon_notices_total counter\n");
    for (a, (_, an)) in ACTIONS.iter().enumerate() {
        for (f, (_, fname)) in FATES.iter().enumerate() {
            s.push_str(&format!(
                "prefixd_fastnetmon_notices_total{{action=\"{an}\",result=\"{fname}\"}} {}\n",
                t.notices[a][f]
            ));
        }
    }
    s.push_str("# HELP prefixd_fastnetmon_renewals_total Bans of held victims sent again by --flush, by what became of them (extended; recreated: the mitigation had ended; held: prefixd mitigated nothing; ended: the lease ended; failed: not renewed this time).\n");
    s.push_str("# TYPE prefixd_fastnetmon_renewals_total counter\n");
    for (i, (_, name)) in RENEWALS.iter().enumerate() {
        s.push_str(&format!(
            "prefixd_fastnetmon_renewals_total{{result=\"{name}\"}} {}\n",
            t.renewals[i]
        ));
    }
    for (metric, help, kind) in [
        (
            "prefixd_fastnetmon_banlist_reads_total",
            "Flushes that asked FastNetMon for its ban list, by whether it said (read) or not (unanswered: down, its API off, not a list, a timeout).",
            "banlist",
        ),
        (
            "prefixd_fastnetmon_unlisted_victims_total",
            "Held victims FastNetMon's ban list no longer listed past the grace period (it restarted or lost the ban), treated as its unban: withdrawn, or the unban kept in the spool.",
            "unlisted",
        ),
    ] {
        s.push_str(&format!(
            "# HELP {metric} {help}\n# TYPE {metric} counter\n"
        ));
        for (i, (_, key)) in RECONCILE.iter().enumerate() {
            if let Some(result) = key.strip_prefix(kind).and_then(|r| r.strip_prefix('.')) {
                s.push_str(&format!(
                    "{metric}{{result=\"{result}\"}} {}\n",
                    t.reconcile[i]
                ));
            }
        }
    }
    s.push_str("# HELP prefixd_fastnetmon_rules_total Bans whose mitigation prefixd's rule (protocol, dst_ports) matches half of the attack's packets in FastNetMon's dump or more (matches), less (misses: logged as a WARN), or could not be measured (unchecked).\n");
    s.push_str("# TYPE prefixd_fastnetmon_rules_total counter\n");
    for (i, (_, name)) in RULE_FITS.iter().enumerate() {
        s.push_str(&format!(
            "prefixd_fastnetmon_rules_total{{result=\"{name}\"}} {}\n",
            t.rules[i]
        ));
    }
    s.push_str("# HELP prefixd_fastnetmon_held_victims Victims FastNetMon bans and we keep mitigated until its unban (leases).\n");
    s.push_str("# TYPE prefixd_fastnetmon_held_victims gauge\n");
    s.push_str(&format!("prefixd_fastnetmon_held_victims {held}\n"));
    s.push_str("# HELP prefixd_fastnetmon_spool_notices Notices waiting in the spool.\n");
    s.push_str("# TYPE prefixd_fastnetmon_spool_notices gauge\n");
    s.push_str(&format!("prefixd_fastnetmon_spool_notices {spooled}\n"));
    s.push_str("# HELP prefixd_fastnetmon_spool_oldest_age_seconds Age of the oldest notice in the spool (0 when empty).\n");
    s.push_str("# TYPE prefixd_fastnetmon_spool_oldest_age_seconds gauge\n");
    s.push_str(&format!(
        "prefixd_fastnetmon_spool_oldest_age_seconds {oldest_age:.3}\n"
    ));
    s.push_str("# HELP prefixd_fastnetmon_last_delivery_timestamp_seconds Unix time of the last notice prefixd accepted (0: none yet).\n");
    s.push_str("# TYPE prefixd_fastnetmon_last_delivery_timestamp_seconds gauge\n");
    s.push_str(&format!(
        "prefixd_fastnetmon_last_delivery_timestamp_seconds {:.3}\n",
        t.last_delivery.unwrap_or(0.0)
    ));
    s.push_str("# HELP prefixd_fastnetmon_request_duration_seconds Time prefixd took to answer a request.\n");
    s.push_str("# TYPE prefixd_fastnetmon_request_duration_seconds histogram\n");
    let mut cumulative = 0;
    for (i, le) in BUCKETS.iter().enumerate() {
        cumulative += t.buckets[i];
        s.push_str(&format!(
            "prefixd_fastnetmon_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}\n"
        ));
    }
    cumulative += t.buckets[BUCKETS.len()];
    s.push_str(&format!(
        "prefixd_fastnetmon_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n"
    ));
    s.push_str(&format!(
        "prefixd_fastnetmon_request_duration_seconds_sum {:.6}\n",
        t.duration_sum
    ));
    s.push_str(&format!(
        "prefixd_fastnetmon_request_duration_seconds_count {cumulative}\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_survive_their_text_and_add_up() {
        let mut t = Totals::default();
        t.notices[0][0] = 7;
        t.notices[1][1] = 2;
        t.rules[1] = 3;
        t.buckets[3] = 4;
        t.buckets[BUCKETS.len()] = 1;
        t.duration_sum = 1.25;
        t.last_delivery = Some(1_795_830_000.5);
        let back = Totals::parse(&t.to_text());
        assert_eq!(back, t);
        let mut sum = back.clone();
        sum.add(&t);
        assert_eq!(sum.notices[0][0], 14, "ban delivered");
        assert_eq!(sum.notices[1][1], 4, "unban kept");
        assert_eq!(sum.buckets[3], 8);
        assert_eq!(sum.rules[1], 6, "rules that miss");
        assert_eq!(
            Totals::parse("garbage\nban.delivered x\nbucket99 5\n"),
            Totals::default()
        );
    }

    #[test]
    fn histogram_is_cumulative_and_counts_everything() {
        let mut t = Totals::default();
        t.buckets[0] = 1; // ≤ 5 ms
        t.buckets[7] = 2; // ≤ 1 s
        t.buckets[BUCKETS.len()] = 3; // > 10 s
        let text = render(&t, 0, 0.0, 0);
        assert!(
            text.contains("prefixd_fastnetmon_request_duration_seconds_bucket{le=\"0.005\"} 1\n")
        );
        assert!(text.contains("prefixd_fastnetmon_request_duration_seconds_bucket{le=\"1\"} 3\n"));
        assert!(text.contains("prefixd_fastnetmon_request_duration_seconds_bucket{le=\"10\"} 3\n"));
        assert!(
            text.contains("prefixd_fastnetmon_request_duration_seconds_bucket{le=\"+Inf\"} 6\n")
        );
        assert!(text.contains("prefixd_fastnetmon_request_duration_seconds_count 6\n"));
    }
}
