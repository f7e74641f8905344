//! Under attack, no victim waits for another: a notice that cannot go holds back only the
//! later notices of its own victim; a flush goes past it; kept notices age out; a replayed
//! unban withdraws only what it was about; exit codes keep their cause. The built binary
//! against the loopback prefixd stand-in.

mod common;

use common::server::{Behavior, Options, Server};
use common::{Sandbox, dead_port, s};
use miniserde::json::Value;
use prefixd_fastnetmon::spool::queue::Spool;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const UDP: &[u8] = b"Attack type: udp_flood\nAttack protocol: udp\n";

/// An active mitigation of `ip` whose every withdrawal answers 500 (a router that will not
/// take it, GoBGP down in enforced mode).
fn stuck_withdraw(srv: &Server, ip: &str, body: &str) {
    let id = srv.add_mitigation(ip, "udp_flood", "active");
    srv.always(
        &format!("POST /v1/mitigations/{id}/withdraw"),
        Behavior::Reply {
            status: 500,
            body: body.into(),
        },
    );
}

/// The spooled notices of `ip`, as stored (oldest first).
fn kept_of(sb: &Sandbox, ip: &str) -> Vec<prefixd_fastnetmon::spool::queue::Entry> {
    sb.spooled()
        .iter()
        .filter(|n| n.ends_with(&format!("-{ip}.notice")))
        .map(|n| Spool::read(&sb.dir.join("spool").join(n)).unwrap().unwrap())
        .collect()
}

fn unix_text(offset_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    prefixd_fastnetmon::time::rfc3339_from_unix((now + offset_secs) as u64)
        .replace('Z', ".123456+00:00")
}

#[test]
fn a_stuck_unban_holds_back_no_other_victim() {
    let srv = Server::start();
    stuck_withdraw(&srv, "203.0.113.10", "");
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_RETRIES", "1");
    let r = sb.run(&["203.0.113.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 75, "{}", sb.log());
    let kept = kept_of(&sb, "203.0.113.10");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].attempts, Some(1));
    assert!(
        kept[0].last_error.as_deref().unwrap().contains("HTTP 500"),
        "{kept:?}"
    );

    let others: Vec<String> = (1..=5).map(|i| format!("198.51.100.{i}")).collect();
    for ip in &others {
        let r = sb.run(&[ip, "incoming", "5000", "ban"], Some(UDP));
        assert_eq!(r.code, 0, "{ip}: {}", sb.log());
        assert!(
            srv.banned_ips().contains(ip),
            "{ip} reached prefixd at once"
        );
    }
    assert!(!sb.log().contains("queued behind"), "{}", sb.log());
    // The stuck unban is still kept (retried by background flushes, never lost).
    let kept = kept_of(&sb, "203.0.113.10");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].action.as_str(), "unban");
    // Background flushes (after each delivered ban) retried the stuck unban meanwhile; every
    // line of the notify runs names its notice.
    for line in sb.log().lines().filter(|l| !l.contains(" flush: ")) {
        assert!(
            line.contains(" unban 203.0.113.10") || line.contains(" ban 198.51.100."),
            "every line names its notice: {line}"
        );
    }
}

#[test]
fn a_flush_goes_past_what_it_cannot_deliver_and_kept_unbans_age_out() {
    let srv = Server::start();
    stuck_withdraw(&srv, "203.0.113.10", r#"{"error":"BGP withdraw failed"}"#);
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_RETRIES", "1");
    assert_eq!(
        sb.run(&["203.0.113.10", "incoming", "0", "unban"], None)
            .code,
        75
    );
    // A ban for another victim that prefixd could not take just then.
    srv.reply(
        "POST /v1/events",
        503,
        r#"{"error":"service shutting down"}"#,
    );
    assert_eq!(sb.run(&["192.0.2.20"], Some(UDP)).code, 75, "{}", sb.log());
    // A new attack on the stuck victim waits behind its unban, and says why.
    let r = sb.run(&["203.0.113.10"], Some(UDP));
    assert_eq!(r.code, 75, "{}", sb.log());
    assert!(
        sb.log()
            .contains("ban 203.0.113.10 queued behind 1 earlier notice(s) of 203.0.113.10"),
        "{}",
        sb.log()
    );
    assert_eq!(kept_of(&sb, "203.0.113.10").len(), 2);

    srv.clear();
    let r = sb.run(&["--flush"], None);
    assert_eq!(r.code, 75, "something is left: {}", sb.log());
    assert_eq!(
        srv.banned_ips(),
        ["192.0.2.20"],
        "the other victim is delivered"
    );
    let kept = kept_of(&sb, "203.0.113.10");
    assert_eq!(
        kept.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["unban", "ban"],
        "the stuck victim keeps its order"
    );
    assert!(kept[0].attempts.unwrap() >= 3, "{kept:?}");
    assert!(
        kept[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("BGP withdraw failed")
    );
    assert_eq!(kept[1].attempts, None, "never sent ahead of the unban");
    assert!(
        sb.log()
            .contains("1 later notice(s) of 203.0.113.10 wait behind it"),
        "{}",
        sb.log()
    );

    // The unban ages out (warning: IP, age, last error); the ban behind it then goes.
    sb.set("PREFIXD_UNBAN_MAX_AGE", "30");
    sb.backdate(31.0);
    srv.clear();
    assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
    assert_eq!(srv.banned_ips(), ["203.0.113.10"]);
    assert!(sb.spooled().is_empty());
    let log = sb.log();
    let line = log
        .lines()
        .find(|l| l.contains("dropped spooled unban 203.0.113.10"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains("s old, older than PREFIXD_UNBAN_MAX_AGE (30.0s)"),
        "{line}"
    );
    assert!(
        line.contains("last error: not delivered: POST http://"),
        "{line}"
    );
}

#[test]
fn a_wrong_api_path_is_a_configuration_error_and_the_ban_is_kept() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&format!("{}/prefixd", srv.url));
    let r = sb.run(&["192.0.2.30", "incoming", "100", "ban"], Some(UDP));
    assert_eq!(r.code, 78, "{}", sb.log());
    assert_eq!(srv.lines(), ["POST /prefixd/v1/events"]);
    assert!(
        sb.log().contains(&format!(
            "answered 404: (empty body) (PREFIXD_API={}/prefixd does not lead to prefixd's API",
            srv.url
        )),
        "{}",
        sb.log()
    );
    assert_eq!(kept_of(&sb, "192.0.2.30").len(), 1);
    // Fixed: the next flush delivers it.
    sb.set("PREFIXD_API", &srv.url);
    assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
    assert_eq!(srv.banned_ips(), ["192.0.2.30"]);
}

#[test]
fn a_stdin_still_open_at_the_deadline_keeps_the_ban_with_what_was_read() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_DEADLINE", "1");
    let started = Instant::now();
    let mut child = sb.spawn_open(&["198.51.100.9", "incoming", "5000", "ban"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Attack type: udp_flood\n").unwrap();
    // Held open past the deadline; the wait below is bounded.
    let mut code = None;
    while started.elapsed() < Duration::from_secs(10) {
        if let Some(s) = child.try_wait().unwrap() {
            code = s.code();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    if code.is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    assert_eq!(code, Some(75), "{}", sb.log());
    assert!(srv.requests().is_empty());
    let kept = kept_of(&sb, "198.51.100.9");
    assert_eq!(kept.len(), 1, "{}", sb.log());
    assert_eq!(
        (kept[0].details.as_str(), kept[0].truncated),
        ("Attack type: udp_flood\n", true)
    );
    for line in sb.log().lines() {
        assert!(
            line.contains("ban 198.51.100.9"),
            "every line names the notice: {line}"
        );
    }
    assert!(
        sb.log()
            .contains("stdin was still open at PREFIXD_DEADLINE"),
        "{}",
        sb.log()
    );

    sb.set("PREFIXD_DEADLINE", "20");
    assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
    let body = srv.requests()[0].json();
    assert_eq!(s(body.get("vector")), "udp_flood");
    let raw = common::raw_details(&body);
    assert!(matches!(raw.get("truncated"), Some(Value::Bool(true))));
}

#[test]
fn a_replayed_unban_withdraws_only_what_it_was_about() {
    let dead = dead_port();
    let port = dead.port;
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "1");
    assert_eq!(
        sb.run(&["203.0.113.40", "incoming", "0", "unban"], None)
            .code,
        75
    );
    // prefixd comes back: one mitigation from before the unban, one updated within the clock
    // allowance, one a newer attack extended after it, one another detector made since.
    let srv = dead.revive(Options::default());
    let old = srv.add_mitigation_updated("203.0.113.40", "udp_flood", "active", &unix_text(-60));
    let near = srv.add_mitigation_updated("203.0.113.40", "icmp_flood", "active", &unix_text(3));
    let newer = srv.add_mitigation_updated("203.0.113.40", "syn_flood", "active", &unix_text(60));
    let other = srv.add_mitigation_updated("203.0.113.40", "unknown", "active", &unix_text(600));
    assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
    let withdrawn: Vec<String> = srv
        .lines()
        .into_iter()
        .filter(|l| l.ends_with("/withdraw"))
        .collect();
    assert_eq!(
        withdrawn,
        [
            format!("POST /v1/mitigations/{near}/withdraw"),
            format!("POST /v1/mitigations/{old}/withdraw")
        ]
    );
    for id in [&newer, &other] {
        assert!(
            sb.log()
                .contains(&format!("left mitigation {id} alone: updated_at ")),
            "{}",
            sb.log()
        );
    }
    let status = |id: &str| {
        srv.mitigations()
            .into_iter()
            .find(|m| m.id == id)
            .unwrap()
            .status
    };
    assert_eq!(status(&newer), "active");
    assert_eq!(status(&other), "active");

    // A live unban is unchanged: it withdraws every active mitigation of the victim.
    assert_eq!(
        sb.run(&["203.0.113.40", "incoming", "0", "unban"], None)
            .code,
        0
    );
    assert_eq!(status(&newer), "withdrawn");
    assert_eq!(status(&other), "withdrawn");
}

#[test]
fn exit_codes_keep_their_cause_when_a_notice_is_kept() {
    let srv = Server::with(Options {
        token: Some("right".into()),
        ..Default::default()
    });
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_TOKEN", "wrong");
    assert_eq!(sb.run(&["192.0.2.50"], Some(UDP)).code, 77);
    // Queued behind its victim's kept ban, the next one fails for the same reason: 77, not 75.
    assert_eq!(sb.run(&["192.0.2.50"], Some(UDP)).code, 77, "{}", sb.log());
    assert_eq!(kept_of(&sb, "192.0.2.50").len(), 2);
    assert_eq!(sb.run(&["--flush"], None).code, 77);
    // A configuration error: 78, kept. (A bad tuning value no longer is one: it falls back
    // to its default; a CA file that cannot be read still stops the call.)
    sb.set("PREFIXD_TOKEN", "right")
        .set("PREFIXD_CA_FILE", "/nonexistent/ca.pem");
    assert_eq!(sb.run(&["192.0.2.51"], Some(UDP)).code, 78);
    assert_eq!(kept_of(&sb, "192.0.2.51").len(), 1);
    sb.unset("PREFIXD_CA_FILE");
    assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
    assert_eq!(
        srv.banned_ips()
            .iter()
            .filter(|ip| *ip == "192.0.2.51")
            .count(),
        1
    );
    assert!(sb.spooled().is_empty());
}

#[test]
fn a_run_stopped_by_its_deadline_keeps_its_notice_once() {
    let srv = Server::start();
    srv.always("POST /v1/events", Behavior::Hang(Duration::from_secs(5)));
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_DEADLINE", "1").set("PREFIXD_TIMEOUT", "4");
    let r = sb.run(&["192.0.2.60"], Some(UDP));
    assert_eq!(r.code, 75, "{}", sb.log());
    assert_eq!(kept_of(&sb, "192.0.2.60").len(), 1, "{}", sb.log());
}

#[test]
fn a_notice_whose_keeping_was_cut_short_is_recovered_by_the_next_flush() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    let spool = Spool::open(&sb.dir.join("spool")).unwrap();
    let name = "0001795830000000-0000000042-0a0b0c0d-ban-192.0.2.70.notice";
    let entry = format!(
        r#"{{"victim_ip":"192.0.2.70","direction":"incoming","pps":"9","action":"ban","details":"Attack type: syn_flood\n","truncated":false,"received_ms":{}}}"#,
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            - 120_000
    );
    let tmp = spool.dir().join(format!(".tmp-{name}"));
    std::fs::write(&tmp, entry).unwrap();
    let settled = SystemTime::now() - Duration::from_secs(120);
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(settled)
        .unwrap();
    assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
    assert_eq!(srv.banned_ips(), ["192.0.2.70"]);
    assert!(sb.log().contains("recovered "), "{}", sb.log());
    let mut left: Vec<_> = std::fs::read_dir(spool.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // The delivered ban's victim is held until its unban (its lease under leases/).
    assert_eq!(left, [".flush.lock", "leases"], "nothing else left over");
    assert_eq!(sb.leases(), ["192.0.2.70"]);
}

#[test]
fn unrelated_victims_are_delivered_side_by_side_and_leave_no_lock_files() {
    let srv = Server::with(Options {
        delay: Duration::from_millis(1000),
        ..Default::default()
    });
    let sb = Sandbox::new(&srv.url);
    let ips: Vec<String> = (0..150)
        .map(|i| format!("198.18.{}.{}", i / 100, i % 100 + 1))
        .collect();
    let children: Vec<_> = ips
        .iter()
        .map(|ip| sb.spawn(&[ip, "incoming", "1000", "ban"], UDP))
        .collect();
    for c in children {
        assert_eq!(
            c.wait_with_output().unwrap().status.code(),
            Some(0),
            "{}",
            sb.log()
        );
    }
    let mut got = srv.banned_ips();
    got.sort();
    let mut want = ips.clone();
    want.sort();
    assert_eq!(got, want, "each once");
    // The old 64 shared lock stripes allowed at most 64 at a time.
    assert!(srv.max_in_flight() > 100, "{} at once", srv.max_in_flight());
    // What stays is one lease per victim (each is held until its unban), no lock file.
    let left: Vec<_> = std::fs::read_dir(sb.dir.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "leases")
        .collect();
    assert!(left.is_empty(), "no lock files pile up: {left:?}");
    assert_eq!(sb.leases().len(), ips.len());
}
