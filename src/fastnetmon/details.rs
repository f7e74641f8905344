//! FastNetMon's details text → what prefixd needs: the vector, the bandwidth and the busiest
//! ports. The text is read as loose `Label: value` lines plus packet-dump and flow-dump lines, so
//! it does not matter which FastNetMon version wrote it or in which order; nothing is guessed
//! from substrings. Every number in it comes from outside: sums saturate, nothing wraps.

use std::net::IpAddr;

#[derive(Debug, Default, PartialEq)]
pub struct Details {
    pub attack_type: Option<String>,
    pub protocol: Option<String>,
    pub incoming_mbps: Option<u64>,
    pub outgoing_mbps: Option<u64>,
    /// `Attack direction`, lower-cased (the notice's `$2` says the same).
    pub direction: Option<String>,
    pub packets: Vec<Packet>,
    /// The flow dump: the only per-port data a FastNetMon 1.1.x–1.2.5 ban carries (its packet
    /// dump comes later, in the `attack_details` call).
    pub flows: Vec<Flow>,
    /// The flow dump's protocol headings (`UDP flows: 300`, 1.1.x's bare `UDP`), lower-cased,
    /// each with the index in `flows` of the first flow line under it.
    pub flow_headings: Vec<(usize, String)>,
}

impl Details {
    /// The protocol of `flows[i]`, from the heading above it; None when no heading came first.
    pub fn flow_protocol(&self, i: usize) -> Option<&str> {
        self.flow_headings
            .iter()
            .rev()
            .find(|(first, _)| *first <= i)
            .map(|(_, p)| p.as_str())
    }
}

/// One line of the packet dump.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub protocol: String,
    pub flags: Option<String>,
    pub packets: u64,
}

/// One line of the flow dump, read as the packets it counts. FastNetMon always writes the
/// victim first and the arrow says which way the packets went:
/// `victim:vport < remote:rport` (its `Incoming` section) counts packets remote → victim,
/// `victim:vport > remote:rport` (`Outgoing`) packets victim → remote.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub packets: u64,
    /// Toward the victim (`<`).
    pub incoming: bool,
}

pub fn parse(text: &str) -> Details {
    let mut d = Details::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(p) = parse_packet(line) {
            d.packets.push(p);
            continue;
        }
        if let Some(f) = parse_flow(line) {
            d.flows.push(f);
            continue;
        }
        if let Some(p) = flow_heading(line) {
            d.flow_headings.push((d.flows.len(), p));
            continue;
        }
        let Some((label, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match label.trim() {
            "Attack type" => d.attack_type = Some(value.to_ascii_lowercase()),
            "Attack protocol" => d.protocol = Some(value.to_ascii_lowercase()),
            "Attack direction" => d.direction = Some(value.to_ascii_lowercase()),
            "Total incoming traffic" => d.incoming_mbps = leading_number(value),
            "Total outgoing traffic" => d.outgoing_mbps = leading_number(value),
            _ => {}
        }
    }
    d
}

/// `UDP flows: 300` (1.2.x) or a bare `UDP` (1.1.x): the protocol of the flow lines below.
fn flow_heading(line: &str) -> Option<String> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let counted = rest
        .strip_prefix("flows: ")
        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty());
    (matches!(word, "TCP" | "UDP" | "ICMP") && (rest.is_empty() || counted))
        .then(|| word.to_ascii_lowercase())
}

fn leading_number(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

/// `2025-05-14 10:21:07.113204 198.51.100.7:53 > 192.0.2.10:41234 protocol: udp frag: 0 …`
fn parse_packet(line: &str) -> Option<Packet> {
    if !line.contains(" > ") {
        return None;
    }
    let tokens: Vec<&str> = line.split_whitespace().take(32).collect();
    let arrow = tokens.iter().position(|t| *t == ">")?;
    let (src, sport) = endpoint(tokens.get(arrow.checked_sub(1)?)?)?;
    let (dst, dport) = endpoint(tokens.get(arrow + 1)?)?;
    let after = |label: &str| {
        let i = tokens.iter().skip(arrow).position(|t| *t == label)? + arrow;
        tokens.get(i + 1).copied()
    };
    let protocol = after("protocol:")?.to_ascii_lowercase();
    let flags = after("flags:").map(str::to_string);
    let packets = after("packets:").and_then(count).unwrap_or(1);
    Some(Packet {
        src,
        sport,
        dst,
        dport,
        protocol,
        flags,
        packets,
    })
}

/// `203.0.113.10:53 < 198.51.100.56:1099 25600 bytes 50 packets` (every version from 1.1 to
/// 1.2.9 writes this shape; the section headings around it changed and are not needed).
fn parse_flow(line: &str) -> Option<Flow> {
    let mut t = line.split_whitespace();
    let (victim, arrow, remote) = (t.next()?, t.next()?, t.next()?);
    let (bytes, bytes_word, packets, packets_word) = (t.next()?, t.next()?, t.next()?, t.next()?);
    if t.next().is_some() || bytes_word != "bytes" || packets_word != "packets" {
        return None;
    }
    count(bytes)?;
    let packets = count(packets)?;
    let (victim, vport) = endpoint(victim)?;
    let (remote, rport) = endpoint(remote)?;
    let (src, sport, dst, dport, incoming) = match arrow {
        "<" => (remote, rport, victim, vport, true),
        ">" => (victim, vport, remote, rport, false),
        _ => return None,
    };
    Some(Flow {
        src,
        sport,
        dst,
        dport,
        packets,
        incoming,
    })
}

/// A packet or byte count: digits, and more than u64 holds is u64::MAX (still "the most").
fn count(s: &str) -> Option<u64> {
    match s.parse::<u64>() {
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Some(u64::MAX),
        n => n.ok(),
    }
}

/// `addr:port`, where an IPv6 address holds colons of its own.
fn endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.rsplit_once(':')?;
    Some((addr.parse().ok()?, port.parse().ok()?))
}

/// The prefixd vector for this attack (see README "How the vector is chosen").
pub fn vector(d: &Details, victim: IpAddr, direction: &str) -> &'static str {
    match d.attack_type.as_deref() {
        Some("syn_flood") => "syn_flood",
        Some("udp_flood") => "udp_flood",
        Some("icmp_flood") => "icmp_flood",
        Some("ack_flood") => "ack_flood",
        None | Some("unknown") => match d.protocol.as_deref() {
            Some("udp") => "udp_flood",
            Some("icmp") => "icmp_flood",
            Some("tcp") => tcp_vector(d, victim, direction),
            _ => "unknown",
        },
        // ip_fragmentation and anything prefixd has no vector for.
        Some(_) => "unknown",
    }
}

/// A TCP attack FastNetMon could not name: a majority of victim-bound packets that carry
/// exactly SYN, or exactly ACK, names it.
fn tcp_vector(d: &Details, victim: IpAddr, direction: &str) -> &'static str {
    let (mut total, mut syn, mut ack) = (0u64, 0u64, 0u64);
    for p in d
        .packets
        .iter()
        .filter(|p| p.protocol == "tcp" && victim_bound(p, victim, direction))
    {
        total = total.saturating_add(p.packets);
        match p.flags.as_deref() {
            Some("syn") => syn = syn.saturating_add(p.packets),
            Some("ack") => ack = ack.saturating_add(p.packets),
            _ => {}
        }
    }
    if syn > total / 2 && syn > 0 {
        "syn_flood"
    } else if ack > total / 2 && ack > 0 {
        "ack_flood"
    } else {
        "unknown"
    }
}

fn victim_bound(p: &Packet, victim: IpAddr, direction: &str) -> bool {
    if direction == "outgoing" {
        p.src == victim
    } else {
        p.dst == victim
    }
}

/// The source and the destination port that carry the most packets (ties → the lower port), or
/// None when the details hold no per-port data. From the packet dump when there is one (1.2.6
/// and later: every packet line, as FastNetMon sampled it); else from the flow dump's lines in
/// the attack's direction, weighted by packets (1.1.x–1.2.5 bans). So on every layout the
/// source port is where the attack comes from (the remote side of an incoming attack) and the
/// destination port where it goes. The flow dump also lists the other direction in full (a web
/// server's replies from port 443), which would drown the attack's ports, so it is left out;
/// the packet dump is the attack's own sample and is read whole.
pub fn busiest_ports(d: &Details) -> (Option<u16>, Option<u16>) {
    if !d.packets.is_empty() {
        let samples = d.packets.iter().map(|p| (p.sport, p.dport, p.packets));
        return busiest(samples);
    }
    let incoming = d.direction.as_deref() != Some("outgoing");
    let samples = d
        .flows
        .iter()
        .filter(|f| f.incoming == incoming)
        .map(|f| (f.sport, f.dport, f.packets));
    busiest(samples)
}

fn busiest(samples: impl Iterator<Item = (u16, u16, u64)> + Clone) -> (Option<u16>, Option<u16>) {
    let top = |port: fn(&(u16, u16, u64)) -> u16| {
        let mut counts: std::collections::BTreeMap<u16, u64> = std::collections::BTreeMap::new();
        for s in samples.clone() {
            let n = counts.entry(port(&s)).or_default();
            *n = n.saturating_add(s.2);
        }
        counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(port, _)| port)
    };
    (top(|s| s.0), top(|s| s.1))
}

/// Megabits per second of the attack's direction (incoming unless FastNetMon said outgoing).
pub fn mbps(d: &Details, direction: &str) -> Option<u64> {
    if direction == "outgoing" {
        d.outgoing_mbps
    } else {
        d.incoming_mbps
    }
}

/// Bits per second, as prefixd's `bps`.
pub fn bps(d: &Details, direction: &str) -> Option<i64> {
    i64::try_from(mbps(d, direction)?)
        .ok()?
        .checked_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    /// (file, victim from $1, direction, vector, bps) — the table in shared/fixtures/README.md.
    const CASES: &[(&str, &str, &str, &str, Option<i64>)] = &[
        (
            "ban_ipv4_udp_flood.txt",
            "192.0.2.10",
            "incoming",
            "udp_flood",
            Some(4_447_000_000),
        ),
        (
            "ban_ipv4_syn_flood.txt",
            "198.51.100.77",
            "incoming",
            "syn_flood",
            Some(90_000_000),
        ),
        (
            "ban_ipv4_icmp_flood.txt",
            "192.0.2.55",
            "incoming",
            "icmp_flood",
            Some(1_128_000_000),
        ),
        (
            "ban_ipv4_ip_fragmentation.txt",
            "203.0.113.200",
            "incoming",
            "unknown",
            Some(3_010_000_000),
        ),
        (
            "ban_ipv6_udp_flood.txt",
            "2001:0db8:0042::0010",
            "incoming",
            "udp_flood",
            Some(1_607_000_000),
        ),
        (
            "ban_ipv4_manual_api.txt",
            "192.0.2.99",
            "other",
            "unknown",
            Some(0),
        ),
        (
            "fastnetmon-1.2.4/1-ban-203.0.113.10.txt",
            "203.0.113.10",
            "incoming",
            "udp_flood",
            Some(13_000_000),
        ),
        (
            "fastnetmon-1.2.4/4-ban-203.0.113.11.txt",
            "203.0.113.11",
            "incoming",
            "syn_flood",
            Some(1_000_000),
        ),
        (
            "fastnetmon-1.2.4/7-ban-203.0.113.20.txt",
            "203.0.113.20",
            "incoming",
            "icmp_flood",
            Some(1_000_000),
        ),
        (
            "fastnetmon-1.2.4/9-ban-203.0.113.30.txt",
            "203.0.113.30",
            "other",
            "unknown",
            Some(0),
        ),
    ];

    #[test]
    fn every_shared_fixture_gives_its_expected_vector_and_bps() {
        for (file, ip, dir, want_vector, want_bps) in CASES {
            let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).expect(file);
            let d = parse(&text);
            let victim: IpAddr = ip.parse().unwrap();
            assert_eq!(vector(&d, victim, dir), *want_vector, "{file}");
            assert_eq!(bps(&d, dir), *want_bps, "{file}");
        }
    }

    #[test]
    fn syn_flood_dump_is_read_including_victim_replies() {
        let text = std::fs::read_to_string(format!("{FIXTURES}/ban_ipv4_syn_flood.txt")).unwrap();
        let d = parse(&text);
        assert!(d.packets.len() >= 10);
        assert!(
            d.packets
                .iter()
                .any(|p| p.flags.as_deref() == Some("syn,ack"))
        );
        let ipv6 =
            parse(&std::fs::read_to_string(format!("{FIXTURES}/ban_ipv6_udp_flood.txt")).unwrap());
        assert_eq!(
            ipv6.packets[0].dst,
            "2001:db8:42::10".parse::<IpAddr>().unwrap()
        );
        assert_eq!(ipv6.packets[0].sport, 1900);
    }

    fn header(t: &str, proto: &str) -> String {
        format!(
            "IP: 192.0.2.1\nAttack type: {t}\nAttack direction: incoming\nAttack protocol: {proto}\nTotal incoming traffic: 7 mbps\nTotal outgoing traffic: 3 mbps\n"
        )
    }

    fn pkt(src: &str, dst: &str, flags: &str) -> String {
        format!(
            "2025-05-14 10:21:07.113204 {src}:1234 > {dst}:80 protocol: tcp flags: {flags} frag: 0  packets: 1 size: 60 bytes ttl: 54 sample ratio: 1  \n"
        )
    }

    #[test]
    fn unknown_tcp_attacks_are_named_by_the_flag_majority() {
        let v = "192.0.2.1";
        let victim: IpAddr = v.parse().unwrap();
        let ack3 = pkt("198.51.100.1", v, "ack").repeat(3);
        let syn3 = pkt("198.51.100.1", v, "syn").repeat(3);
        let cases: Vec<(String, &str, &str)> = vec![
            (
                header("unknown", "tcp") + &ack3 + &pkt("198.51.100.1", v, "syn"),
                "incoming",
                "ack_flood",
            ),
            (
                header("unknown", "tcp") + &syn3 + &pkt("198.51.100.1", v, "psh,ack"),
                "incoming",
                "syn_flood",
            ),
            // Two each: no majority.
            (
                header("unknown", "tcp")
                    + &pkt("198.51.100.1", v, "syn").repeat(2)
                    + &pkt("198.51.100.1", v, "ack").repeat(2),
                "incoming",
                "unknown",
            ),
            // syn,ack is not "exactly syn".
            (
                header("unknown", "tcp") + &pkt("198.51.100.1", v, "syn,ack").repeat(3),
                "incoming",
                "unknown",
            ),
            // The victim's own replies do not count for an incoming attack...
            (
                header("unknown", "tcp")
                    + &pkt(v, "198.51.100.1", "ack").repeat(5)
                    + &pkt("198.51.100.1", v, "syn"),
                "incoming",
                "syn_flood",
            ),
            // ...but they are the attack when it is outgoing.
            (
                header("unknown", "tcp")
                    + &pkt(v, "198.51.100.1", "ack").repeat(5)
                    + &pkt("198.51.100.1", v, "syn"),
                "outgoing",
                "ack_flood",
            ),
            (header("unknown", "tcp"), "incoming", "unknown"),
            (header("unknown", "udp"), "incoming", "udp_flood"),
            (header("unknown", "icmp"), "incoming", "icmp_flood"),
            (header("unknown", "unknown"), "other", "unknown"),
            (header("ip_fragmentation", "udp"), "incoming", "unknown"),
            (header("something_new", "udp"), "incoming", "unknown"),
            // The old script's traps: "Attack" holds "ack", counters hold "udp".
            (
                "Attack details: ICMP flood\nIncoming udp traffic: 5 mbps\n".to_string(),
                "incoming",
                "unknown",
            ),
            (String::new(), "incoming", "unknown"),
        ];
        for (text, dir, want) in cases {
            assert_eq!(vector(&parse(&text), victim, dir), want, "{dir} {text}");
        }
    }

    #[test]
    fn bps_follows_the_direction() {
        let d = parse(&header("udp_flood", "udp"));
        assert_eq!(bps(&d, "incoming"), Some(7_000_000));
        assert_eq!(bps(&d, "outgoing"), Some(3_000_000));
        assert_eq!(bps(&d, "other"), Some(7_000_000));
        assert_eq!(bps(&parse("Attack type: udp_flood\n"), "incoming"), None);
        assert_eq!(
            bps(
                &parse("Total incoming traffic: 99999999999999999 mbps\n"),
                "incoming"
            ),
            None
        );
    }

    /// (file, sport, dport) — what `sport=`/`dport=` see on every layout. Ties → lower port.
    const PORTS: &[(&str, Option<u16>, Option<u16>)] = &[
        // 1.2.9: the packet dump decides (its flow dump is not read).
        ("ban_ipv4_udp_flood.txt", Some(53), Some(5428)),
        // The packet dump is read whole, the victim's two SYN-ACKs from 443 included.
        ("ban_ipv4_syn_flood.txt", Some(443), Some(443)),
        ("ban_ipv4_icmp_flood.txt", Some(0), Some(0)),
        ("ban_ipv4_manual_api.txt", None, None),
        (
            "layouts/1.2.9-ntp-amplification-ban.txt",
            Some(123),
            Some(14001),
        ),
        // 1.2.4 bans: only the flow dump has ports; the same attacks' attack_details agree on
        // the victim's port.
        (
            "fastnetmon-1.2.4/1-ban-203.0.113.10.txt",
            Some(1099),
            Some(53),
        ),
        (
            "fastnetmon-1.2.4/2-attack_details-203.0.113.10.txt",
            Some(4114),
            Some(53),
        ),
        (
            "fastnetmon-1.2.4/4-ban-203.0.113.11.txt",
            Some(1232),
            Some(80),
        ),
        (
            "fastnetmon-1.2.4/5-attack_details-203.0.113.11.txt",
            Some(3593),
            Some(80),
        ),
        ("fastnetmon-1.2.4/7-ban-203.0.113.20.txt", None, None),
        ("fastnetmon-1.2.4/9-ban-203.0.113.30.txt", None, None),
        (
            "layouts/1.2.4-ntp-amplification-ban.txt",
            Some(123),
            Some(14001),
        ),
        ("layouts/1.2.4-outgoing-syn-ban.txt", Some(40000), Some(80)),
        // 1.1.x: weighted by packets, not by lines.
        (
            "layouts/1.1.x-dns-amplification-ban.txt",
            Some(53),
            Some(31337),
        ),
    ];

    #[test]
    fn busiest_ports_mean_the_same_on_every_layout() {
        for (file, sport, dport) in PORTS {
            let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).expect(file);
            assert_eq!(busiest_ports(&parse(&text)), (*sport, *dport), "{file}");
        }
    }

    #[test]
    fn flow_lines_are_read_as_the_packets_they_count() {
        let text = std::fs::read_to_string(format!(
            "{FIXTURES}/fastnetmon-1.2.4/1-ban-203.0.113.10.txt"
        ))
        .unwrap();
        let d = parse(&text);
        assert!(d.packets.is_empty());
        assert_eq!(d.direction.as_deref(), Some("incoming"));
        assert_eq!(
            d.flows.len(),
            11,
            "headings and the crop line are not flows"
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            d.flows[0],
            Flow {
                src: ip("198.51.100.56"),
                sport: 1099,
                dst: ip("203.0.113.10"),
                dport: 53,
                packets: 50,
                incoming: true,
            }
        );
        let out = parse("198.51.100.77:443 > 100.72.130.80:37489 60 bytes 7 packets\n");
        assert_eq!(
            out.flows,
            [Flow {
                src: ip("198.51.100.77"),
                sport: 443,
                dst: ip("100.72.130.80"),
                dport: 37489,
                packets: 7,
                incoming: false,
            }]
        );
        for not_a_flow in [
            "UDP flows: 300",
            "Flows have cropped due to very long list.",
            "1.2.3.4:1 < 5.6.7.8:2 60 bytes 1 packets extra",
            "1.2.3.4:1 < 5.6.7.8:2 60 bytes 1 packet",
            "1.2.3.4:1 <> 5.6.7.8:2 60 bytes 1 packets",
            "1.2.3.4:1 < 5.6.7.8:70000 60 bytes 1 packets",
            "1.2.3.4:1 < 5.6.7.8:2 -60 bytes 1 packets",
            "1.2.3.4:1 < 5.6.7.8:2 60 octets 1 packets",
        ] {
            assert_eq!(parse(not_a_flow).flows, [], "{not_a_flow}");
        }
    }

    #[test]
    fn a_flow_line_has_the_protocol_of_its_heading() {
        let text = |file: &str| std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
        let d = parse(&text("fastnetmon-1.2.4/1-ban-203.0.113.10.txt"));
        assert_eq!(d.flow_headings, [(0, "udp".to_string())]);
        assert_eq!(d.flow_protocol(10), Some("udp"));
        // 1.1.x's bare heading; 1.2.4's two sections, each with its own.
        let d = parse(&text("layouts/1.1.x-dns-amplification-ban.txt"));
        assert_eq!(d.flow_protocol(0), Some("udp"));
        let d = parse(&text("layouts/1.2.4-ntp-amplification-ban.txt"));
        assert_eq!(
            (d.flow_protocol(0), d.flow_protocol(12)),
            (Some("udp"), Some("tcp"))
        );
        let d = parse("192.0.2.1:80 < 198.51.100.1:123 1 bytes 10 packets\n");
        assert_eq!(d.flow_protocol(0), None, "no heading above it");
        for not_a_heading in [
            "UDP flows: x",
            "UDP flows:",
            "GRE flows: 3",
            "udp",
            "UDP traffic",
        ] {
            assert_eq!(parse(not_a_heading).flow_headings, [], "{not_a_heading}");
        }
    }

    #[test]
    fn flows_count_only_in_the_attack_direction_and_a_packet_dump_wins() {
        let flows = "192.0.2.1:80 < 198.51.100.1:123 1 bytes 10 packets\n\
                     192.0.2.1:22 > 198.51.100.2:50000 1 bytes 99 packets\n";
        for (direction, want) in [
            ("", (Some(123), Some(80))),
            ("Attack direction: incoming\n", (Some(123), Some(80))),
            ("Attack direction: other\n", (Some(123), Some(80))),
            ("Attack direction: OUTGOING\n", (Some(22), Some(50000))),
        ] {
            let d = parse(&format!("{direction}{flows}"));
            assert_eq!(busiest_ports(&d), want, "{direction:?}");
        }
        // Only the other direction's flows: no port facts rather than the wrong ones.
        let d = parse(
            "Attack direction: outgoing\n192.0.2.1:80 < 198.51.100.1:123 1 bytes 10 packets\n",
        );
        assert_eq!(busiest_ports(&d), (None, None));
        let packet = "2025-05-14 10:21:07.1 198.51.100.7:53 > 192.0.2.1:4444 protocol: udp frag: 0  packets: 1 size: 1 bytes ttl: 1 sample ratio: 1  \n";
        assert_eq!(
            busiest_ports(&parse(&format!("{flows}{packet}"))),
            (Some(53), Some(4444))
        );
    }

    #[test]
    fn huge_packet_counts_saturate_instead_of_wrapping() {
        // Two lines of 2^63 packets from port 53 wrap to 0 in u64; seven from port 123 would
        // then win (and a debug build panics).
        let half = 1u64 << 63;
        let pkt = |sport: u16, n: u64| {
            format!(
                "2025-05-14 10:21:07.1 198.51.100.7:{sport} > 192.0.2.1:{sport} protocol: udp frag: 0  packets: {n} size: 1 bytes ttl: 1 sample ratio: 1  \n"
            )
        };
        let text = pkt(53, half) + &pkt(53, half) + &pkt(123, 7);
        assert_eq!(busiest_ports(&parse(&text)), (Some(53), Some(53)));
        let flow = |rport: u16, n: u64| {
            format!("192.0.2.1:{rport} < 198.51.100.1:{rport} 1 bytes {n} packets\n")
        };
        let text = flow(53, half) + &flow(53, half) + &flow(123, 7);
        assert_eq!(busiest_ports(&parse(&text)), (Some(53), Some(53)));
        // More than u64 holds is u64::MAX, not garbage and not a dropped line.
        let text = flow(123, 7)
            + "192.0.2.1:53 < 198.51.100.1:53 1 bytes 99999999999999999999999 packets\n";
        assert_eq!(busiest_ports(&parse(&text)), (Some(53), Some(53)));
        let text =
            pkt(123, 7) + &pkt(53, 1).replace("packets: 1 ", "packets: 99999999999999999999999 ");
        assert_eq!(busiest_ports(&parse(&text)), (Some(53), Some(53)));
        // u64::MAX on two ports: a tie, the lower port.
        let text = flow(123, u64::MAX) + &flow(53, u64::MAX) + &flow(53, u64::MAX);
        assert_eq!(busiest_ports(&parse(&text)), (Some(53), Some(53)));
        let tcp = |flags: &str| {
            format!(
                "2025-05-14 10:21:07.1 198.51.100.7:1 > 192.0.2.1:80 protocol: tcp flags: {flags} frag: 0  packets: {} size: 1 bytes ttl: 1 sample ratio: 1  \n",
                u64::MAX
            )
        };
        let text = "Attack type: unknown\nAttack protocol: tcp\n".to_string()
            + &tcp("syn")
            + &tcp("syn")
            + &tcp("ack");
        assert_eq!(
            vector(&parse(&text), "192.0.2.1".parse().unwrap(), "incoming"),
            "syn_flood"
        );
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "> > >",
            ":\n:",
            "a:b > c:d protocol:",
            "1.2.3.4:99999 > 1.2.3.4:1 protocol: tcp",
            "\u{0}\u{ffff}",
        ] {
            let d = parse(text);
            let _ = vector(&d, "1.2.3.4".parse().unwrap(), "incoming");
        }
    }
}

/// Properties over generated details text: what the parser reads back is exactly what was
/// written, counts near u64::MAX saturate, and no cut or garbled text makes it panic.
#[cfg(test)]
pub(crate) mod props {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    use crate::proptest_cases as cases;

    const BUILTIN: &[&str] = &[
        "udp_flood",
        "syn_flood",
        "ack_flood",
        "icmp_flood",
        "unknown",
    ];

    /// One generated line of details text, as FastNetMon (or something garbled) writes it.
    #[derive(Debug, Clone)]
    enum Line {
        Packet(Packet),
        Flow(Flow),
        Label(&'static str, String),
        /// Anything else: no `:`, `<` or `>`, so it can be neither a label nor a dump line.
        Junk(String),
    }

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            4 => prop::sample::select(vec!["192.0.2.1", "198.51.100.7", "2001:db8::1"])
                .prop_map(|s| s.parse().unwrap()),
            1 => any::<IpAddr>(),
        ]
    }

    fn port() -> impl Strategy<Value = u16> {
        prop_oneof![3 => prop::sample::select(vec![0u16, 22, 53, 80, 123, 443]), 1 => any::<u16>()]
    }

    /// Small counts, counts that overflow when two are added, and anything.
    fn count() -> impl Strategy<Value = u64> {
        prop_oneof![
            0..100u64,
            (u64::MAX - 1000)..=u64::MAX,
            Just(1u64 << 63),
            any::<u64>()
        ]
    }

    fn line() -> impl Strategy<Value = Line> {
        let protocol =
            prop::sample::select(vec!["tcp", "udp", "icmp", "ipv6_icmp", "gre", "unknown"]);
        let flags = prop::option::of(prop::sample::select(vec![
            "syn",
            "ack",
            "syn,ack",
            "-",
            "fin,psh,ack",
        ]));
        let packet = (ip(), port(), ip(), port(), protocol, flags, count()).prop_map(
            |(src, sport, dst, dport, protocol, flags, packets)| {
                Line::Packet(Packet {
                    src,
                    sport,
                    dst,
                    dport,
                    protocol: protocol.into(),
                    flags: flags.map(str::to_string),
                    packets,
                })
            },
        );
        let flow = (ip(), port(), ip(), port(), count(), any::<bool>()).prop_map(
            |(victim, vport, remote, rport, packets, incoming)| {
                let (src, sport, dst, dport) = if incoming {
                    (remote, rport, victim, vport)
                } else {
                    (victim, vport, remote, rport)
                };
                Line::Flow(Flow {
                    src,
                    sport,
                    dst,
                    dport,
                    packets,
                    incoming,
                })
            },
        );
        let word = prop_oneof![
            prop::sample::select(vec![
                "syn_flood",
                "UDP_FLOOD",
                "icmp_flood",
                "ack_flood",
                "unknown",
                "tcp",
                "udp",
                "icmp",
                "incoming",
                "outgoing",
                "OUTGOING",
                "other",
                "Überlast",
                "日本",
            ])
            .prop_map(str::to_string),
            "[a-zA-Z_é日]{1,10}",
        ];
        let number = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            Just("99999999999999999999999".to_string()),
            Just("-5".to_string()),
            Just("12.5".to_string()),
        ];
        let label = prop_oneof![
            (
                prop::sample::select(vec!["Attack type", "Attack protocol", "Attack direction"]),
                word
            ),
            (
                prop::sample::select(vec!["Total incoming traffic", "Total outgoing traffic"]),
                number.prop_map(|n| format!("{n} mbps"))
            ),
        ]
        .prop_map(|(k, v)| Line::Label(k, v));
        let junk =
            any::<String>().prop_map(|s| Line::Junk(s.replace([':', '<', '>', '\n', '\r'], "")));
        prop_oneof![3 => packet, 3 => flow, 2 => label, 1 => junk]
    }

    fn render(lines: &[Line], crlf: bool) -> String {
        let mut text = String::new();
        for l in lines {
            match l {
                Line::Packet(p) => {
                    let flags = p
                        .flags
                        .as_deref()
                        .map(|f| format!(" flags: {f}"))
                        .unwrap_or_default();
                    text += &format!(
                        "2026-11-25 12:10:24.846435785 {}:{} > {}:{} protocol: {}{flags} frag: 0  packets: {} size: 60 bytes ttl: 64 sample ratio: 1  ",
                        p.src, p.sport, p.dst, p.dport, p.protocol, p.packets
                    );
                }
                Line::Flow(f) if f.incoming => {
                    text += &format!(
                        "{}:{} < {}:{} 60 bytes {} packets",
                        f.dst, f.dport, f.src, f.sport, f.packets
                    );
                }
                Line::Flow(f) => {
                    text += &format!(
                        "{}:{} > {}:{} 60 bytes {} packets",
                        f.src, f.sport, f.dst, f.dport, f.packets
                    );
                }
                Line::Label(k, v) => text += &format!("{k}: {v}"),
                Line::Junk(j) => text += j,
            }
            text += if crlf { "\r\n" } else { "\n" };
        }
        text
    }

    fn last_label<'a>(lines: &'a [Line], key: &str) -> Option<&'a str> {
        lines.iter().rev().find_map(|l| match l {
            Line::Label(k, v) if *k == key => Some(v.as_str()),
            _ => None,
        })
    }

    /// The busiest port, computed apart from the code under test: exact sums in u128, clamped
    /// to u64 (what saturating adds give), ties to the lower port.
    pub(crate) fn model_top(samples: &[(u16, u16, u64)], source: bool) -> Option<u16> {
        let mut sums: BTreeMap<u16, u128> = BTreeMap::new();
        for (s, d, n) in samples {
            *sums.entry(if source { *s } else { *d }).or_default() += u128::from(*n);
        }
        let clamp = |n: u128| n.min(u128::from(u64::MAX));
        let best = sums.values().map(|n| clamp(*n)).max()?;
        sums.into_iter()
            .find(|(_, n)| clamp(*n) == best)
            .map(|(p, _)| p)
    }

    fn model_ports(lines: &[Line]) -> (Option<u16>, Option<u16>) {
        let packets: Vec<_> = lines
            .iter()
            .filter_map(|l| match l {
                Line::Packet(p) => Some((p.sport, p.dport, p.packets)),
                _ => None,
            })
            .collect();
        let samples = if packets.is_empty() {
            let incoming = last_label(lines, "Attack direction")
                .is_none_or(|d| !d.eq_ignore_ascii_case("outgoing"));
            lines
                .iter()
                .filter_map(|l| match l {
                    Line::Flow(f) if f.incoming == incoming => Some((f.sport, f.dport, f.packets)),
                    _ => None,
                })
                .collect()
        } else {
            packets
        };
        (model_top(&samples, true), model_top(&samples, false))
    }

    /// bps is a whole, non-negative number of megabits, the direction's own, or None.
    fn assert_bps(d: &Details) {
        for direction in ["incoming", "outgoing", "other"] {
            let bps = bps(d, direction);
            match mbps(d, direction) {
                Some(m) if m <= i64::MAX as u64 / 1_000_000 => {
                    assert_eq!(bps, Some(m as i64 * 1_000_000), "{direction}")
                }
                _ => assert_eq!(bps, None, "{direction}"),
            }
        }
    }

    proptest! {
        #![proptest_config(cases(128))]

        #[test]
        fn generated_details_read_back_exactly(
            lines in prop::collection::vec(line(), 0..40),
            crlf in any::<bool>(),
            victim in ip(),
        ) {
            let d = parse(&render(&lines, crlf));
            let packets: Vec<&Packet> = lines.iter().filter_map(|l| match l { Line::Packet(p) => Some(p), _ => None }).collect();
            let flows: Vec<&Flow> = lines.iter().filter_map(|l| match l { Line::Flow(f) => Some(f), _ => None }).collect();
            prop_assert_eq!(d.packets.iter().collect::<Vec<_>>(), packets);
            prop_assert_eq!(d.flows.iter().collect::<Vec<_>>(), flows);
            let lower = |key| last_label(&lines, key).map(str::to_ascii_lowercase);
            prop_assert_eq!(&d.attack_type, &lower("Attack type"));
            prop_assert_eq!(&d.protocol, &lower("Attack protocol"));
            prop_assert_eq!(&d.direction, &lower("Attack direction"));
            let number = |key| last_label(&lines, key).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
            prop_assert_eq!(d.incoming_mbps, number("Total incoming traffic"));
            prop_assert_eq!(d.outgoing_mbps, number("Total outgoing traffic"));
            prop_assert_eq!(busiest_ports(&d), model_ports(&lines));
            assert_bps(&d);
            for direction in ["incoming", "outgoing", "other"] {
                let v = vector(&d, victim, direction);
                prop_assert!(BUILTIN.contains(&v), "{v}");
                match (d.attack_type.as_deref(), d.protocol.as_deref()) {
                    (Some(t @ ("syn_flood" | "udp_flood" | "icmp_flood" | "ack_flood")), _) => prop_assert_eq!(v, t),
                    (None | Some("unknown"), Some("udp")) => prop_assert_eq!(v, "udp_flood"),
                    (None | Some("unknown"), Some("icmp")) => prop_assert_eq!(v, "icmp_flood"),
                    (None | Some("unknown"), Some("tcp")) => prop_assert!(matches!(v, "syn_flood" | "ack_flood" | "unknown")),
                    _ => prop_assert_eq!(v, "unknown"),
                }
            }
        }

        #[test]
        fn any_text_or_bytes_give_a_known_vector_and_whole_megabits(
            text in prop_oneof![any::<String>(), prop::collection::vec(any::<u8>(), 0..600).prop_map(|b| String::from_utf8_lossy(&b).into_owned())],
        ) {
            let d = parse(&text);
            prop_assert!(BUILTIN.contains(&vector(&d, "192.0.2.1".parse().unwrap(), "incoming")));
            assert_bps(&d);
            let (sport, dport) = busiest_ports(&d);
            prop_assert_eq!(sport.is_some(), dport.is_some());
            if !d.packets.is_empty() {
                prop_assert!(d.packets.iter().any(|p| Some(p.sport) == sport));
            }
        }
    }

    /// Every real capture and sample (and a non-ASCII line), as bytes.
    fn fixtures() -> &'static [(String, Vec<u8>)] {
        static ALL: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
        ALL.get_or_init(read_fixtures)
    }

    fn read_fixtures() -> Vec<(String, Vec<u8>)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut out = Vec::new();
        for sub in ["", "/fastnetmon-1.2.4", "/fastnetmon-1.2.9", "/layouts"] {
            for e in std::fs::read_dir(format!("{dir}{sub}")).unwrap().flatten() {
                if e.path().extension().is_some_and(|x| x == "txt") {
                    let mut bytes = std::fs::read(e.path()).unwrap();
                    // A multi-byte character cut in the middle too.
                    bytes.extend("Attack type: Überlast 日本\n".as_bytes());
                    out.push((e.path().display().to_string(), bytes));
                }
            }
        }
        assert!(out.len() >= 16, "{out:?}");
        out
    }

    fn lossy(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// What any text reads to: a known vector, whole megabits, both ports or neither.
    fn assert_invariants(d: &Details, at: &str) {
        let victim = "203.0.113.10".parse().unwrap();
        assert!(BUILTIN.contains(&vector(d, victim, "incoming")), "{at}");
        assert_bps(d);
        let (sport, dport) = busiest_ports(d);
        assert_eq!(sport.is_some(), dport.is_some(), "{at}");
    }

    /// What a cut text may read: the whole text's packets and flows in order (the last one
    /// may come from the cut line and differ), its labels cut short, and the invariants.
    fn assert_cut_of(d: &Details, whole: &Details, at: &str) {
        assert!(d.packets.len() <= whole.packets.len(), "{at}");
        let keep = d.packets.len().saturating_sub(1);
        assert_eq!(d.packets[..keep], whole.packets[..keep], "{at}");
        assert!(d.flows.len() <= whole.flows.len(), "{at}");
        let keep = d.flows.len().saturating_sub(1);
        assert_eq!(d.flows[..keep], whole.flows[..keep], "{at}");
        if let (Some(cut), Some(full)) = (d.incoming_mbps, whole.incoming_mbps) {
            assert!(full.to_string().starts_with(&cut.to_string()), "{at}");
        }
        if let (Some(cut), Some(full)) = (&d.protocol, &whole.protocol) {
            assert!(full.starts_with(cut.as_str()), "{at}");
        }
        assert_invariants(d, at);
    }

    /// FastNetMon's pipe can close early and our bounded read cuts long details: every real
    /// capture and sample, cut at every byte. The parser reads line by line, so the cut line is
    /// parsed alone at every byte (no panic; at most one packet or flow, the whole line's once
    /// the line is complete), and the text before it at every line end (exactly the whole
    /// text's first packets and flows); `cut_anywhere_reads_a_prefix` below parses whole cut
    /// texts at generated offsets. (Parsing the whole cut text at every byte is quadratic:
    /// seconds in a debug build.)
    #[test]
    fn fixtures_cut_at_every_byte_read_as_a_prefix_of_the_whole() {
        for (file, bytes) in fixtures() {
            let whole = parse(&lossy(bytes));
            let mut line_start = 0;
            let mut head = Details::default();
            for cut in 0..=bytes.len() {
                let at = format!("{file} cut at {cut}");
                if cut > 0 && bytes[cut - 1] == b'\n' {
                    line_start = cut;
                    head = parse(&lossy(&bytes[..cut]));
                    assert_eq!(head.packets, whole.packets[..head.packets.len()], "{at}");
                    assert_eq!(head.flows, whole.flows[..head.flows.len()], "{at}");
                }
                let tail = parse(&lossy(&bytes[line_start..cut]));
                assert!(tail.packets.len() + tail.flows.len() <= 1, "{at}");
                assert_invariants(&tail, &at);
                if bytes.get(cut) == Some(&b'\n') {
                    if let [p] = &tail.packets[..] {
                        assert_eq!(Some(p), whole.packets.get(head.packets.len()), "{at}");
                    }
                    if let [f] = &tail.flows[..] {
                        assert_eq!(Some(f), whole.flows.get(head.flows.len()), "{at}");
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(cases(64))]

        #[test]
        fn cut_anywhere_reads_a_prefix(file in 0usize..64, cut in any::<prop::sample::Index>()) {
            let (name, bytes) = &fixtures()[file % fixtures().len()];
            let cut = cut.index(bytes.len() + 1);
            let whole = parse(&lossy(bytes));
            assert_cut_of(&parse(&lossy(&bytes[..cut])), &whole, &format!("{name} cut at {cut}"));
        }
    }
}
