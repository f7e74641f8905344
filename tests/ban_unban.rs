//! The operator's story end to end: the built binary, run as FastNetMon runs it, against a
//! prefixd stand-in on 127.0.0.1, asserting on exactly what prefixd received.

mod common;

use common::server::{Behavior, Options, Server, TLS_DIR};
use common::{Sandbox, fixture, is_uuid_v4, num, raw_details, s};
use miniserde::json::{self, Value};
use std::time::Duration;

#[test]
fn ban_reaches_prefixd_with_detected_vector() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    let details = fixture("ban_ipv4_syn_flood.txt");
    let r = sb.run(
        &["198.51.100.77", "incoming", "187650", "ban"],
        Some(details.as_bytes()),
    );
    assert_eq!(r.code, 0, "stderr: {} log: {}", r.stderr, sb.log());
    assert_eq!(r.stdout, "", "notify mode keeps stdout quiet");

    // The ban, then one look at the rule prefixd made of it.
    let reqs = srv.requests();
    assert_eq!(
        srv.lines(),
        [
            "POST /v1/events",
            "GET /v1/mitigations/00000000-0000-4000-8000-000000000001"
        ]
    );
    let req = &reqs[0];
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("authorization"), None);
    let body = req.json();
    let keys: Vec<&str> = body.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "action",
            "bps",
            "confidence",
            "event_id",
            "pps",
            "raw_details",
            "source",
            "timestamp",
            "top_dst_ports",
            "vector",
            "victim_ip"
        ]
    );
    assert!(is_uuid_v4(&s(body.get("event_id"))));
    let ts = s(body.get("timestamp"));
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && &ts[10..11] == "T",
        "{ts}"
    );
    assert_eq!(s(body.get("source")), "fastnetmon");
    assert_eq!(s(body.get("victim_ip")), "198.51.100.77");
    assert_eq!(s(body.get("vector")), "syn_flood");
    assert_eq!(s(body.get("action")), "ban");
    assert_eq!(num(body.get("pps")), Some(187_650));
    assert_eq!(num(body.get("bps")), Some(90_000_000));
    // FastNetMon named the attack (README "Confidence").
    assert_eq!(json::to_string(body.get("confidence").unwrap()), "0.9");
    // Every SYN to the victim in the dump goes to 443 (README "Which ports are sent").
    assert_eq!(json::to_string(body.get("top_dst_ports").unwrap()), "[443]");
    let raw = raw_details(&body);
    assert_eq!(s(raw.get("raw")), details);
    assert_eq!(s(raw.get("direction")), "incoming");
    assert_eq!(s(raw.get("original_action")), "ban");
    assert!(matches!(raw.get("truncated"), Some(Value::Bool(false))));

    let log = sb.log();
    assert!(
        log.contains(" INFO ban 198.51.100.77 vector=syn_flood pps=187650 bps=90000000 confidence=0.9 top_dst_ports=443 event_id="),
        "{log}"
    );
    assert!(
        log.contains("-> 202 accepted mitigation_id=00000000-0000-4000-8000-000000000001; rule proto=tcp dst_ports=443 matches 100 % of the attack (18 of 18 packets in FastNetMon's packet dump)"),
        "{log}"
    );
}

#[test]
fn every_fixture_is_sent_with_its_expected_vector() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    let cases = [
        (
            "ban_ipv4_udp_flood.txt",
            ["192.0.2.10", "incoming", "412345"],
            "192.0.2.10",
            "udp_flood",
            4_447_000_000i64,
        ),
        (
            "ban_ipv4_icmp_flood.txt",
            ["192.0.2.55", "incoming", "96512"],
            "192.0.2.55",
            "icmp_flood",
            1_128_000_000,
        ),
        (
            "ban_ipv4_ip_fragmentation.txt",
            ["203.0.113.200", "incoming", "254300"],
            "203.0.113.200",
            "unknown",
            3_010_000_000,
        ),
        (
            "ban_ipv6_udp_flood.txt",
            ["2001:0db8:0042::0010", "incoming", "158200"],
            "2001:db8:42::10",
            "udp_flood",
            1_607_000_000,
        ),
        (
            "ban_ipv4_manual_api.txt",
            ["192.0.2.99", "other", "0"],
            "192.0.2.99",
            "unknown",
            0,
        ),
        (
            "fastnetmon-1.2.4/1-ban-203.0.113.10.txt",
            ["203.0.113.10", "incoming", "3386"],
            "203.0.113.10",
            "udp_flood",
            13_000_000,
        ),
        (
            "fastnetmon-1.2.4/4-ban-203.0.113.11.txt",
            ["203.0.113.11", "incoming", "2940"],
            "203.0.113.11",
            "syn_flood",
            1_000_000,
        ),
        (
            "fastnetmon-1.2.4/7-ban-203.0.113.20.txt",
            ["203.0.113.20", "incoming", "1631"],
            "203.0.113.20",
            "icmp_flood",
            1_000_000,
        ),
        (
            "fastnetmon-1.2.4/9-ban-203.0.113.30.txt",
            ["203.0.113.30", "other", "0"],
            "203.0.113.30",
            "unknown",
            0,
        ),
    ];
    for (file, args, ip, vector, bps) in cases {
        srv.clear();
        let r = sb.run(
            &[args[0], args[1], args[2], "ban"],
            Some(fixture(file).as_bytes()),
        );
        assert_eq!(r.code, 0, "{file}: {}", sb.log());
        let reqs = srv.requests();
        // A look at the rule, when the details hold packets to measure it against.
        let looked = !matches!(
            file,
            "ban_ipv4_manual_api.txt"
                | "fastnetmon-1.2.4/7-ban-203.0.113.20.txt"
                | "fastnetmon-1.2.4/9-ban-203.0.113.30.txt"
        );
        assert_eq!(
            reqs.len(),
            1 + usize::from(looked),
            "{file}: {:?}",
            srv.lines()
        );
        let body = reqs[0].json();
        assert_eq!(s(body.get("victim_ip")), ip, "{file}");
        assert_eq!(s(body.get("vector")), vector, "{file}");
        assert_eq!(num(body.get("bps")), Some(bps), "{file}");
        assert_eq!(s(raw_details(&body).get("direction")), args[1], "{file}");
    }
}

#[test]
fn each_ban_gets_a_fresh_event_id() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    for _ in 0..3 {
        assert_eq!(
            sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"))
                .code,
            0
        );
    }
    let ids: std::collections::BTreeSet<String> = srv
        .requests()
        .iter()
        .map(|r| s(r.json().get("event_id")))
        .collect();
    assert_eq!(ids.len(), 3);
    // Defaults as the script: incoming, pps 0, ban.
    let body = srv.requests()[0].json();
    assert_eq!(num(body.get("pps")), Some(0));
    assert_eq!(s(raw_details(&body).get("direction")), "incoming");
}

#[test]
fn attack_details_is_logged_and_nothing_is_sent() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    let r = sb.run(
        &["203.0.113.10", "incoming", "3386", "attack_details"],
        Some(fixture("fastnetmon-1.2.4/2-attack_details-203.0.113.10.txt").as_bytes()),
    );
    assert_eq!(r.code, 0);
    assert!(srv.requests().is_empty());
    assert!(
        sb.log().contains(
            "INFO attack_details 203.0.113.10 incoming pps=3386: logged only, nothing sent"
        ),
        "{}",
        sb.log()
    );
}

#[test]
fn bad_arguments_exit_64_and_send_nothing() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    let cases: &[&[&str]] = &[
        &[],
        &["192.0.2.10/32"],
        &["999.1.1.1"],
        &[""],
        &["192.0.2.10", "incoming", "5", "block"],
        &["192.0.2.10", "incoming", "5", "ban", "extra"],
        &["--nope", "192.0.2.10"],
    ];
    for args in cases {
        let r = sb.run(args, Some(b"Attack type: udp_flood\n"));
        assert_eq!(r.code, 64, "{args:?}: {}", r.stderr);
    }
    assert!(srv.requests().is_empty());
    let log = sb.log();
    assert!(
        log.contains(
            "ERROR ban 192.0.2.10/32: usage: IP \"192.0.2.10/32\" is not a bare IPv4 or IPv6 address; nothing sent"
        ),
        "{log}"
    );
    assert!(log.contains("ERROR usage: unknown option --nope"), "{log}");
}

#[test]
fn odd_pps_is_sent_as_null_with_a_warning() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    assert_eq!(
        sb.run(&["192.0.2.10", "incoming", "lots", "ban"], Some(b""))
            .code,
        0
    );
    assert_eq!(num(srv.requests()[0].json().get("pps")), None);
    assert!(
        sb.log().contains(
            "WARN ban 192.0.2.10: PPS \"lots\" is not a non-negative integer; sent as null"
        )
    );
}

#[test]
fn any_stdin_gives_valid_json_and_huge_stdin_is_truncated() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    let nasty = b"Attack type: udp_flood\n\ttab \r\n \x00 nul \x1b[31m \xff\xfe bad utf8 \"quote\" \\ back\n";
    assert_eq!(sb.run(&["192.0.2.10"], Some(nasty)).code, 0, "{}", sb.log());
    let raw = s(raw_details(&srv.requests()[0].json()).get("raw"));
    assert_eq!(raw, String::from_utf8_lossy(nasty));

    srv.clear();
    let huge = vec![b'x'; 3 * 1024 * 1024];
    let r = sb.run(&["192.0.2.10"], Some(&huge));
    assert_eq!(r.code, 0, "{}", sb.log());
    let body = srv.requests()[0].json();
    let rd = raw_details(&body);
    assert_eq!(s(rd.get("raw")).len(), 256 * 1024);
    assert!(matches!(rd.get("truncated"), Some(Value::Bool(true))));
}

#[test]
fn unban_withdraws_every_active_mitigation() {
    let srv = Server::start();
    let udp = srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    let syn = srv.add_mitigation("192.0.2.10", "syn_flood", "active");
    let other = srv.add_mitigation("192.0.2.11", "udp_flood", "active");
    let sb = Sandbox::new(&srv.url);
    // FastNetMon gives no stdin on unban: a pipe that never closes must not hold us.
    let r = sb.run_with_open_stdin(&["192.0.2.10", "incoming", "3386", "unban"]);
    assert_eq!(r.code, 0, "{}", sb.log());
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
    assert_eq!(r.stdout, "");

    let reqs = srv.requests();
    let lines: Vec<String> = srv.lines();
    assert_eq!(
        lines,
        [
            "GET /v1/mitigations?status=pending,active,escalated&victim_ip=192.0.2.10&limit=1000"
                .to_string(),
            format!("POST /v1/mitigations/{syn}/withdraw"),
            format!("POST /v1/mitigations/{udp}/withdraw"),
        ]
    );
    for w in &reqs[1..] {
        assert_eq!(
            w.body,
            format!(
                r#"{{"operator_id":"fastnetmon","reason":"FastNetMon unban for 192.0.2.10 (direction=incoming) [prefixd-fastnetmon@{} unban 192.0.2.10]"}}"#,
                common::hostname()
            )
        );
        assert_eq!(w.header("content-type"), Some("application/json"));
    }
    let status = |id: &str| {
        srv.mitigations()
            .into_iter()
            .find(|m| m.id == id)
            .unwrap()
            .status
    };
    assert_eq!(
        (
            status(&udp).as_str(),
            status(&syn).as_str(),
            status(&other).as_str()
        ),
        ("withdrawn", "withdrawn", "active")
    );
    assert!(sb.log().contains(&format!(
        "INFO unban 192.0.2.10: withdrew mitigation {udp} -> 200"
    )));
}

#[test]
fn unban_looks_up_again_while_nothing_is_active() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.set("UNBAN_QUERY_RETRIES", "3")
        .set("UNBAN_QUERY_DELAY_SECONDS", "0.2");
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 0);
    assert_eq!(srv.requests().len(), 3);
    assert!(
        r.took >= Duration::from_millis(400),
        "two pauses of 0.2 s: {:?}",
        r.took
    );
    assert!(
        sb.log()
            .contains("INFO unban 192.0.2.10 -> nothing to withdraw after 3 lookup(s)"),
        "{}",
        sb.log()
    );

    // A ban that lands between two lookups is found and withdrawn.
    srv.clear();
    srv.reply(
        "GET /v1/mitigations?",
        200,
        r#"{"mitigations":[],"count":0}"#,
    );
    let id = srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    let lines: Vec<String> = srv.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[2], format!("POST /v1/mitigations/{id}/withdraw"));
}

#[test]
fn withdraw_answered_400_is_rechecked_and_counts_as_gone() {
    let srv = Server::start();
    let id = srv.add_mitigation("192.0.2.10", "udp_flood", "withdrawn");
    // The lookup still lists it as active (it raced with an expiry or another unban).
    srv.reply(
        "GET /v1/mitigations?",
        200,
        &format!(r#"{{"mitigations":[{{"mitigation_id":"{id}","status":"active","victim_ip":"192.0.2.10"}}],"count":1}}"#),
    );
    let sb = Sandbox::new(&srv.url);
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    let lines: Vec<String> = srv.lines();
    assert_eq!(
        lines[1..],
        [
            format!("POST /v1/mitigations/{id}/withdraw"),
            format!("GET /v1/mitigations/{id}")
        ]
    );
    assert!(
        sb.log().contains(&format!(
            "mitigation {id} already gone (withdraw answered 400)"
        )),
        "{}",
        sb.log()
    );

    // 404 on the withdraw and on the re-check: gone as well.
    srv.clear();
    let ghost = "00000000-0000-4000-8000-0000000000ff";
    srv.reply(
        "GET /v1/mitigations?",
        200,
        &format!(
            r#"{{"mitigations":[{{"mitigation_id":"{ghost}","status":"active","victim_ip":"192.0.2.10"}}],"count":1}}"#
        ),
    );
    assert_eq!(
        sb.run(&["192.0.2.10", "incoming", "0", "unban"], None).code,
        0,
        "{}",
        sb.log()
    );
    assert!(
        sb.log().contains(&format!(
            "mitigation {ghost} already gone (withdraw answered 404)"
        )),
        "{}",
        sb.log()
    );
}

#[test]
fn withdraw_refused_while_still_active_is_a_failure() {
    let srv = Server::start();
    let id = srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    srv.reply("POST /v1/mitigations/", 400, "");
    let sb = Sandbox::new(&srv.url);
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 65, "{}", sb.log());
    assert!(sb.log().contains(&format!("ERROR unban 192.0.2.10: withdraw {id} -> refused by prefixd: POST /v1/mitigations/{id}/withdraw answered 400")), "{}", sb.log());
}

#[test]
fn a_full_page_of_1000_is_withdrawn_and_looked_up_again() {
    let srv = Server::start();
    for _ in 0..1003 {
        srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    }
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_DEADLINE", "120");
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 0, "{}", sb.log().lines().last().unwrap_or(""));
    let gets = srv.requests().iter().filter(|r| r.method == "GET").count();
    let posts = srv.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!((gets, posts), (2, 1003));
    assert!(srv.mitigations().iter().all(|m| m.status == "withdrawn"));
}

#[test]
fn ipv6_victim_is_canonical_in_ban_and_unban() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    assert_eq!(
        sb.run(
            &["2001:0db8:0042::0010", "incoming", "158200", "ban"],
            Some(fixture("ban_ipv6_udp_flood.txt").as_bytes())
        )
        .code,
        0
    );
    assert_eq!(
        sb.run(
            &["2001:0db8:0042::0010", "incoming", "158200", "unban"],
            None
        )
        .code,
        0,
        "{}",
        sb.log()
    );
    let reqs = srv.requests();
    assert_eq!(s(reqs[0].json().get("victim_ip")), "2001:db8:42::10");
    // reqs[1]: the ban's look at its rule.
    assert_eq!(
        reqs[2].target,
        "/v1/mitigations?status=pending,active,escalated&victim_ip=2001:db8:42::10&limit=1000"
    );
    assert_eq!(
        reqs[3].target,
        "/v1/mitigations/00000000-0000-4000-8000-000000000001/withdraw"
    );
    assert!(
        reqs[3]
            .body
            .contains("FastNetMon unban for 2001:db8:42::10 (direction=incoming)")
    );
}

const TOKEN: &str = "s3cr3t-Tok3n-value";

#[test]
fn bearer_token_is_sent_and_never_printed() {
    let srv = Server::with(Options {
        token: Some(TOKEN.into()),
        ..Default::default()
    });
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_TOKEN", TOKEN).set("PREFIXD_DEBUG", "1");
    let ban = sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"));
    assert_eq!(ban.code, 0, "{}", sb.log());
    let id = srv.mitigations()[0].id.clone();
    let unban = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(unban.code, 0, "{}", sb.log());
    for r in srv.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{} {}",
            r.method,
            r.target
        );
    }
    assert_eq!(srv.requests().len(), 3);
    assert_eq!(srv.mitigations()[0].status, "withdrawn", "{id}");
    let all = format!(
        "{}{}{}{}{}",
        sb.log(),
        ban.stdout,
        ban.stderr,
        unban.stdout,
        unban.stderr
    );
    assert!(
        all.contains("DEBUG ban 192.0.2.10: POST "),
        "debug lines are on: {all}"
    );
    assert!(!all.contains(TOKEN), "{all}");
}

#[test]
fn token_file_is_read_and_a_wrong_token_exits_77() {
    let srv = Server::with(Options {
        token: Some(TOKEN.into()),
        ..Default::default()
    });
    let mut sb = Sandbox::new(&srv.url);
    let file = sb.write("token", "wrong-token\nsecond line ignored\n");
    sb.set("PREFIXD_TOKEN_FILE", &file);
    let r = sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"));
    assert_eq!(r.code, 77, "{}", sb.log());
    assert_eq!(srv.requests().len(), 1, "401 is not retried within the run");
    assert_eq!(
        srv.requests()[0].header("authorization"),
        Some("Bearer wrong-token")
    );
    let log = sb.log();
    assert!(log.contains("token refused: POST /v1/events answered 401: {\"error\":\"unauthorized: authentication required\"}"), "{log}");
    assert!(log.contains("is readable by everyone"), "{log}");
    assert!(!log.contains("wrong-token"), "{log}");

    // Unban: 401 with an empty body.
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 77);
}

#[test]
fn prefixd_refusal_exits_65_with_its_message() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    srv.reply(
        "POST /v1/events",
        422,
        r#"{"error":"guardrail violation: IP 192.0.2.10/32 is safelisted"}"#,
    );
    let r = sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"));
    assert_eq!(r.code, 65);
    assert_eq!(srv.requests().len(), 1, "a refusal is final: not retried");
    assert!(sb.log().contains("refused by prefixd: POST /v1/events answered 422: {\"error\":\"guardrail violation: IP 192.0.2.10/32 is safelisted\"}"), "{}", sb.log());
}

#[test]
fn transient_failures_are_retried_with_a_fresh_event_id() {
    let srv = Server::start();
    srv.reply(
        "POST /v1/events",
        503,
        r#"{"error":"service shutting down"}"#,
    );
    srv.reply(
        "POST /v1/events",
        500,
        r#"{"error":"database error: duplicate key"}"#,
    );
    let sb = Sandbox::new(&srv.url);
    let r = sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"));
    assert_eq!(r.code, 0, "{}", sb.log());
    let ids: std::collections::BTreeSet<String> = srv
        .requests()
        .iter()
        .map(|r| s(r.json().get("event_id")))
        .collect();
    assert_eq!((srv.requests().len(), ids.len()), (3, 3));
    assert!(sb.log().contains("attempt 1/3: HTTP 503"), "{}", sb.log());
}

#[test]
fn unreachable_prefixd_exits_75_not_delivered() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "2");
    let r = sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"));
    assert_eq!(r.code, 75);
    assert!(
        sb.log().contains("not delivered: POST http://127.0.0.1:"),
        "{}",
        sb.log()
    );
    assert!(sb.log().contains("connection refused"), "{}", sb.log());
}

#[test]
fn hung_prefixd_cannot_hold_the_run_past_the_deadline() {
    let srv = Server::start();
    for _ in 0..10 {
        srv.script("POST /v1/events", Behavior::Hang(Duration::from_secs(20)));
    }
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_TIMEOUT", "1")
        .set("PREFIXD_DEADLINE", "2.5")
        .set("PREFIXD_RETRIES", "5");
    let r = sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"));
    assert_eq!(r.code, 75, "{}", sb.log());
    assert!(r.took < Duration::from_millis(3500), "took {:?}", r.took);
    assert!(sb.log().contains("timed out"), "{}", sb.log());

    // A server that drops the connection without answering is retried too.
    let srv = Server::start();
    srv.script("POST /v1/events", Behavior::Drop);
    let sb = Sandbox::new(&srv.url);
    assert_eq!(sb.run(&["192.0.2.10"], Some(b"")).code, 0, "{}", sb.log());
    assert_eq!(srv.requests().len(), 2);
}

#[test]
fn https_with_the_test_ca() {
    let srv = Server::with(Options {
        tls: true,
        ..Default::default()
    });
    assert!(srv.url.starts_with("https://"));
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_CA_FILE", &format!("{TLS_DIR}/ca.pem"));
    let r = sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"));
    assert_eq!(r.code, 0, "{}", sb.log());
    assert_eq!(srv.requests().len(), 1);
    assert_eq!(
        sb.run(&["192.0.2.10", "incoming", "0", "unban"], None).code,
        0
    );

    // Bundled web roots do not trust the test CA; neither does an unrelated CA.
    for ca in [None, Some(format!("{TLS_DIR}/other-ca.pem"))] {
        srv.clear();
        let mut sb = Sandbox::new(&srv.url);
        sb.set("PREFIXD_RETRIES", "1");
        if let Some(ca) = &ca {
            sb.set("PREFIXD_CA_FILE", ca);
        }
        let r = sb.run(&["192.0.2.10"], Some(b""));
        assert_eq!(r.code, 75, "{ca:?}");
        assert!(
            srv.requests().is_empty(),
            "nothing reaches an untrusted server"
        );
        // In words, not Rust's error names (`UnknownIssuer`).
        let roots = match &ca {
            None => "any of the bundled Mozilla roots".to_string(),
            Some(path) => format!("any CA in PREFIXD_CA_FILE ({path})"),
        };
        assert!(
            sb.log().contains(&format!(
                "TLS handshake failed: prefixd's certificate is not signed by {roots}"
            )),
            "{}",
            sb.log()
        );
        assert!(!sb.log().contains("UnknownIssuer"), "{}", sb.log());
    }

    // A CA file that is not PEM is a configuration error.
    let mut sb = Sandbox::new(&srv.url);
    let bad = sb.write("ca.pem", "not a certificate\n");
    sb.set("PREFIXD_CA_FILE", &bad);
    assert_eq!(sb.run(&["192.0.2.10"], Some(b"")).code, 78);
}

#[test]
fn env_file_is_read_and_the_environment_wins() {
    let srv = Server::start();
    srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    let mut sb = Sandbox::new("http://127.0.0.1:9");
    sb.unset("PREFIXD_API");
    sb.write(
        "env",
        &format!("# /etc/default/prefixd\nexport PREFIXD_API=\"{}\"\nPREFIXD_OPERATOR='from-file'\nUNBAN_QUERY_RETRIES=1\nbroken line\n", srv.url),
    );
    sb.set("PREFIXD_OPERATOR", "from-env");
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    assert!(
        srv.requests()[1]
            .body
            .contains(r#""operator_id":"from-env""#)
    );
    assert!(
        sb.log().contains("env:5: expected KEY=value; line skipped"),
        "{}",
        sb.log()
    );

    // --env-file names another file; a missing named file is a configuration error.
    let other = sb.write("other.env", &format!("PREFIXD_API={}\n", srv.url));
    sb.unset("PREFIXD_OPERATOR");
    srv.clear();
    srv.add_mitigation("192.0.2.12", "udp_flood", "active");
    assert_eq!(
        sb.run(
            &["--env-file", &other, "192.0.2.12", "incoming", "0", "unban"],
            None
        )
        .code,
        0
    );
    assert!(
        srv.requests()[1]
            .body
            .contains(r#""operator_id":"fastnetmon""#)
    );
    let r = sb.run(
        &[
            "--env-file",
            "/nonexistent/prefixd",
            "192.0.2.12",
            "incoming",
            "0",
            "unban",
        ],
        None,
    );
    assert_eq!(r.code, 78);
}

#[test]
fn configuration_errors_exit_78_naming_variable_and_source() {
    // Where to send is wrong: nothing is sent (78). The bad tuning value beside it is only a
    // WARN with the default it was replaced by.
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.write("env", "PREFIXD_TIMEOUT=soon\n");
    sb.set("PREFIXD_API", "localhost:8080");
    let r = sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"));
    assert_eq!(r.code, 78);
    assert!(srv.requests().is_empty());
    let log = sb.log();
    assert!(
        log.contains("WARN ban 192.0.2.10: PREFIXD_TIMEOUT=soon (from "),
        "{log}"
    );
    assert!(
        log.contains("/env:1): expected a number of seconds; using the default 5"),
        "{log}"
    );
    assert!(log.contains("configuration error: PREFIXD_API=localhost:8080 (from environment): must start with http:// or https://"), "{log}");
}

#[test]
fn unwritable_log_falls_back_to_stderr() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_LOG", "/nonexistent-dir/x.log");
    let r = sb.run(&["192.0.2.10"], Some(b""));
    assert_eq!(r.code, 0);
    assert!(
        r.stderr
            .contains("WARN cannot open log /nonexistent-dir/x.log"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("INFO ban 192.0.2.10"), "{}", r.stderr);
    assert_eq!(r.stdout, "");
}
