//! The figure that decides which ports a ban sends (README "Which ports are sent"). For every
//! real capture of a ban in tests/fixtures and for generated attacks, on a victim in prefixd's
//! DNS service (`allowed_ports` udp and tcp 53) and on one in no service: the share of the
//! attack's packets that prefixd's rule matches — today (no `top_dst_ports`, as 0.2.0 and the
//! bash script send) and with this binary (run against the stand-in, which builds the rule as
//! prefixd does) — and how many other ports the rule filters. Then the same decision taken at
//! other thresholds, which is why `ports::NEARLY_ALL` and `ports::MIN_RECORDS` are what they are.

use crate::dump::{self, Lines, lines};
use crate::server::{self, Options, Server, Service};
use crate::{Env, row, spread, time, verdict};
use prefixd_fastnetmon::fastnetmon::{details, ports};
use std::net::IpAddr;
use std::time::Duration;

/// Destination ports a spread attack picks from (FastNetMon's generated floods and
/// reflection replies land on ephemeral ports).
const SPREAD: (u16, u16) = (1024, 65535);

/// What the attack is, port by port: its exact ports, and a part spread evenly over `SPREAD`.
/// Shares of the attack's packets; what is not the attack (a host's own traffic in the dump)
/// is in neither.
#[derive(Clone)]
struct Truth {
    exact: Vec<(u8, u16, f64)>,
    spread: Option<(u8, f64)>,
}

impl Truth {
    /// The share of the attack a rule on `protocol` (None: any) and `ports` (empty: any)
    /// matches.
    fn matched(&self, protocol: Option<u8>, ports: &[u16]) -> f64 {
        let proto = |p: u8| protocol.is_none_or(|r| r == p);
        let mut hit: f64 = self
            .exact
            .iter()
            .filter(|(p, port, _)| proto(*p) && (ports.is_empty() || ports.contains(port)))
            .map(|(_, _, share)| share)
            .sum();
        if let Some((p, share)) = self.spread.filter(|(p, _)| proto(*p)) {
            let width = f64::from(SPREAD.1 - SPREAD.0) + 1.0;
            let inside = ports
                .iter()
                .filter(|q| (SPREAD.0..=SPREAD.1).contains(*q))
                .filter(|q| {
                    !self
                        .exact
                        .iter()
                        .any(|(ep, eport, _)| *ep == p && eport == *q)
                })
                .count();
            hit += if ports.is_empty() {
                share
            } else {
                share * inside as f64 / width
            };
        }
        hit
    }

    /// Ports the rule filters that carry none of the attack; None: all ports (no port list).
    fn others(&self, ports: &[u16]) -> Option<usize> {
        if ports.is_empty() {
            return None;
        }
        let used = |q: &u16| {
            self.exact.iter().any(|(_, port, _)| port == q)
                || (self.spread.is_some() && (SPREAD.0..=SPREAD.1).contains(q))
        };
        Some(ports.iter().filter(|q| !used(q)).count())
    }
}

struct Case {
    name: String,
    text: String,
    victim: String,
    direction: &'static str,
    /// None: the dump is all we know (a real capture): its own records are the truth.
    truth: Option<Truth>,
}

impl Case {
    fn attack(&self) -> ports::Attack {
        let ip: IpAddr = self.victim.parse().unwrap();
        ports::attack(&details::parse(&self.text), ip, self.direction)
    }

    fn truth(&self) -> Truth {
        if let Some(t) = &self.truth {
            return t.clone();
        }
        let a = self.attack();
        let total: f64 = a.samples.iter().map(|s| s.packets as f64).sum();
        let mut exact: Vec<(u8, u16, f64)> = Vec::new();
        for s in &a.samples {
            let p = s.protocol.unwrap_or(0);
            match exact
                .iter_mut()
                .find(|(ep, port, _)| *ep == p && *port == s.port)
            {
                Some(e) => e.2 += s.packets as f64 / total,
                None => exact.push((p, s.port, s.packets as f64 / total)),
            }
        }
        Truth {
            exact,
            spread: None,
        }
    }
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Every real capture of a ban: FastNetMon 1.2.4 (Debian 12's) and 1.2.9 (Debian 13's).
fn captures() -> Vec<Case> {
    let mut out = Vec::new();
    for generation in ["fastnetmon-1.2.4", "fastnetmon-1.2.9"] {
        let Ok(dir) = std::fs::read_dir(format!("{FIXTURES}/{generation}")) else {
            continue;
        };
        let mut files: Vec<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("ban-") && !n.contains("attack_details") && n.ends_with(".txt"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(format!("{FIXTURES}/{generation}/{f}")).unwrap();
            // The victim is in the file's name (`…ban-203.0.113.10….txt`).
            let victim = f
                .split("ban-")
                .nth(1)
                .map(|r| r.split(['-', '.']).take(4).collect::<Vec<_>>().join("."))
                .unwrap_or_default();
            let direction = if text.contains("Attack direction: outgoing") {
                "outgoing"
            } else if text.contains("Attack direction: other") {
                "other"
            } else {
                "incoming"
            };
            out.push(Case {
                name: format!("{} {f}", &generation["fastnetmon-".len()..]),
                text,
                victim,
                direction,
                truth: None,
            });
        }
    }
    out
}

const VICTIM: &str = "203.0.113.10";

/// Generated attacks, as FastNetMon 1.2.9 writes them with its shipped
/// `ban_details_records_count = 20`: 20 sampled packets.
fn generated() -> Vec<Case> {
    let udp = |port, share| (17u8, port, share);
    let spread_ports = |n: usize, from: u16| -> Vec<Lines> {
        (0..n)
            .map(|i| lines("udp", from + i as u16 * 97, 1))
            .collect()
    };
    let case = |name: &str, vector: (&str, &str), dump: Vec<Lines>, truth: Truth| Case {
        name: name.into(),
        text: dump::details(VICTIM, "incoming", vector.0, vector.1, &dump),
        victim: VICTIM.into(),
        direction: "incoming",
        truth: Some(truth),
    };
    let exact = |e: Vec<(u8, u16, f64)>| Truth {
        exact: e,
        spread: None,
    };
    let udp_flood = ("udp_flood", "udp");
    vec![
        case(
            "one port (udp 27015)",
            udp_flood,
            vec![lines("udp", 27015, 20)],
            exact(vec![udp(27015, 1.0)]),
        ),
        case(
            "three ports (udp 27015-27017)",
            udp_flood,
            vec![
                lines("udp", 27015, 7),
                lines("udp", 27016, 7),
                lines("udp", 27017, 6),
            ],
            exact(vec![
                udp(27015, 1.0 / 3.0),
                udp(27016, 1.0 / 3.0),
                udp(27017, 1.0 / 3.0),
            ]),
        ),
        case(
            "spread over thousands of ports",
            udp_flood,
            spread_ports(20, 30_000),
            Truth {
                exact: vec![],
                spread: Some((17, 1.0)),
            },
        ),
        case(
            "90/10 on two ports (27015, 27016)",
            udp_flood,
            vec![lines("udp", 27015, 18), lines("udp", 27016, 2)],
            exact(vec![udp(27015, 0.9), udp(27016, 0.1)]),
        ),
        case(
            "90 % on 27015, 10 % spread",
            udp_flood,
            [vec![lines("udp", 27015, 18)], spread_ports(2, 40_000)].concat(),
            Truth {
                exact: vec![udp(27015, 0.9)],
                spread: Some((17, 0.1)),
            },
        ),
        case(
            "27015, one packet of the host's own traffic",
            udp_flood,
            vec![lines("udp", 27015, 19), lines("udp", 5353, 1)],
            exact(vec![udp(27015, 1.0)]),
        ),
        case(
            "SYN flood on tcp 443",
            ("syn_flood", "tcp"),
            vec![lines("tcp", 443, 20)],
            exact(vec![(6, 443, 1.0)]),
        ),
        case(
            "SYN flood on tcp 80 and 443",
            ("syn_flood", "tcp"),
            vec![lines("tcp", 80, 10), lines("tcp", 443, 10)],
            exact(vec![(6, 80, 0.5), (6, 443, 0.5)]),
        ),
    ]
}

/// prefixd's inventory for a victim kind.
fn services(dns: bool, victim: &str) -> Vec<Service> {
    if dns {
        vec![Service::dns(&[victim])]
    } else {
        vec![]
    }
}

/// What one ban did: the vector, the ports sent, the rule prefixd built.
struct Outcome {
    vector: String,
    sent: Vec<u16>,
    rule: Option<(Option<u8>, Vec<u16>)>,
}

/// The binary bans `case`'s victim against the stand-in with that inventory.
fn ban(bin: &str, case: &Case, dns: bool) -> Outcome {
    let srv = Server::with(Options {
        services: services(dns, &case.victim),
        ..Options::default()
    });
    let mut env = Env::new("fit", &srv.url);
    env.set("PREFIXD_RENEW_MAX", "0");
    env.set("PREFIXD_RETRIES", "1");
    let stdin = env.dir.join("details");
    std::fs::write(&stdin, &case.text).unwrap();
    let status = env
        .cmd(bin, &[&case.victim, case.direction, "1000", "ban"])
        .stdin(std::fs::File::open(&stdin).unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "{}: {status}", case.name);
    let ban = srv.bans().pop().expect("a ban");
    let vector = match ban.get("vector") {
        Some(miniserde::json::Value::String(v)) => v.clone(),
        _ => String::new(),
    };
    let sent = match ban.get("top_dst_ports") {
        Some(miniserde::json::Value::Array(a)) => a
            .iter()
            .filter_map(|p| match p {
                miniserde::json::Value::Number(miniserde::json::Number::U64(n)) => {
                    u16::try_from(*n).ok()
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let rule = srv.rules(&case.victim).into_iter().next();
    Outcome { vector, sent, rule }
}

fn rule_text(r: &(Option<u8>, Vec<u16>)) -> String {
    let proto =
        r.0.map_or_else(|| "any protocol".to_string(), ports::protocol_name);
    match (r.0, r.1.is_empty()) {
        (None, true) => "all traffic".into(),
        (_, true) => format!("all {proto}"),
        _ => format!("{proto} {}", ports::list(&r.1)),
    }
}

/// Whole percent, never rounded up to 100 (a sum of shares may fall a hair short of it).
fn pct(x: f64) -> String {
    let p = (x * 100.0 + 1e-6).max(0.0);
    if p > 1e-3 && p < 1.0 {
        "<1 %".into()
    } else {
        format!("{:.0} %", p.floor())
    }
}

fn others(n: Option<usize>) -> String {
    n.map_or_else(|| "all".into(), |n| n.to_string())
}

/// Prints the table and the sweep; returns whether the targets hold.
pub fn figure(bin: &str) -> bool {
    let cases: Vec<Case> = captures().into_iter().chain(generated()).collect();
    println!("\n### The rule prefixd builds, today (no top_dst_ports) and with top_dst_ports\n");
    println!(
        "| attack (FastNetMon's dump) | victim | top_dst_ports sent | rule today: matches, other ports filtered | rule now: matches, other ports filtered |"
    );
    println!("|---|---|---|---|---|");
    let (mut worse, mut consistent) = (Vec::new(), true);
    let mut dns_one_port = (0.0, 0.0);
    for case in &cases {
        let truth = case.truth();
        for dns in [true, false] {
            let kind = if dns {
                "DNS service (53)"
            } else {
                "no service"
            };
            let now = ban(bin, case, dns);
            // The binary's choice is the library's at its threshold: the sweep below is the
            // same decision.
            let ip: IpAddr = case.victim.parse().unwrap();
            let lib = ports::choose(&case.attack(), ip, &now.vector, ports::THRESHOLD);
            consistent &= lib.sent == now.sent;
            let inventory = services(dns, &case.victim);
            let today = server::rule(&inventory, &case.victim, &now.vector, &[]);
            let measured = !case.attack().samples.is_empty() || case.truth.is_some();
            let (today_cell, now_cell) = match (&now.rule, measured) {
                (Some(rule), true) => {
                    let (t, n) = (
                        truth.matched(today.0, &today.1),
                        truth.matched(rule.0, &rule.1),
                    );
                    if n + 1e-9 < t {
                        worse.push(format!("{} / {kind}", case.name));
                    }
                    if dns && case.name.starts_with("one port") {
                        dns_one_port = (t, n);
                    }
                    (
                        format!(
                            "{}: {}, {}",
                            rule_text(&today),
                            pct(t),
                            others(truth.others(&today.1))
                        ),
                        format!(
                            "{}: {}, {}",
                            rule_text(rule),
                            pct(n),
                            others(truth.others(&rule.1))
                        ),
                    )
                }
                (Some(rule), false) => (
                    format!("{}: no packets to measure", rule_text(&today)),
                    format!("{}: no packets to measure", rule_text(rule)),
                ),
                (None, _) => ("no mitigation".into(), "no mitigation".into()),
            };
            println!(
                "| {} ({}) | {kind} | {} | {today_cell} | {now_cell} |",
                case.name,
                now.vector,
                ports::list(&now.sent),
            );
        }
    }
    println!(
        "\nno case worse than today {}{}; DNS service, flood on one port: {} → {} (0 % → 100 % {}); the binary's choice is the library's at its threshold {}",
        verdict(worse.is_empty()),
        if worse.is_empty() {
            String::new()
        } else {
            format!(" ({})", worse.join("; "))
        },
        pct(dns_one_port.0),
        pct(dns_one_port.1),
        verdict(dns_one_port.0 < 1e-9 && dns_one_port.1 > 1.0 - 1e-9),
        verdict(consistent)
    );
    sweep(&cases);
    worse.is_empty() && consistent
}

/// The same decision at other thresholds, judged on the same cases.
fn sweep(cases: &[Case]) {
    println!("\n### The threshold: the same cases decided at others\n");
    println!(
        "| share the ports must carry | a port counts from | cases worse than today | DNS-service rules that miss (< 50 %) | no-service rules on the whole protocol | worse, and missed |"
    );
    println!("|---|---|---|---|---|---|");
    for min_records in [1, ports::MIN_RECORDS] {
        for nearly_all in [0.5, 0.8, 0.9, ports::NEARLY_ALL, 0.99, 1.0] {
            let t = ports::Threshold {
                nearly_all,
                min_records,
            };
            let (mut worse, mut missed, mut all_ports, mut judged) = (0, 0, 0, 0);
            let mut which = Vec::new();
            for case in cases {
                let attack = case.attack();
                if attack.samples.is_empty() && case.truth.is_none() {
                    continue;
                }
                let truth = case.truth();
                let ip: IpAddr = case.victim.parse().unwrap();
                let parsed = details::parse(&case.text);
                let vector = details::vector(&parsed, ip, case.direction);
                let sent = ports::choose(&attack, ip, vector, t).sent;
                for dns in [true, false] {
                    let inventory = services(dns, &case.victim);
                    let today = server::rule(&inventory, &case.victim, vector, &[]);
                    let now = server::rule(&inventory, &case.victim, vector, &sent);
                    let (a, b) = (
                        truth.matched(today.0, &today.1),
                        truth.matched(now.0, &now.1),
                    );
                    judged += 1;
                    if b + 1e-9 < a {
                        worse += 1;
                        which.push(format!("worse: {} ({})", case.name, pct(b)));
                    }
                    if dns && b < 0.5 {
                        missed += 1;
                        which.push(format!("missed: {}", case.name));
                    }
                    all_ports += usize::from(!dns && now.1.is_empty());
                }
            }
            let chosen = if t == ports::THRESHOLD {
                " (chosen)"
            } else {
                ""
            };
            println!(
                "| {:.0} %{chosen} | {min_records} record(s) | {worse} of {judged} | {missed} | {all_ports} | {} |",
                nearly_all * 100.0,
                which.join("; ")
            );
        }
    }
}

/// What a ban's look at its rule costs: the same one-port flood banned with a dump of the
/// victim's packets (the look happens) and with none (no look), interleaved.
pub fn look_cost(bin: &str, runs: usize) {
    let srv = Server::start();
    let env = Env::new("look", &srv.url);
    let with = env.dir.join("with");
    let without = env.dir.join("without");
    std::fs::write(&with, dump::udp_flood(VICTIM, &[lines("udp", 27015, 20)])).unwrap();
    std::fs::write(
        &without,
        dump::udp_flood("192.0.2.99", &[lines("udp", 27015, 20)]),
    )
    .unwrap();
    let (mut looked, mut not): (Vec<Duration>, Vec<Duration>) = (vec![], vec![]);
    for _ in 0..runs {
        looked.push(time(
            env.cmd(bin, &[VICTIM, "incoming", "1000", "ban"]),
            Some(&with),
        ));
        not.push(time(
            env.cmd(bin, &[VICTIM, "incoming", "1000", "ban"]),
            Some(&without),
        ));
    }
    let looks = srv
        .lines()
        .iter()
        .filter(|l| l.starts_with("GET /v1/mitigations/"))
        .count();
    row(
        "ban and its look at the rule (GET /v1/mitigations/{id})",
        spread(&mut looked),
        format!(
            "without the look (dump of another host): {}; {looks} looks for {runs} bans {}",
            spread(&mut not),
            verdict(looks == runs)
        ),
    );
}
