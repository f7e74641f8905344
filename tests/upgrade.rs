//! Operators upgrade during or right after an outage: the notices the previous release kept
//! (tests/fixtures/spool-0.1.0, written by prefixd-fastnetmon 0.1.0 at commit afdd182 against
//! a prefixd that was down) are delivered by this one.

mod common;

use common::server::Server;
use common::{Sandbox, num, raw_details, s};
use miniserde::json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

const KEPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spool-0.1.0");

/// Copies the kept notices into the sandbox's spool byte for byte, except their recorded
/// time, which moves to a minute ago (order kept) so that no age limit drops them.
fn install_kept_spool(sb: &Sandbox) -> usize {
    let spool = sb.dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(KEPT)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let newest: u64 = names.last().unwrap()[..16].parse().unwrap();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for name in &names {
        let old: u64 = name[..16].parse().unwrap();
        let new = now_ms - 60_000 - (newest - old);
        let text = std::fs::read_to_string(format!("{KEPT}/{name}")).unwrap();
        let text = text.replace(
            &format!("\"received_ms\":{old}"),
            &format!("\"received_ms\":{new}"),
        );
        std::fs::write(spool.join(format!("{new:016}{}", &name[16..])), text).unwrap();
    }
    names.len()
}

#[test]
fn notices_kept_by_the_previous_release_are_delivered_by_this_one() {
    let srv = Server::start();
    let withdrawn = srv.add_mitigation("203.0.113.43", "udp_flood", "active");
    let sb = Sandbox::new(&srv.url);
    assert_eq!(install_kept_spool(&sb), 6);

    let r = sb.run(&["--flush"], None);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, sb.log());
    assert!(sb.spooled().is_empty(), "{:?}", sb.spooled());
    assert_eq!(
        srv.lines(),
        [
            "POST /v1/events".to_string(),
            "POST /v1/events".into(),
            "GET /v1/mitigations?status=pending,active,escalated&victim_ip=203.0.113.42&limit=1000"
                .into(),
            "GET /v1/mitigations?status=pending,active,escalated&victim_ip=203.0.113.43&limit=1000"
                .into(),
            format!("POST /v1/mitigations/{withdrawn}/withdraw"),
            "POST /v1/events".into(),
            "POST /v1/events".into(),
        ]
    );
    assert_eq!(
        sb.leases(),
        ["2001:db8::41", "203.0.113.41", "203.0.113.44"]
    );
    let bans: Vec<_> = srv
        .requests()
        .into_iter()
        .filter(|r| r.target == "/v1/events")
        .map(|r| r.json())
        .collect();
    let seen: Vec<(String, String, Option<i64>)> = bans
        .iter()
        .map(|b| (s(b.get("victim_ip")), s(b.get("vector")), num(b.get("pps"))))
        .collect();
    assert_eq!(
        seen,
        [
            ("203.0.113.41".into(), "udp_flood".into(), Some(150_000)),
            ("2001:db8::41".into(), "udp_flood".into(), Some(9000)),
            // PPS "abc" as FastNetMon gave it: still null, as when it was kept.
            ("203.0.113.44".into(), "unknown".into(), None),
            ("203.0.113.44".into(), "syn_flood".into(), Some(7)),
        ]
    );
    for b in &bans {
        let raw = raw_details(b);
        assert!(matches!(raw.get("replayed"), Some(Value::Bool(true))));
    }
    assert_eq!(
        s(raw_details(&bans[3]).get("direction")),
        "outgoing",
        "the direction FastNetMon gave"
    );
    assert_eq!(
        s(raw_details(&bans[0]).get("raw")),
        common::fixture("ban_ipv4_udp_flood.txt"),
        "the details text as kept"
    );

    // The three victims banned are held now: the next flush looks at their mitigations, side
    // by side, and a victim's lease follows every mitigation its bans made (203.0.113.44's
    // unknown, all traffic, and its syn_flood, TCP: two scopes).
    srv.clear();
    assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
    let mut looks = srv.lines();
    looks.sort();
    let look = |ip: &str, vector: &str| {
        let m = srv.mitigations();
        let m = m.iter().find(|m| m.victim_ip == ip && m.vector == vector);
        format!("GET /v1/mitigations/{}", m.unwrap().id)
    };
    let mut held = vec![
        look("203.0.113.41", "udp_flood"),
        look("2001:db8::41", "udp_flood"),
        look("203.0.113.44", "unknown"),
        look("203.0.113.44", "syn_flood"),
    ];
    held.sort();
    assert_eq!(looks, held);
}
