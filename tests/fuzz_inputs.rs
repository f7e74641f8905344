//! Replays the fuzz seeds and every input the fuzzers ever found (tests/fuzz/regressions/<target>/)
//! through the fuzz targets' own checks on every `cargo test` — no nightly needed — and feeds
//! the same checks a few hundred generated inputs built from the real fixtures (proptest: a
//! failure shrinks to the smallest input that still fails).

#[path = "fuzz/checks.rs"]
mod checks;

/// Every seed and regression input of a target (a README in the folder is not an input).
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = format!("{}/tests/fuzz/{kind}/{target}", env!("CARGO_MANIFEST_DIR"));
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name() != "README" {
                out.push((
                    e.path().display().to_string(),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    assert!(!out.is_empty(), "no inputs for {target}");
    out
}

fn replay(target: &str, check: fn(&[u8])) {
    for (name, data) in inputs(target) {
        eprintln!("{name}");
        check(&data);
    }
}

#[test]
fn envfile_inputs() {
    replay("envfile", checks::envfile);
}

#[test]
fn details_inputs() {
    replay("details", checks::details);
}

#[test]
fn replies_inputs() {
    replay("replies", checks::replies);
}

use proptest::prelude::*;

/// Few cases by default so `cargo test` stays fast; `PROPTEST_CASES=100000` digs deeper.
fn cases(n: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig::with_cases(n)
}

/// Every details sample: the 1.2.9 samples, the real 1.2.4 captures, the layouts.
fn fixtures() -> &'static [Vec<u8>] {
    static ALL: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut out = Vec::new();
        for sub in ["", "/fastnetmon-1.2.4", "/layouts"] {
            for e in std::fs::read_dir(format!("{dir}{sub}")).unwrap().flatten() {
                if e.path().extension().is_some_and(|x| x == "txt") {
                    out.push(std::fs::read(e.path()).unwrap());
                }
            }
        }
        assert!(out.len() >= 16);
        out
    })
}

/// A fixture cut anywhere, with bytes (or a garbled line) spliced in anywhere.
fn details_bytes() -> impl Strategy<Value = Vec<u8>> {
    let splice = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::sample::select(vec![
            "\nAttack type: ÜDP_FLOOD\n",
            "\n192.0.2.10:53 < 198.51.100.1:123 1 bytes 18446744073709551615 packets\n",
            "\n2025-05-14 10:21:07.1 198.51.100.7:53 > 192.0.2.10:1 protocol: tcp flags: syn frag: 0  packets: 18446744073709551615 size: 1 bytes\n",
            "\nTotal incoming traffic: 99999999999999999999 mbps\n",
            "\nAttack direction: outgoing\n",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        splice,
    )
        .prop_map(|(file, cut, at, splice)| {
            let f = &fixtures()[file.index(fixtures().len())];
            let mut b = f[..cut.index(f.len() + 1)].to_vec();
            let at = at.index(b.len() + 1);
            b.splice(at..at, splice);
            b
        })
}

fn soup(words: Vec<&'static str>, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(words), 0..max).prop_map(|w| w.concat())
}

/// Well-formed rules whose conditions often hold on the samples, so that several match and
/// the order matters.
fn rules_file() -> impl Strategy<Value = String> {
    let cond = prop::sample::select(vec![
        "protocol=udp",
        "protocol=tcp",
        "sport=53",
        "sport=123",
        "dport=80",
        "dport=53",
        "type=udp_flood",
        "type=unknown",
        "contains=\"ip: \"",
        "contains=memcached",
        "pps>=0",
        "pps>=5000",
        "mbps>=0",
        "mbps>=1000",
    ]);
    let vector = prop::sample::select(vec![
        "udp_flood",
        "unknown",
        "syn_flood",
        "dns_amplification",
    ]);
    prop::collection::vec((vector, prop::collection::vec(cond, 1..3)), 0..6).prop_map(|rules| {
        rules
            .iter()
            .map(|(v, conds)| format!("{v} {}\n", conds.join(" ")))
            .collect()
    })
}

/// prefixd's answers as a server or a proxy might give them: its shapes with odd values
/// (huge, negative, fractional numbers, non-ASCII, nulls, nesting), cut anywhere.
fn answer_bytes() -> impl Strategy<Value = Vec<u8>> {
    let value = prop::sample::select(vec![
        "null",
        "true",
        "\"true\"",
        "0",
        "-3",
        "2.5",
        "1e30",
        "18446744073709551616",
        "\"\"",
        "\"accepted\"",
        "\"extended\"",
        "\"accepted_no_playbook\"",
        "\"00000000-0000-4000-8000-000000000001\"",
        "\"2026-11-30T02:00:00.123456+00:00\"",
        "\"9999-12-31T23:59:59.999999999+23:59\"",
        "\"2026-11-30T02:00:00日0Z\"",
        "\"bearer-token: x [prefixd-fastnetmon@fnm-2 unban 192.0.2.1]\"",
        "\"[prefixd-fastnetmon@ unban\"",
        "\"0.19.1\"",
        "\"v99999999999.1\"",
        "{\"a\":[1,{\"b\":null}]}",
        "[]",
    ]);
    let key = prop::sample::select(vec![
        "status",
        "mitigation_id",
        "reason",
        "retry_after_seconds",
        "next_cursor",
        "has_more",
        "version",
        "auth_mode",
        "updated_at",
        "expires_at",
        "withdrawn_at",
        "victim_ip",
        "error",
    ]);
    let object = prop::collection::vec((key.clone(), value.clone()), 0..8).prop_map(|kv| {
        let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", fields.join(","))
    });
    let list =
        (prop::collection::vec(object.clone(), 0..4), object.clone()).prop_map(|(rows, tail)| {
            let tail = tail
                .trim_start_matches('{')
                .trim_end_matches('}')
                .to_string();
            let sep = if tail.is_empty() { "" } else { "," };
            format!(
                "{{\"mitigations\":[{}],\"count\":{}{sep}{tail}}}",
                rows.join(","),
                rows.len()
            )
        });
    (
        prop_oneof![object, list],
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(text, cut, whole)| {
            let b = text.into_bytes();
            if whole {
                b
            } else {
                b[..cut.index(b.len() + 1)].to_vec()
            }
        })
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn generated_answers_pass_the_replies_checks(data in answer_bytes()) {
        checks::replies(&data);
    }

    #[test]
    fn generated_details_pass_the_details_checks(data in details_bytes()) {
        checks::details(&data);
    }

    #[test]
    fn generated_env_files_pass_the_envfile_checks(
        data in prop_oneof![
            soup(vec!["PREFIXD_API", "export ", "=", "'", "\"", "\\", "$", "$(", "`", "#", " ", "\t", "\n", "\r\n", "é", "x y", "\u{feff}"], 40)
                .prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..200),
        ],
    ) {
        checks::envfile(&data);
    }

    #[test]
    fn generated_rules_over_generated_details_pass_the_rules_checks(
        file in prop_oneof![rules_file(), soup(vec![
            "udp_flood", "unknown", "dns_amplification", "UDP", " ", "\t", "\n", "type=", "protocol=",
            "udp", "tcp", "syn_flood", "sport=", "dport=", "53", "123", "80", "443", "70000",
            "pps>=", "mbps>=", "1000", "-1", "contains=", "\"", "memcached", "\\", "#", "=", ">=", "é",
        ], 30)],
        details in details_bytes(),
    ) {
        let mut data = file.into_bytes();
        data.extend(b"\n---\n");
        data.extend(details);
        checks::rules(&data);
    }
}

/// The README's rules and the layout rules over every sample, whole: the rules check on
/// inputs known to match (and not to).
#[test]
fn documented_rules_over_every_sample() {
    let files = [
        "udp_flood protocol=udp sport=53\nsyn_flood type=syn_flood\nunknown type=ip_fragmentation\nudp_flood contains=\"memcached\"\nicmp_flood pps>=50000 mbps>=1000\n",
        "unknown protocol=udp sport=123\nsyn_flood protocol=tcp dport=80\n",
        // Overlapping: the first that matches must win.
        "dns_amplification contains=\"ip: \"\nudp_flood protocol=udp\nunknown pps>=0\n",
    ];
    for file in files {
        for f in fixtures() {
            let mut data = file.as_bytes().to_vec();
            data.extend(b"---\n");
            data.extend(f);
            checks::rules(&data);
        }
    }
}
