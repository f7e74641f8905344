//! The mitigation lasts as long as FastNetMon's ban: a delivered ban makes its victim held,
//! `--flush` renews its mitigation before prefixd's TTL ends it, and FastNetMon's unban, a
//! person's withdrawal or PREFIXD_RENEW_MAX end that. Against the stand-in with TTLs, in both
//! prefixd generations.

mod common;

use common::server::{Behavior, Generation, Options, Server};
use common::{Sandbox, fixture, s};
use miniserde::json::Value;
use std::time::{Duration, Instant};

const IP: &str = "198.51.100.77";

/// The stand-in as `generation`, its mitigations ending `ttl` seconds after their last ban.
fn with_ttl(generation: Generation, ttl: u64) -> Server {
    Server::with(Options {
        ttl: Some(Duration::from_secs(ttl)),
        ..Options::of(generation)
    })
}

fn ban_args() -> [&'static str; 4] {
    [IP, "incoming", "187650", "ban"]
}

fn held(srv: &Server, renew_before: &str) -> Sandbox {
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_RETRIES", "1")
        .set("PREFIXD_RENEW_BEFORE", renew_before);
    sb
}

fn ban(sb: &Sandbox) {
    let r = sb.run(
        &ban_args(),
        Some(fixture("ban_ipv4_syn_flood.txt").as_bytes()),
    );
    assert_eq!(r.code, 0, "{}", sb.log());
}

fn flush(sb: &Sandbox) -> String {
    let r = sb.run(&["--flush"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    sb.log()
}

/// The bans prefixd received for IP, in order, as JSON objects.
fn bans(srv: &Server) -> Vec<std::collections::BTreeMap<String, Value>> {
    srv.requests()
        .into_iter()
        .filter(|r| r.target == "/v1/events")
        .map(|r| r.json())
        .collect()
}

#[test]
fn the_same_mitigation_stays_active_across_20s_with_a_6s_ttl() {
    let runs: Vec<_> = Generation::BOTH
        .into_iter()
        .map(|generation| {
            std::thread::spawn(move || {
                let srv = with_ttl(generation, 6);
                let sb = held(&srv, "4");
                ban(&sb);
                let id = srv.mitigations()[0].id.clone();
                let started = Instant::now();
                for second in 1..=20 {
                    let until = started + Duration::from_secs(second);
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    flush(&sb);
                    let ms = srv.mitigations();
                    assert_eq!(ms.len(), 1, "{generation:?} at {second}s: {ms:?}");
                    assert_eq!(
                        (ms[0].id.as_str(), ms[0].status.as_str()),
                        (id.as_str(), "active"),
                        "{generation:?} at {second}s"
                    );
                }
                let m = &srv.mitigations()[0];
                // The first ban, then renewals: every one a fresh event_id.
                let mut events = m.events.clone();
                assert!(events.len() >= 5, "{generation:?}: {events:?}");
                events.sort();
                events.dedup();
                assert_eq!(
                    events.len(),
                    m.events.len(),
                    "{generation:?}: fresh event_ids"
                );
                let bans = bans(&srv);
                let first = s(bans[0].get("event_id"));
                for b in &bans[1..] {
                    assert_eq!(s(b.get("victim_ip")), IP);
                    assert_eq!(s(b.get("vector")), "syn_flood");
                    let raw = common::raw_details(b);
                    assert_eq!(s(raw.get("renewal_of")), first, "{generation:?}");
                    assert!(!raw.contains_key("raw"), "the details are not sent again");
                }
                assert!(
                    sb.log().contains(&format!("(renewal 1 of {first}: ")),
                    "{}",
                    sb.log()
                );
            })
        })
        .collect();
    for r in runs {
        r.join().unwrap();
    }
}

#[test]
fn the_unban_ends_renewals_even_when_it_has_to_wait_in_the_spool() {
    for generation in Generation::BOTH {
        // Delivered: withdrawn, and nothing renewed after.
        let srv = Server::with(Options::of(generation));
        let sb = held(&srv, "86400");
        ban(&sb);
        assert_eq!(sb.leases(), [IP]);
        let r = sb.run(&[IP, "incoming", "0", "unban"], None);
        assert_eq!(r.code, 0, "{}", sb.log());
        assert!(sb.leases().is_empty());
        flush(&sb);
        assert_eq!(
            bans(&srv).len(),
            1,
            "{generation:?}: no renewal after the unban"
        );

        // Kept: prefixd will not list mitigations; the unban waits in the spool, and the
        // lease ended at once all the same.
        let srv = Server::with(Options::of(generation));
        let sb = held(&srv, "86400");
        ban(&sb);
        srv.always(
            "GET /v1/mitigations?",
            Behavior::Reply {
                status: 503,
                body: String::new(),
            },
        );
        let r = sb.run(&[IP, "incoming", "0", "unban"], None);
        assert_eq!(r.code, 75, "{}", sb.log());
        assert_eq!(sb.spooled().len(), 1);
        assert!(sb.leases().is_empty(), "{generation:?}");
        let r = sb.run(&["--flush"], None);
        assert_eq!(r.code, 75);
        assert_eq!(bans(&srv).len(), 1, "{generation:?}: no renewal");
        assert!(
            sb.log().contains("lease ended: no more renewals"),
            "{}",
            sb.log()
        );
    }
}

#[test]
fn an_operators_withdrawal_is_respected() {
    for generation in Generation::BOTH {
        let srv = with_ttl(generation, 60);
        let sb = held(&srv, "86400");
        ban(&sb);
        let id = srv.mitigations()[0].id.clone();
        srv.withdraw_by_hand(&id, "bearer-token", "customer asked to stop the filter");
        let log = flush(&sb);
        assert_eq!(bans(&srv).len(), 1, "{generation:?}: not brought back");
        assert!(sb.leases().is_empty());
        let line = log
            .lines()
            .find(|l| l.contains("withdrawn by hand"))
            .unwrap_or_else(|| panic!("{log}"));
        assert!(
            line.contains(" WARN ")
                && line.contains(IP)
                && line.contains("bearer-token: customer asked to stop the filter"),
            "{line}"
        );
        flush(&sb);
        assert_eq!(bans(&srv).len(), 1);
    }
}

#[test]
fn a_withdrawal_by_another_fastnetmon_host_is_not_a_persons_decision() {
    for generation in Generation::BOTH {
        let srv = with_ttl(generation, 60);
        let sb = held(&srv, "86400");
        ban(&sb);
        let id = srv.mitigations()[0].id.clone();
        srv.withdraw_by_hand(
            &id,
            "bearer-token",
            &format!("FastNetMon unban for {IP} (direction=incoming) [prefixd-fastnetmon@fnm-edge-2 unban {IP}]"),
        );
        let log = flush(&sb);
        assert_eq!(bans(&srv).len(), 2, "{generation:?}: banned again");
        assert!(srv.active(IP));
        assert!(
            log.contains("withdrawn by prefixd-fastnetmon on fnm-edge-2") && log.contains(" INFO "),
            "{log}"
        );
        assert_eq!(sb.leases(), [IP]);
    }
}

#[test]
fn an_expired_mitigation_is_created_again_at_once() {
    for generation in Generation::BOTH {
        let srv = with_ttl(generation, 60);
        let sb = held(&srv, "30");
        ban(&sb);
        let first = srv.mitigations()[0].id.clone();
        // The timer was late, or prefixd was down: the TTL ran out.
        srv.expire_now(&first);
        let log = flush(&sb);
        let ms = srv.mitigations();
        assert_eq!(ms.len(), 2, "{generation:?}: {ms:?}");
        assert_eq!(ms[1].status, "active");
        let line = log
            .lines()
            .find(|l| l.contains("is expired while FastNetMon still bans it"))
            .unwrap_or_else(|| panic!("{log}"));
        assert!(
            line.contains(" WARN ") && line.contains("the victim was uncovered for "),
            "{line}"
        );
        // The lease follows the new mitigation: not due for another 30 s.
        flush(&sb);
        assert_eq!(bans(&srv).len(), 2);
    }
}

#[test]
fn renew_max_ends_the_lease() {
    for generation in Generation::BOTH {
        let srv = Server::with(Options::of(generation));
        let mut sb = held(&srv, "86400");
        sb.set("PREFIXD_RENEW_MAX", "600");
        ban(&sb);
        sb.backdate(601.0);
        let log = flush(&sb);
        assert_eq!(bans(&srv).len(), 1, "{generation:?}");
        assert!(sb.leases().is_empty());
        assert!(
            log.contains("longer than PREFIXD_RENEW_MAX (600s) without FastNetMon's unban"),
            "{log}"
        );
    }
    // 0 turns renewal off: no lease at all.
    let srv = Server::start();
    let mut sb = held(&srv, "86400");
    sb.set("PREFIXD_RENEW_MAX", "0");
    ban(&sb);
    assert!(sb.leases().is_empty());
    flush(&sb);
    assert_eq!(bans(&srv).len(), 1);
}

#[test]
fn a_victim_refused_by_the_quota_is_mitigated_once_the_quota_frees() {
    for generation in Generation::BOTH {
        let srv = Server::with(Options {
            quota: Some(1),
            ..Options::of(generation)
        });
        let mut sb = held(&srv, "86400");
        let metrics = sb.path("m.prom");
        sb.set("PREFIXD_METRICS", &metrics);
        let text = fixture("ban_ipv4_udp_flood.txt");
        assert_eq!(sb.run(&["192.0.2.1"], Some(text.as_bytes())).code, 0);
        let r = sb.run(&["192.0.2.2"], Some(text.as_bytes()));
        assert_eq!(
            r.code, 0,
            "{generation:?}: prefixd decided; the victim stays held"
        );
        assert!(
            sb.log().contains("quota exceeded") && sb.log().contains("the victim stays held"),
            "{}",
            sb.log()
        );
        assert_eq!(sb.leases(), ["192.0.2.1", "192.0.2.2"]);
        let status = sb.run(&["--status"], None);
        assert!(
            status
                .stdout
                .lines()
                .any(|l| l.contains("192.0.2.2") && l.contains("WAITING FOR QUOTA")),
            "{}",
            status.stdout
        );
        // Still full: tried, still waiting.
        flush(&sb);
        assert!(!srv.active("192.0.2.2"));
        // FastNetMon unbans the first victim: the quota frees, the next flush takes the second.
        assert_eq!(
            sb.run(&["192.0.2.1", "incoming", "0", "unban"], None).code,
            0
        );
        flush(&sb);
        assert!(srv.active("192.0.2.2"), "{generation:?}: {}", sb.log());
        assert_eq!(sb.leases(), ["192.0.2.2"]);
        let m = std::fs::read_to_string(&metrics).unwrap();
        assert!(m.contains("prefixd_fastnetmon_held_victims 1\n"), "{m}");
        assert!(
            m.contains("prefixd_fastnetmon_renewals_total{result=\"recreated\"} 1\n")
                && m.contains("prefixd_fastnetmon_renewals_total{result=\"held\"} 1\n"),
            "{m}"
        );
    }
}

#[test]
fn a_refusal_waiting_cannot_change_ends_the_lease() {
    let srv = with_ttl(Generation::V0_19_1, 60);
    let sb = held(&srv, "86400");
    ban(&sb);
    srv.always(
        "POST /v1/events",
        Behavior::Reply {
            status: 422,
            body: r#"{"error":"guardrail violation: IP 198.51.100.77/32 is safelisted"}"#.into(),
        },
    );
    let log = flush(&sb);
    assert!(sb.leases().is_empty());
    assert!(
        log.contains("prefixd refused its renewal for good"),
        "{log}"
    );
}

#[test]
fn status_lists_the_held_victims() {
    let srv = with_ttl(Generation::V0_19_1, 600);
    let sb = held(&srv, "90");
    ban(&sb);
    flush(&sb);
    let id = srv.mitigations()[0].id.clone();
    let r = sb.run(&["--status"], None);
    assert_eq!(r.code, 0, "held victims are not notices waiting");
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("held  "))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        line.contains(IP)
            && line.contains(&format!("mitigation {id}, expires in 9m"))
            && line.contains("never renewed")
            && line.contains("syn_flood 0.9 top_dst_ports=443 "),
        "{line}"
    );
    assert!(r.stdout.contains("1 held victim(s)"), "{}", r.stdout);
}

#[test]
fn a_flush_renews_200_held_victims_at_once() {
    for generation in Generation::BOTH {
        let srv = Server::with(Options {
            delay: Duration::from_millis(100),
            ttl: Some(Duration::from_secs(60)),
            ..Options::of(generation)
        });
        let sb = held(&srv, "86400");
        let text = fixture("ban_ipv4_udp_flood.txt");
        let ips: Vec<String> = (0..200)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1))
            .collect();
        for chunk in ips.chunks(50) {
            let children: Vec<_> = chunk
                .iter()
                .map(|ip| sb.spawn(&[ip, "incoming", "1000", "ban"], text.as_bytes()))
                .collect();
            for mut c in children {
                assert_eq!(c.wait().unwrap().code(), Some(0));
            }
        }
        assert_eq!(sb.leases().len(), 200);
        let started = Instant::now();
        let log = flush(&sb);
        let took = started.elapsed();
        let renewed = srv
            .mitigations()
            .iter()
            .filter(|m| m.events.len() == 2)
            .count();
        assert_eq!(renewed, 200, "{generation:?}: {log}");
        eprintln!("{generation:?}: 200 held victims renewed by one --flush in {took:?}");
    }
}
