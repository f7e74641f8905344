//! FastNetMon 1.2.9's details text for a generated attack: its description, then its packet
//! dump, one line per sampled packet, laid out as `tests/fixtures/layouts/1.2.9-*.txt` (the
//! format in shared/fastnetmon-notify.md). For the tests and the bench's figure.
#![allow(dead_code)]

/// `records` of one packet each on the host's `port` (where an incoming packet goes to, where
/// an outgoing one leaves from), in `protocol` (`udp`, `tcp` — sent as SYNs — or `icmp`).
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    pub protocol: &'static str,
    pub port: u16,
    pub records: usize,
}

pub fn lines(protocol: &'static str, port: u16, records: usize) -> Lines {
    Lines {
        protocol,
        port,
        records,
    }
}

/// The details a `ban` of `victim` (IPv4) carries: `Attack type`, `Attack protocol` and the
/// direction's traffic, then the dump. Remote sides differ line by line.
pub fn details(
    victim: &str,
    direction: &str,
    attack_type: &str,
    protocol: &str,
    dump: &[Lines],
) -> String {
    let total: usize = dump.iter().map(|l| l.records).sum();
    let mut s = format!(
        "IP: {victim}\nAttack type: {attack_type}\nInitial attack power: {total} packets per second\nPeak attack power: {total} packets per second\nAttack direction: {direction}\nAttack protocol: {protocol}\nTotal incoming traffic: 12 mbps\nTotal outgoing traffic: 12 mbps\n\n\n\nAttack traffic dump\n\n"
    );
    let mut n = 0usize;
    for l in dump {
        for _ in 0..l.records {
            n += 1;
            let remote = format!("198.51.100.{}", n % 250 + 1);
            let remote_port = 1024 + (n % 60_000) as u16;
            let (src, dst) = if direction == "outgoing" {
                (
                    format!("{victim}:{}", l.port),
                    format!("{remote}:{remote_port}"),
                )
            } else {
                (
                    format!("{remote}:{remote_port}"),
                    format!("{victim}:{}", l.port),
                )
            };
            let flags = if l.protocol == "tcp" {
                " flags: syn"
            } else {
                ""
            };
            s += &format!(
                "2026-11-25 12:10:24.{n:09} {src} > {dst} protocol: {}{flags} frag: 0  packets: 1 size: 482 bytes ttl: 54 sample ratio: 1  \n",
                l.protocol
            );
        }
    }
    s
}

/// A UDP flood on `victim` as FastNetMon names it.
pub fn udp_flood(victim: &str, dump: &[Lines]) -> String {
    details(victim, "incoming", "udp_flood", "udp", dump)
}
