//! Never lose a ban: prefixd down, slow, hung, restarting; many FastNetMon threads at once; a
//! flush killed half-way. The built binary against a loopback prefixd stand-in.

mod common;

use common::server::{Options, Server};
use common::{Sandbox, dead_port, s};
use miniserde::json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn ban_text(ip: &str) -> String {
    format!(
        "IP: {ip}\nAttack type: udp_flood\nAttack protocol: udp\nTotal incoming traffic: 12 mbps\n"
    )
}

#[test]
fn prefixd_down_then_back_loses_nothing() {
    let dead = dead_port();
    let port = dead.port;
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "1");
    let ips: Vec<String> = (1..=20).map(|i| format!("192.0.2.{i}")).collect();
    for ip in &ips {
        let r = sb.run(
            &[ip, "incoming", "1000", "ban"],
            Some(ban_text(ip).as_bytes()),
        );
        assert_eq!(r.code, 75, "{ip}: {}", sb.log());
    }
    assert_eq!(sb.spooled().len(), 20);
    // Twenty victims: none waits for another's notice, each run tried prefixd itself.
    assert_eq!(
        sb.log().matches("ERROR ban 192.0.2.").count(),
        20,
        "{}",
        sb.log()
    );
    assert!(!sb.log().contains("queued behind"), "{}", sb.log());

    // prefixd comes back on the same address.
    let srv = dead.revive(Options::default());
    let r = sb.run(&["--flush"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    assert_eq!(srv.banned_ips(), ips, "in order, once each");
    for req in srv.requests().iter().filter(|r| r.target == "/v1/events") {
        let body = req.json();
        let Some(Value::Object(raw)) = body.get("raw_details") else {
            panic!()
        };
        assert!(matches!(raw.get("replayed"), Some(Value::Bool(true))));
        assert!(matches!(
            raw.get("replay_delay_seconds"),
            Some(Value::Number(_))
        ));
    }
    assert!(sb.spooled().is_empty());
    assert!(
        sb.log()
            .contains("flush: 20 delivered or dropped as stale, 0 refused, 0 left"),
        "{}",
        sb.log()
    );

    // The next flush only looks at the twenty held victims' mitigations (not due: nothing
    // sent); the one after sends nothing at all.
    srv.clear();
    assert_eq!(sb.run(&["--flush"], None).code, 0);
    let lines = srv.lines();
    assert_eq!(lines.len(), 20, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("GET /v1/mitigations/")));
    srv.clear();
    assert_eq!(sb.run(&["--flush"], None).code, 0);
    assert!(srv.requests().is_empty(), "a third flush sends nothing");
}

#[test]
fn a_replayed_ban_keeps_its_original_timestamp() {
    let dead = dead_port();
    let port = dead.port;
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "1");
    let before = std::time::SystemTime::now();
    assert_eq!(
        sb.run(
            &["192.0.2.10", "incoming", "5", "ban"],
            Some(b"Attack type: syn_flood\n")
        )
        .code,
        75
    );
    sb.backdate(60.0);
    let srv = dead.revive(Options::default());
    assert_eq!(sb.run(&["--flush"], None).code, 0);
    let ts = s(srv.requests()[0].json().get("timestamp"));
    let secs = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let want = [secs, secs + 1].map(prefixd_fastnetmon::time::rfc3339_from_unix);
    assert!(want.contains(&ts), "{ts} vs {want:?}");
}

#[test]
fn a_spooled_ban_is_dropped_by_a_later_unban() {
    let dead = dead_port();
    let port = dead.port;
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "1");
    assert_eq!(
        sb.run(
            &["192.0.2.10", "incoming", "5", "ban"],
            Some(b"Attack type: udp_flood\n")
        )
        .code,
        75
    );
    assert_eq!(sb.spooled().len(), 1);
    let srv = dead.revive(Options::default());
    let id = srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    let r = sb.run(&["192.0.2.10", "incoming", "5", "unban"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    let lines: Vec<String> = srv.lines();
    assert_eq!(
        lines,
        [
            "GET /v1/mitigations?status=pending,active,escalated&victim_ip=192.0.2.10&limit=1000"
                .to_string(),
            format!("POST /v1/mitigations/{id}/withdraw"),
        ],
        "the spooled ban is never sent, the unban is, once"
    );
    assert!(sb.spooled().is_empty());
    assert!(
        sb.log()
            .contains("dropped spooled ban 192.0.2.10 received "),
        "{}",
        sb.log()
    );
    assert!(
        sb.log().contains(": an unban for it came later"),
        "{}",
        sb.log()
    );
}

#[test]
fn an_unban_spooled_behind_a_ban_is_delivered_after_it() {
    let dead = dead_port();
    let port = dead.port;
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "1")
        .set("UNBAN_QUERY_RETRIES", "1");
    assert_eq!(
        sb.run(
            &["192.0.2.10", "incoming", "5", "ban"],
            Some(b"Attack type: udp_flood\n")
        )
        .code,
        75
    );
    assert_eq!(
        sb.run(&["192.0.2.10", "incoming", "5", "unban"], None).code,
        75
    );
    assert_eq!(
        sb.run(
            &["192.0.2.10", "incoming", "5", "ban"],
            Some(b"Attack type: udp_flood\n")
        )
        .code,
        75
    );
    // The unban dropped the first ban at once, before it is sent.
    assert_eq!(sb.spooled().len(), 2);
    let srv = dead.revive(Options::default());
    assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
    // First ban dropped (an unban follows); the unban finds nothing; the newer ban stays
    // active (its victim held: the next flush looks at it).
    let lines: Vec<String> = srv.lines();
    assert_eq!(
        lines,
        [
            "GET /v1/mitigations?status=pending,active,escalated&victim_ip=192.0.2.10&limit=1000",
            "POST /v1/events"
        ]
    );
    assert_eq!(sb.leases(), ["192.0.2.10"]);
    assert_eq!(srv.mitigations().len(), 1);
    assert_eq!(
        srv.mitigations()[0].status,
        "active",
        "a stale unban never withdraws a newer ban"
    );
}

#[test]
fn refused_token_and_bad_configuration_are_kept_for_after_the_fix() {
    let srv = Server::with(Options {
        token: Some("right".into()),
        ..Default::default()
    });
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_TOKEN", "wrong");
    assert_eq!(
        sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"))
            .code,
        77
    );
    // A CA file that cannot be read stops the call (a bad tuning value no longer does).
    sb.set("PREFIXD_TOKEN", "right")
        .set("PREFIXD_CA_FILE", "/nonexistent/ca.pem");
    assert_eq!(
        sb.run(&["192.0.2.11"], Some(b"Attack type: udp_flood\n"))
            .code,
        78
    );
    assert_eq!(sb.spooled().len(), 2);
    assert_eq!(srv.requests().len(), 1);
    sb.unset("PREFIXD_CA_FILE");
    assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
    assert_eq!(srv.banned_ips(), ["192.0.2.10", "192.0.2.10", "192.0.2.11"]);
}

#[test]
fn a_spool_that_cannot_be_written_puts_the_notice_in_the_log() {
    let dead = dead_port();
    let port = dead.port;
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "1")
        .set("PREFIXD_SPOOL", "/proc/prefixd-spool");
    let r = sb.run(
        &["192.0.2.10", "incoming", "77", "ban"],
        Some(b"Attack type: udp_flood\n"),
    );
    assert_eq!(r.code, 73, "EX_CANTCREAT: not delivered and not kept");
    let log = sb.log();
    assert!(log.contains("ERROR ban 192.0.2.10 LOST unless replayed by hand: cannot use the spool /proc/prefixd-spool"), "{log}");
    assert!(log.contains(r#""victim_ip":"192.0.2.10","direction":"incoming","pps":"77","action":"ban","details":"Attack type: udp_flood\n""#), "{log}");

    sb.set("PREFIXD_SPOOL", "off");
    assert_eq!(sb.run(&["192.0.2.10"], Some(b"")).code, 73);
    assert!(
        sb.log()
            .contains("LOST unless replayed by hand: the spool is off (PREFIXD_SPOOL=off)")
    );
}

#[test]
fn spooled_bans_older_than_max_age_are_dropped_with_a_log_line() {
    let dead = dead_port();
    let port = dead.port;
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "1")
        .set("PREFIXD_SPOOL_MAX_AGE", "30");
    assert_eq!(
        sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"))
            .code,
        75
    );
    assert_eq!(
        sb.run(&["192.0.2.10", "incoming", "0", "unban"], None).code,
        75
    );
    sb.backdate(31.0);
    let srv = dead.revive(Options::default());
    assert_eq!(sb.run(&["--flush"], None).code, 0);
    // The ban is dropped (too old, and superseded); the unban is always sent.
    assert_eq!(srv.requests().len(), 1);
    assert_eq!(srv.requests()[0].method, "GET");
}

#[test]
fn storm_of_200_concurrent_bans_against_a_slow_prefixd() {
    let srv = Server::with(Options {
        delay: Duration::from_millis(50),
        ..Default::default()
    });
    let sb = Sandbox::new(&srv.url);
    let ips: Vec<String> = (0..200)
        .map(|i| format!("198.51.{}.{}", 100 + i / 100, i % 100 + 1))
        .collect();
    let started = Instant::now();
    let children: Vec<_> = ips
        .iter()
        .map(|ip| sb.spawn(&[ip, "incoming", "1000", "ban"], ban_text(ip).as_bytes()))
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap_or(-1))
        .collect();
    let took = started.elapsed();
    assert!(codes.iter().all(|c| *c == 0 || *c == 75), "{codes:?}");
    let r = sb.run(&["--flush"], None);
    assert_eq!(r.code, 0, "{}", sb.log());

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for ip in srv.banned_ips() {
        *counts.entry(ip).or_default() += 1;
    }
    let missing: Vec<&String> = ips.iter().filter(|ip| !counts.contains_key(*ip)).collect();
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "missing {missing:?}, more than once {twice:?}"
    );
    assert!(sb.spooled().is_empty());
    // One line per step, never interleaved.
    for line in sb.log().lines() {
        assert!(
            line.len() > 40 && line.as_bytes()[4] == b'-' && line.contains(" prefixd-fastnetmon["),
            "{line:?}"
        );
        assert_eq!(line.matches(" prefixd-fastnetmon[").count(), 1, "{line:?}");
    }
    eprintln!(
        "storm: 200 runs in {took:?}, {} exited 0",
        codes.iter().filter(|c| **c == 0).count()
    );
}

#[test]
fn kill_9_in_the_middle_of_a_flush_loses_nothing() {
    let dead = dead_port();
    let port = dead.port;
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "1");
    let ips: Vec<String> = (1..=20).map(|i| format!("203.0.113.{i}")).collect();
    for ip in &ips {
        assert_eq!(sb.run(&[ip], Some(ban_text(ip).as_bytes())).code, 75);
    }
    let srv = dead.revive(Options {
        delay: Duration::from_millis(100),
        ..Default::default()
    });
    let mut flusher = sb.spawn(&["--flush"], b"");
    // Kill it once a few notices went through (bounded wait).
    let until = Instant::now() + Duration::from_secs(10);
    while srv.requests().len() < 5 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    flusher.kill().unwrap();
    flusher.wait().unwrap();
    let first = srv.banned_ips().len();
    assert!((5..20).contains(&first), "killed after {first}");

    assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
    let got = srv.banned_ips();
    for ip in &ips {
        assert!(got.contains(ip), "{ip} lost");
    }
    // At most the notice in flight when killed is sent twice (README: "When prefixd is down").
    assert!(got.len() <= 21, "{} sent for 20", got.len());
    assert!(sb.spooled().is_empty());
}

#[test]
fn concurrent_flushes_never_deliver_one_notice_twice() {
    let dead = dead_port();
    let port = dead.port;
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "1");
    for i in 1..=10 {
        let ip = format!("192.0.2.{i}");
        assert_eq!(sb.run(&[&ip], Some(b"")).code, 75);
    }
    let srv = dead.revive(Options {
        delay: Duration::from_millis(30),
        ..Default::default()
    });
    let flushers: Vec<_> = (0..4).map(|_| sb.spawn(&["--flush"], b"")).collect();
    for f in flushers {
        assert_eq!(f.wait_with_output().unwrap().status.code(), Some(0));
    }
    let got = srv.banned_ips();
    assert_eq!(got.len(), 10, "{got:?}");
    assert!(sb.spooled().is_empty());
}

/// A bug that panics (release builds abort) still keeps the notice and says so: the panic hook
/// logs it, keeps the notice on its way, and exits 70. The trigger exists in debug builds only.
#[test]
fn a_bug_that_panics_keeps_the_notice_and_says_so() {
    if std::env::var_os("PFN_BIN").is_some() {
        return; // the release binary has no trigger
    }
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_TEST_PANIC", "1");
    let r = sb.run(&["192.0.2.10"], Some(ban_text("192.0.2.10").as_bytes()));
    assert_eq!(r.code, 70, "{}", sb.log());
    assert!(srv.requests().is_empty());
    assert_eq!(sb.spooled().len(), 1);
    let log = sb.log();
    assert!(
        log.contains("ERROR ban 192.0.2.10: internal error: a bug stopped this run: PREFIXD_TEST_PANIC is set")
            && log.contains("ban 192.0.2.10 kept in the spool"),
        "{log}"
    );
    sb.unset("PREFIXD_TEST_PANIC");
    assert_eq!(sb.run(&["--flush"], None).code, 0);
    assert_eq!(srv.banned_ips(), ["192.0.2.10"]);
}
