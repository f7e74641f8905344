//! A ban → prefixd: the event sent (again at once with the built-in vector, or with less of
//! its details, when prefixd or a proxy refuses what it carried), a held victim's renewal,
//! and what prefixd did with each (`Posted`), said in one log line.

use super::answer::Answer;
use super::client::Client;
use super::event::{MAX_REQUEST_BODY, SMALLER_BODIES, ban_event};
use super::rule::{self, Checked};
use super::wire::{BanOutcome, Endpoint, Event, EventReply};
use crate::config::Config;
use crate::error::Error;
use crate::fastnetmon::notice::Notice;
use crate::fastnetmon::ports::{self, Ports};
use crate::fastnetmon::vector::{VectorChoice, choose_vector};
use crate::log::Log;
use crate::tally::RuleFit;
use crate::{time, uuid};
use miniserde::json::{Number, Object, Value};
use miniserde::{Deserialize, Serialize};
use std::time::UNIX_EPOCH;

/// A ban prefixd took, as the spool holds its victim until FastNetMon's unban (README
/// "Leases"): what a renewal sends again, and what became of the mitigation so far.
/// `spool::lease` keeps it, one file per victim: its fields are that file's format.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Lease {
    pub victim_ip: String,
    pub direction: String,
    pub vector: String,
    /// 0.0–1.0, as the ban sent it.
    pub confidence: f64,
    pub pps: Option<i64>,
    pub bps: Option<i64>,
    /// Milliseconds since the epoch when FastNetMon banned (its notice's time).
    pub banned_ms: u64,
    /// The `event_id` of the ban the lease renews.
    pub event_id: String,
    /// The mitigation prefixd created or extended; None while prefixd holds the ban.
    pub mitigation_id: Option<String>,
    /// When it ends unless renewed (ms since the epoch), as prefixd said at our last look;
    /// None: look at the next flush.
    pub expires_ms: Option<u64>,
    /// Milliseconds since the epoch of the last renewal sent, if any.
    pub renewed_ms: Option<u64>,
    pub renewals: u32,
    /// Why prefixd mitigates nothing for it yet (held by correlation, waiting for quota).
    pub waiting: Option<String>,
    /// Refused by prefixd's quota: sent again at each flush until it is taken.
    pub quota: bool,
    /// The ban's `top_dst_ports`, which its renewals send again exactly: prefixd keys a
    /// mitigation on prefix + protocol + ports. Absent from leases of 0.2.0 (none were sent).
    pub top_dst_ports: Option<Vec<u16>>,
    /// The victim's other mitigations, made by its earlier bans of another scope (other
    /// ports, another protocol) while it was held: renewed alike, ended by the same unban
    /// (`spool::lease::follow`). Their own `earlier` is always empty.
    pub earlier: Option<Vec<Lease>>,
    /// Since when (ms since the epoch) FastNetMon's ban list has not listed the victim, at
    /// every look since; None: listed at the last look, or not looked at (leases of 0.2.0).
    pub unlisted_ms: Option<u64>,
}

/// What a delivered notice did.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    /// A ban prefixd took, with the lease that keeps its victim held until the unban: its
    /// `mitigation_id` when one was created or extended, its `waiting` when prefixd held it.
    Ban(Box<Lease>),
    Unban,
}

/// Sends the ban. A vector chosen by a custom rule that prefixd refuses (422: a vector it does
/// not know yet) is sent again at once with the built-in vector, so the ban is never lost.
pub fn ban(
    cfg: &Config,
    client: &Client,
    log: &Log,
    notice: &Notice,
    replay: bool,
) -> Result<Delivered, Error> {
    let choice = choose_vector(&cfg.rules, notice, cfg.confidence);
    let (vector_first, rule_first) = (choice.vector.clone(), choice.rule.clone());
    let lease = |choice: &VectorChoice, event_id: String| Lease {
        victim_ip: notice.victim_ip.to_string(),
        direction: notice.direction.clone(),
        vector: choice.vector.clone(),
        confidence: choice.confidence,
        pps: notice.pps,
        bps: choice.bps,
        banned_ms: notice.received_ms,
        event_id,
        mitigation_id: None,
        expires_ms: None,
        renewed_ms: None,
        renewals: 0,
        waiting: None,
        quota: false,
        top_dst_ports: choice.ports.field(),
        earlier: None,
        unlisted_ms: None,
    };
    let send = |choice: &VectorChoice, limit: usize| {
        let mut tail = String::new();
        match &choice.rule {
            Some(rule) => tail.push_str(&format!(" rule={rule}")),
            None if choice.vector != vector_first => tail.push_str(&format!(
                " (built-in vector: prefixd refused {vector_first} from rule {})",
                rule_first.as_deref().unwrap_or("?")
            )),
            None => {}
        }
        if replay {
            tail.push_str(&format!(
                " (replayed from the spool, received {})",
                time::rfc3339(notice.received())
            ));
        }
        // What was cut is said once, not at every retry.
        let mut said_cut = false;
        let make = || {
            let (event, cut) = ban_event(notice, replay, choice, limit)?;
            if let Some(cut) = cut.filter(|_| !said_cut) {
                said_cut = true;
                log.warn(&format!("ban {}: {cut}", notice.victim_ip));
            }
            Ok(event)
        };
        // The rule prefixd built for it, measured against the attack.
        let look = |id: &str| Some(rule::check(client, log, id, &choice.attack));
        post_event(client, log, &choice.vector, &tail, make, look).map(|(posted, event_id)| {
            Delivered::Ban(Box::new(posted.lease(lease(choice, event_id))))
        })
    };
    let mut choice = choice;
    let mut limit = MAX_REQUEST_BODY;
    let mut smaller = SMALLER_BODIES.into_iter();
    // Each turn sends a smaller body, drops the rule's vector or the ports: a handful at most.
    for _ in 0..SMALLER_BODIES.len() + 4 {
        match send(&choice, limit) {
            // Too large for prefixd or for what stands in front of it: the ban goes again at
            // once with less (or none) of its details, never lost for their size.
            Err(Refusal::TooLarge { said, body }) => {
                let Some(next) = smaller.next() else {
                    let e = Error::Config(format!(
                        "{said} even for the ban without its details ({body} bytes): something in front of prefixd limits request bodies far below prefixd's 1 MiB; check it and PREFIXD_API"
                    ));
                    log.error(&format!("ban {}: {e}", notice.victim_ip));
                    return Err(e);
                };
                log.warn(&format!(
                    "ban {}: {said} for a request of {body} bytes; sending the ban again at once with {}",
                    notice.victim_ip,
                    if next > 0 {
                        format!("raw_details.raw cut to fit a request of {next} bytes")
                    } else {
                        "no raw_details.raw".into()
                    }
                ));
                limit = next;
            }
            // Only a 422 about the vector; a guardrail's 422 (safelist, quota) would refuse the
            // built-in vector just the same.
            Err(Refusal::Vector(_)) if choice.rule.is_some() && choice.vector != choice.builtin => {
                log.warn(&format!(
                    "prefixd refused vector {} from rule {}; sending the built-in vector {} instead",
                    choice.vector,
                    choice.rule.as_deref().unwrap_or("?"),
                    choice.builtin
                ));
                choice = VectorChoice {
                    vector: choice.builtin.into(),
                    rule: None,
                    confidence: choice.builtin_confidence.0,
                    confidence_basis: choice.builtin_confidence.1,
                    ports: choice.builtin_ports.clone(),
                    ..choice.clone()
                };
            }
            // An operator's `max_ports` below ours: the ban goes again at once without ports
            // (prefixd's rule then covers the whole protocol), never lost for them.
            Err(Refusal::Ports(e)) if !choice.ports.sent.is_empty() => {
                log.warn(&format!(
                    "ban {}: prefixd refused top_dst_ports={} ({}); sending the ban again at once without them",
                    notice.victim_ip,
                    ports::list(&choice.ports.sent),
                    e.message()
                ));
                choice.ports = Ports::none(format!("none: prefixd refused them ({})", e.message()));
            }
            r => return r.map_err(Refusal::into_error),
        }
    }
    Err(Error::Internal(format!(
        "ban {}: sent again more often than its refusals allow",
        notice.victim_ip
    )))
}

/// The ban of a held victim sent again (README "Leases"): a fresh `event_id`, the same victim,
/// vector, confidence and figures, and small `raw_details` naming the ban it renews.
pub fn renew(client: &Client, log: &Log, lease: &Lease, why: &str) -> Result<Posted, Error> {
    let event = || {
        let text = |s: &str| Value::String(s.to_string());
        let mut raw = Object::new();
        raw.insert("renewal_of".into(), text(&lease.event_id));
        raw.insert(
            "renewal".into(),
            Value::Number(Number::U64(u64::from(lease.renewals) + 1)),
        );
        let banned = UNIX_EPOCH + std::time::Duration::from_millis(lease.banned_ms);
        raw.insert("banned_at".into(), text(&time::rfc3339(banned)));
        raw.insert("direction".into(), text(&lease.direction));
        raw.insert("original_action".into(), text("ban"));
        raw.insert("why".into(), text(why));
        Ok(Event {
            event_id: uuid::v4()
                .map_err(|e| Error::Internal(format!("no randomness for event_id: {e}")))?,
            timestamp: time::now(),
            source: "fastnetmon".into(),
            victim_ip: lease.victim_ip.clone(),
            vector: lease.vector.clone(),
            action: "ban".into(),
            pps: lease.pps,
            bps: lease.bps,
            confidence: Some(lease.confidence),
            top_dst_ports: lease.top_dst_ports.clone(),
            raw_details: Value::Object(raw),
        })
    };
    let tail = format!(
        " (renewal {} of {}: {why})",
        lease.renewals + 1,
        lease.event_id
    );
    post_event(client, log, &lease.vector, &tail, event, |_| None)
        .map(|(posted, _)| posted)
        .map_err(Refusal::into_error)
}

/// What prefixd did with one ban event.
#[derive(Debug, Clone, PartialEq)]
pub enum Posted {
    /// Created or extended this mitigation.
    Mitigated(String),
    /// Recorded; nothing created or extended (why, in words).
    Held(String),
    /// Refused by prefixd's quota of active mitigations: waiting can change that.
    Quota(String),
    /// 409 (received already) or a 2xx whose body we could not read: delivered, mitigation
    /// unknown.
    Taken,
}

impl Posted {
    /// `lease` as this answer leaves it.
    pub fn lease(self, mut lease: Lease) -> Lease {
        match self {
            Posted::Mitigated(id) => lease.mitigation_id = Some(id),
            Posted::Held(why) => lease.waiting = Some(why),
            Posted::Quota(why) => {
                lease.waiting = Some(why);
                lease.quota = true;
            }
            Posted::Taken => {}
        }
        lease
    }
}

/// Why a ban did not go: prefixd does not know its vector, refused its ports, its body was
/// too large (413: what answered, and the body's size), or anything else.
enum Refusal {
    Vector(Error),
    Ports(Error),
    TooLarge { said: String, body: usize },
    Other(Error),
}

impl Refusal {
    fn into_error(self) -> Error {
        match self {
            Refusal::Vector(e) | Refusal::Ports(e) | Refusal::Other(e) => e,
            Refusal::TooLarge { said, body } => Error::Config(format!(
                "{said} for a request of {body} bytes: something in front of prefixd limits request bodies below that"
            )),
        }
    }
}

/// One ban event, retried as `Client::request` does (each attempt a fresh event from `make`);
/// what prefixd did, and the `event_id` of the attempt it answered. `tail` ends the log line;
/// `look` adds what the mitigation's rule matches of the attack (a WARN when it misses).
fn post_event(
    client: &Client,
    log: &Log,
    vector: &str,
    tail: &str,
    mut make: impl FnMut() -> Result<Event, Error>,
    look: impl FnOnce(&str) -> Option<Checked>,
) -> Result<(Posted, String), Refusal> {
    // The log line of the last attempt, its event_id and its size; the event itself (details
    // and all) is not kept.
    let mut sent: Option<(String, String, usize)> = None;
    let answer = client.ask(log, Endpoint::Events, "POST", "/v1/events", || {
        let event = make()?;
        let body = miniserde::json::to_string(&event);
        let what = format!(
            "ban {} vector={} pps={} bps={} confidence={} top_dst_ports={} event_id={}",
            event.victim_ip,
            event.vector,
            opt(event.pps),
            opt(event.bps),
            event.confidence.unwrap_or(0.0),
            ports::list(event.top_dst_ports.as_deref().unwrap_or_default()),
            event.event_id
        );
        sent = Some((what, event.event_id, body.len()));
        Ok(Some(body))
    });
    let Some((mut what, event_id, size)) = sent else {
        return match answer {
            Ok(_) => Ok((Posted::Taken, String::new())),
            Err(e) => Err(Refusal::Other(e)),
        };
    };
    what.push_str(tail);
    let posted = match answer {
        Ok(Answer::Done(reply)) => match reply.json::<EventReply>("POST /v1/events") {
            Ok(r) => {
                let said = format!(
                    "{what} -> {} {} mitigation_id={}",
                    reply.status,
                    r.status.as_deref().unwrap_or("?"),
                    r.mitigation_id.as_deref().unwrap_or("none")
                );
                match r.outcome(vector) {
                    BanOutcome::Mitigated(id) => {
                        match look(&id) {
                            Some(c) if c.fit == RuleFit::Misses => {
                                log.warn(&format!("{said}; {}", c.said))
                            }
                            Some(c) => log.info(&format!("{said}; {}", c.said)),
                            None => log.info(&said),
                        }
                        Posted::Mitigated(id)
                    }
                    BanOutcome::Held(why) => {
                        log.warn(&format!(
                            "{said}: prefixd recorded the ban but mitigated nothing yet: {why}"
                        ));
                        Posted::Held(why)
                    }
                }
            }
            // Delivered all the same: the status code is what prefixd promises.
            Err(e) => {
                log.warn(&format!("{what} -> {} delivered; {e}", reply.status));
                Posted::Taken
            }
        },
        Ok(Answer::AlreadyReceived(reply)) => {
            log.info(&format!(
                "{what} -> 409 already received: {}",
                reply.snippet()
            ));
            Posted::Taken
        }
        Ok(Answer::QuotaExceeded(e)) => {
            log.warn(&format!(
                "{what} -> {e}: the victim stays held; --flush sends the ban again until prefixd takes it or FastNetMon unbans"
            ));
            Posted::Quota(e.to_string())
        }
        Ok(Answer::UnknownVector(e)) => {
            log.error(&format!("{what} -> {e}"));
            return Err(Refusal::Vector(e));
        }
        Ok(Answer::PortsRefused(e)) => {
            log.error(&format!("{what} -> {e}"));
            return Err(Refusal::Ports(e));
        }
        // The caller says what it does about it.
        Ok(Answer::TooLarge(reply)) => {
            return Err(Refusal::TooLarge {
                said: format!("POST /v1/events answered 413 ({})", reply.snippet()),
                body: size,
            });
        }
        Ok(other) => {
            let e = client.unexpected(other, "POST /v1/events");
            log.error(&format!("{what} -> {e}"));
            return Err(Refusal::Other(e));
        }
        Err(e) => {
            log.error(&format!("{what} -> {e}"));
            return Err(Refusal::Other(e));
        }
    };
    Ok((posted, event_id))
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "null".into(), |n| n.to_string())
}
