//! Custom vector rules (`PREFIXD_VECTOR_RULES`): one rule per line, first match wins, no match
//! → built-in detection. Replaces "edit the script" for sites that know their attacks.
//!
//! ```text
//! # vector      conditions (all must hold)
//! udp_flood     protocol=udp sport=53          # DNS amplification
//! unknown       type=ip_fragmentation
//! udp_flood     contains="memcached"
//! udp_flood     dport=27015 ports=27015,27016  # the game servers' two ports, always
//! ```

use crate::fastnetmon::details::Details;

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
    /// `confidence=0.95`: sent on the bans this rule matches, instead of the table's.
    pub confidence: Option<f64>,
    /// `ports=27015,27016`: the `top_dst_ports` its bans send (ascending, at most
    /// `ports::MAX_PORTS`); `ports=none`: none; None (or `ports=auto`): chosen from the dump
    /// as for a ban no rule matched (`ports::choose`).
    pub ports: Option<Vec<u16>>,
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
    let p = parse_skipping(file, text);
    if p.skipped.is_empty() {
        Ok((p.rules, p.warnings))
    } else {
        Err(p.skipped)
    }
}

/// A rules file as a run uses it: the good lines' rules, in order, and the malformed lines
/// left out (each `file:line: why`).
#[derive(Debug, Default)]
pub struct RulesFile {
    pub rules: Vec<Rule>,
    /// Vectors prefixd does not know yet.
    pub warnings: Vec<String>,
    pub skipped: Vec<String>,
}

/// Parses a rules file, skipping malformed lines: one bad line costs its rule, not the others.
pub fn parse_skipping(file: &str, text: &str) -> RulesFile {
    let mut p = RulesFile::default();
    for (i, line) in text.lines().enumerate() {
        let origin = format!("{file}:{}", i + 1);
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some((vector, conds, confidence, ports))) => {
                if !KNOWN_VECTORS.contains(&vector.as_str()) {
                    p.warnings.push(format!(
                        "{origin}: vector {vector:?} is not one prefixd v0.10.1 knows; if prefixd refuses it (422) the built-in vector is sent instead"
                    ));
                }
                p.rules.push(Rule {
                    vector,
                    conds,
                    confidence,
                    ports,
                    origin,
                });
            }
            Err(why) => p.skipped.push(format!("{origin}: {why}")),
        }
    }
    p
}

/// A rule's vector, conditions, `confidence=` and `ports=`, if the line holds one.
type Parsed = (String, Vec<Cond>, Option<f64>, Option<Vec<u16>>);

fn parse_line(line: &str) -> Result<Option<Parsed>, String> {
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
    let mut confidence = None;
    let mut ports = None;
    let mut parsed = Vec::new();
    for w in conds {
        if let Some(v) = w.strip_prefix("confidence=") {
            match v.parse::<f64>() {
                Ok(c) if (0.0..=1.0).contains(&c) => confidence = Some(c),
                _ => return Err(format!("{w:?}: expected a confidence from 0 to 1")),
            }
        } else if let Some(v) = w.strip_prefix("ports=") {
            ports = ports_setting(w, v)?;
        } else {
            parsed.push(cond(w)?);
        }
    }
    if ports.as_ref().is_some_and(|p| !p.is_empty())
        && crate::fastnetmon::ports::port_rule_protocol(vector).is_none()
    {
        return Err(format!(
            "ports= only for udp_flood, syn_flood and ack_flood (prefixd builds port rules only for those), not {vector}"
        ));
    }
    if parsed.is_empty() {
        return Err("a rule needs at least one condition (type= protocol= sport= dport= contains= pps>= mbps>=)".into());
    }
    Ok(Some((vector.clone(), parsed, confidence, ports)))
}

/// `ports=53,123` (1 to `MAX_PORTS` ports from 1 to 65535), `ports=none`, `ports=auto`.
fn ports_setting(w: &str, v: &str) -> Result<Option<Vec<u16>>, String> {
    use crate::fastnetmon::ports::{MAX_PORTS, ascending};
    match v {
        "auto" => return Ok(None),
        "none" => return Ok(Some(Vec::new())),
        _ => {}
    }
    let mut ports = Vec::new();
    for p in v.split(',') {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => ports.push(n),
            _ => {
                return Err(format!(
                    "{w:?}: expected ports 1-65535 joined by commas, none or auto"
                ));
            }
        }
    }
    let ports = ascending(ports);
    if ports.len() > MAX_PORTS {
        return Err(format!(
            "{w:?}: at most {MAX_PORTS} ports (prefixd's max_ports refuses more)"
        ));
    }
    Ok(Some(ports))
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
    // The first `=` ends the key: `contains="a>=b"` is a contains, `pps>=5` a comparison.
    let (k, v) = w.split_once('=').ok_or_else(|| bad("expected key=value"))?;
    if let Some(k) = k.strip_suffix('>') {
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
    let (sport, dport) = crate::fastnetmon::details::busiest_ports(f.details);
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

    #[test]
    fn a_rule_may_carry_its_confidence() {
        let (rules, _) = parse("f", "udp_flood protocol=udp confidence=0.95 sport=53\n").unwrap();
        assert_eq!(rules[0].confidence, Some(0.95));
        assert_eq!(rules[0].conds.len(), 2);
        for bad in ["confidence=1.5", "confidence=x", "confidence=-0.1"] {
            let e = parse("f", &format!("udp_flood protocol=udp {bad}\n")).unwrap_err();
            assert!(e[0].contains("expected a confidence from 0 to 1"), "{e:?}");
        }
        let e = parse("f", "udp_flood confidence=0.9\n").unwrap_err();
        assert!(e[0].contains("at least one condition"), "{e:?}");
    }

    #[test]
    fn a_rule_may_set_the_ports_its_bans_send() {
        let ports = |line: &str| parse("f", &format!("{line}\n")).map(|(r, _)| r[0].ports.clone());
        assert_eq!(
            ports("udp_flood dport=27015 ports=27016,27015,27015"),
            Ok(Some(vec![27015, 27016]))
        );
        assert_eq!(
            ports("syn_flood type=syn_flood ports=none"),
            Ok(Some(vec![]))
        );
        assert_eq!(ports("ack_flood protocol=tcp ports=auto"), Ok(None));
        assert_eq!(ports("udp_flood protocol=udp"), Ok(None));
        // Sending none suits any vector; a list only those prefixd builds port rules for.
        assert_eq!(
            ports("icmp_flood protocol=icmp ports=none"),
            Ok(Some(vec![]))
        );
        for (bad, why) in [
            (
                "icmp_flood protocol=icmp ports=53",
                "ports= only for udp_flood",
            ),
            (
                "dns_amplification sport=53 ports=53",
                "ports= only for udp_flood",
            ),
            ("udp_flood protocol=udp ports=0", "expected ports 1-65535"),
            (
                "udp_flood protocol=udp ports=70000",
                "expected ports 1-65535",
            ),
            ("udp_flood protocol=udp ports=53,", "expected ports 1-65535"),
            ("udp_flood protocol=udp ports=", "expected ports 1-65535"),
            (
                "udp_flood protocol=udp ports=1,2,3,4,5,6,7,8,9",
                "at most 8 ports",
            ),
            ("udp_flood ports=53", "at least one condition"),
        ] {
            let e = parse("f", &format!("{bad}\n")).unwrap_err();
            assert!(
                e[0].starts_with("f:1: ") && e[0].contains(why),
                "{bad}: {e:?}"
            );
        }
    }

    use crate::fastnetmon::details;

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
    fn a_value_may_hold_a_comparison_sign() {
        let (rules, _) = parse("r", "udp_flood contains=\"a>=b\" protocol=>=\n").unwrap();
        assert_eq!(
            rules[0].conds,
            [Cond::Contains("a>=b".into()), Cond::Protocol(">=".into())]
        );
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

/// Properties over generated rules files and attacks: a rule written out reads back as the
/// same rule, any text gives rules or errors that name their line, and the rule chosen is the
/// first whose conditions hold by a model computed apart from the matcher.
#[cfg(test)]
mod props {
    use super::*;
    use crate::fastnetmon::details;
    use proptest::prelude::*;

    use crate::proptest_cases as cases;

    /// A condition as an operator might write it (before lower-casing).
    #[derive(Debug, Clone)]
    enum Written {
        Type(String),
        Protocol(String),
        Sport(u16),
        Dport(u16),
        Contains(String),
        Pps(i64),
        Mbps(u64),
    }

    impl Written {
        /// The condition the parser must read from it.
        fn cond(&self) -> Cond {
            match self {
                Written::Type(v) => Cond::Type(v.to_ascii_lowercase()),
                Written::Protocol(v) => Cond::Protocol(v.to_ascii_lowercase()),
                Written::Sport(p) => Cond::Sport(*p),
                Written::Dport(p) => Cond::Dport(*p),
                Written::Contains(v) => Cond::Contains(v.to_lowercase()),
                Written::Pps(n) => Cond::PpsAtLeast(*n),
                Written::Mbps(n) => Cond::MbpsAtLeast(*n),
            }
        }

        /// `key=value` with the value quoted (or the whole word, or nothing when it is safe).
        fn render(&self, quoting: u8) -> String {
            let (key, value) = match self {
                Written::Type(v) => ("type=", v.clone()),
                Written::Protocol(v) => ("protocol=", v.clone()),
                Written::Sport(p) => ("sport=", p.to_string()),
                Written::Dport(p) => ("dport=", p.to_string()),
                Written::Contains(v) => ("contains=", v.clone()),
                Written::Pps(n) => ("pps>=", n.to_string()),
                Written::Mbps(n) => ("mbps>=", n.to_string()),
            };
            let quote = |s: &str| {
                let escaped: String = s
                    .chars()
                    .flat_map(|c| match c {
                        '"' | '\\' => vec!['\\', c],
                        c => vec![c],
                    })
                    .collect();
                format!("\"{escaped}\"")
            };
            let safe = !value.chars().any(|c| c.is_whitespace() || c == '"');
            match quoting % 3 {
                0 if safe => format!("{key}{value}"),
                1 => quote(&format!("{key}{value}")),
                _ => format!("{key}{}", quote(&value)),
            }
        }
    }

    /// Values with what the syntax treats specially: blanks, quotes, backslashes, `#`, `=`,
    /// `>=`, upper case, non-ASCII.
    fn value() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_ #\"\\\\>=éÜ日\t]{1,8}"
    }

    fn written() -> impl Strategy<Value = Written> {
        prop_oneof![
            value().prop_map(Written::Type),
            value().prop_map(Written::Protocol),
            any::<u16>().prop_map(Written::Sport),
            any::<u16>().prop_map(Written::Dport),
            value().prop_map(Written::Contains),
            any::<i64>().prop_map(Written::Pps),
            any::<u64>().prop_map(Written::Mbps),
        ]
    }

    fn vector() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(KNOWN_VECTORS).prop_map(str::to_string),
            "[a-z0-9_]{1,16}",
        ]
    }

    /// A rule line with its blanks, quoting and trailing comment, or a blank or comment line.
    #[derive(Debug, Clone)]
    enum FileLine {
        Rule {
            vector: String,
            conds: Vec<(Written, u8)>,
            indent: &'static str,
            sep: &'static str,
            comment: Option<String>,
        },
        Other(String),
    }

    fn file_line() -> impl Strategy<Value = FileLine> {
        let blank = prop::sample::select(vec![" ", "\t", "  ", " \t "]);
        let rule = (
            vector(),
            prop::collection::vec((written(), any::<u8>()), 1..5),
            prop::sample::select(vec!["", " ", "\t"]),
            blank,
            prop::option::of("[a-z #=\"é]{0,10}"),
        )
            .prop_map(|(vector, conds, indent, sep, comment)| FileLine::Rule {
                vector,
                conds,
                indent,
                sep,
                comment,
            });
        let other = prop::sample::select(vec!["", "   ", "# a comment", "\t# sport=53 \"x", "#"])
            .prop_map(|s| FileLine::Other(s.into()));
        prop_oneof![3 => rule, 1 => other]
    }

    fn render(lines: &[FileLine], crlf: bool) -> String {
        let mut text = String::new();
        for l in lines {
            match l {
                FileLine::Rule {
                    vector,
                    conds,
                    indent,
                    sep,
                    comment,
                } => {
                    text += indent;
                    text += vector;
                    for (c, quoting) in conds {
                        text += sep;
                        text += &c.render(*quoting);
                    }
                    if let Some(comment) = comment {
                        text += &format!("{sep}# {comment}");
                    }
                }
                FileLine::Other(s) => text += s,
            }
            text += if crlf { "\r\n" } else { "\n" };
        }
        text
    }

    /// `file:N: …` → N.
    fn line_of(msg: &str) -> usize {
        let rest = msg.strip_prefix("f:").expect(msg);
        rest.split(':').next().unwrap().parse().expect(msg)
    }

    proptest! {
        #![proptest_config(cases(128))]

        #[test]
        fn a_rules_file_reads_back_as_written(lines in prop::collection::vec(file_line(), 0..12), crlf in any::<bool>()) {
            let text = render(&lines, crlf);
            let (rules, warnings) = match parse("f", &text) {
                Ok(ok) => ok,
                Err(e) => return Err(TestCaseError::fail(format!("{text:?}: {e:?}"))),
            };
            let mut want = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                if let FileLine::Rule { vector, conds, .. } = l {
                    want.push(Rule {
                        vector: vector.clone(),
                        conds: conds.iter().map(|(c, _)| c.cond()).collect(),
                        confidence: None,
                        ports: None,
                        origin: format!("f:{}", i + 1),
                    });
                }
            }
            prop_assert_eq!(&rules, &want, "{:?}", text);
            let unknown: Vec<&str> = rules
                .iter()
                .filter(|r| !KNOWN_VECTORS.contains(&r.vector.as_str()))
                .map(|r| r.origin.as_str())
                .collect();
            prop_assert_eq!(warnings.len(), unknown.len());
            for (w, origin) in warnings.iter().zip(unknown) {
                prop_assert!(w.starts_with(&format!("{origin}: vector ")), "{}", w);
            }
        }

        #[test]
        fn any_text_gives_rules_or_errors_naming_their_lines(
            text in prop_oneof![
                any::<String>(),
                prop::collection::vec(
                    prop::sample::select(vec![
                        "udp_flood", "UDP", " ", "\t", "\n", "type=", "sport=", "dport=", "53",
                        "70000", "pps>=", "mbps>=", "-1", "contains=", "\"", "\\", "#", "=", ">=",
                        "é", "日", "\r\n",
                    ]),
                    0..40,
                )
                .prop_map(|words| words.concat()),
            ],
        ) {
            let lines = text.lines().count().max(1);
            match parse("f", &text) {
                Ok((rules, warnings)) => {
                    let mut last = 0;
                    for r in &rules {
                        let n = line_of(&r.origin);
                        prop_assert!(n > last && n <= lines, "{:?}", r);
                        last = n;
                        prop_assert!(!r.conds.is_empty());
                        prop_assert!(r.vector.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
                    }
                    let unknown = rules.iter().filter(|r| !KNOWN_VECTORS.contains(&r.vector.as_str())).count();
                    prop_assert_eq!(warnings.len(), unknown);
                }
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    let mut last = 0;
                    for e in &errors {
                        let n = line_of(e);
                        prop_assert!(n > last && n <= lines, "{}", e);
                        last = n;
                    }
                }
            }
        }
    }

    /// One attack: FastNetMon's fields, its dumps, and argv's pps.
    #[derive(Debug, Clone)]
    struct Attack {
        attack_type: Option<&'static str>,
        protocol: Option<&'static str>,
        direction: Option<&'static str>,
        /// (source port, destination port, packets)
        packets: Vec<(u16, u16, u64)>,
        /// (source port, destination port, packets, toward the victim)
        flows: Vec<(u16, u16, u64, bool)>,
        words: &'static str,
        pps: Option<i64>,
        mbps: Option<u64>,
    }

    const PORTS: &[u16] = &[22, 53, 80, 123];
    const TYPES: &[&str] = &["syn_flood", "udp_flood", "unknown", "ip_fragmentation"];
    const PROTOCOLS: &[&str] = &["udp", "tcp", "icmp", "unknown"];
    const WORDS: &[&str] = &["", "memcached stats", "Überlast", "MEMCACHED"];

    fn count() -> impl Strategy<Value = u64> {
        prop_oneof![1..100u64, (u64::MAX - 100)..=u64::MAX, Just(1u64 << 63)]
    }

    fn attack() -> impl Strategy<Value = Attack> {
        let port = || prop::sample::select(PORTS);
        (
            prop::option::of(prop::sample::select(TYPES)),
            prop::option::of(prop::sample::select(PROTOCOLS)),
            prop::option::of(prop::sample::select(vec!["incoming", "outgoing", "other"])),
            prop::collection::vec((port(), port(), count()), 0..4),
            prop::collection::vec((port(), port(), count(), any::<bool>()), 0..6),
            prop::sample::select(WORDS),
            prop::option::of(prop_oneof![0..8i64, any::<i64>()]),
            prop::option::of(prop_oneof![0..8u64, any::<u64>()]),
        )
            .prop_map(
                |(attack_type, protocol, direction, packets, flows, words, pps, mbps)| Attack {
                    attack_type,
                    protocol,
                    direction,
                    packets,
                    flows,
                    words,
                    pps,
                    mbps,
                },
            )
    }

    impl Attack {
        fn text(&self) -> String {
            let mut t = String::new();
            let mut label = |k: &str, v: Option<&str>| {
                if let Some(v) = v {
                    t += &format!("{k}: {v}\n");
                }
            };
            label("Attack type", self.attack_type);
            label("Attack protocol", self.protocol);
            label("Attack direction", self.direction);
            t += self.words;
            t += "\n";
            for (s, d, n) in &self.packets {
                t += &format!(
                    "2026-11-25 12:10:24.8 198.51.100.1:{s} > 192.0.2.1:{d} protocol: udp frag: 0  packets: {n} size: 1 bytes ttl: 1 sample ratio: 1  \n"
                );
            }
            for (s, d, n, incoming) in &self.flows {
                t += &if *incoming {
                    format!("192.0.2.1:{d} < 198.51.100.1:{s} 1 bytes {n} packets\n")
                } else {
                    format!("192.0.2.1:{s} > 198.51.100.1:{d} 1 bytes {n} packets\n")
                };
            }
            t
        }

        /// The busiest port as the README defines it, computed apart from the matcher.
        fn busiest(&self, source: bool) -> Option<u16> {
            let incoming = self.direction != Some("outgoing");
            let samples: Vec<(u16, u16, u64)> = if self.packets.is_empty() {
                self.flows
                    .iter()
                    .filter(|f| f.3 == incoming)
                    .map(|f| (f.0, f.1, f.2))
                    .collect()
            } else {
                self.packets.clone()
            };
            crate::fastnetmon::details::props::model_top(&samples, source)
        }

        fn holds(&self, c: &Cond) -> bool {
            match c {
                Cond::Type(t) => self.attack_type == Some(t.as_str()),
                Cond::Protocol(p) => self.protocol == Some(p.as_str()),
                Cond::Sport(p) => self.busiest(true) == Some(*p),
                Cond::Dport(p) => self.busiest(false) == Some(*p),
                Cond::Contains(s) => self.text().to_lowercase().contains(s.as_str()),
                Cond::PpsAtLeast(n) => self.pps.is_some_and(|p| p >= *n),
                Cond::MbpsAtLeast(n) => self.mbps.is_some_and(|m| m >= *n),
            }
        }
    }

    /// Conditions drawn from the attacks' own values, so that they sometimes hold.
    fn near_cond() -> impl Strategy<Value = Written> {
        let word = |v: &'static [&'static str]| prop::sample::select(v).prop_map(str::to_string);
        prop_oneof![
            word(TYPES).prop_map(Written::Type),
            word(PROTOCOLS).prop_map(Written::Protocol),
            prop::sample::select(PORTS).prop_map(Written::Sport),
            prop::sample::select(PORTS).prop_map(Written::Dport),
            prop::sample::select(vec!["memcached", "überlast", "packets", "nowhere"])
                .prop_map(|s| Written::Contains(s.into())),
            prop_oneof![0..8i64, any::<i64>()].prop_map(Written::Pps),
            prop_oneof![0..8u64, any::<u64>()].prop_map(Written::Mbps),
        ]
    }

    proptest! {
        #![proptest_config(cases(256))]

        #[test]
        fn the_first_rule_whose_conditions_hold_wins(
            a in attack(),
            rules in prop::collection::vec((vector(), prop::collection::vec((near_cond(), any::<u8>()), 1..4)), 0..6),
        ) {
            let file: String = rules
                .iter()
                .map(|(v, conds)| {
                    let words: Vec<String> = conds.iter().map(|(c, q)| c.render(*q)).collect();
                    format!("{v} {}\n", words.join(" "))
                })
                .collect();
            let (parsed, _) = parse("f", &file).expect(&file);
            let text = a.text();
            let d = details::parse(&text);
            let f = Facts { details: &d, text: &text, pps: a.pps, mbps: a.mbps };
            let got = first_match(&parsed, &f).map(|r| r.origin.clone());
            let want = parsed
                .iter()
                .find(|r| r.conds.iter().all(|c| a.holds(c)))
                .map(|r| r.origin.clone());
            prop_assert_eq!(got, want, "{}{}", file, text);
        }
    }
}
