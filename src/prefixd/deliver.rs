//! A notice → prefixd: the ban event, or the unban lookup and withdrawals, and what each
//! answer means for the operator (log line, exit code).

use crate::config::Config;
use crate::error::Error;
use crate::fastnetmon::details;
use crate::fastnetmon::notice::Notice;
use crate::fastnetmon::rules::{self, Rule};
use crate::log::Log;
use crate::prefixd::answer::Answer;
use crate::prefixd::client::Client;
use crate::prefixd::wire::{
    self, BanOutcome, Endpoint, Event, EventReply, Mitigation, MitigationList, NextPage, Withdraw,
};
use crate::spool::lease::Lease;
use crate::{time, uuid};
use miniserde::json::{Number, Object, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// prefixd caps `limit` here; a full page means there may be more.
const PAGE: usize = 1000;
/// Bounds the "full page, look again" loop even against a prefixd that misbehaves.
const MAX_PAGES: usize = 50;

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
    VectorChoice {
        vector: rule.map_or_else(|| builtin.to_string(), |r| r.vector.clone()),
        bps,
        rule: rule.map(|r| r.origin.clone()),
        builtin,
        confidence,
        confidence_basis,
        builtin_confidence: fixed.unwrap_or_else(|| row(false)),
    }
}

/// The most a ban's request body may be: under prefixd's 1 MiB (1,048,576 bytes) limit, which
/// answers 413 and keeps nothing. JSON escaping makes details up to six times larger.
pub const MAX_REQUEST_BODY: usize = 1_000_000;

/// What a ban is sent again with after a 413 (a proxy's limit, far below prefixd's): its
/// details cut to this much body, then none at all. A ban is never lost for its attachment.
pub const SMALLER_BODIES: [usize; 2] = [8 * 1024, 0];

/// `raw_details.raw` cut so that the request body stays within `limit` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Bytes of the details kept, and of the details there were.
    pub kept: usize,
    pub of: usize,
    /// The body with all of them, and the limit it had to stay within.
    pub body: usize,
    pub limit: usize,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "raw_details.raw cut to {} of {} bytes (marked truncated): with all of them the request would be {} bytes, over the {} sent at most",
            self.kept, self.of, self.body, self.limit
        )
    }
}

/// The length of `c` in a JSON string, as miniserde writes it.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\t' | '\n' | '\u{c}' | '\r' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// The event for one ban attempt, with a fresh `event_id`. A replayed ban keeps the time
/// FastNetMon reported it and says how late it is. Its body stays within `limit` bytes:
/// `raw_details.raw` is cut (and marked truncated) as far as that needs.
pub fn ban_event(
    notice: &Notice,
    replay: bool,
    choice: &VectorChoice,
    limit: usize,
) -> Result<(Event, Option<Cut>), Error> {
    let mut event = ban_event_whole(notice, replay, choice)?;
    let body = miniserde::json::to_string(&event).len();
    if body <= limit {
        return Ok((event, None));
    }
    let details = &notice.details;
    let escaped: usize = details.chars().map(json_len).sum();
    // "truncated":false becomes true: one byte less, never more.
    let room = limit.saturating_sub(body - escaped);
    let (mut used, mut end) = (0, 0);
    for (i, c) in details.char_indices() {
        used += json_len(c);
        if used > room {
            break;
        }
        end = i + c.len_utf8();
    }
    set_raw(&mut event, &details[..end]);
    if miniserde::json::to_string(&event).len() > limit {
        end = 0; // a limit smaller than the event without its details
        set_raw(&mut event, "");
    }
    let cut = Cut {
        kept: end,
        of: details.len(),
        body,
        limit,
    };
    Ok((event, Some(cut)))
}

/// `raw_details.raw` replaced by `raw`, marked truncated.
fn set_raw(event: &mut Event, raw: &str) {
    if let Value::Object(o) = &mut event.raw_details {
        o.insert("raw".into(), Value::String(raw.to_string()));
        o.insert("truncated".into(), Value::Bool(true));
    }
}

fn ban_event_whole(notice: &Notice, replay: bool, choice: &VectorChoice) -> Result<Event, Error> {
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
        confidence: Some(choice.confidence),
        raw_details: Value::Object(raw),
    })
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
        post_event(client, log, &choice.vector, &tail, || {
            let (event, cut) = ban_event(notice, replay, choice, limit)?;
            if let Some(cut) = cut.filter(|_| !said_cut) {
                said_cut = true;
                log.warn(&format!("ban {}: {cut}", notice.victim_ip));
            }
            Ok(event)
        })
        .map(|(posted, event_id)| Delivered::Ban(Box::new(posted.lease(lease(choice, event_id)))))
    };
    let mut choice = choice;
    let mut limit = MAX_REQUEST_BODY;
    let mut smaller = SMALLER_BODIES.into_iter();
    // Each turn sends a smaller body or drops the rule's vector: a handful at most.
    for _ in 0..SMALLER_BODIES.len() + 3 {
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
                    ..choice.clone()
                };
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
            raw_details: Value::Object(raw),
        })
    };
    let tail = format!(
        " (renewal {} of {}: {why})",
        lease.renewals + 1,
        lease.event_id
    );
    post_event(client, log, &lease.vector, &tail, event)
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

/// Why a ban did not go: prefixd does not know its vector, its body was too large (413: what
/// answered, and the body's size), or anything else.
enum Refusal {
    Vector(Error),
    TooLarge { said: String, body: usize },
    Other(Error),
}

impl Refusal {
    fn into_error(self) -> Error {
        match self {
            Refusal::Vector(e) | Refusal::Other(e) => e,
            Refusal::TooLarge { said, body } => Error::Config(format!(
                "{said} for a request of {body} bytes: something in front of prefixd limits request bodies below that"
            )),
        }
    }
}

/// One ban event, retried as `Client::request` does (each attempt a fresh event from `make`);
/// what prefixd did, and the `event_id` of the attempt it answered. `tail` ends the log line.
fn post_event(
    client: &Client,
    log: &Log,
    vector: &str,
    tail: &str,
    mut make: impl FnMut() -> Result<Event, Error>,
) -> Result<(Posted, String), Refusal> {
    // The log line of the last attempt, its event_id and its size; the event itself (details
    // and all) is not kept.
    let mut sent: Option<(String, String, usize)> = None;
    let answer = client.ask(log, Endpoint::Events, "POST", "/v1/events", || {
        let event = make()?;
        let body = miniserde::json::to_string(&event);
        let what = format!(
            "ban {} vector={} pps={} bps={} confidence={} event_id={}",
            event.victim_ip,
            event.vector,
            opt(event.pps),
            opt(event.bps),
            event.confidence.unwrap_or(0.0),
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
                        log.info(&said);
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

pub fn lookup_path(victim_ip: &str) -> String {
    format!("/v1/mitigations?status=pending,active,escalated&victim_ip={victim_ip}&limit={PAGE}")
}

/// The next page of a v0.19-style listing: `cursor` percent-encoded (it is opaque text).
fn page_path(victim_ip: &str, cursor: &str) -> String {
    let mut encoded = String::with_capacity(cursor.len());
    for b in cursor.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}&cursor={encoded}", lookup_path(victim_ip))
}

/// What our withdrawals say in `reason`, so that anyone reading a mitigation (an operator,
/// the next run, another FastNetMon host) can tell this program's unban from a person's:
/// `[prefixd-fastnetmon@<host> unban <victim_ip>]`. prefixd v0.19.1 ignores `operator_id`
/// and stores `bearer-token: <reason>` for every token (shared/prefixd-0.19.md §4).
pub fn withdraw_marker(host: &str, victim_ip: &str) -> String {
    format!("[prefixd-fastnetmon@{host} unban {victim_ip}]")
}

/// The host named in a withdrawal's marker, if `reason` carries one (`<identity>: …` and
/// all).
pub fn marker_host(reason: &str) -> Option<&str> {
    let rest = &reason[reason.find("[prefixd-fastnetmon@")? + "[prefixd-fastnetmon@".len()..];
    let host = &rest[..rest.find(' ')?];
    (!host.is_empty()).then_some(host)
}

/// This host's name (`/proc/sys/kernel/hostname`), as a marker can carry it.
pub fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '[' | ']'))
        .take(64)
        .collect();
    if name.is_empty() {
        "unknown-host".into()
    } else {
        name
    }
}

pub fn withdraw_body(cfg: &Config, notice: &Notice) -> String {
    miniserde::json::to_string(&Withdraw {
        // v0.10.1 requires it; v0.19.1 ignores it.
        operator_id: cfg.operator.clone(),
        reason: format!(
            "FastNetMon unban for {} (direction={}) {}",
            notice.victim_ip,
            notice.direction,
            withdraw_marker(&hostname(), &notice.victim_ip.to_string())
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
    for _round in 0..MAX_PAGES {
        let (active, more) = loop {
            lookups += 1;
            let listing = list_all(client, log, &ip)?;
            if let Some(e) = listing.broken {
                first_error.get_or_insert(e);
            }
            let active: Vec<(String, Mitigation)> = listing
                .rows
                .into_iter()
                // Never act on a row that is not this victim's active mitigation, whatever
                // filter the server applied or whatever it left out.
                .filter(|m| m.victim_ip.as_deref() == Some(ip.as_str()))
                .filter(|m| wire::is_active(m.status.as_deref()))
                .filter_map(|m| Some((m.mitigation_id.clone()?, m)))
                .collect();
            if !active.is_empty()
                || withdrawn + left_alone > 0
                || lookups >= lookups_max
                || first_error.is_some()
            {
                break (active, listing.more);
            }
            // A ban still in flight may land in between, as with the script.
            if cfg.unban_query_delay >= client.remaining() {
                break (Vec::new(), false);
            }
            log.debug(&format!(
                "unban {ip}: no active mitigation yet (lookup {lookups}/{lookups_max})"
            ));
            std::thread::sleep(cfg.unban_query_delay);
        };
        let mut eligible = Vec::new();
        for (id, m) in active {
            let updated = m.updated_at.as_deref().and_then(time::parse_rfc3339_ms);
            match (cutoff_ms, updated) {
                (None, _) => eligible.push(id),
                (Some(cut), Some(u)) if u <= cut => eligible.push(id),
                (Some(_), _) => {
                    left_alone += 1;
                    log.info(&format!(
                        "unban {ip}: left mitigation {id} alone: updated_at {} is later than {cutoff_text} (this replayed unban, plus the clock allowance)",
                        m.updated_at.as_deref().unwrap_or("(none given)"),
                    ));
                }
            }
        }
        if eligible.is_empty() {
            if withdrawn + left_alone == 0 && first_error.is_none() {
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
        if first_error.is_some() || !more {
            break;
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The victim's mitigations, every page. `more`: there may be more than was listed — a
/// v0.10.1 page (no cursor) that came back full, to be looked at again once these are
/// withdrawn. `broken`: a later page could not be had; what was listed is still withdrawn,
/// and the unban is kept to be sent again.
struct Listing {
    rows: Vec<Mitigation>,
    more: bool,
    broken: Option<Error>,
}

/// Cursors longer than this are not followed: a request line must fit ureq's buffer.
const MAX_CURSOR: usize = 1024;

/// v0.19's cursor followed while `has_more` (never a cursor twice, never after an empty page,
/// at most `MAX_PAGES`, within the deadline).
fn list_all(client: &Client, log: &Log, ip: &str) -> Result<Listing, Error> {
    let mut rows: Vec<Mitigation> = Vec::new();
    // At most MAX_PAGES of them: a list is enough to see one come back.
    let mut cursors: Vec<String> = Vec::new();
    let mut path = lookup_path(ip);
    let stop = |rows: Vec<Mitigation>, why: String| {
        log.warn(&format!(
            "unban {ip}: {why}; withdrawing the {} listed, the rest end at their TTL",
            rows.len()
        ));
        Ok(Listing {
            rows,
            more: false,
            broken: None,
        })
    };
    for page_no in 1..=MAX_PAGES {
        let page = match lookup(client, log, ip, &path) {
            Ok(p) => p,
            Err(e) if page_no == 1 => return Err(e),
            Err(e) => {
                let listed = rows.len();
                return Ok(Listing {
                    rows,
                    more: false,
                    broken: Some(Error::NotDelivered(format!(
                        "page {page_no} of the mitigations of {ip} could not be had ({e}); the {listed} listed before it were withdrawn"
                    ))),
                });
            }
        };
        let next = page.next_page();
        let count = page.mitigations.len();
        for m in page.mitigations {
            // A page that repeats adds nothing.
            if !rows.iter().any(|r| r.mitigation_id == m.mitigation_id) {
                rows.push(m);
            }
        }
        match next {
            NextPage::Unpaged => {
                return Ok(Listing {
                    rows,
                    more: count >= PAGE,
                    broken: None,
                });
            }
            NextPage::Done => {
                return Ok(Listing {
                    rows,
                    more: false,
                    broken: None,
                });
            }
            NextPage::Broken(what) => {
                return stop(
                    rows,
                    format!("prefixd said there are more mitigations but gave {what}"),
                );
            }
            NextPage::Cursor(_) if count == 0 => {
                return stop(rows, "prefixd gave an empty page with more to come".into());
            }
            NextPage::Cursor(c) if c.len() > MAX_CURSOR => {
                return stop(rows, format!("prefixd gave a cursor of {} bytes", c.len()));
            }
            NextPage::Cursor(c) if cursors.contains(&c) => {
                return stop(rows, "prefixd gave a repeated cursor".into());
            }
            NextPage::Cursor(c) => {
                cursors.push(c.clone());
                if client.remaining().is_zero() {
                    return Err(Error::NotDelivered(format!(
                        "deadline reached while listing the mitigations of {ip}"
                    )));
                }
                path = page_path(ip, &c);
            }
        }
    }
    stop(rows, format!("stopped listing after {MAX_PAGES} pages"))
}

fn lookup(client: &Client, log: &Log, ip: &str, path: &str) -> Result<MitigationList, Error> {
    let failed = |e: Error| {
        log.error(&format!("unban {ip}: lookup -> {e}"));
        e
    };
    match client.ask(log, Endpoint::List, "GET", path, || Ok(None)) {
        Ok(Answer::Done(reply)) => reply
            .json("GET /v1/mitigations")
            .map_err(|m| failed(Error::NotDelivered(m))),
        Ok(other) => Err(failed(client.unexpected(other, "GET /v1/mitigations"))),
        Err(e) => Err(failed(e)),
    }
}

fn withdraw(client: &Client, log: &Log, ip: &str, id: &str, body: &str) -> Result<(), Error> {
    if !wire::is_mitigation_id(id) {
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
    let one: Option<One> = mitigation(client, log, id)?;
    Ok(one.is_some_and(|m| wire::is_active(m.status.as_deref())))
}

/// `GET /v1/mitigations/{id}`, read as `T` (as little of it as the caller needs). None:
/// unknown to prefixd (404), or an id that is not one (never put in a URL).
pub fn mitigation<T: miniserde::Deserialize>(
    client: &Client,
    log: &Log,
    id: &str,
) -> Result<Option<T>, Error> {
    if !wire::is_mitigation_id(id) {
        return Ok(None);
    }
    let what = format!("GET /v1/mitigations/{id}");
    let path = format!("/v1/mitigations/{id}");
    match client.ask(log, Endpoint::Mitigation, "GET", &path, || Ok(None))? {
        Answer::Gone(_) => Ok(None),
        Answer::Done(reply) => reply.json(&what).map(Some).map_err(Error::NotDelivered),
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
        let choice = choose_vector(&cfg.rules, n, cfg.confidence);
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
        let _ = writeln!(
            out,
            "# confidence {} ({})",
            choice.confidence, choice.confidence_basis
        );
        let (event, cut) = ban_event(n, false, &choice, MAX_REQUEST_BODY)?;
        if let Some(cut) = cut {
            let _ = writeln!(out, "# {cut}");
        }
        let body = miniserde::json::to_string(&event);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_withdrawal_marker_names_its_host_as_prefixd_stores_it() {
        let m = withdraw_marker("fnm-edge-1", "2001:db8::10");
        assert_eq!(m, "[prefixd-fastnetmon@fnm-edge-1 unban 2001:db8::10]");
        for stored in [
            format!("bearer-token: FastNetMon unban for 2001:db8::10 (direction=incoming) {m}"),
            format!("fastnetmon: {m}"),
        ] {
            assert_eq!(marker_host(&stored), Some("fnm-edge-1"), "{stored}");
        }
        for none in [
            "bearer-token: customer asked",
            "[prefixd-fastnetmon@",
            "[prefixd-fastnetmon@ unban x]",
            "",
        ] {
            assert_eq!(marker_host(none), None, "{none}");
        }
        assert!(!hostname().contains([' ', '[', ']']));
    }

    #[test]
    fn json_len_is_what_miniserde_writes() {
        let mut chars: Vec<char> = (0u8..0x80).map(char::from).collect();
        chars.extend(['\u{80}', 'é', '\u{7ff}', '日', '\u{fffd}', '🦀']);
        for c in chars {
            let written = miniserde::json::to_string(&c.to_string()).len() - 2;
            assert_eq!(json_len(c), written, "{c:?}");
        }
    }

    fn notice_with(details: &str) -> Notice {
        let (n, _) = Notice::parse("192.0.2.10", None, Some("90000"), None).unwrap();
        n.with_details(
            crate::fastnetmon::notice::RawDetails {
                text: details.into(),
                truncated: false,
            },
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_830_000),
        )
    }

    #[test]
    fn a_bans_body_stays_within_its_limit_whatever_its_details() {
        let keep = crate::fastnetmon::notice::KEEP_DETAILS;
        // As stdin is kept: the first KEEP_DETAILS bytes (whole characters here).
        let cut_to = |s: String| {
            let mut end = keep.min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        };
        let details = [
            // The operators' example: control bytes escape to six bytes each (1.57 MB).
            cut_to(format!(
                "Attack type: udp_flood\n{}",
                "\u{1}".repeat(300_000)
            )),
            cut_to(format!(
                "Attack type: udp_flood\n{}",
                "\"\\\n".repeat(100_000)
            )),
            cut_to("日本".repeat(60_000)),
            "\u{1}".repeat(1000),
        ];
        for text in &details {
            let n = notice_with(text);
            let choice = choose_vector(&[], &n, None);
            for limit in [MAX_REQUEST_BODY, 65_536, 8 * 1024, 0] {
                let (event, cut) = ban_event(&n, false, &choice, limit).unwrap();
                let body = miniserde::json::to_string(&event);
                let Value::Object(raw) = &event.raw_details else {
                    panic!()
                };
                let Some(Value::String(r)) = raw.get("raw") else {
                    panic!()
                };
                let whole = ban_event(&n, false, &choice, usize::MAX).unwrap().0;
                let whole = miniserde::json::to_string(&whole).len();
                match cut {
                    None => {
                        assert!(whole <= limit && r == text, "{limit}");
                        continue;
                    }
                    Some(c) => {
                        assert_eq!(
                            (c.kept, c.of, c.body, c.limit),
                            (r.len(), text.len(), whole, limit)
                        );
                    }
                }
                assert!(text.starts_with(r.as_str()));
                assert!(matches!(raw.get("truncated"), Some(Value::Bool(true))));
                if limit > 0 {
                    assert!(body.len() <= limit, "{} > {limit}", body.len());
                    // Short of the limit by less than one escaped character, and the byte
                    // `true` saves on `false`.
                    assert!(body.len() + 6 >= limit, "{} for {limit}", body.len());
                } else {
                    assert!(r.is_empty());
                }
            }
        }
    }

    #[test]
    fn a_cursor_travels_percent_encoded() {
        assert_eq!(
            page_path("192.0.2.1", "eyJ0Ijo=+/x"),
            format!("{}&cursor=eyJ0Ijo%3D%2B%2Fx", lookup_path("192.0.2.1"))
        );
    }
}
