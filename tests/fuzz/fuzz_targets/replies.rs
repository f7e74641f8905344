#![no_main]
//! prefixd's replies and our spool files, parsed from any bytes: no panic, no unbounded work.
use libfuzzer_sys::fuzz_target;
use prefixd_fastnetmon::api::{EventReply, MitigationList, Reply};
use prefixd_fastnetmon::spool::Entry;

fuzz_target!(|data: &[u8]| {
    let reply = Reply { status: 200, body: data.to_vec() };
    let _ = reply.json::<EventReply>("POST /v1/events");
    let _ = reply.json::<MitigationList>("GET /v1/mitigations");
    let _ = reply.snippet();
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = miniserde::json::from_str::<Entry>(s);
        let _ = prefixd_fastnetmon::pretty::json(s);
    }
});
