//! What prefixd's rule matches of the attack. A delivered ban is not yet a filtered attack:
//! after it, the mitigation prefixd made is looked at once (`GET /v1/mitigations/{id}`, its
//! `protocol` and `dst_ports`) and measured against the attack's packets in FastNetMon's dump.
//! A rule that matches less than half is said as a WARN naming it and the attack's busiest
//! ports (an inventory whose `allowed_ports` do not fit the attack); the metrics count each.

use super::answer::Answer;
use super::client::Client;
use super::wire::{self, Endpoint, MitigationRule};
use crate::fastnetmon::ports::{self, Attack};
use crate::log::Log;
use crate::tally::{self, RuleFit};

/// What the look found, as the tail of the ban's log line.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub said: String,
    pub fit: RuleFit,
}

/// `proto=udp dst_ports=53`, `proto=udp dst_ports=any`, `proto=any dst_ports=any`.
pub fn describe(protocol: Option<u8>, dst_ports: &[u16]) -> String {
    let proto = protocol.map_or_else(|| "any".to_string(), ports::protocol_name);
    let dst = if dst_ports.is_empty() {
        "any".to_string()
    } else {
        ports::list(dst_ports)
    };
    format!("proto={proto} dst_ports={dst}")
}

/// How much of `attack` the rule (`protocol`, `dst_ports`) matches, in words.
pub fn measure(attack: &Attack, protocol: Option<u8>, dst_ports: &[u16]) -> Checked {
    let rule = describe(protocol, dst_ports);
    let Some((hit, total)) = ports::matched(attack, protocol, dst_ports) else {
        return Checked {
            said: format!(
                "rule {rule}; not measured: FastNetMon's details hold no packets of the attack"
            ),
            fit: RuleFit::Unchecked,
        };
    };
    let share = ports::percent(hit, total);
    let of = format!("{hit} of {total} packets in FastNetMon's {}", attack.from);
    let outgoing = if attack.outgoing {
        " (outgoing: the rule filters traffic to the host, on the ports the flood leaves from)"
    } else {
        ""
    };
    if hit >= total - hit {
        return Checked {
            said: format!("rule {rule} matches {share} of the attack ({of}){outgoing}"),
            fit: RuleFit::Matches,
        };
    }
    Checked {
        said: format!(
            "rule {rule} MISSES the attack: it matches {share} of it ({of}){outgoing}; the attack's busiest ports: {}; check the victim's service and its allowed_ports in prefixd's inventory",
            ports::busiest(attack, 3)
        ),
        fit: RuleFit::Misses,
    }
}

/// Looks once at mitigation `id` and measures its rule against `attack`; counted in the
/// metrics. Never an error: the ban is delivered whatever the look finds. Details with no
/// packets of the attack (a manual ban, an ICMP ban of 1.2.4) leave nothing to measure: no
/// look then.
pub fn check(client: &Client, log: &Log, id: &str, attack: &Attack) -> Checked {
    if attack.samples.is_empty() {
        tally::rule(RuleFit::Unchecked);
        return Checked {
            said: "rule not looked at: FastNetMon's details hold no packets of the attack to measure it against".into(),
            fit: RuleFit::Unchecked,
        };
    }
    let checked = match look(client, log, id) {
        Ok((protocol, dst_ports)) => measure(attack, protocol, &dst_ports),
        Err(why) => Checked {
            said: format!("rule not checked: {why}"),
            fit: RuleFit::Unchecked,
        },
    };
    tally::rule(checked.fit);
    checked
}

fn look(client: &Client, log: &Log, id: &str) -> Result<(Option<u8>, Vec<u16>), String> {
    if !wire::is_mitigation_id(id) {
        return Err(format!("mitigation_id {id:?} is not a UUID"));
    }
    let path = format!("/v1/mitigations/{id}");
    let what = format!("GET {path}");
    match client.ask_once(log, Endpoint::Mitigation, "GET", &path) {
        Ok(Answer::Done(reply)) => {
            let rule: MitigationRule = reply.json(&what)?;
            rule.read().ok_or_else(|| {
                format!(
                    "{what}: protocol or dst_ports not in the shape prefixd sends: {}",
                    reply.snippet()
                )
            })
        }
        Ok(Answer::Gone(_)) => Err(format!("{what} answered 404: prefixd no longer knows it")),
        Ok(other) => Err(client.unexpected(other, &what).message().to_string()),
        Err(e) => Err(e.message().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastnetmon::ports::Sample;

    fn attack(lines: &[(u8, u16, u64)]) -> Attack {
        Attack {
            samples: lines
                .iter()
                .map(|(p, port, n)| Sample {
                    protocol: Some(*p),
                    port: *port,
                    packets: *n,
                })
                .collect(),
            from: "packet dump",
            outgoing: false,
        }
    }

    #[test]
    fn a_rule_that_matches_less_than_half_misses_and_says_why() {
        let a = attack(&[(17, 27015, 18), (17, 27016, 2)]);
        let c = measure(&a, Some(17), &[53]);
        assert_eq!(c.fit, RuleFit::Misses);
        assert_eq!(
            c.said,
            "rule proto=udp dst_ports=53 MISSES the attack: it matches 0 % of it (0 of 20 packets in FastNetMon's packet dump); the attack's busiest ports: udp 27015 (90 %), udp 27016 (10 %); check the victim's service and its allowed_ports in prefixd's inventory"
        );
        let c = measure(&a, Some(17), &[]);
        assert_eq!(
            (c.fit, c.said.as_str()),
            (
                RuleFit::Matches,
                "rule proto=udp dst_ports=any matches 100 % of the attack (20 of 20 packets in FastNetMon's packet dump)"
            )
        );
        // Exactly half matches.
        assert_eq!(measure(&a, Some(17), &[27015]).fit, RuleFit::Matches);
        let even = attack(&[(17, 1, 1), (17, 2, 1)]);
        assert_eq!(measure(&even, Some(17), &[1]).fit, RuleFit::Matches);
        // The wrong protocol matches nothing.
        assert_eq!(measure(&a, Some(6), &[]).fit, RuleFit::Misses);
        let none = measure(&Attack::default(), Some(1), &[]);
        assert_eq!(none.fit, RuleFit::Unchecked);
        assert!(
            none.said
                .contains("rule proto=icmp dst_ports=any; not measured")
        );
        assert_eq!(describe(None, &[]), "proto=any dst_ports=any");
    }
}
