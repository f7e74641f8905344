//! FastNetMon forgets its bans when it restarts and never sends their unbans: `--flush` asks
//! its ban list (here a stand-in script that FASTNETMON_BANLIST names, answering as
//! `fastnetmon_api_client get_banlist` does) and treats a held victim the list has not shown
//! for the grace period as FastNetMon's unban. Only a real list decides. Both prefixd
//! generations.

mod common;

use common::server::{Generation, Options, Server};
use common::{Sandbox, fixture, s};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const V4: &str = "203.0.113.10";
const GONE: &str = "203.0.113.11";
const V6: &str = "2001:db8::10";

/// A sandbox whose FastNetMon ban list is `banlist` (what the script prints) with exit code
/// 0, and three held victims banned.
fn held(srv: &Server) -> Sandbox {
    let mut sb = Sandbox::new(&srv.url);
    let script = sb.write(
        "get_banlist",
        "#!/bin/sh\n# fastnetmon_api_client get_banlist, as FastNetMon answers it\n. \"$(dirname \"$0\")/answer\"\n",
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb.set("FASTNETMON_BANLIST", &format!("{script} get_banlist"))
        .set("PREFIXD_RETRIES", "1")
        .set("PREFIXD_DEADLINE", "5");
    answer(&sb, "printf ''");
    for (ip, details) in [
        (V4, "ban_ipv4_udp_flood.txt"),
        (GONE, "ban_ipv4_syn_flood.txt"),
        (V6, "ban_ipv6_udp_flood.txt"),
    ] {
        let r = sb.run(
            &[ip, "incoming", "1000", "ban"],
            Some(fixture(details).as_bytes()),
        );
        assert_eq!(r.code, 0, "{}", sb.log());
    }
    assert_eq!(sb.leases(), [V6, V4, GONE]);
    sb
}

/// What the stand-in does when asked: shell lines.
fn answer(sb: &Sandbox, lines: &str) {
    sb.write("answer", &format!("{lines}\n"));
}

fn flush(sb: &Sandbox) -> common::Run {
    let r = sb.run(&["--flush"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    r
}

/// The withdrawals prefixd received: (mitigation's victim, reason).
fn withdrawals(srv: &Server) -> Vec<(String, String)> {
    let ms = srv.mitigations();
    srv.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.target.ends_with("/withdraw"))
        .map(|r| {
            let id = r
                .target
                .trim_start_matches("/v1/mitigations/")
                .trim_end_matches("/withdraw");
            let victim = ms.iter().find(|m| m.id == id).map(|m| m.victim_ip.clone());
            (victim.unwrap_or_default(), s(r.json().get("reason")))
        })
        .collect()
}

#[test]
fn a_victim_fastnetmon_no_longer_lists_is_withdrawn_after_the_grace_period() {
    for g in Generation::BOTH {
        let srv = Server::with(Options::of(g));
        let sb = held(&srv);
        // FastNetMon restarted: it bans V4 again (the attack goes on) and IPv6 as a /128;
        // GONE is not in its list.
        answer(&sb, &format!("echo {V4}/32; echo {V6}/128"));
        flush(&sb);
        assert!(
            withdrawals(&srv).is_empty(),
            "{g:?}: within the grace: {}",
            sb.log()
        );
        assert!(
            sb.log().contains(&format!("INFO {GONE}: not in FastNetMon's ban list (restarted, or the ban was lost); its unban in 120s")),
            "{g:?}: {}",
            sb.log()
        );
        let st = sb.run(&["--status"], None);
        assert!(
            st.stdout.contains("FastNetMon's ban list: read ") && st.stdout.contains("2 entries"),
            "{}",
            st.stdout
        );
        assert!(
            st.stdout
                .lines()
                .any(|l| l.contains(GONE) && l.contains("NOT IN FASTNETMON'S BAN LIST")),
            "{}",
            st.stdout
        );
        assert!(
            st.stdout
                .lines()
                .any(|l| l.contains(V4) && l.ends_with("; FastNetMon bans it")),
            "{}",
            st.stdout
        );

        // Two minutes on, still not listed: FastNetMon's unban, on its behalf.
        sb.backdate(121.0);
        flush(&sb);
        let w = withdrawals(&srv);
        assert_eq!(w.len(), 1, "{g:?}: {w:?}\n{}", sb.log());
        assert_eq!(w[0].0, GONE);
        assert!(
            w[0].1.contains(&format!(
                "FastNetMon no longer bans {GONE} (not in its ban list since "
            )) && w[0].1.contains(&format!(
                "[prefixd-fastnetmon@{} unban {GONE}]",
                common::hostname()
            )),
            "{g:?}: {}",
            w[0].1
        );
        assert!(
            !srv.active(GONE) && srv.active(V4) && srv.active(V6),
            "{g:?}"
        );
        assert_eq!(sb.leases(), [V6, V4], "{g:?}: the others stay held");
        assert!(
            sb.log()
                .contains(&format!("WARN {GONE}: FastNetMon no longer bans it")),
            "{}",
            sb.log()
        );
        // Nothing more for it at the next flush.
        flush(&sb);
        assert_eq!(withdrawals(&srv).len(), 1, "{g:?}");
    }
}

#[test]
fn only_a_real_list_decides() {
    let srv = Server::with(Options::of(Generation::V0_19_1));
    let sb = held(&srv);
    let query_failed = "echo 'Query failed failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:50052: Failed to connect to remote host: Connection refused'";
    for (what, lines) in [
        ("FastNetMon down (the client still exits 0)", query_failed),
        (
            "garbage",
            "echo '203.0.113.10/32'; echo 'ban, unban, get_banlist'",
        ),
        ("a non-zero exit", "echo 203.0.113.10/32; exit 1"),
        (
            "a client that is not there",
            "exec /nonexistent/fastnetmon_api_client",
        ),
    ] {
        answer(&sb, lines);
        sb.backdate(3600.0);
        let r = flush(&sb);
        assert!(withdrawals(&srv).is_empty(), "{what}: {}", sb.log());
        assert_eq!(sb.leases(), [V6, V4, GONE], "{what}");
        let warns = sb
            .log()
            .lines()
            .filter(|l| l.contains("WARN FastNetMon's ban list not read ("))
            .count();
        assert!(warns >= 1, "{what}: one WARN per flush:\n{}", sb.log());
        assert!(r.stderr.is_empty() || !r.stderr.contains("panicked"));
    }
    let warns = sb
        .log()
        .lines()
        .filter(|l| l.contains("WARN FastNetMon's ban list not read ("))
        .count();
    assert_eq!(warns, 4, "one per flush, not per victim:\n{}", sb.log());
    let st = sb.run(&["--status"], None);
    assert!(
        st.stdout.contains("FastNetMon's ban list: NOT READ "),
        "{}",
        st.stdout
    );

    // A client that hangs: cut at the deadline, the flush ends, nothing withdrawn.
    answer(&sb, "exec sleep 30");
    let started = Instant::now();
    flush(&sb);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert!(sb.log().contains("did not answer within"), "{}", sb.log());
    assert!(withdrawals(&srv).is_empty());

    // Then FastNetMon answers an empty list: everyone it no longer bans goes after the grace.
    answer(&sb, "printf ''");
    flush(&sb);
    assert!(
        withdrawals(&srv).is_empty(),
        "the grace starts at the first real answer"
    );
    sb.backdate(121.0);
    flush(&sb);
    let mut gone: Vec<String> = withdrawals(&srv).into_iter().map(|(v, _)| v).collect();
    gone.sort();
    assert_eq!(gone, [V6, V4, GONE]);
    assert!(sb.leases().is_empty());
}

#[test]
fn a_wider_prefix_covers_its_victims_and_a_victim_listed_again_stays() {
    let srv = Server::with(Options::of(Generation::V0_10_1));
    let sb = held(&srv);
    answer(&sb, "echo 203.0.113.0/24");
    flush(&sb);
    sb.backdate(3600.0);
    flush(&sb);
    let w = withdrawals(&srv);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, V6, "only the IPv6 victim is outside 203.0.113.0/24");
    // Unlisted, then listed again before the grace ends: still held, noted.
    answer(&sb, "printf ''");
    flush(&sb);
    answer(&sb, "echo 203.0.113.10/32; echo 203.0.113.11/32");
    flush(&sb);
    assert!(
        sb.log().contains(&format!(
            "INFO {V4}: in FastNetMon's ban list again: still held"
        )),
        "{}",
        sb.log()
    );
    sb.backdate(3600.0);
    flush(&sb);
    assert_eq!(withdrawals(&srv).len(), 1);
    assert_eq!(sb.leases(), [V4, GONE]);
}

#[test]
fn an_unban_prefixd_cannot_take_now_is_kept_and_sent_later() {
    let dead = common::dead_port();
    let srv = Server::with(Options::of(Generation::V0_19_1));
    let mut sb = held(&srv);
    answer(&sb, &format!("echo {V4}/32; echo {V6}/128"));
    flush(&sb);
    sb.backdate(121.0);
    // prefixd goes away at the moment the grace ends.
    sb.set("PREFIXD_API", &format!("http://127.0.0.1:{}", dead.port));
    let r = sb.run(&["--flush"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    assert_eq!(sb.leases(), [V6, V4], "the lease ended: no renewal of it");
    let kept = sb.spooled();
    assert_eq!(kept.len(), 1, "{}", sb.log());
    assert!(
        kept[0].ends_with(&format!("-unban-{GONE}.notice")),
        "{kept:?}"
    );
    // prefixd is back: the flush delivers it.
    sb.set("PREFIXD_API", &srv.url);
    flush(&sb);
    assert!(sb.spooled().is_empty(), "{}", sb.log());
    assert!(!srv.active(GONE) && srv.active(V4));
}
