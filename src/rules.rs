//! Custom vector rules (`PREFIXD_VECTOR_RULES`): one rule per line, first match wins, no match
//! → built-in detection. Replaces "edit the script" for sites that know their attacks.
//!
//! ```text
//! # vector      conditions (all must hold)
//! udp_flood     protocol=udp sport=53          # DNS amplification
//! unknown       type=ip_fragmentation
//! udp_flood     contains="memcached"
//! ```

use crate::details::Details;

/// The vectors prefixd v0.10.1 accepts; a rule may name another with a warning.
pub const KNOWN_VECTORS: &[&str] = &[
    "udp_flood",
    "syn_flood",
    "ack_flood",
    "icmp_flood",
    "unknown",
];

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Type(String),
    Protocol(String),
    Sport(u16),
    Dport(u16),
    /// Lower-cased; matched case-insensitively.
    Contains(String),
    PpsAtLeast(i64),
    MbpsAtLeast(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub vector: String,
    pub conds: Vec<Cond>,
    /// `file:line`, for the log and `--dry-run`.
    pub origin: String,
}

/// What a rule is matched against.
pub struct Facts<'a> {
    pub details: &'a Details,
    pub text: &'a str,
    pub pps: Option<i64>,
    pub mbps: Option<u64>,
}

/// Parses a rules file; `Err` lists every malformed line as `file:line: why`. The `Vec<String>`
/// holds warnings (vectors prefixd does not know yet).
pub fn parse(file: &str, text: &str) -> Result<(Vec<Rule>, Vec<String>), Vec<String>> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let origin = format!("{file}:{}", i + 1);
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some((vector, conds))) => {
                if !KNOWN_VECTORS.contains(&vector.as_str()) {
                    warnings.push(format!(
                        "{origin}: vector {vector:?} is not one prefixd v0.10.1 knows; if prefixd refuses it (422) the built-in vector is sent instead"
                    ));
                }
                rules.push(Rule {
                    vector,
                    conds,
                    origin,
                });
            }
            Err(why) => errors.push(format!("{origin}: {why}")),
        }
    }
    if errors.is_empty() {
        Ok((rules, warnings))
    } else {
        Err(errors)
    }
}

fn parse_line(line: &str) -> Result<Option<(String, Vec<Cond>)>, String> {
    let words = split(line)?;
    let Some((vector, conds)) = words.split_first() else {
        return Ok(None);
    };
    if vector.is_empty()
        || !vector
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "vector {vector:?} must be lower-case letters, digits and _"
        ));
    }
    if conds.is_empty() {
        return Err("a rule needs at least one condition (type= protocol= sport= dport= contains= pps>= mbps>=)".into());
    }
    let conds = conds
        .iter()
        .map(|w| cond(w))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((vector.clone(), conds)))
}

/// Words separated by blanks; `"…"` keeps blanks; `#` after a blank (or first) starts a comment.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' if cur.is_empty() => break,
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => cur.push(chars.next().ok_or("unterminated quote")?),
                    Some(c) => cur.push(c),
                    None => return Err("unterminated quote".into()),
                }
            },
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

fn cond(w: &str) -> Result<Cond, String> {
    let bad = |what: &str| format!("{w:?}: {what}");
    let port = |v: &str| v.parse::<u16>().map_err(|_| bad("expected a port 0-65535"));
    if let Some((k, v)) = w.split_once(">=") {
        return match k {
            "pps" => v
                .parse()
                .map(Cond::PpsAtLeast)
                .map_err(|_| bad("expected a whole number")),
            "mbps" => v
                .parse()
                .map(Cond::MbpsAtLeast)
                .map_err(|_| bad("expected a whole number")),
            _ => Err(bad("only pps>= and mbps>= compare")),
        };
    }
    let (k, v) = w.split_once('=').ok_or_else(|| bad("expected key=value"))?;
    if v.is_empty() {
        return Err(bad("empty value"));
    }
    match k {
        "type" => Ok(Cond::Type(v.to_ascii_lowercase())),
        "protocol" => Ok(Cond::Protocol(v.to_ascii_lowercase())),
        "sport" => port(v).map(Cond::Sport),
        "dport" => port(v).map(Cond::Dport),
        "contains" => Ok(Cond::Contains(v.to_lowercase())),
        _ => Err(bad(
            "unknown condition (type= protocol= sport= dport= contains= pps>= mbps>=)",
        )),
    }
}

/// The first rule whose conditions all hold.
pub fn first_match<'r>(rules: &'r [Rule], f: &Facts) -> Option<&'r Rule> {
    if rules.is_empty() {
        return None;
    }
    let (sport, dport) = crate::details::busiest_ports(f.details);
    let lower = f.text.to_lowercase();
    rules.iter().find(|r| {
        r.conds.iter().all(|c| match c {
            Cond::Type(t) => f.details.attack_type.as_deref() == Some(t.as_str()),
            Cond::Protocol(p) => f.details.protocol.as_deref() == Some(p.as_str()),
            Cond::Sport(p) => sport == Some(*p),
            Cond::Dport(p) => dport == Some(*p),
            Cond::Contains(s) => lower.contains(s.as_str()),
            Cond::PpsAtLeast(n) => f.pps.is_some_and(|p| p >= *n),
            Cond::MbpsAtLeast(n) => f.mbps.is_some_and(|m| m >= *n),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::details;

    const FILE: &str = "\
# vector      conditions (all must hold)
udp_flood     protocol=udp sport=53          # DNS amplification
syn_flood     type=syn_flood
dns_amplification dport=4444
unknown       type=ip_fragmentation
udp_flood     contains=\"Memcached stats\"
icmp_flood    pps>=1000 mbps>=5
";

    fn facts<'a>(d: &'a Details, text: &'a str, pps: Option<i64>, mbps: Option<u64>) -> Facts<'a> {
        Facts {
            details: d,
            text,
            pps,
            mbps,
        }
    }

    fn dump(sport: u16, dport: u16, n: usize) -> String {
        format!("2025-05-14 10:21:07.1 198.51.100.7:{sport} > 192.0.2.10:{dport} protocol: udp frag: 0  packets: 1 size: 1 bytes ttl: 1 sample ratio: 1  \n").repeat(n)
    }

    /// One layout's details with what FastNetMon passed in argv, and the single-condition
    /// rules that must (and must not) match them.
    struct Layout {
        file: &'static str,
        pps: i64,
        direction: &'static str,
        holds: &'static [&'static str],
        fails: &'static [&'static str],
    }

    const LAYOUTS: &[Layout] = &[
        Layout {
            file: "ban_ipv4_udp_flood.txt",
            pps: 412_345,
            direction: "incoming",
            holds: &[
                "type=udp_flood",
                "protocol=udp",
                "sport=53",
                "dport=5428",
                "contains=\"Attack traffic dump\"",
                "pps>=412345",
                "mbps>=4447",
            ],
            fails: &[
                "type=unknown",
                "protocol=tcp",
                "sport=443",
                "dport=53",
                "contains=memcached",
                "pps>=412346",
                "mbps>=4448",
            ],
        },
        Layout {
            file: "layouts/1.2.9-ntp-amplification-ban.txt",
            pps: 12_288,
            direction: "incoming",
            holds: &[
                "type=udp_flood",
                "protocol=udp",
                "sport=123",
                "dport=14001",
                "mbps>=47",
            ],
            fails: &["sport=22", "dport=123", "mbps>=48"],
        },
        Layout {
            file: "fastnetmon-1.2.4/1-ban-203.0.113.10.txt",
            pps: 3386,
            direction: "incoming",
            holds: &[
                "type=udp_flood",
                "protocol=udp",
                "sport=1099",
                "dport=53",
                "contains=\"UDP flows: 300\"",
                "pps>=3386",
                "mbps>=13",
            ],
            fails: &[
                "type=syn_flood",
                "protocol=icmp",
                "sport=53",
                "dport=1099",
                "contains=\"Attack traffic dump\"",
                "pps>=3387",
                "mbps>=14",
            ],
        },
        Layout {
            file: "fastnetmon-1.2.4/4-ban-203.0.113.11.txt",
            pps: 2940,
            direction: "incoming",
            holds: &[
                "type=syn_flood",
                "protocol=tcp",
                "sport=1232",
                "dport=80",
                "mbps>=1",
            ],
            fails: &[
                "type=udp_flood",
                "protocol=udp",
                "sport=80",
                "dport=1232",
                "mbps>=2",
            ],
        },
        Layout {
            file: "fastnetmon-1.2.4/7-ban-203.0.113.20.txt",
            pps: 1631,
            direction: "incoming",
            holds: &["type=icmp_flood", "protocol=icmp", "pps>=1631"],
            // An ICMP ban has no flow dump: no port facts at all.
            fails: &["sport=0", "dport=0", "type=unknown"],
        },
        Layout {
            file: "layouts/1.2.4-ntp-amplification-ban.txt",
            pps: 12_288,
            direction: "incoming",
            holds: &[
                "type=udp_flood",
                "protocol=udp",
                "sport=123",
                "dport=14001",
                "mbps>=47",
            ],
            // The victim's own SSH flow carries more packets but goes the other way.
            fails: &["sport=22", "dport=50522", "dport=123", "mbps>=48"],
        },
        Layout {
            file: "layouts/1.2.4-outgoing-syn-ban.txt",
            pps: 6000,
            direction: "outgoing",
            holds: &[
                "type=syn_flood",
                "protocol=tcp",
                "sport=40000",
                "dport=80",
                "mbps>=2",
            ],
            fails: &["sport=80", "dport=33001", "mbps>=3"],
        },
        Layout {
            file: "layouts/1.1.x-dns-amplification-ban.txt",
            pps: 5800,
            direction: "incoming",
            holds: &[
                "type=unknown",
                "protocol=udp",
                "sport=53",
                "dport=31337",
                "contains=\"Network: 192.0.2.128/25\"",
                "pps>=5800",
                "mbps>=68",
            ],
            fails: &[
                "type=udp_flood",
                "protocol=tcp",
                "sport=123",
                "dport=53",
                "pps>=5801",
                "mbps>=69",
            ],
        },
    ];

    #[test]
    fn every_condition_works_on_every_layout() {
        for l in LAYOUTS {
            let text = std::fs::read_to_string(format!(
                "{}/tests/fixtures/{}",
                env!("CARGO_MANIFEST_DIR"),
                l.file
            ))
            .expect(l.file);
            let d = details::parse(&text);
            let f = facts(&d, &text, Some(l.pps), details::mbps(&d, l.direction));
            for (conds, want) in l
                .holds
                .iter()
                .map(|c| (c, true))
                .chain(l.fails.iter().map(|c| (c, false)))
            {
                let (rules, _) = parse("r", &format!("x_flood {conds}\n")).unwrap();
                assert_eq!(
                    first_match(&rules, &f).is_some(),
                    want,
                    "{}: {conds}",
                    l.file
                );
            }
        }
    }

    #[test]
    fn the_issue_s_ntp_rule_matches_a_1_2_4_ban() {
        let (rules, _) = parse("r", "unknown protocol=udp sport=123\n").unwrap();
        for file in [
            "layouts/1.2.4-ntp-amplification-ban.txt",
            "layouts/1.2.9-ntp-amplification-ban.txt",
        ] {
            let text = std::fs::read_to_string(format!(
                "{}/tests/fixtures/{file}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let d = details::parse(&text);
            let hit = first_match(&rules, &facts(&d, &text, Some(12_288), None));
            assert_eq!(hit.map(|r| r.vector.as_str()), Some("unknown"), "{file}");
        }
    }

    #[test]
    fn parses_the_documented_example_with_a_warning_for_unknown_vectors() {
        let (rules, warnings) = parse("rules", FILE).unwrap();
        assert_eq!(rules.len(), 6);
        assert_eq!(
            rules[0].conds,
            vec![Cond::Protocol("udp".into()), Cond::Sport(53)]
        );
        assert_eq!(rules[0].origin, "rules:2");
        assert_eq!(
            rules[4].conds,
            vec![Cond::Contains("memcached stats".into())]
        );
        assert_eq!(
            rules[5].conds,
            vec![Cond::PpsAtLeast(1000), Cond::MbpsAtLeast(5)]
        );
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("rules:4: vector \"dns_amplification\""));
    }

    #[test]
    fn malformed_rules_name_file_and_line() {
        let cases = [
            ("udp_flood", "at least one condition"),
            ("UDP_FLOOD type=x", "lower-case"),
            ("udp_flood color=red", "unknown condition"),
            ("udp_flood sport=70000", "port 0-65535"),
            ("udp_flood sport", "key=value"),
            ("udp_flood pps>=lots", "whole number"),
            ("udp_flood type>=3", "only pps>= and mbps>="),
            ("udp_flood contains=\"open", "unterminated quote"),
            ("udp_flood type=", "empty value"),
        ];
        for (line, why) in cases {
            let errs = parse("f", &format!("# ok\n{line}\n")).unwrap_err();
            assert_eq!(errs.len(), 1, "{line}");
            assert!(
                errs[0].starts_with("f:2: ") && errs[0].contains(why),
                "{line}: {errs:?}"
            );
        }
    }

    #[test]
    fn every_condition_and_first_match_wins() {
        let (rules, _) = parse("r", FILE).unwrap();
        let m = |text: &str, pps, mbps| {
            let d = details::parse(text);
            first_match(&rules, &facts(&d, text, pps, mbps)).map(|r| r.origin.clone())
        };
        let udp = "Attack type: unknown\nAttack protocol: udp\n";
        assert_eq!(
            m(
                &(udp.to_string() + &dump(53, 1234, 3) + &dump(123, 1234, 2)),
                None,
                None
            )
            .as_deref(),
            Some("r:2")
        );
        assert_eq!(
            m(
                &(udp.to_string() + &dump(123, 1234, 3) + &dump(53, 1234, 2)),
                None,
                None
            ),
            None,
            "sport is the busiest"
        );
        assert_eq!(
            m("Attack type: syn_flood\n", None, None).as_deref(),
            Some("r:3")
        );
        assert_eq!(m(&dump(1, 4444, 1), None, None).as_deref(), Some("r:4"));
        assert_eq!(
            m(
                "Attack type: ip_fragmentation\nAttack protocol: udp\n",
                None,
                None
            )
            .as_deref(),
            Some("r:5")
        );
        assert_eq!(
            m("flow to MEMCACHED STATS port\n", None, None).as_deref(),
            Some("r:6")
        );
        assert_eq!(m("x", Some(1000), Some(5)).as_deref(), Some("r:7"));
        assert_eq!(m("x", Some(999), Some(5)), None);
        assert_eq!(m("x", Some(1000), Some(4)), None);
        assert_eq!(m("x", None, Some(9)), None);
        // Type protocol udp but sport 53 absent, then the later contains rule still applies.
        assert_eq!(
            m(&(udp.to_string() + "memcached stats\n"), None, None).as_deref(),
            Some("r:6")
        );
    }
}
