//! The rule on the router must match the attack: a ban sends the attack's destination ports
//! (`top_dst_ports`) when a few carry nearly all of it, the stand-in builds prefixd's rule from
//! them as prefixd does (event ports ∩ the service's `allowed_ports`), and the run says what
//! that rule matches of the attack — a WARN when it misses. The same stories against both
//! prefixd generations.

mod common;

use common::dump::{self, lines};
use common::server::{Behavior, Generation, Options, Server, Service};
use common::{Sandbox, sample};
use miniserde::json::{self, Value};
use std::time::Duration;

/// prefixd's shipped inventory: a DNS service on .10 and .11 (udp and tcp 53), the rest of
/// the customer's 203.0.113.0/24 in no service.
const DNS: &str = "203.0.113.10";
const NO_SERVICE: &str = "203.0.113.50";

fn prefixd(generation: Generation) -> Server {
    prefixd_with(generation, Options::default())
}

fn prefixd_with(generation: Generation, opts: Options) -> Server {
    Server::with(Options {
        services: vec![Service::dns(&[DNS, "203.0.113.11"])],
        ..Options { generation, ..opts }
    })
}

fn sandbox(srv: &Server) -> Sandbox {
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_RETRIES", "1");
    sb
}

fn ban(sb: &Sandbox, ip: &str, details: &str) {
    let r = sb.run(&[ip, "incoming", "3386", "ban"], Some(details.as_bytes()));
    assert_eq!(r.code, 0, "{ip}: {}", sb.log());
}

/// A prefixd whose mitigations last 10 minutes, and a sandbox whose `--flush` renews every
/// held victim's at once.
fn renewing(generation: Generation) -> (Server, Sandbox) {
    let srv = prefixd_with(
        generation,
        Options {
            ttl: Some(Duration::from_secs(600)),
            ..Options::default()
        },
    );
    let mut sb = sandbox(&srv);
    sb.set("PREFIXD_RENEW_BEFORE", "86400");
    (srv, sb)
}

/// Our log says `what`.
fn logged(sb: &Sandbox, what: &str) {
    let log = sb.log();
    assert!(log.contains(what), "not in the log: {what}\n{log}");
}

/// `top_dst_ports` as sent: `[27015]`, or `null`.
fn ports_sent(b: &std::collections::BTreeMap<String, Value>) -> String {
    json::to_string(
        b.get("top_dst_ports")
            .expect("top_dst_ports is always sent"),
    )
}

/// The issue's table: a UDP flood aimed at 27015. Before, the DNS service's rule was
/// `dstp = 53` (none of the attack) and the host without a service lost all its UDP.
#[test]
fn a_flood_on_one_port_gets_a_rule_that_matches_it_on_both_kinds_of_victim() {
    for generation in Generation::BOTH {
        let srv = prefixd(generation);
        let sb = sandbox(&srv);
        for ip in [DNS, NO_SERVICE] {
            ban(&sb, ip, &dump::udp_flood(ip, &[lines("udp", 27015, 20)]));
        }
        let bans = srv.bans();
        assert_eq!(bans.len(), 2);
        assert!(bans.iter().all(|b| ports_sent(b) == "[27015]"), "{bans:?}");
        // 27015 ∩ {53} is empty: all UDP to the DNS host. No service: the attack's port.
        assert_eq!(srv.rules(DNS), [(Some(17), vec![])], "{generation:?}");
        assert_eq!(
            srv.rules(NO_SERVICE),
            [(Some(17), vec![27015])],
            "{generation:?}"
        );
        let log = sb.log();
        for (ip, rule) in [(DNS, "any"), (NO_SERVICE, "27015")] {
            let line = log
                .lines()
                .find(|l| l.contains(&format!("INFO ban {ip} ")))
                .unwrap_or_else(|| panic!("{generation:?}: {log}"));
            assert!(
                line.contains(" top_dst_ports=27015 ")
                    && line.ends_with(&format!(
                        "; rule proto=udp dst_ports={rule} matches 100 % of the attack (20 of 20 packets in FastNetMon's packet dump)"
                    )),
                "{generation:?}: {line}"
            );
        }
        // Each ban looked once at the mitigation it made.
        let looks = srv
            .lines()
            .iter()
            .filter(|l| l.starts_with("GET /v1/mitigations/"))
            .count();
        assert_eq!(looks, 2, "{:?}", srv.lines());
    }
}

/// A spread attack sends no ports, as before; a service's rule then misses it, and the
/// operator hears about it: a WARN naming the rule and the busiest ports, and the metrics.
#[test]
fn a_rule_that_misses_the_attack_is_a_warning_and_a_metric() {
    for generation in Generation::BOTH {
        let srv = prefixd(generation);
        let mut sb = sandbox(&srv);
        let metrics = sb.path("m.prom");
        sb.set("PREFIXD_METRICS", &metrics);
        let spread: Vec<_> = (0..20).map(|i| lines("udp", 30_000 + i, 1)).collect();
        ban(&sb, DNS, &dump::udp_flood(DNS, &spread));
        ban(&sb, NO_SERVICE, &dump::udp_flood(NO_SERVICE, &spread));
        assert!(srv.bans().iter().all(|b| ports_sent(b) == "null"));
        assert_eq!(srv.rules(DNS), [(Some(17), vec![53])]);
        let log = sb.log();
        let warn = log
            .lines()
            .find(|l| l.contains(" WARN ban 203.0.113.10 "))
            .unwrap_or_else(|| panic!("{generation:?}: {log}"));
        assert!(
            warn.contains("-> 202 accepted mitigation_id=")
                && warn.contains("; rule proto=udp dst_ports=53 MISSES the attack: it matches 0 % of it (0 of 20 packets in FastNetMon's packet dump); the attack's busiest ports: udp 30000 (5 %), udp 30001 (5 %), udp 30002 (5 %) and 17 more; check the victim's service and its allowed_ports in prefixd's inventory"),
            "{warn}"
        );
        // All UDP to the host without a service: all of the attack.
        assert!(
            log.contains("INFO ban 203.0.113.50 ")
                && log.contains("rule proto=udp dst_ports=any matches 100 % of the attack"),
            "{log}"
        );
        let text = std::fs::read_to_string(&metrics).unwrap();
        let rules = |r: &str| {
            sample(
                &text,
                &format!("prefixd_fastnetmon_rules_total{{result=\"{r}\"}}"),
            )
        };
        assert_eq!(
            (rules("matches"), rules("misses"), rules("unchecked")),
            (1.0, 1.0, 0.0),
            "{text}"
        );
    }
}

/// prefixd keys a mitigation on prefix + protocol + ports: a renewal sends exactly the ports
/// of the ban it renews; a later ban with other ports is a second mitigation, followed too;
/// FastNetMon's unban withdraws them all.
#[test]
fn every_scope_a_victim_s_bans_made_is_renewed_with_its_own_ports_and_withdrawn_by_the_unban() {
    for generation in Generation::BOTH {
        let (srv, sb) = renewing(generation);
        ban(
            &sb,
            NO_SERVICE,
            &dump::udp_flood(NO_SERVICE, &[lines("udp", 27015, 20)]),
        );
        ban(
            &sb,
            NO_SERVICE,
            &dump::udp_flood(NO_SERVICE, &[lines("udp", 3478, 20)]),
        );
        // The same ports again: the first mitigation extended, no third.
        ban(
            &sb,
            NO_SERVICE,
            &dump::udp_flood(NO_SERVICE, &[lines("udp", 27015, 20)]),
        );
        let mut got = srv.rules(NO_SERVICE);
        got.sort();
        assert_eq!(got, [(Some(17), vec![3478]), (Some(17), vec![27015])]);
        assert_eq!(sb.leases(), [NO_SERVICE], "one lease, two mitigations");
        srv.clear();
        let r = sb.run(&["--flush"], None);
        assert_eq!(r.code, 0, "{}", sb.log());
        let mut renewed: Vec<String> = srv.bans().iter().map(ports_sent).collect();
        renewed.sort();
        assert_eq!(
            renewed,
            ["[27015]", "[3478]"],
            "{generation:?}: {}",
            sb.log()
        );
        assert_eq!(
            srv.mitigations().len(),
            2,
            "renewals extend, create nothing"
        );
        assert!(
            srv.mitigations().iter().all(|m| m.events.len() >= 2),
            "{:?}",
            srv.mitigations()
        );
        let r = sb.run(&[NO_SERVICE, "incoming", "0", "unban"], None);
        assert_eq!(r.code, 0, "{}", sb.log());
        assert!(srv.mitigations().iter().all(|m| m.status == "withdrawn"));
        assert!(sb.leases().is_empty());
    }
}

/// A lease written by 0.2.0 (no ports in it) still loads and renews: without ports, as its
/// ban was sent, so prefixd extends the mitigation it made.
#[test]
fn a_lease_of_the_previous_release_renews_without_ports() {
    for generation in Generation::BOTH {
        let (srv, sb) = renewing(generation);
        let id = srv.add_mitigation(NO_SERVICE, "udp_flood", "active");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        std::fs::create_dir_all(sb.dir.join("spool/leases")).unwrap();
        std::fs::write(
            sb.dir.join(format!("spool/leases/{NO_SERVICE}.lease")),
            format!(
                r#"{{"victim_ip":"{NO_SERVICE}","direction":"incoming","vector":"udp_flood","confidence":0.9,"pps":1000,"bps":null,"banned_ms":{now},"event_id":"8182c3a0-5b20-4dac-91b9-30ecca53d81e","mitigation_id":"{id}","expires_ms":null,"renewed_ms":null,"renewals":0,"waiting":null,"quota":false}}"#
            ),
        )
        .unwrap();
        assert_eq!(sb.run(&["--flush"], None).code, 0, "{}", sb.log());
        let bans = srv.bans();
        assert_eq!(bans.len(), 1, "{generation:?}: {}", sb.log());
        assert_eq!(ports_sent(&bans[0]), "null");
        assert_eq!(srv.mitigations().len(), 1);
        assert_eq!(srv.mitigations()[0].events.len(), 1, "extended");
        logged(&sb, &format!("mitigation_id={id}"));
    }
}

/// An operator who set prefixd's `max_ports` below our 8 gets a 422 for the ports: the ban
/// goes again at once without them (a rule on the whole protocol), never lost for them.
#[test]
fn a_max_ports_below_ours_gets_the_ban_again_without_ports() {
    for generation in Generation::BOTH {
        let srv = prefixd_with(
            generation,
            Options {
                max_ports: 2,
                ..Options::default()
            },
        );
        let sb = sandbox(&srv);
        let three = [
            lines("udp", 27015, 7),
            lines("udp", 27016, 7),
            lines("udp", 27017, 6),
        ];
        ban(&sb, NO_SERVICE, &dump::udp_flood(NO_SERVICE, &three));
        let sent: Vec<String> = srv.bans().iter().map(ports_sent).collect();
        assert_eq!(sent, ["[27015,27016,27017]", "null"], "{generation:?}");
        assert_eq!(srv.rules(NO_SERVICE), [(Some(17), vec![])]);
        logged(
            &sb,
            "prefixd refused top_dst_ports=27015,27016,27017 (POST /v1/events answered 422: {\"error\":\"guardrail violation: too many ports: 3 (max=2)\"}); sending the ban again at once without them",
        );
    }
}

/// An outgoing flood: our host is its source. A reflector's abused service is the port its
/// flood leaves from, where the requests that feed it arrive: that port is sent, and
/// prefixd's rule on traffic to the host filters those requests.
#[test]
fn an_outgoing_flood_sends_the_port_it_leaves_from() {
    for generation in Generation::BOTH {
        let srv = prefixd(generation);
        let sb = sandbox(&srv);
        let reflector = "203.0.113.40";
        let text = dump::details(
            reflector,
            "outgoing",
            "udp_flood",
            "udp",
            &[lines("udp", 53, 20)],
        );
        let r = sb.run(
            &[reflector, "outgoing", "5000", "ban"],
            Some(text.as_bytes()),
        );
        assert_eq!(r.code, 0, "{}", sb.log());
        assert_eq!(ports_sent(&srv.bans()[0]), "[53]");
        assert_eq!(srv.rules(reflector), [(Some(17), vec![53])]);
        logged(
            &sb,
            "rule proto=udp dst_ports=53 matches 100 % of the attack (20 of 20 packets in FastNetMon's packet dump) (outgoing: the rule filters traffic to the host, on the ports the flood leaves from)",
        );
    }
}

/// The look is one attempt: prefixd rate-limiting it (or anything else) costs the ban
/// nothing and no wait; the rule is counted unchecked.
#[test]
fn a_look_that_fails_costs_the_ban_nothing() {
    let srv = prefixd(Generation::V0_19_1);
    srv.reply(
        "GET /v1/mitigations/",
        429,
        r#"{"error":"rate_limited","retry_after_seconds":5}"#,
    );
    let mut sb = sandbox(&srv);
    let metrics = sb.path("m.prom");
    sb.set("PREFIXD_METRICS", &metrics);
    let r = sb.run(
        &[NO_SERVICE, "incoming", "1", "ban"],
        Some(dump::udp_flood(NO_SERVICE, &[lines("udp", 27015, 20)]).as_bytes()),
    );
    assert_eq!(r.code, 0, "{}", sb.log());
    assert!(r.took < Duration::from_secs(4), "no wait: {:?}", r.took);
    logged(
        &sb,
        "; rule not checked: GET /v1/mitigations/00000000-0000-4000-8000-000000000001 answered 429",
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        sample(
            &text,
            "prefixd_fastnetmon_rules_total{result=\"unchecked\"}"
        ),
        1.0
    );
    // A rule in a shape we do not read is said, not guessed at.
    srv.always(
        "GET /v1/mitigations/",
        Behavior::Reply {
            status: 200,
            body: r#"{"mitigation_id":"x","protocol":"udp","dst_ports":[{"from":1,"to":9}]}"#
                .into(),
        },
    );
    let r = sb.run(
        &[DNS, "incoming", "1", "ban"],
        Some(dump::udp_flood(DNS, &[lines("udp", 27015, 20)]).as_bytes()),
    );
    assert_eq!(r.code, 0);
    logged(
        &sb,
        "rule not checked: GET /v1/mitigations/00000000-0000-4000-8000-000000000002: protocol or dst_ports not in the shape prefixd sends",
    );
}

/// `--dry-run` says which ports it would send and why; a rule's `ports=` wins.
#[test]
fn dry_run_shows_the_ports_and_why_and_a_rule_may_set_them() {
    let srv = prefixd(Generation::V0_10_1);
    let mut sb = sandbox(&srv);
    let dry = |sb: &Sandbox, text: &str| {
        let r = sb.run(
            &["--dry-run", NO_SERVICE, "incoming", "1", "ban"],
            Some(text.as_bytes()),
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let one = dump::udp_flood(
        NO_SERVICE,
        &[lines("udp", 27015, 19), lines("udp", 5000, 1)],
    );
    let out = dry(&sb, &one);
    assert!(
        out.contains("# top_dst_ports 27015 carry 95 % of its 20 UDP packets to 203.0.113.50 in FastNetMon's packet dump (95 % needed on at most 8 ports, each in 2 records or more)\n"),
        "{out}"
    );
    assert!(
        out.contains("\"top_dst_ports\": [\n    27015\n  ]"),
        "{out}"
    );
    let spread: Vec<_> = (0..20).map(|i| lines("udp", 30_000 + i, 1)).collect();
    let out = dry(&sb, &dump::udp_flood(NO_SERVICE, &spread));
    assert!(
        out.contains("# top_dst_ports none: the attack is spread: no UDP port is in 2 records or more of its 20 UDP packets to 203.0.113.50 in FastNetMon's packet dump (95 % needed"),
        "{out}"
    );
    assert!(out.contains("\"top_dst_ports\": null"), "{out}");
    let out = dry(&sb, "Attack type: icmp_flood\nAttack protocol: icmp\n");
    assert!(
        out.contains("# top_dst_ports none: prefixd builds port rules only for udp_flood, syn_flood and ack_flood, not icmp_flood"),
        "{out}"
    );
    assert!(srv.requests().is_empty(), "a dry run sends nothing");

    let rules = sb.write("rules", "udp_flood dport=27015 ports=27015,27016\n");
    sb.set("PREFIXD_VECTOR_RULES", &rules);
    let out = dry(&sb, &one);
    assert!(
        out.contains(&format!(
            "# top_dst_ports 27015,27016 from rule {rules}:1 (ports=)"
        )),
        "{out}"
    );
    ban(&sb, NO_SERVICE, &one);
    assert_eq!(ports_sent(&srv.bans()[0]), "[27015,27016]");
    logged(&sb, "top_dst_ports=27015,27016 event_id=");
}
