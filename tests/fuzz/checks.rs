//! What every fuzz input must satisfy: no panic, no unbounded work, and the properties below,
//! each of which a wrong parser or printer would break. Shared by the cargo-fuzz targets
//! (fuzz_targets/) and by tests/fuzz_inputs.rs, which replays the seeds and every input a
//! fuzzer ever found on each `cargo test`, and feeds each check generated inputs (proptest).
//! `rules` has no fuzz target yet: only the generated inputs drive it.

use miniserde::json::{self, Value};
use prefixd_fastnetmon::action::Action;
use prefixd_fastnetmon::config::envfile;
use prefixd_fastnetmon::fastnetmon::notice::{Notice, RawDetails};
use prefixd_fastnetmon::fastnetmon::{details, ports, rules, vector};
use prefixd_fastnetmon::prefixd::reply::Reply;
use prefixd_fastnetmon::prefixd::wire::{BanOutcome, EventReply, Health, MitigationList, NextPage};
use prefixd_fastnetmon::prefixd::{event, unban};
use prefixd_fastnetmon::{pretty, spool::queue::Entry};

/// The env-file parser: a parsed value written back as a double-quoted assignment (escaping
/// what the format escapes) parses to the same key and value.
pub fn envfile(data: &[u8]) {
    for line in envfile::parse(&String::from_utf8_lossy(data)) {
        let envfile::Line::Assign { key, value, .. } = line else {
            continue;
        };
        let quoted: String = value
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' | '$' | '`' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let again = envfile::parse(&format!("{key}=\"{quoted}\"\n"));
        match again.as_slice() {
            [
                envfile::Line::Assign {
                    key: k, value: v, ..
                },
            ] => {
                assert_eq!((k, v), (&key, &value), "{quoted:?}");
            }
            other => panic!("{key}={value:?} written back as {quoted:?} parses as {other:?}"),
        }
    }
}

/// top_dst_ports: ascending, at most prefixd's max_ports, each a port the attack's records of
/// the vector's protocol go to; none for a vector prefixd builds no port rule for.
fn ports_hold(choice: &vector::VectorChoice) {
    let sent_ports = &choice.ports.sent;
    assert!(sent_ports.len() <= ports::MAX_PORTS, "{sent_ports:?}");
    assert!(sent_ports.windows(2).all(|w| w[0] < w[1]), "{sent_ports:?}");
    let protocol = ports::port_rule_protocol(&choice.vector);
    assert!(protocol.is_some() || sent_ports.is_empty());
    for p in sent_ports {
        assert!(
            choice
                .attack
                .samples
                .iter()
                .any(|s| s.port == *p && s.protocol == protocol),
            "{p} in {:?}",
            choice.attack
        );
    }
    if let Some((hit, all)) = ports::matched(&choice.attack, protocol, sent_ports) {
        assert!(hit <= all);
    }
}

/// FastNetMon's details text: the ban event built from it is JSON whose `raw` is the text and
/// whose vector is the one chosen; bps is a whole number of Mbit/s.
pub fn details(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let d = details::parse(&text);
    for direction in ["incoming", "outgoing", "other"] {
        if let Some(bps) = details::bps(&d, direction) {
            assert!(bps >= 0 && bps % 1_000_000 == 0, "{bps}");
        }
    }
    let n = ban("2001:db8::10", &text);
    assert_eq!(n.action, Action::Ban);
    // The spool's copy is the same notice.
    assert_eq!(Notice::from_entry(&n.entry()).as_ref(), Ok(&n));
    let choice = vector::choose_vector(&[], &n, None);
    assert!(
        (0.5..=1.0).contains(&choice.confidence),
        "every detected attack reaches prefixd's shipped threshold"
    );
    assert_eq!(choice.vector, choice.builtin);
    ports_hold(&choice);
    // The seeds' floods are IPv4 (192.0.2.10's among them): their ports too.
    ports_hold(&vector::choose_vector(&[], &ban("192.0.2.10", &text), None));
    let (event, cut) = event::ban_event(&n, false, &choice, event::MAX_REQUEST_BODY).unwrap();
    let sent = json::to_string(&event);
    assert!(sent.len() <= event::MAX_REQUEST_BODY, "{}", sent.len());
    let Ok(Value::Object(body)) = json::from_str::<Value>(&sent) else {
        panic!("not JSON: {sent}");
    };
    assert!(matches!(body.get("vector"), Some(Value::String(v)) if *v == choice.vector));
    let want_ports = choice
        .ports
        .field()
        .map_or_else(|| "null".to_string(), |p| json::to_string(&p));
    assert_eq!(
        body.get("top_dst_ports").map(json::to_string).as_deref(),
        Some(want_ports.as_str())
    );
    let Some(Value::Object(raw)) = body.get("raw_details") else {
        panic!("no raw_details: {sent}");
    };
    match cut {
        None => assert!(matches!(raw.get("raw"), Some(Value::String(r)) if *r == text)),
        Some(c) => assert!(
            matches!(raw.get("raw"), Some(Value::String(r)) if text.starts_with(r.as_str()) && r.len() == c.kept)
        ),
    }
}

/// FastNetMon's `ban` call for `ip` with these details, as the binary builds it.
fn ban(ip: &str, text: &str) -> Notice {
    let (n, _) = Notice::parse(ip, Some("incoming"), Some("1000"), Some("ban")).unwrap();
    let received = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_830_000_000);
    n.with_details(
        RawDetails {
            text: text.to_string(),
            truncated: false,
        },
        received,
    )
}

/// Custom vector rules over FastNetMon's details; the input is a rules file, a `---` line,
/// then the details. A malformed file's errors each name the file and a line in it. A rules
/// file that parses: the vector sent is the built-in one (a vector prefixd knows) when no rule
/// matches, else that of the first rule that matches on its own, and the event carries it.
pub fn rules(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let (file, text) = input.split_once("\n---\n").unwrap_or((&input, ""));
    let lines = file.lines().count().max(1);
    let rules = match rules::parse("rules", file) {
        Ok((rules, _)) => rules,
        Err(errors) => {
            for e in errors {
                let n: usize = e
                    .strip_prefix("rules:")
                    .and_then(|r| r.split(':').next()?.parse().ok())
                    .unwrap_or_else(|| panic!("{e}"));
                assert!((1..=lines).contains(&n), "{e}");
            }
            return;
        }
    };
    let n = ban("192.0.2.10", text);
    let choice = vector::choose_vector(&rules, &n, None);
    assert!(rules::KNOWN_VECTORS.contains(&choice.builtin));
    let parsed = details::parse(text);
    let facts = rules::Facts {
        details: &parsed,
        text,
        pps: n.pps,
        mbps: details::mbps(&parsed, &n.direction),
    };
    let alone = rules
        .iter()
        .position(|r| rules::first_match(std::slice::from_ref(r), &facts).is_some());
    match (&choice.rule, alone) {
        (None, None) => assert_eq!(choice.vector, choice.builtin),
        (Some(origin), Some(i)) => {
            assert_eq!(*origin, rules[i].origin);
            assert_eq!(choice.vector, rules[i].vector);
        }
        (chosen, first) => {
            panic!("chose {chosen:?}, but the first rule that matches alone is {first:?}")
        }
    }
    let (event, _) = event::ban_event(&n, false, &choice, event::MAX_REQUEST_BODY).unwrap();
    assert_eq!(event.vector, choice.vector);
}

/// prefixd's replies, our spool files, the dry-run pretty-printer: a reply's snippet stays one
/// bounded piece of text; a spool file that parses writes back to the same notice; pretty
/// JSON is the same JSON.
pub fn replies(data: &[u8]) {
    let reply = Reply {
        status: 429,
        body: data.to_vec(),
        retry_after_header: None,
        server: None,
        content_type: Some("text/html".into()),
    };
    if let Some(wait) = reply.retry_after() {
        let secs = wait.as_secs();
        assert!(
            (1..=60).contains(&secs) && wait.subsec_nanos() == 0,
            "{wait:?}"
        );
    }
    if let Ok(r) = reply.json::<EventReply>("POST /v1/events") {
        // A mitigation only with an id prefixd gave; anything else is held, with words.
        match r.outcome("udp_flood") {
            BanOutcome::Mitigated(id) => assert_eq!(Some(&id), r.mitigation_id.as_ref()),
            BanOutcome::Held(why) => assert!(!why.is_empty()),
        }
    }
    if let Ok(list) = reply.json::<MitigationList>("GET /v1/mitigations") {
        // A cursor is only followed when prefixd says there is more and gives one.
        if let NextPage::Cursor(c) = list.next_page() {
            assert!(!c.is_empty());
            assert!(matches!(list.has_more, Some(Value::Bool(true))));
        }
        for m in &list.mitigations {
            for t in [&m.updated_at, &m.expires_at, &m.withdrawn_at]
                .into_iter()
                .flatten()
            {
                let _ = prefixd_fastnetmon::time::parse_rfc3339_ms(t);
            }
            if let Some(host) = m.reason.as_deref().and_then(unban::marker_host) {
                assert!(!host.is_empty() && !host.contains(' '));
            }
        }
    }
    if let Ok(h) = reply.json::<Health>("GET /v1/health") {
        let _ = h.generation();
    }
    assert!(reply.snippet().chars().count() <= 301);
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(entry) = json::from_str::<Entry>(s) {
        let again: Entry = json::from_str(&json::to_string(&entry)).unwrap();
        assert_eq!(again, entry);
    }
    let pretty = pretty::json(s);
    if let Ok(v) = json::from_str::<Value>(s) {
        let back = json::from_str::<Value>(&pretty).unwrap_or_else(|_| panic!("{pretty}"));
        assert_eq!(json::to_string(&back), json::to_string(&v));
    }
}
