//! What every fuzz input must satisfy: no panic, no unbounded work, and the invariants below.
//! Shared by the cargo-fuzz targets (fuzz_targets/) and by tests/fuzz_inputs.rs, which replays
//! the seeds and every input a fuzzer ever found on each `cargo test`.

use prefixd_fastnetmon::api::{EventReply, MitigationList, Reply};
use prefixd_fastnetmon::{details, envfile, pretty, spool::Entry};

/// The env-file parser: every assignment names a valid variable.
pub fn envfile(data: &[u8]) {
    for line in envfile::parse(&String::from_utf8_lossy(data)) {
        if let envfile::Line::Assign { key, .. } = line {
            assert!(!key.is_empty() && !key.starts_with(|c: char| c.is_ascii_digit()));
        }
    }
}

/// FastNetMon's details text: the vector is always one prefixd accepts.
pub fn details(data: &[u8]) {
    let d = details::parse(&String::from_utf8_lossy(data));
    for dir in ["incoming", "outgoing", "other"] {
        for victim in ["192.0.2.10", "2001:db8::10"] {
            let v = details::vector(&d, victim.parse().unwrap(), dir);
            assert!(matches!(
                v,
                "udp_flood" | "syn_flood" | "ack_flood" | "icmp_flood" | "unknown"
            ));
        }
        let _ = details::bps(&d, dir);
    }
}

/// prefixd's replies, our spool files, the dry-run pretty-printer.
pub fn replies(data: &[u8]) {
    let reply = Reply {
        status: 200,
        body: data.to_vec(),
    };
    let _ = reply.json::<EventReply>("POST /v1/events");
    let _ = reply.json::<MitigationList>("GET /v1/mitigations");
    assert!(!reply.snippet().is_empty());
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = miniserde::json::from_str::<Entry>(s);
        let _ = pretty::json(s);
    }
}
