//! Replays the fuzz seeds and every input the fuzzers ever found (tests/fuzz/regressions/<target>/)
//! through the fuzz targets' own checks on every `cargo test` — no nightly needed.

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
