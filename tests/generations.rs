//! The prefixd people run today: every behaviour that differs between prefixd v0.10.1 and
//! v0.19.1 (shared/prefixd-0.19.md), run against the stand-in in both generations — one table
//! of behaviours, not two copies of the tests.

mod common;

use common::server::{Bucket, Generation, Options, Server};
use common::{Sandbox, fixture, hostname, s, sample};
use miniserde::json;
use std::time::{Duration, Instant};

const SYN: &str = "ban_ipv4_syn_flood.txt";
const SYN_ARGS: [&str; 4] = ["198.51.100.77", "incoming", "187650", "ban"];

fn sandbox(srv: &Server) -> Sandbox {
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_RETRIES", "1");
    sb
}

#[test]
fn a_ban_with_confidence_becomes_a_mitigation_on_both_generations() {
    for generation in Generation::BOTH {
        let srv = Server::with(Options::of(generation));
        let sb = sandbox(&srv);
        let r = sb.run(&SYN_ARGS, Some(fixture(SYN).as_bytes()));
        assert_eq!(r.code, 0, "{generation:?}: {}", sb.log());
        let body = srv.requests()[0].json();
        assert_eq!(json::to_string(body.get("confidence").unwrap()), "0.9");
        let ms = srv.mitigations();
        assert_eq!(ms.len(), 1, "{generation:?}: {ms:?}");
        assert_eq!(
            (ms[0].victim_ip.as_str(), ms[0].status.as_str()),
            ("198.51.100.77", "active")
        );
        let log = sb.log();
        assert!(
            log.contains("INFO ban 198.51.100.77 vector=syn_flood")
                && log.contains(" confidence=0.9 ")
                && log.contains(&format!("-> 202 accepted mitigation_id={}", ms[0].id)),
            "{generation:?}: {log}"
        );
    }
}

/// Every row of README "Confidence" reaches prefixd's shipped threshold of 0.5, so v0.19.1
/// mitigates each kind of ban FastNetMon sends.
#[test]
fn every_kind_of_ban_reaches_the_shipped_threshold() {
    let srv = Server::with(Options::of(Generation::V0_19_1));
    let sb = sandbox(&srv);
    let cases: [(&str, [&str; 4], &str); 5] = [
        (SYN, SYN_ARGS, "0.9"),
        (
            "ban_ipv4_ip_fragmentation.txt",
            ["203.0.113.200", "incoming", "254300", "ban"],
            "0.6",
        ),
        (
            "ban_ipv4_manual_api.txt",
            ["192.0.2.99", "other", "0", "ban"],
            "1.0",
        ),
        (
            "ban_ipv6_udp_flood.txt",
            ["2001:0db8:0042::0010", "incoming", "158200", "ban"],
            "0.9",
        ),
        (
            "fastnetmon-1.2.4/9-ban-203.0.113.30.txt",
            ["203.0.113.30", "other", "0", "ban"],
            "1.0",
        ),
    ];
    for (file, args, want) in cases {
        let r = sb.run(&args, Some(fixture(file).as_bytes()));
        assert_eq!(r.code, 0, "{file}: {}", sb.log());
        let sent = srv.bans().pop().unwrap();
        assert_eq!(
            json::to_string(sent.get("confidence").unwrap()),
            want,
            "{file}"
        );
    }
    // Inferred from the protocol: FastNetMon said "unknown", the packets are UDP.
    let r = sb.run(
        &["192.0.2.7"],
        Some(b"Attack type: unknown\nAttack protocol: udp\n"),
    );
    assert_eq!(r.code, 0);
    let sent = srv.bans().pop().unwrap();
    assert_eq!(json::to_string(sent.get("confidence").unwrap()), "0.7");
    assert_eq!(srv.mitigations().len(), 6, "{:?}", srv.mitigations());
}

#[test]
fn a_held_ban_is_a_warning_exit_0_and_its_own_metric() {
    for generation in Generation::BOTH {
        let srv = Server::with(Options::of(generation));
        let mut sb = sandbox(&srv);
        let metrics = sb.path("m.prom");
        sb.set("PREFIXD_METRICS", &metrics);
        let why = match generation {
            // prefixd holds what its correlation engine finds too unsure.
            Generation::V0_19_1 => {
                sb.set("PREFIXD_CONFIDENCE", "0.3");
                "held by prefixd's correlation engine"
            }
            // A victim outside prefixd's inventory: recorded, nothing announced.
            Generation::V0_10_1 => {
                srv.reply(
                    "POST /v1/events",
                    202,
                    r#"{"event_id":"11111111-1111-4111-8111-111111111111","external_event_id":null,"status":"accepted_no_mitigation","mitigation_id":null}"#,
                );
                "the victim is in none of prefixd's inventory"
            }
        };
        let r = sb.run(&SYN_ARGS, Some(fixture(SYN).as_bytes()));
        assert_eq!(r.code, 0, "{generation:?}: delivered; prefixd decided");
        assert!(srv.mitigations().is_empty(), "{generation:?}");
        let log = sb.log();
        let line = log
            .lines()
            .find(|l| l.contains(" WARN ") && l.contains("mitigated nothing yet"))
            .unwrap_or_else(|| panic!("{generation:?}: {log}"));
        assert!(
            line.contains("ban 198.51.100.77")
                && line.contains("mitigation_id=none")
                && line.contains(why),
            "{line}"
        );
        assert!(!log.contains(" INFO ban 198.51.100.77 vector"), "{log}");
        let text = std::fs::read_to_string(&metrics).unwrap();
        let series = |result: &str| {
            sample(
                &text,
                &format!("prefixd_fastnetmon_notices_total{{action=\"ban\",result=\"{result}\"}}"),
            )
        };
        assert_eq!((series("held"), series("delivered")), (1.0, 0.0), "{text}");
    }
}

#[test]
fn unban_withdraws_25_mitigations_listed_in_pages() {
    for generation in Generation::BOTH {
        let srv = Server::with(Options {
            // v0.19.1 pages of 10 by cursor (offset ignored); v0.10.1 as it ships: one page of
            // up to 1000, the limit we ask for.
            page_max: if generation == Generation::V0_19_1 {
                10
            } else {
                1000
            },
            ..Options::of(generation)
        });
        for _ in 0..25 {
            srv.add_mitigation("192.0.2.10", "udp_flood", "active");
        }
        srv.add_mitigation("192.0.2.11", "udp_flood", "active");
        let sb = sandbox(&srv);
        let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
        assert_eq!(r.code, 0, "{generation:?}: {}", sb.log());
        let left: Vec<_> = srv
            .mitigations()
            .into_iter()
            .filter(|m| m.status == "active")
            .map(|m| m.victim_ip)
            .collect();
        assert_eq!(left, ["192.0.2.11"], "{generation:?}");
        let lists = srv
            .lines()
            .iter()
            .filter(|l| l.starts_with("GET /v1/mitigations?"))
            .count();
        assert!(lists <= 6, "{generation:?}: {lists} list requests");
        if generation == Generation::V0_19_1 {
            assert_eq!(lists, 3, "10 + 10 + 5 by cursor");
            assert!(
                srv.lines()
                    .iter()
                    .any(|l| l.contains("&cursor=k%2B%2F") && l.ends_with("%3D")),
                "the cursor travels percent-encoded: {:?}",
                srv.lines()
            );
        }
        assert_eq!(
            srv.lines()
                .iter()
                .filter(|l| l.ends_with("/withdraw"))
                .count(),
            25
        );
    }
}

#[test]
fn a_page_that_repeats_its_cursor_is_not_followed_for_ever() {
    let srv = Server::with(Options::of(Generation::V0_19_1));
    let id = srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    let one = format!(
        r#"{{"mitigations":[{{"mitigation_id":"{id}","status":"active","victim_ip":"192.0.2.10","updated_at":"2026-11-25T11:43:03.123456+00:00"}}],"count":1,"next_cursor":"same","has_more":true}}"#
    );
    srv.always(
        "GET /v1/mitigations?",
        common::server::Behavior::Reply {
            status: 200,
            body: one,
        },
    );
    let sb = sandbox(&srv);
    let started = Instant::now();
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    assert!(started.elapsed() < Duration::from_secs(5));
    let lists = srv
        .lines()
        .iter()
        .filter(|l| l.starts_with("GET /v1/mitigations?"))
        .count();
    assert_eq!(
        lists,
        2,
        "the first page, then the cursor once: {:?}",
        srv.lines()
    );
    assert!(sb.log().contains("gave a repeated cursor"), "{}", sb.log());
    assert_eq!(srv.mitigations()[0].status, "withdrawn");
}

#[test]
fn a_429_waits_as_prefixd_asks_then_delivers() {
    for generation in Generation::BOTH {
        let srv = Server::with(Options::of(generation));
        srv.reply(
            "POST /v1/events",
            429,
            r#"{"error":"rate_limited","retry_after_seconds":1}"#,
        );
        let sb = sandbox(&srv);
        let r = sb.run(&SYN_ARGS, Some(fixture(SYN).as_bytes()));
        assert_eq!(r.code, 0, "{generation:?}: {}", sb.log());
        assert_eq!(srv.banned_ips().len(), 2, "{generation:?}");
        // 1 s as asked, plus a jitter of up to 1 s for the first 429.
        assert!(
            r.took >= Duration::from_secs(1) && r.took < Duration::from_millis(2800),
            "{generation:?}: {:?}",
            r.took
        );
        assert!(
            sb.log()
                .contains("prefixd asks to wait 1s (rate limited 1 time(s))"),
            "{}",
            sb.log()
        );
        // PREFIXD_RETRIES=1: a 429 does not use up the attempts.
        assert_eq!(srv.mitigations().len(), 1);
    }
    // A proxy's Retry-After (no JSON body) is honoured too.
    let srv = Server::start();
    srv.script(
        "POST /v1/events",
        common::server::Behavior::Raw(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\ncontent-length: 0\r\n\r\n".into(),
        ),
    );
    let sb = sandbox(&srv);
    let r = sb.run(&SYN_ARGS, Some(fixture(SYN).as_bytes()));
    assert_eq!(r.code, 0, "{}", sb.log());
    assert!(r.took >= Duration::from_secs(2), "{:?}", r.took);
}

#[test]
fn what_cannot_wait_within_the_deadline_is_kept() {
    let srv = Server::with(Options::of(Generation::V0_19_1));
    srv.always(
        "POST /v1/events",
        common::server::Behavior::Reply {
            status: 429,
            body: r#"{"error":"rate_limited","retry_after_seconds":5}"#.into(),
        },
    );
    let mut sb = sandbox(&srv);
    sb.set("PREFIXD_DEADLINE", "3");
    let r = sb.run(&SYN_ARGS, Some(fixture(SYN).as_bytes()));
    assert_eq!(r.code, 75, "{}", sb.log());
    assert_eq!(sb.spooled().len(), 1);
    assert!(r.took < Duration::from_secs(4), "{:?}", r.took);
}

#[test]
fn a_burst_over_the_bucket_is_delivered_in_full() {
    let srv = Server::with(Options {
        bucket: Some(Bucket {
            burst: 5.0,
            per_second: 20.0,
        }),
        ..Options::of(Generation::V0_19_1)
    });
    let sb = sandbox(&srv);
    let text = fixture(SYN);
    let ips: Vec<String> = (1..=30).map(|i| format!("203.0.113.{i}")).collect();
    let children: Vec<_> = ips
        .iter()
        .map(|ip| sb.spawn(&[ip, "incoming", "1000", "ban"], text.as_bytes()))
        .collect();
    for mut c in children {
        assert_eq!(c.wait().unwrap().code(), Some(0), "{}", sb.log());
    }
    assert!(srv.rate_limited() > 0, "the bucket was hit");
    let mut got: Vec<String> = srv.mitigations().into_iter().map(|m| m.victim_ip).collect();
    got.sort();
    let mut want = ips.clone();
    want.sort();
    assert_eq!(got, want);
    assert!(sb.spooled().is_empty());
}

#[test]
fn our_withdrawals_carry_a_marker_prefixd_keeps() {
    for generation in Generation::BOTH {
        let srv = Server::with(Options {
            token: Some("s3cr3t".into()),
            ..Options::of(generation)
        });
        srv.add_mitigation("192.0.2.10", "udp_flood", "active");
        let mut sb = sandbox(&srv);
        sb.set("PREFIXD_TOKEN", "s3cr3t");
        let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
        assert_eq!(r.code, 0, "{generation:?}: {}", sb.log());
        let identity = match generation {
            Generation::V0_19_1 => "bearer-token",
            Generation::V0_10_1 => "fastnetmon",
        };
        assert_eq!(
            srv.mitigations()[0].reason,
            format!(
                "{identity}: FastNetMon unban for 192.0.2.10 (direction=incoming) [prefixd-fastnetmon@{} unban 192.0.2.10]",
                hostname()
            )
        );
        // operator_id is still sent: v0.10.1 requires it.
        let w = srv.requests().last().unwrap().json();
        assert_eq!(s(w.get("operator_id")), "fastnetmon");
    }
}

#[test]
fn check_names_prefixd_s_version_and_generation() {
    for (generation, version, words) in [
        (Generation::V0_10_1, "0.10.1", "the v0.10 generation"),
        (Generation::V0_19_1, "0.19.1", "the v0.19 generation"),
    ] {
        let srv = Server::with(Options::of(generation));
        let sb = sandbox(&srv);
        let r = sb.run(&["--check"], None);
        assert_eq!(r.code, 0, "{}", r.stdout);
        assert!(
            r.stdout
                .contains(&format!("✔ prefixd {version} is {words}")),
            "{}",
            r.stdout
        );
    }
}

#[test]
fn a_page_that_cannot_be_had_still_withdraws_what_was_listed_and_keeps_the_unban() {
    let srv = Server::with(Options {
        page_max: 10,
        ..Options::of(Generation::V0_19_1)
    });
    for _ in 0..15 {
        srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    }
    srv.reply(
        "GET /v1/mitigations?status=pending,active,escalated&victim_ip=192.0.2.10&limit=1000&cursor=",
        400,
        r#"{"error":"invalid cursor"}"#,
    );
    let sb = sandbox(&srv);
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 75, "{}", sb.log());
    let active = |srv: &Server| {
        srv.mitigations()
            .iter()
            .filter(|m| m.status == "active")
            .count()
    };
    assert_eq!(active(&srv), 5, "the first page's ten were withdrawn");
    assert_eq!(sb.spooled().len(), 1, "the unban is kept");
    assert!(
        sb.log()
            .contains("page 2 of the mitigations of 192.0.2.10 could not be had"),
        "{}",
        sb.log()
    );
    // prefixd pages again: the kept unban withdraws the rest.
    assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
    assert_eq!(active(&srv), 0);
    assert!(sb.spooled().is_empty());
}

#[test]
fn odd_cursors_end_the_listing_with_a_warning_not_a_loop() {
    let srv = Server::with(Options::of(Generation::V0_19_1));
    let id = srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    let row = format!(
        r#"{{"mitigation_id":"{id}","status":"active","victim_ip":"192.0.2.10","updated_at":"2026-11-25T11:43:03.123456+00:00"}}"#
    );
    let long = "x".repeat(4000);
    for (tail, says) in [
        (
            format!(r#""next_cursor":"{long}","has_more":true"#),
            "a cursor of 4000 bytes",
        ),
        (
            r#""next_cursor":null,"has_more":true"#.into(),
            "gave no cursor",
        ),
        (
            r#""next_cursor":"c","has_more":"true""#.into(),
            "has_more that is not true or false",
        ),
    ] {
        srv.set_status(&id, "active");
        srv.clear();
        srv.reply(
            "GET /v1/mitigations?",
            200,
            &format!(r#"{{"mitigations":[{row},{{"mitigation_id":null,"status":"active"}}],"count":2,{tail}}}"#),
        );
        let sb = sandbox(&srv);
        let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
        assert_eq!(r.code, 0, "{says}: {}", sb.log());
        assert!(sb.log().contains(says), "{}", sb.log());
        assert_eq!(srv.mitigations()[0].status, "withdrawn", "{says}");
        // The row without an id is never acted on; one list request, one withdraw.
        assert_eq!(srv.lines().len(), 2, "{says}: {:?}", srv.lines());
    }
}
