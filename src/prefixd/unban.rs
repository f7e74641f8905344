//! An unban → prefixd: the victim's active mitigations listed (every page, either
//! generation's) and each withdrawn with a reason that names this host; a mitigation looked
//! at by its id (the withdraw's re-check, a renewal's look).

use super::answer::Answer;
use super::client::Client;
use super::wire::{self, Endpoint, Mitigation, MitigationList, NextPage, Withdraw};
use crate::config::Config;
use crate::error::Error;
use crate::fastnetmon::notice::Notice;
use crate::log::Log;
use crate::time;
use std::time::{SystemTime, UNIX_EPOCH};

/// prefixd caps `limit` here; a full page means there may be more.
const PAGE: usize = 1000;
/// Bounds the "full page, look again" loop even against a prefixd that misbehaves.
const MAX_PAGES: usize = 50;

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

/// Why a FastNetMon unban withdraws: the words before the marker in `reason`.
pub fn unban_reason(notice: &Notice) -> String {
    format!(
        "FastNetMon unban for {} (direction={})",
        notice.victim_ip, notice.direction
    )
}

/// The withdrawal's body: `why`, then our marker naming this host and the victim.
pub fn withdraw_body(cfg: &Config, why: &str, victim_ip: &str) -> String {
    miniserde::json::to_string(&Withdraw {
        // v0.10.1 requires it; v0.19.1 ignores it.
        operator_id: cfg.operator.clone(),
        reason: format!("{why} {}", withdraw_marker(&hostname(), victim_ip)),
    })
}

/// Withdraws every active mitigation of the victim (all vectors), as the bash script does,
/// looking up to `lookups_max` times while none is active yet, each withdrawal saying `why`.
/// `not_after` (a replayed unban): leave alone the mitigations updated after it — created or
/// extended by a ban that came after FastNetMon's unban, or made by someone else since.
pub fn unban(
    client: &Client,
    cfg: &Config,
    log: &Log,
    (notice, why): (&Notice, &str),
    lookups_max: u32,
    not_after: Option<SystemTime>,
) -> Result<(), Error> {
    let ip = notice.victim_ip.to_string();
    let body = withdraw_body(cfg, why, &ip);
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
    fn a_cursor_travels_percent_encoded() {
        assert_eq!(
            page_path("192.0.2.1", "eyJ0Ijo=+/x"),
            format!("{}&cursor=eyJ0Ijo%3D%2B%2Fx", lookup_path("192.0.2.1"))
        );
    }
}
