//! A notice → prefixd: the ban event, or the unban lookup and withdrawals, and what each
//! answer means for the operator (log line, exit code).

use crate::api::{
    Answer, Client, Endpoint, Event, EventReply, Mitigation, MitigationList, Withdraw,
};
use crate::config::Config;
use crate::error::Error;
use crate::log::Log;
use crate::notice::Notice;
use crate::rules::{self, Rule};
use crate::{details, time, uuid};
use miniserde::json::{Number, Object, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// prefixd caps `limit` here; a full page means there may be more.
const PAGE: usize = 1000;
/// Bounds the "full page, look again" loop even against a prefixd that misbehaves.
const MAX_PAGES: usize = 50;

/// Which vector a ban carries, and why; and its bandwidth (the details are parsed once).
#[derive(Clone)]
pub struct VectorChoice {
    pub vector: String,
    pub bps: Option<i64>,
    /// `file:line` of the custom rule that chose it; None: built-in detection.
    pub rule: Option<String>,
    pub builtin: &'static str,
}

pub fn choose_vector(rules: &[Rule], notice: &Notice) -> VectorChoice {
    let parsed = details::parse(&notice.details);
    let builtin = details::vector(&parsed, notice.victim_ip, &notice.direction);
    let facts = rules::Facts {
        details: &parsed,
        text: &notice.details,
        pps: notice.pps,
        mbps: details::mbps(&parsed, &notice.direction),
    };
    let bps = details::bps(&parsed, &notice.direction);
    match rules::first_match(rules, &facts) {
        Some(r) => VectorChoice {
            vector: r.vector.clone(),
            bps,
            rule: Some(r.origin.clone()),
            builtin,
        },
        None => VectorChoice {
            vector: builtin.into(),
            bps,
            rule: None,
            builtin,
        },
    }
}

/// The event for one ban attempt, with a fresh `event_id`. A replayed ban keeps the time
/// FastNetMon reported it and says how late it is.
pub fn ban_event(notice: &Notice, replay: bool, choice: &VectorChoice) -> Result<Event, Error> {
    let text = |s: &str| Value::String(s.to_string());
    let mut raw = Object::new();
    raw.insert("raw".into(), text(&notice.details));
    raw.insert("direction".into(), text(&notice.direction));
    raw.insert("original_action".into(), text("ban"));
    raw.insert("truncated".into(), Value::Bool(notice.truncated));
    if replay {
        let delay = notice.received().elapsed().unwrap_or_default().as_secs();
        raw.insert("replayed".into(), Value::Bool(true));
        raw.insert(
            "replay_delay_seconds".into(),
            Value::Number(Number::U64(delay)),
        );
    }
    Ok(Event {
        event_id: uuid::v4()
            .map_err(|e| Error::Internal(format!("no randomness for event_id: {e}")))?,
        timestamp: time::rfc3339(notice.received()),
        source: "fastnetmon".into(),
        victim_ip: notice.victim_ip.to_string(),
        vector: choice.vector.clone(),
        action: "ban".into(),
        pps: notice.pps,
        bps: choice.bps,
        raw_details: Value::Object(raw),
    })
}

/// Sends the ban. A vector chosen by a custom rule that prefixd refuses (422: a vector it does
/// not know yet) is sent again at once with the built-in vector, so the ban is never lost.
pub fn ban(
    client: &Client,
    rules: &[Rule],
    log: &Log,
    notice: &Notice,
    replay: bool,
) -> Result<(), Error> {
    let choice = choose_vector(rules, notice);
    match post_ban(client, log, notice, replay, &choice) {
        // Only a 422 about the vector; a guardrail's 422 (safelist, quota) would refuse the
        // built-in vector just the same.
        Err(Refusal::Vector(_)) if choice.rule.is_some() && choice.vector != choice.builtin => {
            log.warn(&format!(
                "prefixd refused vector {} from rule {}; sending the built-in vector {} instead",
                choice.vector,
                choice.rule.as_deref().unwrap_or("?"),
                choice.builtin
            ));
            let builtin = VectorChoice {
                vector: choice.builtin.into(),
                rule: None,
                ..choice.clone()
            };
            post_ban(client, log, notice, replay, &builtin).map_err(Refusal::into_error)
        }
        r => r.map_err(Refusal::into_error),
    }
}

/// Why a ban did not go: prefixd does not know its vector, or anything else.
enum Refusal {
    Vector(Error),
    Other(Error),
}

impl Refusal {
    fn into_error(self) -> Error {
        match self {
            Refusal::Vector(e) | Refusal::Other(e) => e,
        }
    }
}

/// One ban, retried as `Client::request` does.
fn post_ban(
    client: &Client,
    log: &Log,
    notice: &Notice,
    replay: bool,
    choice: &VectorChoice,
) -> Result<(), Refusal> {
    // The log line of the last attempt; the event itself (details and all) is not kept.
    let mut sent: Option<(String, String)> = None;
    let answer = client.ask(log, Endpoint::Events, "POST", "/v1/events", || {
        let event = ban_event(notice, replay, choice)?;
        let body = miniserde::json::to_string(&event);
        let what = format!(
            "ban {} vector={} pps={} bps={} event_id={}",
            event.victim_ip,
            event.vector,
            opt(event.pps),
            opt(event.bps),
            event.event_id
        );
        sent = Some((what, event.timestamp));
        Ok(Some(body))
    });
    let Some((mut what, timestamp)) = sent else {
        return answer.map(|_| ()).map_err(Refusal::Other);
    };
    if let Some(rule) = &choice.rule {
        what.push_str(&format!(" rule={rule}"));
    }
    if replay {
        what.push_str(&format!(" (replayed from the spool, received {timestamp})"));
    }
    match answer {
        Ok(Answer::Done(reply)) => {
            match reply.json::<EventReply>("POST /v1/events") {
                Ok(r) => log.info(&format!(
                    "{what} -> {} {} mitigation_id={}",
                    reply.status,
                    r.status.as_deref().unwrap_or("?"),
                    r.mitigation_id.as_deref().unwrap_or("none")
                )),
                // Delivered all the same: the status code is what prefixd promises.
                Err(e) => log.warn(&format!("{what} -> {} delivered; {e}", reply.status)),
            }
            Ok(())
        }
        Ok(Answer::AlreadyReceived(reply)) => {
            log.info(&format!(
                "{what} -> 409 already received: {}",
                reply.snippet()
            ));
            Ok(())
        }
        Ok(Answer::UnknownVector(e)) => {
            log.error(&format!("{what} -> {e}"));
            Err(Refusal::Vector(e))
        }
        Ok(other) => {
            let e = client.unexpected(other, "POST /v1/events");
            log.error(&format!("{what} -> {e}"));
            Err(Refusal::Other(e))
        }
        Err(e) => {
            log.error(&format!("{what} -> {e}"));
            Err(Refusal::Other(e))
        }
    }
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "null".into(), |n| n.to_string())
}

pub fn lookup_path(victim_ip: &str) -> String {
    format!("/v1/mitigations?status=pending,active,escalated&victim_ip={victim_ip}&limit={PAGE}")
}

pub fn withdraw_body(cfg: &Config, notice: &Notice) -> String {
    miniserde::json::to_string(&Withdraw {
        operator_id: cfg.operator.clone(),
        reason: format!(
            "FastNetMon unban for {} (direction={})",
            notice.victim_ip, notice.direction
        ),
    })
}

/// Withdraws every active mitigation of the victim (all vectors), as the bash script does,
/// looking up to `lookups_max` times while none is active yet. `not_after` (a replayed
/// unban): leave alone the mitigations updated after it — created or extended by a ban that
/// came after FastNetMon's unban, or made by someone else since.
pub fn unban(
    client: &Client,
    cfg: &Config,
    log: &Log,
    notice: &Notice,
    lookups_max: u32,
    not_after: Option<SystemTime>,
) -> Result<(), Error> {
    let ip = notice.victim_ip.to_string();
    let body = withdraw_body(cfg, notice);
    let cutoff_ms = not_after.map(|t| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    });
    let cutoff_text = not_after.map(time::rfc3339).unwrap_or_default();
    let mut withdrawn = 0usize;
    let mut left_alone = 0usize;
    let mut first_error = None;
    let mut lookups = 0u32;
    for _page in 0..MAX_PAGES {
        let (rows, active) = loop {
            lookups += 1;
            let list = lookup(client, log, &ip)?;
            let active: Vec<&Mitigation> = list
                .mitigations
                .iter()
                // Defensive: never act on a row that is not this victim's active mitigation,
                // whatever filter the server applied.
                .filter(|m| m.victim_ip.as_deref().is_none_or(|v| v == ip))
                .filter(|m| {
                    m.status
                        .as_deref()
                        .is_none_or(|s| matches!(s, "pending" | "active" | "escalated"))
                })
                .collect();
            if !active.is_empty() || withdrawn + left_alone > 0 || lookups >= lookups_max {
                break (
                    list.mitigations.len(),
                    active.into_iter().cloned().collect::<Vec<_>>(),
                );
            }
            // A ban still in flight may land in between, as with the script.
            if cfg.unban_query_delay >= client.remaining() {
                break (0, Vec::new());
            }
            log.debug(&format!(
                "unban {ip}: no active mitigation yet (lookup {lookups}/{lookups_max})"
            ));
            std::thread::sleep(cfg.unban_query_delay);
        };
        let mut eligible = Vec::new();
        for m in active {
            let updated = m.updated_at.as_deref().and_then(time::parse_rfc3339_ms);
            match (cutoff_ms, updated) {
                (None, _) => eligible.push(m.mitigation_id),
                (Some(cut), Some(u)) if u <= cut => eligible.push(m.mitigation_id),
                (Some(_), _) => {
                    left_alone += 1;
                    log.info(&format!(
                        "unban {ip}: left mitigation {} alone: updated_at {} is later than {cutoff_text} (this replayed unban, plus the clock allowance)",
                        m.mitigation_id,
                        m.updated_at.as_deref().unwrap_or("(none given)"),
                    ));
                }
            }
        }
        if eligible.is_empty() {
            if withdrawn + left_alone == 0 {
                log.info(&format!(
                    "unban {ip} -> nothing to withdraw after {lookups} lookup(s)"
                ));
            }
            break;
        }
        for id in &eligible {
            match withdraw(client, log, &ip, id, &body) {
                Ok(()) => withdrawn += 1,
                Err(e) => {
                    log.error(&format!("unban {ip}: withdraw {id} -> {e}"));
                    first_error.get_or_insert(e);
                }
            }
        }
        if first_error.is_some() || rows < PAGE {
            break;
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn lookup(client: &Client, log: &Log, ip: &str) -> Result<MitigationList, Error> {
    let failed = |e: Error| {
        log.error(&format!("unban {ip}: lookup -> {e}"));
        e
    };
    match client.ask(log, Endpoint::List, "GET", &lookup_path(ip), || Ok(None)) {
        Ok(Answer::Done(reply)) => reply
            .json("GET /v1/mitigations")
            .map_err(|m| failed(Error::NotDelivered(m))),
        Ok(other) => Err(failed(client.unexpected(other, "GET /v1/mitigations"))),
        Err(e) => Err(failed(e)),
    }
}

fn withdraw(client: &Client, log: &Log, ip: &str, id: &str, body: &str) -> Result<(), Error> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(Error::Refused(format!(
            "prefixd listed a mitigation_id that is not a UUID: {id:?}"
        )));
    }
    let path = format!("/v1/mitigations/{id}/withdraw");
    match client.ask(log, Endpoint::Withdraw, "POST", &path, || {
        Ok(Some(body.to_string()))
    })? {
        Answer::Done(reply) => {
            log.info(&format!(
                "unban {ip}: withdrew mitigation {id} -> {}",
                reply.status
            ));
            Ok(())
        }
        // Not active any more, or unknown: gone already if a fresh look agrees.
        Answer::Gone(reply) if !still_active(client, log, id)? => {
            log.info(&format!(
                "unban {ip}: mitigation {id} already gone (withdraw answered {})",
                reply.status
            ));
            Ok(())
        }
        other => Err(client.unexpected(other, &format!("POST {path}"))),
    }
}

fn still_active(client: &Client, log: &Log, id: &str) -> Result<bool, Error> {
    #[derive(miniserde::Deserialize)]
    struct One {
        status: Option<String>,
    }
    let what = format!("GET /v1/mitigations/{id}");
    let path = format!("/v1/mitigations/{id}");
    match client.ask(log, Endpoint::Mitigation, "GET", &path, || Ok(None))? {
        Answer::Gone(_) => Ok(false),
        Answer::Done(reply) => {
            let one: One = reply.json(&what).map_err(Error::NotDelivered)?;
            Ok(matches!(
                one.status.as_deref(),
                Some("pending" | "active" | "escalated")
            ))
        }
        other => Err(client.unexpected(other, &what)),
    }
}

/// `--dry-run`: what a real run would send (request lines, headers, indented JSON, and which
/// rule chose the vector); nothing is sent.
pub fn dry_run(cfg: &Config, n: &Notice) -> Result<String, Error> {
    use std::fmt::Write;
    let mut out = String::new();
    let auth = if cfg.token.is_some() {
        "Authorization: Bearer <redacted>\n"
    } else {
        ""
    };
    if n.action == crate::action::Action::Ban {
        let choice = choose_vector(&cfg.rules, n);
        let _ = match &choice.rule {
            Some(rule) => writeln!(
                out,
                "# vector {} from rule {rule} (built-in detection says {})",
                choice.vector, choice.builtin
            ),
            None => writeln!(
                out,
                "# vector {} from built-in detection (no custom rule matched)",
                choice.vector
            ),
        };
        let body = miniserde::json::to_string(&ban_event(n, false, &choice)?);
        let _ = writeln!(
            out,
            "POST {}/v1/events\n{auth}Content-Type: application/json\n\n{}",
            cfg.api,
            crate::pretty::json(&body)
        );
    } else {
        let _ = writeln!(
            out,
            "GET {}{}\n{auth}",
            cfg.api,
            lookup_path(&n.victim_ip.to_string())
        );
        let _ = writeln!(
            out,
            "then, for each mitigation_id listed:\nPOST {}/v1/mitigations/{{mitigation_id}}/withdraw\n{auth}Content-Type: application/json\n\n{}",
            cfg.api,
            crate::pretty::json(&withdraw_body(cfg, n))
        );
    }
    Ok(out)
}
