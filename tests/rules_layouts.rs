//! Custom vector rules on every details layout we claim (FastNetMon 1.1.x, 1.2.4, 1.2.9): the
//! built binary is fed each layout's ban text, and what prefixd gets (or `--dry-run` prints) is
//! the vector of the rule that should match. 1.1.x–1.2.5 bans carry ports only in the flow
//! dump, so a `sport=` rule that worked on 1.2.9 must work there too.

mod common;

use common::server::Server;
use common::{Sandbox, fixture, s};

/// FastNetMon's argv and details for one ban, and the layout it is written in.
struct Ban {
    layout: &'static str,
    file: &'static str,
    ip: &'static str,
    direction: &'static str,
    pps: &'static str,
}

const NTP_124: Ban = Ban {
    layout: "1.2.4",
    file: "layouts/1.2.4-ntp-amplification-ban.txt",
    ip: "192.0.2.100",
    direction: "incoming",
    pps: "12288",
};
const NTP_129: Ban = Ban {
    layout: "1.2.9",
    file: "layouts/1.2.9-ntp-amplification-ban.txt",
    ip: "192.0.2.100",
    direction: "incoming",
    pps: "12288",
};
const DNS_11X: Ban = Ban {
    layout: "1.1.x",
    file: "layouts/1.1.x-dns-amplification-ban.txt",
    ip: "192.0.2.150",
    direction: "incoming",
    pps: "5800",
};
const OUT_SYN_124: Ban = Ban {
    layout: "1.2.4",
    file: "layouts/1.2.4-outgoing-syn-ban.txt",
    ip: "192.0.2.101",
    direction: "outgoing",
    pps: "6000",
};
const UDP_124_REAL: Ban = Ban {
    layout: "1.2.4 (real capture)",
    file: "fastnetmon-1.2.4/1-ban-203.0.113.10.txt",
    ip: "203.0.113.10",
    direction: "incoming",
    pps: "3386",
};
const SYN_124_REAL: Ban = Ban {
    layout: "1.2.4 (real capture)",
    file: "fastnetmon-1.2.4/4-ban-203.0.113.11.txt",
    ip: "203.0.113.11",
    direction: "incoming",
    pps: "2940",
};
const ICMP_124_REAL: Ban = Ban {
    layout: "1.2.4 (real capture)",
    file: "fastnetmon-1.2.4/7-ban-203.0.113.20.txt",
    ip: "203.0.113.20",
    direction: "incoming",
    pps: "1631",
};
const DNS_129: Ban = Ban {
    layout: "1.2.9",
    file: "ban_ipv4_udp_flood.txt",
    ip: "192.0.2.10",
    direction: "incoming",
    pps: "412345",
};

impl Ban {
    fn args(&self) -> [&'static str; 4] {
        [self.ip, self.direction, self.pps, "ban"]
    }

    /// `--dry-run`'s first line: which vector, and from which rule (None: built-in).
    fn dry_run(&self, sb: &Sandbox) -> (String, Option<String>) {
        let mut args = vec!["--dry-run"];
        args.extend(self.args());
        let r = sb.run(&args, Some(fixture(self.file).as_bytes()));
        assert_eq!(r.code, 0, "{}: {}{}", self.file, r.stdout, r.stderr);
        let head = r.stdout.lines().next().unwrap_or_default().to_string();
        let vector = head
            .strip_prefix("# vector ")
            .and_then(|h| h.split(' ').next())
            .unwrap_or_else(|| panic!("{}: {}", self.file, r.stdout))
            .to_string();
        assert!(
            r.stdout
                .contains(&format!("\n  \"vector\": \"{vector}\",\n")),
            "{}: the request carries another vector: {}",
            self.file,
            r.stdout
        );
        let rule = head
            .split_once(" from rule ")
            .map(|(_, r)| r.split(' ').next().unwrap_or_default().to_string());
        (vector, rule)
    }
}

#[test]
fn the_issue_s_ntp_rule_reaches_prefixd_from_a_1_2_4_ban() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    let rules = sb.write("rules", "unknown protocol=udp sport=123\n");
    sb.set("PREFIXD_VECTOR_RULES", &rules);
    for ban in [NTP_124, NTP_129] {
        srv.clear();
        let r = sb.run(&ban.args(), Some(fixture(ban.file).as_bytes()));
        assert_eq!(r.code, 0, "{}: {}", ban.layout, sb.log());
        let sent: Vec<String> = srv.bans().iter().map(|b| s(b.get("vector"))).collect();
        // Before: "no custom rule matched" on 1.2.4, and the built-in udp_flood went out.
        assert_eq!(sent, ["unknown"], "{}: {}", ban.layout, sb.log());
        assert!(
            sb.log().contains(&format!("rule={rules}:1")),
            "{}: {}",
            ban.layout,
            sb.log()
        );
    }
}

#[test]
fn port_rules_choose_the_same_vector_on_every_layout() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    let rules = sb.write(
        "rules",
        "\
ntp_amplification protocol=udp sport=123
udp_flood         protocol=udp sport=53      # the README's DNS amplification rule
syn_flood         protocol=tcp dport=80
",
    );
    sb.set("PREFIXD_VECTOR_RULES", &rules);
    let line = |n: u32| Some(format!("{rules}:{n}"));
    let cases: Vec<(Ban, &str, Option<String>)> = vec![
        (NTP_124, "ntp_amplification", line(1)),
        (NTP_129, "ntp_amplification", line(1)),
        (DNS_11X, "udp_flood", line(2)),
        (DNS_129, "udp_flood", line(2)),
        // A flood *to* the victim's port 53 from random ports is not DNS amplification.
        (UDP_124_REAL, "udp_flood", None),
        (SYN_124_REAL, "syn_flood", line(3)),
        // Outgoing: the port the attack goes to is the remote's, 80.
        (OUT_SYN_124, "syn_flood", line(3)),
        // No flow dump, no packet dump: no port rule can match.
        (ICMP_124_REAL, "icmp_flood", None),
    ];
    for (ban, vector, rule) in cases {
        assert_eq!(
            ban.dry_run(&sb),
            (vector.to_string(), rule),
            "{} {}",
            ban.layout,
            ban.file
        );
    }
    assert!(srv.requests().is_empty(), "--dry-run sends nothing");
}

#[test]
fn every_condition_matches_on_every_layout() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    // (ban, conditions that hold on it, one that does not)
    let cases: [(Ban, &[&str], &str); 5] = [
        (
            DNS_129,
            &[
                "type=udp_flood",
                "protocol=udp",
                "sport=53",
                "dport=5428",
                "contains=\"attack TRAFFIC dump\"",
                "pps>=412345",
                "mbps>=4447",
            ],
            "dport=53",
        ),
        (
            NTP_124,
            &[
                "type=udp_flood",
                "protocol=udp",
                "sport=123",
                "dport=14001",
                "contains=\"UDP flows: 12\"",
                "pps>=12288",
                "mbps>=47",
            ],
            "sport=22",
        ),
        (
            UDP_124_REAL,
            &[
                "type=udp_flood",
                "protocol=udp",
                "sport=1099",
                "dport=53",
                "contains=\"198.51.100.56:1099\"",
                "pps>=3386",
                "mbps>=13",
            ],
            "sport=53",
        ),
        (
            OUT_SYN_124,
            &[
                "type=syn_flood",
                "protocol=tcp",
                "sport=40000",
                "dport=80",
                "contains=\"Outgoing\"",
                "pps>=6000",
                "mbps>=2",
            ],
            "sport=80",
        ),
        (
            DNS_11X,
            &[
                "type=unknown",
                "protocol=udp",
                "sport=53",
                "dport=31337",
                "contains=\"flows are cropped\"",
                "pps>=5800",
                "mbps>=68",
            ],
            "sport=123",
        ),
    ];
    for (ban, holds, fails) in cases {
        for cond in holds {
            let rules = sb.write("rules", &format!("layout_match {cond}\n"));
            sb.set("PREFIXD_VECTOR_RULES", &rules);
            assert_eq!(
                ban.dry_run(&sb),
                ("layout_match".to_string(), Some(format!("{rules}:1"))),
                "{} {}: {cond}",
                ban.layout,
                ban.file
            );
        }
        let rules = sb.write("rules", &format!("layout_match {fails}\n"));
        sb.set("PREFIXD_VECTOR_RULES", &rules);
        assert_eq!(
            ban.dry_run(&sb).1,
            None,
            "{} {}: {fails}",
            ban.layout,
            ban.file
        );
    }
}
