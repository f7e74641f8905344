//! Operators see the queue: `--status` lists what waits and why; PREFIXD_METRICS keeps a
//! node_exporter textfile with running totals. The built binary against the loopback prefixd
//! stand-in.

mod common;

use common::server::{Behavior, Server};
use common::{Sandbox, sample};

const UDP: &[u8] = b"Attack type: udp_flood\nAttack protocol: udp\n";

fn notices(text: &str, action: &str, result: &str) -> f64 {
    sample(
        text,
        &format!("prefixd_fastnetmon_notices_total{{action=\"{action}\",result=\"{result}\"}}"),
    )
}

fn with_metrics(srv: &Server) -> (Sandbox, String) {
    let mut sb = Sandbox::new(&srv.url);
    let m = sb.path("prefixd_fastnetmon.prom");
    sb.set("PREFIXD_METRICS", &m).set("PREFIXD_RETRIES", "1");
    (sb, m)
}

#[test]
fn status_of_an_empty_spool_exits_0() {
    let srv = Server::start();
    let (sb, _) = with_metrics(&srv);
    let r = sb.run(&["--status"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("nothing waiting in "), "{}", r.stdout);
    assert!(
        r.stdout.contains("no delivery recorded yet"),
        "{}",
        r.stdout
    );
    assert!(srv.requests().is_empty(), "--status sends nothing");
    assert_eq!(sb.run(&["192.0.2.5"], Some(UDP)).code, 0);
    let r = sb.run(&["--status"], None);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("; last delivery 20"), "{}", r.stdout);
    assert!(r.stdout.contains("s ago)"), "{}", r.stdout);
}

#[test]
fn status_lists_a_kept_unban_with_its_error_and_exits_75() {
    let srv = Server::start();
    let stuck = srv.add_mitigation("203.0.113.12", "udp_flood", "active");
    srv.always(
        &format!("POST /v1/mitigations/{stuck}/withdraw"),
        Behavior::Reply {
            status: 500,
            body: String::new(),
        },
    );
    let (sb, _) = with_metrics(&srv);
    assert_eq!(
        sb.run(&["203.0.113.12", "incoming", "0", "unban"], None)
            .code,
        75
    );
    assert_eq!(
        sb.run(&["203.0.113.12"], Some(UDP)).code,
        75,
        "{}",
        sb.log()
    );
    srv.clear();
    let r = sb.run(&["--status"], None);
    assert_eq!(r.code, 75, "{}", r.stdout);
    assert!(srv.requests().is_empty(), "--status sends nothing");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with("unban 203.0.113.12 "), "{}", lines[0]);
    assert!(
        lines[0].contains("s  2 attempts  not delivered: POST "),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with("HTTP 500: (empty body)"), "{}", lines[0]);
    assert!(lines[1].starts_with("ban   203.0.113.12 "), "{}", lines[1]);
    assert!(
        lines[1].ends_with("queued behind an earlier notice of 203.0.113.12"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("2 notice(s) waiting in "),
        "{}",
        lines[2]
    );
    assert!(lines[2].contains(", oldest "), "{}", lines[2]);
    let v = sb.run(&["-v", "--status"], None);
    assert!(
        v.stdout.contains("-unban-203.0.113.12.notice]"),
        "{}",
        v.stdout
    );
    // Read-only: nothing changed in the spool.
    assert_eq!(sb.spooled().len(), 2);
}

#[test]
fn status_is_a_configuration_error_with_a_bad_variable() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    // A bad tuning value falls back to its default, as in every run (--check fails on it).
    sb.set("PREFIXD_SPOOL_MAX_AGE", "soon");
    assert_eq!(sb.run(&["--status"], None).code, 0, "{}", sb.log());
    assert!(sb.log().contains("using the default 3600"), "{}", sb.log());
    // What has no safe default is a configuration error.
    sb.set("PREFIXD_API", "localhost:8080");
    assert_eq!(sb.run(&["--status"], None).code, 78);
}

#[test]
fn metrics_count_every_fate_and_survive_across_runs() {
    let srv = Server::start();
    let (sb, m) = with_metrics(&srv);
    let read = || std::fs::read_to_string(&m).expect("metrics file written");
    assert_eq!(sb.run(&["192.0.2.1"], Some(UDP)).code, 0);
    srv.reply(
        "POST /v1/events",
        422,
        r#"{"error":"guardrail violation: IP 192.0.2.2/32 is safelisted"}"#,
    );
    assert_eq!(sb.run(&["192.0.2.2"], Some(UDP)).code, 65);
    srv.reply("POST /v1/events", 503, "");
    assert_eq!(sb.run(&["192.0.2.3"], Some(UDP)).code, 75);
    let text = read();
    assert_eq!(notices(&text, "ban", "delivered"), 1.0);
    assert_eq!(notices(&text, "ban", "refused"), 1.0);
    assert_eq!(notices(&text, "ban", "kept"), 1.0);
    assert_eq!(sample(&text, "prefixd_fastnetmon_spool_notices"), 1.0);
    assert!(sample(&text, "prefixd_fastnetmon_spool_oldest_age_seconds") >= 0.0);
    assert!(sample(&text, "prefixd_fastnetmon_last_delivery_timestamp_seconds") > 1.7e9);
    assert_eq!(
        sample(&text, "prefixd_fastnetmon_request_duration_seconds_count"),
        3.0,
        "{text}"
    );
    assert!(text.contains("# TYPE prefixd_fastnetmon_notices_total counter\n"));
    assert!(text.contains("# TYPE prefixd_fastnetmon_request_duration_seconds histogram\n"));

    // The unban drops the kept ban (superseded) and is delivered itself.
    assert_eq!(
        sb.run(&["192.0.2.3", "incoming", "0", "unban"], None).code,
        0
    );
    let text = read();
    assert_eq!(notices(&text, "ban", "dropped"), 1.0, "{text}");
    assert_eq!(notices(&text, "unban", "delivered"), 1.0);
    assert_eq!(
        notices(&text, "ban", "delivered"),
        1.0,
        "totals survive across runs"
    );
    assert_eq!(sample(&text, "prefixd_fastnetmon_spool_notices"), 0.0);
    assert_eq!(
        sample(&text, "prefixd_fastnetmon_spool_oldest_age_seconds"),
        0.0
    );
    // --status says when prefixd last took a notice.
    assert!(
        sb.run(&["--status"], None)
            .stdout
            .contains("last delivery ")
    );
}

#[test]
fn a_metrics_file_that_cannot_be_written_is_only_a_warning() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_METRICS", "/proc/prefixd_fastnetmon.prom");
    assert_eq!(sb.run(&["192.0.2.9"], Some(UDP)).code, 0);
    assert_eq!(srv.banned_ips(), ["192.0.2.9"]);
    assert!(
        sb.log()
            .contains("WARN ban 192.0.2.9: metrics not written: /proc/"),
        "{}",
        sb.log()
    );
}

#[test]
fn two_hundred_concurrent_bans_count_exactly_two_hundred() {
    let srv = Server::start();
    let (sb, m) = with_metrics(&srv);
    assert_eq!(sb.run(&["198.18.9.1"], Some(UDP)).code, 0);
    let before = notices(&std::fs::read_to_string(&m).unwrap(), "ban", "delivered");
    let children: Vec<_> = (0..200)
        .map(|i| {
            let ip = format!("198.18.{}.{}", 10 + i / 100, i % 100 + 1);
            sb.spawn(&[&ip, "incoming", "1000", "ban"], UDP)
        })
        .collect();
    for c in children {
        assert_eq!(c.wait_with_output().unwrap().status.code(), Some(0));
    }
    let text = std::fs::read_to_string(&m).unwrap();
    assert_eq!(
        notices(&text, "ban", "delivered"),
        before + 200.0,
        "{}",
        sb.log()
    );
    assert_eq!(srv.banned_ips().len(), 201);
    assert!(!sb.log().contains("metrics not written"), "{}", sb.log());
}

/// `promtool check metrics` (Debian's prometheus package) on a file with every series in use.
#[test]
#[ignore = "needs promtool (Debian's prometheus): `make test` installs it and runs this"]
fn the_metrics_file_passes_promtool() {
    let srv = Server::start();
    let (sb, m) = with_metrics(&srv);
    assert_eq!(sb.run(&["192.0.2.1"], Some(UDP)).code, 0);
    srv.reply("POST /v1/events", 503, "");
    assert_eq!(sb.run(&["192.0.2.3"], Some(UDP)).code, 75);
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&m).unwrap())
        .output()
        .expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}");
    assert!(said.trim().is_empty(), "promtool has remarks: {said}");

    // The alert rules the README shows, as shipped.
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/prometheus/prefixd-fastnetmon.rules.yml"
    );
    let out = std::process::Command::new("promtool")
        .args(["check", "rules", rules])
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
