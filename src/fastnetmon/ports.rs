//! Which destination ports a ban asks prefixd to filter (`top_dst_ports`), read from
//! FastNetMon's own dump; and how much of the attack a rule on a protocol and ports matches.
//! Pure.
//!
//! prefixd narrows a `udp_flood` rule (UDP) and a `syn_flood`/`ack_flood` rule (TCP) by the
//! event's `top_dst_ports` and the victim's service's `allowed_ports`: event ports ∩ allowed
//! ports; no event ports → the allowed ports; no service → the event's ports; more than
//! `max_ports` after that → 422 (shared/prefixd-api.md, "The rule prefixd builds", and
//! prefixd's `compute_port_intersection`). Other vectors take the event's ports as they are,
//! so they are sent none.

use super::details::Details;
use std::net::IpAddr;

/// prefixd's `max_ports` guardrail (default 8; more after the intersection is a 422).
pub const MAX_PORTS: usize = 8;

/// The share of the protocol's packets that the ports sent must carry between them: "nearly
/// all". Chosen by the figure `make bench` prints (README "The rule on the router"): at 0.90
/// a 90/10 flood on two ports is cut to its main port, and so is a flood with a tenth spread
/// over thousands of ports (a host without a service then loses a tenth of its filter); above
/// 0.95 one stray packet in FastNetMon's 20 keeps a one-port flood from its port (a service's
/// rule then misses it).
pub const NEARLY_ALL: f64 = 0.95;

/// A port counts toward that share only when at least this many records of the dump (packet
/// lines, flow lines) go to it: FastNetMon's packet dump holds 20 packets by default
/// (`ban_details_records_count`), and a spread attack puts each of them on a port of its own,
/// so a port seen once is no evidence of where the attack goes.
pub const MIN_RECORDS: u32 = 2;

/// How much evidence sending ports takes: `THRESHOLD`, but for the bench's sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// The share of the protocol's packets the ports sent must carry.
    pub nearly_all: f64,
    /// The records a port must be in to count toward it.
    pub min_records: u32,
}

pub const THRESHOLD: Threshold = Threshold {
    nearly_all: NEARLY_ALL,
    min_records: MIN_RECORDS,
};

/// One record of FastNetMon's dump in the attack's direction, as our host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// IANA protocol number; None: a protocol we do not name (it matches no protocol rule).
    pub protocol: Option<u8>,
    /// The port on our host: where an incoming packet goes to, where an outgoing one leaves
    /// from (a reflector's abused service: the requests that feed it arrive there).
    pub port: u16,
    /// Packets the record counts.
    pub packets: u64,
}

/// The attack as FastNetMon's details show it, record by record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attack {
    pub samples: Vec<Sample>,
    /// `packet dump` (1.2.6 and later) or `flow dump` (1.1.x–1.2.5 bans).
    pub from: &'static str,
    pub outgoing: bool,
}

/// The attack's records: the packet dump's packets to the victim (from it, for an outgoing
/// attack) when there are any — the dump also holds the victim's replies, which are not the
/// attack — else the flow dump's lines in the attack's direction (as `dport=` reads them,
/// README "Custom vector rules"), each with the protocol of its heading.
pub fn attack(d: &Details, victim: IpAddr, direction: &str) -> Attack {
    let outgoing = direction == "outgoing";
    let samples: Vec<Sample> = d
        .packets
        .iter()
        .filter(|p| {
            if outgoing {
                p.src == victim
            } else {
                p.dst == victim
            }
        })
        .map(|p| Sample {
            protocol: protocol_number(&p.protocol),
            port: if outgoing { p.sport } else { p.dport },
            packets: p.packets,
        })
        .collect();
    if !samples.is_empty() {
        return Attack {
            samples,
            from: "packet dump",
            outgoing,
        };
    }
    let samples = d
        .flows
        .iter()
        .enumerate()
        .filter(|(_, f)| f.incoming != outgoing)
        .filter(|(_, f)| {
            if outgoing {
                f.src == victim
            } else {
                f.dst == victim
            }
        })
        .map(|(i, f)| Sample {
            protocol: d
                .flow_protocol(i)
                .or(d.protocol.as_deref())
                .and_then(protocol_number),
            port: if outgoing { f.sport } else { f.dport },
            packets: f.packets,
        })
        .collect();
    Attack {
        samples,
        from: "flow dump",
        outgoing,
    }
}

/// FastNetMon's protocol names (lower-case IANA names since 1.2.8, `tcp|udp|icmp` before).
pub fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "gre" => Some(47),
        "ipv6_icmp" | "ipv6-icmp" => Some(58),
        _ => None,
    }
}

pub fn protocol_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        47 => "gre".into(),
        58 => "ipv6_icmp".into(),
        n => format!("protocol {n}"),
    }
}

/// The protocol of prefixd's rule for `vector` (`AttackVector::to_protocol`): UDP, TCP,
/// ICMP; None (any) for `unknown` and vectors it does not know.
pub fn vector_protocol(vector: &str) -> Option<u8> {
    match vector {
        "icmp_flood" => Some(1),
        v => port_rule_protocol(v),
    }
}

/// The protocol prefixd's rule for `vector` has, when it narrows that rule by ports: UDP for
/// `udp_flood`, TCP for `syn_flood` and `ack_flood`.
pub fn port_rule_protocol(vector: &str) -> Option<u8> {
    match vector {
        "udp_flood" => Some(17),
        "syn_flood" | "ack_flood" => Some(6),
        _ => None,
    }
}

/// The ports a ban sends as `top_dst_ports`, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Ports {
    /// Ascending, at most `MAX_PORTS`; empty: none sent.
    pub sent: Vec<u16>,
    /// Why, in words (the log line, `--dry-run`).
    pub why: String,
}

impl Ports {
    pub fn none(why: impl Into<String>) -> Ports {
        Ports {
            sent: Vec::new(),
            why: why.into(),
        }
    }

    /// As the event carries them: None (null) when none are sent.
    pub fn field(&self) -> Option<Vec<u16>> {
        (!self.sent.is_empty()).then(|| self.sent.clone())
    }
}

/// `ports` ascending, each once: a set of ports as prefixd keys it (its scope hash sorts
/// them). An insertion sort: a handful of ports, and no sort code in the binary for them.
pub fn ascending(mut ports: Vec<u16>) -> Vec<u16> {
    for i in 1..ports.len() {
        let mut j = i;
        while j > 0 && ports[j - 1] > ports[j] {
            ports.swap(j - 1, j);
            j -= 1;
        }
    }
    ports.dedup();
    ports
}

/// `53,123`, or `none`.
pub fn list(ports: &[u16]) -> String {
    if ports.is_empty() {
        return "none".into();
    }
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `n` of `of` in whole percent, never rounded up to 100 (nor down to 0) when it is not.
pub fn percent(n: u64, of: u64) -> String {
    if of == 0 {
        return "? %".into();
    }
    // Through f64: counts near u64::MAX must not overflow ×100.
    let p = (n as f64 / of as f64 * 100.0) as u64;
    let p = match p {
        0 if n > 0 => "<1".to_string(),
        100.. if n < of => "99".to_string(),
        p => p.to_string(),
    };
    format!("{p} %")
}

/// Packets and records of the attack on one (protocol, port) of our host.
#[derive(Clone, Copy)]
struct OnPort {
    protocol: Option<u8>,
    port: u16,
    packets: u64,
    records: u32,
}

/// The attack's records summed per (protocol, port), and all its packets. Sums saturate: the
/// counts come from outside. (A linear search: the details are at most 256 KiB, a few
/// thousand records; no sort or map code for so few.)
fn per_port(samples: impl Iterator<Item = Sample>) -> (Vec<OnPort>, u64) {
    let (mut per, mut total): (Vec<OnPort>, u64) = (Vec::new(), 0);
    for s in samples {
        total = total.saturating_add(s.packets);
        match per
            .iter_mut()
            .find(|o| o.protocol == s.protocol && o.port == s.port)
        {
            Some(o) => {
                o.packets = o.packets.saturating_add(s.packets);
                o.records = o.records.saturating_add(1);
            }
            None => per.push(OnPort {
                protocol: s.protocol,
                port: s.port,
                packets: s.packets,
                records: 1,
            }),
        }
    }
    (per, total)
}

/// The busiest of `per` that `keep` lets through, most packets first (ties: the lower
/// port), at most `n`: `n` passes of a maximum, no sort.
fn busiest_of(per: &[OnPort], n: usize, keep: impl Fn(&OnPort) -> bool) -> Vec<OnPort> {
    let mut taken: Vec<OnPort> = Vec::new();
    for _ in 0..n {
        let next = per
            .iter()
            .filter(|o| keep(o))
            .filter(|o| {
                !taken
                    .iter()
                    .any(|t| t.protocol == o.protocol && t.port == o.port)
            })
            .max_by(|a, b| a.packets.cmp(&b.packets).then(b.port.cmp(&a.port)));
        match next {
            Some(o) => taken.push(*o),
            None => break,
        }
    }
    taken
}

/// The busiest ports of the attack's protocol that carry `t.nearly_all` of its packets
/// between them (at most `MAX_PORTS`, each in `t.min_records` records or more); none when the
/// attack is spread wider, when the dump holds none of its packets, or when prefixd builds no
/// port rule for `vector`.
pub fn choose(attack: &Attack, victim: IpAddr, vector: &str, t: Threshold) -> Ports {
    let Threshold {
        nearly_all,
        min_records,
    } = t;
    let Some(protocol) = port_rule_protocol(vector) else {
        return Ports::none(format!(
            "none: prefixd builds port rules only for udp_flood, syn_flood and ack_flood, not {vector}"
        ));
    };
    let name = protocol_name(protocol).to_ascii_uppercase();
    let way = if attack.outgoing { "from" } else { "to" };
    let of_protocol = attack
        .samples
        .iter()
        .copied()
        .filter(|s| s.protocol == Some(protocol));
    let (per, total) = per_port(of_protocol);
    if total == 0 {
        return Ports::none(format!(
            "none: FastNetMon's details hold no {name} packets {way} {victim} to choose from"
        ));
    }
    let (mut ports, mut carried) = (Vec::new(), 0u64);
    for o in busiest_of(&per, MAX_PORTS, |o| o.records >= min_records) {
        if reaches(carried, total, nearly_all) {
            break;
        }
        ports.push(o.port);
        carried = carried.saturating_add(o.packets);
    }
    let needed = format!(
        "{} % needed on at most {MAX_PORTS} ports, each in {min_records} records or more",
        (nearly_all * 100.0) as u32
    );
    let outgoing = if attack.outgoing {
        " (outgoing: the ports it leaves from, where the requests that feed a reflector arrive)"
    } else {
        ""
    };
    let of = format!(
        "its {total} {name} packets {way} {victim} in FastNetMon's {}",
        attack.from
    );
    if ports.is_empty() {
        return Ports::none(format!(
            "none: the attack is spread: no {name} port is in {min_records} records or more of {of} ({needed})"
        ));
    }
    if !reaches(carried, total, nearly_all) {
        return Ports::none(format!(
            "none: the attack is spread: its busiest {name} ports ({}) carry {} of {of} ({needed})",
            list(&ports),
            percent(carried, total),
        ));
    }
    let ports = ascending(ports);
    Ports {
        why: format!(
            "{} carry {} of {of} ({needed}){outgoing}",
            list(&ports),
            percent(carried, total),
        ),
        sent: ports,
    }
}

fn reaches(carried: u64, total: u64, nearly_all: f64) -> bool {
    total > 0 && carried as f64 >= nearly_all * total as f64
}

/// The attack's packets a rule on `protocol` (None: any) and `ports` (empty: any) matches,
/// and all of them; None when the dump holds none (no per-packet data: an ICMP ban of 1.2.4,
/// a manual ban).
pub fn matched(attack: &Attack, protocol: Option<u8>, ports: &[u16]) -> Option<(u64, u64)> {
    if attack.samples.is_empty() {
        return None;
    }
    let (mut hit, mut total) = (0u64, 0u64);
    for s in &attack.samples {
        total = total.saturating_add(s.packets);
        let proto = protocol.is_none_or(|p| s.protocol == Some(p));
        if proto && (ports.is_empty() || ports.contains(&s.port)) {
            hit = hit.saturating_add(s.packets);
        }
    }
    Some((hit, total))
}

/// The attack's busiest ports, as an operator reads them: `udp 27015 (90 %), udp 27016 (10 %)`.
pub fn busiest(attack: &Attack, n: usize) -> String {
    let (per, total) = per_port(attack.samples.iter().copied());
    let shown: Vec<String> = busiest_of(&per, n, |_| true)
        .iter()
        .map(|o| {
            let p = o
                .protocol
                .map_or_else(|| "other".to_string(), protocol_name);
            format!("{p} {} ({})", o.port, percent(o.packets, total))
        })
        .collect();
    match per.len().saturating_sub(n) {
        0 => shown.join(", "),
        m => format!("{} and {m} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastnetmon::details;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    const V: &str = "192.0.2.10";

    fn victim() -> IpAddr {
        V.parse().unwrap()
    }

    /// A 1.2.9 packet dump: `(dport, records)` to the victim, one packet a record.
    fn dump(proto: &str, lines: &[(u16, usize)]) -> String {
        "Attack type: udp_flood\nAttack protocol: udp\n".to_string() + &packets(proto, lines)
    }

    fn packets(proto: &str, lines: &[(u16, usize)]) -> String {
        let mut s = String::new();
        let mut sport = 1000u16;
        for (dport, n) in lines {
            for _ in 0..*n {
                sport += 1;
                s += &format!(
                    "2026-11-25 12:10:24.846435785 198.51.100.7:{sport} > {V}:{dport} protocol: {proto} frag: 0  packets: 1 size: 60 bytes ttl: 54 sample ratio: 1  \n"
                );
            }
        }
        s
    }

    fn ports_of(text: &str, vector: &str) -> Vec<u16> {
        let d = details::parse(text);
        choose(
            &attack(&d, victim(), "incoming"),
            victim(),
            vector,
            THRESHOLD,
        )
        .sent
    }

    #[test]
    fn the_ports_that_carry_nearly_all_of_the_attack_are_sent() {
        let spread: Vec<(u16, usize)> = (0..20).map(|i| (30_000 + i, 1)).collect();
        // (what, the dump's (port, records), the ports sent)
        type Case<'a> = (&'a str, Vec<(u16, usize)>, &'a [u16]);
        let cases: &[Case] = &[
            ("one port", vec![(27015, 20)], &[27015]),
            (
                "three ports",
                vec![(27015, 7), (27016, 7), (27017, 6)],
                &[27015, 27016, 27017],
            ),
            (
                "90/10 on two ports",
                vec![(27015, 18), (27016, 2)],
                &[27015, 27016],
            ),
            // One stray packet in 20: the main port carries 95 %; the stray is not sent.
            (
                "one port and a stray",
                vec![(27015, 19), (5000, 1)],
                &[27015],
            ),
            // 90 % on one port and the rest on ports of their own: a spread part.
            (
                "90 % and a spread tenth",
                vec![(27015, 18), (40_001, 1), (40_002, 1)],
                &[],
            ),
            ("spread", spread, &[]),
            (
                "eight ports, two records each",
                (0..8).map(|i| (100 + i, 2)).collect(),
                &[100, 101, 102, 103, 104, 105, 106, 107],
            ),
            ("nine ports", (0..9).map(|i| (100 + i, 2)).collect(), &[]),
            ("one record", vec![(27015, 1)], &[]),
        ];
        for (what, lines, want) in cases {
            assert_eq!(ports_of(&dump("udp", lines), "udp_flood"), *want, "{what}");
        }
    }

    #[test]
    fn only_port_rule_vectors_and_their_protocol_count() {
        let udp = dump("udp", &[(27015, 20)]);
        for vector in ["icmp_flood", "unknown", "dns_amplification"] {
            let d = details::parse(&udp);
            let p = choose(
                &attack(&d, victim(), "incoming"),
                victim(),
                vector,
                THRESHOLD,
            );
            assert!(p.sent.is_empty(), "{vector}");
            assert!(p.why.contains("only for udp_flood"), "{}", p.why);
        }
        // A UDP dump gives a SYN flood nothing to choose from; TCP packets among a UDP flood
        // neither count for nor against its ports.
        let d = details::parse(&udp);
        let p = choose(
            &attack(&d, victim(), "incoming"),
            victim(),
            "syn_flood",
            THRESHOLD,
        );
        assert!(
            p.sent.is_empty() && p.why.contains("no TCP packets"),
            "{}",
            p.why
        );
        let mixed = udp.clone() + &packets("tcp", &[(443, 5)]);
        assert_eq!(ports_of(&mixed, "udp_flood"), [27015]);
        assert_eq!(ports_of(&mixed, "syn_flood"), [443]);
    }

    #[test]
    fn the_victims_replies_are_not_the_attack_and_outgoing_reads_source_ports() {
        let text = std::fs::read_to_string(format!("{FIXTURES}/ban_ipv4_syn_flood.txt")).unwrap();
        let d = details::parse(&text);
        let v: IpAddr = "198.51.100.77".parse().unwrap();
        let a = attack(&d, v, "incoming");
        assert!(a.samples.iter().all(|s| s.port == 443), "{a:?}");
        assert_eq!(a.from, "packet dump");
        // The 1.2.4 outgoing SYN flood: our host's ports in its Outgoing section.
        let text =
            std::fs::read_to_string(format!("{FIXTURES}/layouts/1.2.4-outgoing-syn-ban.txt"))
                .unwrap();
        let d = details::parse(&text);
        let v: IpAddr = "192.0.2.101".parse().unwrap();
        let a = attack(&d, v, "outgoing");
        assert_eq!(a.from, "flow dump");
        assert!(
            a.samples
                .iter()
                .all(|s| s.port >= 40_000 && s.protocol == Some(6))
        );
        // Each flow leaves from a port of its own: spread, nothing sent.
        assert!(choose(&a, v, "syn_flood", THRESHOLD).sent.is_empty());
    }

    /// (file, victim, direction, vector, ports sent) for every capture and sample we have.
    #[test]
    fn what_every_fixture_sends() {
        let cases: &[(&str, &str, &str, &str, &[u16])] = &[
            (
                "fastnetmon-1.2.4/1-ban-203.0.113.10.txt",
                "203.0.113.10",
                "incoming",
                "udp_flood",
                &[53],
            ),
            (
                "fastnetmon-1.2.4/4-ban-203.0.113.11.txt",
                "203.0.113.11",
                "incoming",
                "syn_flood",
                &[80],
            ),
            (
                "fastnetmon-1.2.4/7-ban-203.0.113.20.txt",
                "203.0.113.20",
                "incoming",
                "icmp_flood",
                &[],
            ),
            (
                "fastnetmon-1.2.4/9-ban-203.0.113.30.txt",
                "203.0.113.30",
                "other",
                "unknown",
                &[],
            ),
            // Real one-port floods (make e2e): 1.2.4's flow dump, 1.2.9's packet dump.
            (
                "fastnetmon-1.2.4/ban-203.0.113.10-udp-27015.txt",
                "203.0.113.10",
                "incoming",
                "udp_flood",
                &[27015],
            ),
            (
                "fastnetmon-1.2.9/ban-203.0.113.10-udp-27015.txt",
                "203.0.113.10",
                "incoming",
                "udp_flood",
                &[27015],
            ),
            (
                "ban_ipv4_udp_flood.txt",
                "192.0.2.10",
                "incoming",
                "udp_flood",
                &[],
            ),
            (
                "ban_ipv4_syn_flood.txt",
                "198.51.100.77",
                "incoming",
                "syn_flood",
                &[443],
            ),
            (
                "ban_ipv6_udp_flood.txt",
                "2001:db8:42::10",
                "incoming",
                "udp_flood",
                &[],
            ),
            // Amplification: the victim's ports are random; the reflectors' port is the source.
            (
                "layouts/1.2.9-ntp-amplification-ban.txt",
                "192.0.2.100",
                "incoming",
                "udp_flood",
                &[],
            ),
            (
                "layouts/1.2.4-ntp-amplification-ban.txt",
                "192.0.2.100",
                "incoming",
                "udp_flood",
                &[],
            ),
            (
                "layouts/1.1.x-dns-amplification-ban.txt",
                "192.0.2.150",
                "incoming",
                "udp_flood",
                &[],
            ),
        ];
        for (file, ip, direction, vector, want) in cases {
            let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
            let d = details::parse(&text);
            let v: IpAddr = ip.parse().unwrap();
            let p = choose(&attack(&d, v, direction), v, vector, THRESHOLD);
            assert_eq!(p.sent, *want, "{file}: {}", p.why);
        }
    }

    #[test]
    fn a_rule_matches_its_protocol_and_ports() {
        let text = dump("udp", &[(27015, 18), (27016, 2)]);
        let d = details::parse(&text);
        let a = attack(&d, victim(), "incoming");
        assert_eq!(matched(&a, Some(17), &[]), Some((20, 20)));
        assert_eq!(matched(&a, Some(17), &[53]), Some((0, 20)));
        assert_eq!(matched(&a, Some(17), &[27015]), Some((18, 20)));
        assert_eq!(matched(&a, Some(6), &[]), Some((0, 20)));
        assert_eq!(matched(&a, None, &[]), Some((20, 20)));
        assert_eq!(matched(&Attack::default(), Some(17), &[]), None);
        assert_eq!(busiest(&a, 1), "udp 27015 (90 %) and 1 more");
        assert_eq!(busiest(&a, 3), "udp 27015 (90 %), udp 27016 (10 %)");
        assert_eq!(percent(1, 1000), "<1 %");
        assert_eq!(percent(999, 1000), "99 %");
        assert_eq!(percent(0, 0), "? %");
        assert_eq!(ascending(vec![443, 53, 443, 80, 53]), [53, 80, 443]);
        assert_eq!(ascending(vec![]), [0u16; 0]);
    }

    #[test]
    fn huge_counts_neither_wrap_nor_panic() {
        let line = |port: u16, n: &str| {
            format!(
                "2026-11-25 12:10:24.1 198.51.100.7:1 > {V}:{port} protocol: udp frag: 0  packets: {n} size: 1 bytes ttl: 1 sample ratio: 1  \n"
            )
        };
        let max = u64::MAX.to_string();
        let text = line(53, &max) + &line(53, &max) + &line(123, "7");
        assert_eq!(ports_of(&text, "udp_flood"), [53]);
        let d = details::parse(&text);
        let a = attack(&d, victim(), "incoming");
        // Saturated: u64::MAX is "the most", and 53 carries it all.
        assert_eq!(matched(&a, Some(17), &[53]), Some((u64::MAX, u64::MAX)));
        assert_eq!(percent(7, u64::MAX), "<1 %");
    }
}
