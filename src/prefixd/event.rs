//! The ban event a notice becomes: `POST /v1/events`'s body, with a fresh `event_id` per
//! attempt, its details cut to fit prefixd's body limit (or a proxy's) and never a reason
//! to lose the ban. Pure but for the randomness of the id.

use super::wire::Event;
use crate::error::Error;
use crate::fastnetmon::notice::Notice;
use crate::fastnetmon::vector::VectorChoice;
use crate::{time, uuid};
use miniserde::json::{Number, Object, Value};

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
        top_dst_ports: choice.ports.field(),
        raw_details: Value::Object(raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastnetmon::vector::choose_vector;

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
}
