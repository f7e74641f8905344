//! FastNetMon's details text → what prefixd needs: the vector and the bandwidth. The text is
//! read as loose `Label: value` lines plus packet-dump lines, so it does not matter which
//! FastNetMon version wrote it or in which order; nothing is guessed from substrings.

use std::net::IpAddr;

#[derive(Debug, Default, PartialEq)]
pub struct Details {
    pub attack_type: Option<String>,
    pub protocol: Option<String>,
    pub incoming_mbps: Option<u64>,
    pub outgoing_mbps: Option<u64>,
    pub packets: Vec<Packet>,
}

/// One line of the packet dump.
#[derive(Debug, PartialEq)]
pub struct Packet {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub protocol: String,
    pub flags: Option<String>,
    pub packets: u64,
}

pub fn parse(text: &str) -> Details {
    let mut d = Details::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(p) = parse_packet(line) {
            d.packets.push(p);
            continue;
        }
        let Some((label, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match label.trim() {
            "Attack type" => d.attack_type = Some(value.to_ascii_lowercase()),
            "Attack protocol" => d.protocol = Some(value.to_ascii_lowercase()),
            "Total incoming traffic" => d.incoming_mbps = leading_number(value),
            "Total outgoing traffic" => d.outgoing_mbps = leading_number(value),
            _ => {}
        }
    }
    d
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
    let packets = after("packets:").and_then(|p| p.parse().ok()).unwrap_or(1);
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
