#![no_main]
//! FastNetMon details text → vector and bps on any bytes: no panic, and the vector is always
//! one prefixd accepts.
use libfuzzer_sys::fuzz_target;
use prefixd_fastnetmon::details::{bps, parse, vector};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let d = parse(&text);
    for dir in ["incoming", "outgoing", "other"] {
        for victim in ["192.0.2.10", "2001:db8::10"] {
            let v = vector(&d, victim.parse().unwrap(), dir);
            assert!(matches!(v, "udp_flood" | "syn_flood" | "ack_flood" | "icmp_flood" | "unknown"));
        }
        let _ = bps(&d, dir);
    }
});
