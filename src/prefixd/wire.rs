//! prefixd's wire format: plain miniserde structs named like its fields
//! (shared/prefixd-api.md), the endpoints they travel to, and what a field says where that
//! is all it takes (a ban's outcome, a page's cursor, a version's generation).

use miniserde::{Deserialize, Serialize};

/// The body of `POST /v1/events`, as the bash script sends it plus `bps`.
#[derive(Serialize, Debug)]
pub struct Event {
    pub event_id: String,
    pub timestamp: String,
    pub source: String,
    pub victim_ip: String,
    pub vector: String,
    pub action: String,
    pub pps: Option<i64>,
    pub bps: Option<i64>,
    /// 0.0–1.0 (README "Confidence"). prefixd ≥ v0.14 averages it per (victim, vector) signal
    /// group and mitigates nothing below its `confidence_threshold`, a missing value counting
    /// as 0 (`src/correlation/engine.rs`); v0.10.1 ignores it.
    pub confidence: Option<f64>,
    /// The attack's destination ports (at most 8, prefixd's `max_ports`), null when none:
    /// prefixd narrows a udp/tcp rule to them ∩ the service's `allowed_ports`, and keys the
    /// mitigation on them (README "Which ports are sent").
    pub top_dst_ports: Option<Vec<u16>>,
    /// `{raw, direction, original_action, truncated}`, plus `replayed` and
    /// `replay_delay_seconds` for a ban sent from the spool.
    pub raw_details: miniserde::json::Value,
}

/// The 202 of `POST /v1/events` (`{event_id, external_event_id, status, mitigation_id}`).
#[derive(Deserialize, Debug)]
pub struct EventReply {
    pub status: Option<String>,
    pub mitigation_id: Option<String>,
    /// Not sent by v0.10.1 or v0.19.1; said when a later prefixd explains a held ban.
    pub reason: Option<String>,
}

/// What a ban's 202 did (shared/prefixd-api.md §1a, shared/prefixd-0.19.md §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanOutcome {
    /// `accepted` or `extended` with this `mitigation_id`: announced, or kept alive.
    Mitigated(String),
    /// Recorded, and nothing created or extended: why, in words.
    Held(String),
}

impl EventReply {
    pub fn outcome(&self, vector: &str) -> BanOutcome {
        let status = self.status.as_deref().unwrap_or("(no status)");
        let said = self
            .reason
            .as_deref()
            .map_or_else(String::new, |r| format!(": {r}"));
        match (status, &self.mitigation_id) {
            ("accepted" | "extended", Some(id)) => BanOutcome::Mitigated(id.clone()),
            ("accepted", None) => BanOutcome::Held(format!(
                "held by prefixd's correlation engine (its signal group's confidence or sources are below correlation.yaml's threshold){said}"
            )),
            ("accepted_no_mitigation", _) => BanOutcome::Held(format!(
                "the victim is in none of prefixd's inventory (no customer owns it){said}"
            )),
            ("accepted_no_playbook", _) => {
                BanOutcome::Held(format!("prefixd has no playbook for vector {vector}{said}"))
            }
            (other, _) => BanOutcome::Held(format!("status {other}{said}")),
        }
    }
}

/// A page of `GET /v1/mitigations`. v0.19.1 adds the cursor (shared/prefixd-0.19.md §3);
/// v0.10.1 sends neither field.
#[derive(Deserialize, Debug)]
pub struct MitigationList {
    pub mitigations: Vec<Mitigation>,
    /// Read loosely (any JSON): a page whose cursor fields are odd still lists its rows.
    pub next_cursor: Option<miniserde::json::Value>,
    pub has_more: Option<miniserde::json::Value>,
}

/// Where a page of `GET /v1/mitigations` says the listing goes on.
#[derive(Debug, PartialEq, Eq)]
pub enum NextPage {
    /// v0.10.1: no cursor fields.
    Unpaged,
    /// `has_more: false`.
    Done,
    /// `has_more: true` with this cursor.
    Cursor(String),
    /// `has_more` that is not `false` without a usable cursor: what, in words.
    Broken(String),
}

impl MitigationList {
    pub fn next_page(&self) -> NextPage {
        use miniserde::json::Value;
        match (&self.has_more, &self.next_cursor) {
            (None, None) => NextPage::Unpaged,
            (Some(Value::Bool(false)), _) | (None, Some(Value::Null)) => NextPage::Done,
            (Some(Value::Bool(true)), Some(Value::String(c))) if !c.is_empty() => {
                NextPage::Cursor(c.clone())
            }
            (Some(Value::Bool(true)), _) => NextPage::Broken("no cursor".into()),
            (None, Some(_)) => NextPage::Broken("a cursor without has_more".into()),
            (Some(_), _) => NextPage::Broken("has_more that is not true or false".into()),
        }
    }
}

/// `GET /v1/health` (public).
#[derive(Deserialize, Debug)]
pub struct Health {
    pub status: Option<String>,
    pub version: Option<String>,
    pub auth_mode: Option<String>,
}

impl Health {
    /// Which generation of prefixd's `/v1` this is, by its version: v0.11 brought cursor
    /// pages, v0.14 correlation, v0.19.1 the rate limit and the withdraw identity.
    pub fn generation(&self) -> &'static str {
        let version = self.version.as_deref().unwrap_or("");
        let mut parts = version.trim_start_matches('v').split('.');
        let major = parts.next().and_then(|p| p.parse::<u32>().ok());
        let minor = parts.next().and_then(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        match (major, minor) {
            (Some(0), Some(0..=10)) => "the v0.10 generation: offset pages, confidence ignored",
            (Some(0), Some(11..=13)) => "the v0.11+ generation: cursor pages",
            (Some(0), Some(14..=18)) => {
                "the v0.14+ generation: cursor pages, correlation (confidence counts)"
            }
            (Some(0), Some(_)) => {
                "the v0.19 generation: cursor pages, correlation (confidence counts), 429 with retry_after_seconds, withdraw identity from the token"
            }
            _ => {
                "of a generation we do not know (its version does not read as 0.N): spoken to as either"
            }
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
pub struct Mitigation {
    /// Optional here so that one odd row does not hide the others; a row without it is
    /// never acted on.
    pub mitigation_id: Option<String>,
    pub status: Option<String>,
    pub victim_ip: Option<String>,
    /// Moves when a later ban extends the mitigation (`created_at` never does).
    pub updated_at: Option<String>,
    /// When the TTL ends it unless a ban extends it (RFC 3339).
    pub expires_at: Option<String>,
    /// Set when withdrawn or expired.
    pub withdrawn_at: Option<String>,
    /// The playbook's words; once withdrawn `<identity>: <reason>` (v0.19.1: identity from the
    /// credentials; v0.10.1: the operator_id). Expiry keeps the old reason.
    pub reason: Option<String>,
}

/// What `GET /v1/mitigations/{id}` says of the rule prefixd built: its `protocol` (an IANA
/// number, null: any) and `dst_ports` (empty: any). Read loosely, as any JSON, so that a shape
/// we do not expect is said, not a failed look.
#[derive(Deserialize, Debug)]
pub struct MitigationRule {
    pub protocol: Option<miniserde::json::Value>,
    pub dst_ports: Option<miniserde::json::Value>,
}

impl MitigationRule {
    /// (protocol, ports), or None when either is not what prefixd sends.
    pub fn read(&self) -> Option<(Option<u8>, Vec<u16>)> {
        use miniserde::json::{Number, Value};
        let small = |v: &Value| match v {
            Value::Number(Number::U64(n)) => Some(*n),
            _ => None,
        };
        let protocol = match &self.protocol {
            None | Some(Value::Null) => None,
            Some(v) => Some(u8::try_from(small(v)?).ok()?),
        };
        let ports = match &self.dst_ports {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|p| u16::try_from(small(p)?).ok())
                .collect::<Option<Vec<u16>>>()?,
            Some(_) => return None,
        };
        Some((protocol, ports))
    }
}

/// The statuses a notify client acts on: what `status=pending,active,escalated` lists.
pub fn is_active(status: Option<&str>) -> bool {
    matches!(status, Some("pending" | "active" | "escalated"))
}

/// prefixd's mitigation ids are UUIDs: anything else is never put in a URL path.
pub fn is_mitigation_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[derive(Serialize, Debug)]
pub struct Withdraw {
    pub operator_id: String,
    pub reason: String,
}

/// Which call an answer is to: a status means different things on different endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/events`.
    Events,
    /// `GET /v1/mitigations?…`.
    List,
    /// `GET /v1/mitigations/{id}`.
    Mitigation,
    /// `POST /v1/mitigations/{id}/withdraw`.
    Withdraw,
    /// `GET /v1/health`.
    Health,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_says_where_the_listing_goes_on() {
        let page = |tail: &str| {
            miniserde::json::from_str::<MitigationList>(&format!(
                r#"{{"mitigations":[],"count":0{tail}}}"#
            ))
            .unwrap()
            .next_page()
        };
        assert_eq!(page(""), NextPage::Unpaged);
        assert_eq!(
            page(r#","next_cursor":null,"has_more":false"#),
            NextPage::Done
        );
        assert_eq!(
            page(r#","next_cursor":"c1","has_more":true"#),
            NextPage::Cursor("c1".into())
        );
        for odd in [
            r#","next_cursor":null,"has_more":true"#,
            r#","next_cursor":"","has_more":true"#,
            r#","next_cursor":5,"has_more":true"#,
            r#","next_cursor":"c1","has_more":"true""#,
            r#","next_cursor":"c1""#,
        ] {
            assert!(matches!(page(odd), NextPage::Broken(_)), "{odd}");
        }
    }

    #[test]
    fn a_rule_is_read_loosely() {
        let rule = |json: &str| {
            miniserde::json::from_str::<MitigationRule>(json)
                .unwrap()
                .read()
        };
        assert_eq!(
            rule(r#"{"protocol":17,"dst_ports":[27015,53]}"#),
            Some((Some(17), vec![27015, 53]))
        );
        assert_eq!(
            rule(r#"{"protocol":null,"dst_ports":[]}"#),
            Some((None, vec![]))
        );
        assert_eq!(rule("{}"), Some((None, vec![])));
        for odd in [
            r#"{"protocol":"udp","dst_ports":[]}"#,
            r#"{"protocol":300,"dst_ports":[]}"#,
            r#"{"protocol":17,"dst_ports":[70000]}"#,
            r#"{"protocol":17,"dst_ports":[{"from":1,"to":2}]}"#,
            r#"{"protocol":17,"dst_ports":"53"}"#,
        ] {
            assert_eq!(rule(odd), None, "{odd}");
        }
    }

    #[test]
    fn the_generation_is_read_from_the_version() {
        let g = |v: Option<&str>| {
            Health {
                status: None,
                version: v.map(str::to_string),
                auth_mode: None,
            }
            .generation()
        };
        assert!(g(Some("0.10.1")).starts_with("the v0.10 generation"));
        assert!(g(Some("v0.12.0")).starts_with("the v0.11+ generation"));
        assert!(g(Some("0.14.2-rc1")).starts_with("the v0.14+ generation"));
        assert!(g(Some("0.19.1")).starts_with("the v0.19 generation"));
        for unknown in [
            None,
            Some("garbage"),
            Some("99999999999.1"),
            Some("1.0.0"),
            Some(""),
        ] {
            assert!(
                g(unknown).starts_with("of a generation we do not know"),
                "{unknown:?}"
            );
        }
    }
}
