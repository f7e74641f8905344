//! Which vector a ban carries, how sure it is and which ports it sends: FastNetMon's details
//! and the operator's rules give the vector (a rule first, else built-in detection), how the
//! vector was known gives the confidence (README "Confidence"), and the attack's ports in the
//! dump (or the rule's `ports=`) give `top_dst_ports` (README "Which ports are sent"). Pure;
//! the details are parsed once.

use super::details;
use super::notice::Notice;
use super::ports::{self, Attack, Ports};
use super::rules::{self, Rule};

/// Which vector a ban carries, and why; its confidence, and why; and its bandwidth (the
/// details are parsed once).
#[derive(Clone)]
pub struct VectorChoice {
    pub vector: String,
    pub bps: Option<i64>,
    /// `file:line` of the custom rule that chose it; None: built-in detection.
    pub rule: Option<String>,
    pub builtin: &'static str,
    /// 0.0–1.0, sent as the event's `confidence`.
    pub confidence: f64,
    /// Which row of README "Confidence" gave it.
    pub confidence_basis: &'static str,
    /// The confidence and its row had no rule matched: for the built-in vector, sent when
    /// prefixd refuses the rule's.
    pub builtin_confidence: (f64, &'static str),
    /// `top_dst_ports`, and why.
    pub ports: Ports,
    /// The ports the built-in vector would send, with it.
    pub builtin_ports: Ports,
    /// The attack's records in FastNetMon's dump: what prefixd's rule is measured against.
    pub attack: Attack,
}

/// The confidence table (README "Confidence"): how sure the ban is, by how its vector was
/// known. Every row reaches prefixd's shipped `confidence_threshold` of 0.5
/// (`configs/correlation.yaml`): each is an attack FastNetMon detected over its thresholds.
pub const CONFIDENCE_MANUAL: f64 = 1.0;
pub const CONFIDENCE_RULE: f64 = 0.9;
pub const CONFIDENCE_NAMED: f64 = 0.9;
pub const CONFIDENCE_INFERRED: f64 = 0.7;
pub const CONFIDENCE_UNKNOWN: f64 = 0.6;

/// `fixed`: PREFIXD_CONFIDENCE, which replaces the table (a rule's own `confidence=` still
/// wins for the bans it matches).
pub fn choose_vector(rules: &[Rule], notice: &Notice, fixed: Option<f64>) -> VectorChoice {
    let parsed = details::parse(&notice.details);
    let builtin = details::vector(&parsed, notice.victim_ip, &notice.direction);
    let facts = rules::Facts {
        details: &parsed,
        text: &notice.details,
        pps: notice.pps,
        mbps: details::mbps(&parsed, &notice.direction),
    };
    let bps = details::bps(&parsed, &notice.direction);
    let rule = rules::first_match(rules, &facts);
    let named = matches!(
        parsed.attack_type.as_deref(),
        Some("syn_flood" | "udp_flood" | "icmp_flood" | "ack_flood")
    );
    let row = |rule_matched: bool| {
        if notice.direction == "other" {
            (CONFIDENCE_MANUAL, "a manual ban through FastNetMon's API")
        } else if rule_matched {
            (CONFIDENCE_RULE, "a custom rule chose the vector")
        } else if named {
            (CONFIDENCE_NAMED, "FastNetMon named the attack")
        } else if builtin != "unknown" {
            (
                CONFIDENCE_INFERRED,
                "vector inferred from the protocol or TCP flags",
            )
        } else {
            (CONFIDENCE_UNKNOWN, "a detected attack of unknown vector")
        }
    };
    let fixed = fixed.map(|c| (c, "PREFIXD_CONFIDENCE"));
    let rule_said = rule
        .and_then(|r| r.confidence)
        .map(|c| (c, "the rule's confidence="));
    let (confidence, confidence_basis) = rule_said.or(fixed).unwrap_or_else(|| row(rule.is_some()));
    let vector = rule.map_or_else(|| builtin.to_string(), |r| r.vector.clone());
    let attack = ports::attack(&parsed, notice.victim_ip, &notice.direction);
    let chosen = |vector: &str| ports::choose(&attack, notice.victim_ip, vector, ports::THRESHOLD);
    let builtin_ports = chosen(builtin);
    let ports = match rule {
        Some(r) => match &r.ports {
            Some(given) => Ports {
                sent: given.clone(),
                why: format!("{} from rule {} (ports=)", ports::list(given), r.origin),
            },
            None => chosen(&vector),
        },
        None => builtin_ports.clone(),
    };
    VectorChoice {
        vector,
        bps,
        rule: rule.map(|r| r.origin.clone()),
        builtin,
        confidence,
        confidence_basis,
        builtin_confidence: fixed.unwrap_or_else(|| row(false)),
        ports,
        builtin_ports,
        attack,
    }
}
