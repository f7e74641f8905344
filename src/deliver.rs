//! A notice → prefixd: the ban event, or the unban lookup and withdrawals, and what each
//! answer means for the operator (log line, exit code).

use crate::api::{Client, Event, EventReply, Mitigation, MitigationList, Reply, Withdraw};
use crate::config::Config;
use crate::error::Error;
use crate::log::Log;
use crate::notice::Notice;
use crate::rules::{self, Rule};
use crate::spool::Entry;
use crate::{details, time, uuid};
use miniserde::json::{Number, Object, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// prefixd caps `limit` here; a full page means there may be more.
const PAGE: usize = 1000;
/// Bounds the "full page, look again" loop even against a prefixd that misbehaves.
const MAX_PAGES: usize = 50;

/// When FastNetMon called us about `entry`.
pub fn received(entry: &Entry) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(entry.received_ms)
}

/// Which vector a ban carries, and why; and its bandwidth (the details are parsed once).
#[derive(Clone)]
pub struct VectorChoice {
    pub vector: String,
    pub bps: Option<i64>,
    /// `file:line` of the custom rule that chose it; None: built-in detection.
    pub rule: Option<String>,
    pub builtin: &'static str,
}

pub fn choose_vector(rules: &[Rule], notice: &Notice, entry: &Entry) -> VectorChoice {
    let parsed = details::parse(&entry.details);
    let builtin = details::vector(&parsed, notice.victim_ip, &notice.direction);
    let facts = rules::Facts {
        details: &parsed,
        text: &entry.details,
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
pub fn ban_event(
    notice: &Notice,
    entry: &Entry,
    replay: bool,
    choice: &VectorChoice,
) -> Result<Event, Error> {
    let text = |s: &str| Value::String(s.to_string());
    let mut raw = Object::new();
    raw.insert("raw".into(), text(&entry.details));
    raw.insert("direction".into(), text(&notice.direction));
    raw.insert("original_action".into(), text("ban"));
    raw.insert("truncated".into(), Value::Bool(entry.truncated));
    if replay {
        let delay = received(entry).elapsed().unwrap_or_default().as_secs();
        raw.insert("replayed".into(), Value::Bool(true));
        raw.insert(
            "replay_delay_seconds".into(),
            Value::Number(Number::U64(delay)),
        );
    }
    Ok(Event {
        event_id: uuid::v4()
            .map_err(|e| Error::Internal(format!("no randomness for event_id: {e}")))?,
        timestamp: time::rfc3339(received(entry)),
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
    entry: &Entry,
    replay: bool,
) -> Result<(), Error> {
    let choice = choose_vector(rules, notice, entry);
    let (status, result) = post_ban(client, log, notice, entry, replay, &choice);
    // Only a 422 about the vector ("vector: unknown variant …"); a guardrail's 422 (safelist,
    // quota) would refuse the built-in vector just the same.
    let about_vector = matches!(&result, Err(Error::Refused(m)) if m.contains("vector"));
    match (status, &choice.rule) {
        (Some(422), Some(rule)) if choice.vector != choice.builtin && about_vector => {
            log.warn(&format!(
                "prefixd refused vector {} from rule {rule}; sending the built-in vector {} instead",
                choice.vector, choice.builtin
            ));
            let builtin = VectorChoice {
                vector: choice.builtin.into(),
                rule: None,
                ..choice.clone()
            };
            post_ban(client, log, notice, entry, replay, &builtin).1
        }
        _ => result,
    }
}

/// One ban, retried as `Client::call` does; the final HTTP status (if any) and the outcome.
fn post_ban(
    client: &Client,
    log: &Log,
    notice: &Notice,
    entry: &Entry,
    replay: bool,
    choice: &VectorChoice,
) -> (Option<u16>, Result<(), Error>) {
    // The log line of the last attempt; the event itself (details and all) is not kept.
    let mut sent: Option<(String, String)> = None;
    let reply = client.call(log, "POST", "/v1/events", || {
        let event = ban_event(notice, entry, replay, choice)?;
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
        return (None, reply.map(|_| ()));
    };
    if let Some(rule) = &choice.rule {
        what.push_str(&format!(" rule={rule}"));
    }
    if replay {
        what.push_str(&format!(" (replayed from the spool, received {timestamp})"));
    }
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            log.error(&format!("{what} -> {e}"));
            return (None, Err(e));
        }
    };
    let result = match reply.status {
        200..=299 => {
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
        409 => {
            log.info(&format!(
                "{what} -> 409 already received: {}",
                reply.snippet()
            ));
            Ok(())
        }
        _ => {
            let e = client.refusal("POST /v1/events", &reply);
            log.error(&format!("{what} -> {e}"));
            Err(e)
        }
    };
    (Some(reply.status), result)
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
    let path = lookup_path(ip);
    let reply = client
        .call(log, "GET", &path, || Ok(None))
        .inspect_err(|e| log.error(&format!("unban {ip}: lookup -> {e}")))?;
    let what = "GET /v1/mitigations";
    if reply.status != 200 {
        let e = client.refusal(what, &reply);
        log.error(&format!("unban {ip}: lookup -> {e}"));
        return Err(e);
    }
    reply.json(what).map_err(|m| {
        log.error(&format!("unban {ip}: lookup -> {m}"));
        Error::NotDelivered(m)
    })
}

fn withdraw(client: &Client, log: &Log, ip: &str, id: &str, body: &str) -> Result<(), Error> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(Error::Refused(format!(
            "prefixd listed a mitigation_id that is not a UUID: {id:?}"
        )));
    }
    let path = format!("/v1/mitigations/{id}/withdraw");
    let reply = client.call(log, "POST", &path, || Ok(Some(body.to_string())))?;
    match reply.status {
        200..=299 => {
            log.info(&format!(
                "unban {ip}: withdrew mitigation {id} -> {}",
                reply.status
            ));
            Ok(())
        }
        // Not active any more, or unknown: gone already if a fresh look agrees.
        400 | 404 => match still_active(client, log, id)? {
            false => {
                log.info(&format!(
                    "unban {ip}: mitigation {id} already gone (withdraw answered {})",
                    reply.status
                ));
                Ok(())
            }
            true => Err(client.refusal(&format!("POST {path}"), &reply)),
        },
        _ => Err(client.refusal(&format!("POST {path}"), &reply)),
    }
}

fn still_active(client: &Client, log: &Log, id: &str) -> Result<bool, Error> {
    #[derive(miniserde::Deserialize)]
    struct One {
        status: Option<String>,
    }
    let what = format!("GET /v1/mitigations/{id}");
    let reply: Reply = client.call(log, "GET", &format!("/v1/mitigations/{id}"), || Ok(None))?;
    match reply.status {
        404 => Ok(false),
        200 => {
            let one: One = reply.json(&what).map_err(Error::NotDelivered)?;
            Ok(matches!(
                one.status.as_deref(),
                Some("pending" | "active" | "escalated")
            ))
        }
        _ => Err(client.refusal(&what, &reply)),
    }
}

/// `--dry-run`: what a real run would send (request lines, headers, indented JSON, and which
/// rule chose the vector); nothing is sent.
pub fn dry_run(cfg: &Config, n: &Notice, entry: &Entry) -> Result<String, Error> {
    use std::fmt::Write;
    let mut out = String::new();
    let auth = if cfg.token.is_some() {
        "Authorization: Bearer <redacted>\n"
    } else {
        ""
    };
    if n.action == crate::notice::Action::Ban {
        let choice = choose_vector(&cfg.rules, n, entry);
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
        let body = miniserde::json::to_string(&ban_event(n, entry, false, &choice)?);
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
            lookup_path(&entry.victim_ip)
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
