//! Parity with what operators already trust: the token never leaves the process, URLs are
//! read as ureq reads them, env files as the shell reads them, the log goes where it says,
//! and the 422 fallback fires only when it can help. The built binary against the loopback
//! prefixd stand-in.

mod common;

use common::server::{Options, Server, TLS_DIR};
use common::{Sandbox, s};
use std::os::unix::ffi::OsStrExt;

const TOKEN: &str = "s3cr3t-Token-4u7h";
const UDP: &[u8] = b"Attack type: udp_flood\nAttack protocol: udp\n";

/// A body that echoes the request's headers, as some proxies' error pages do.
fn reflected() -> String {
    format!(r#"{{"error":"bad request","headers":"Authorization: Bearer {TOKEN}"}}"#)
}

fn assert_no_token(what: &str, texts: &[&str]) {
    for t in texts {
        assert!(!t.contains(TOKEN), "{what}: the token leaked: {t}");
    }
}

#[test]
fn the_token_never_leaves_the_process_even_when_a_server_reflects_it() {
    let srv = Server::with(Options {
        token: Some(TOKEN.into()),
        ..Default::default()
    });
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_TOKEN", TOKEN).set("PREFIXD_RETRIES", "1");

    // A ban refused with the token in the body.
    srv.reply("POST /v1/events", 400, &reflected());
    let r = sb.run(&["192.0.2.10"], Some(UDP));
    assert_eq!(r.code, 65, "{}", sb.log());
    assert!(sb.log().contains("<redacted>"), "{}", sb.log());
    assert_no_token("ban", &[&sb.log(), &r.stdout, &r.stderr]);

    // An unban whose lookup is refused the same way.
    srv.reply("GET /v1/mitigations", 400, &reflected());
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 65, "{}", sb.log());
    assert_no_token("unban", &[&sb.log(), &r.stdout, &r.stderr]);

    // A ban kept after a reflected 503, a flush that meets another, --status after both.
    srv.reply("POST /v1/events", 503, &reflected());
    assert_eq!(sb.run(&["192.0.2.11"], Some(UDP)).code, 75);
    srv.reply("POST /v1/events", 503, &reflected());
    let flush = sb.run(&["--flush"], None);
    assert_eq!(flush.code, 75, "{}", sb.log());
    let status = sb.run(&["--status"], None);
    assert_eq!(status.code, 75);
    assert!(status.stdout.contains("<redacted>"), "{}", status.stdout);
    let spooled: Vec<String> = sb
        .spooled()
        .iter()
        .map(|n| std::fs::read_to_string(sb.dir.join("spool").join(n)).unwrap())
        .collect();
    assert_no_token(
        "flush",
        &[
            &sb.log(),
            &flush.stdout,
            &flush.stderr,
            &status.stdout,
            &status.stderr,
        ],
    );
    assert_no_token(
        "spool file",
        &spooled.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    // --check, whose ✘ lines show prefixd's answer.
    srv.reply("GET /v1/health", 400, &reflected());
    let check = sb.run(&["--check"], None);
    assert_ne!(check.code, 0);
    assert!(check.stdout.contains("✘ GET "), "{}", check.stdout);
    assert_no_token("--check", &[&check.stdout, &check.stderr, &sb.log()]);
}

#[test]
fn a_token_given_as_the_token_file_is_never_echoed() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_TOKEN_FILE", TOKEN);
    let r = sb.run(&["192.0.2.10"], Some(UDP));
    assert_eq!(r.code, 78);
    assert!(
        sb.log()
            .contains("PREFIXD_TOKEN_FILE holds what looks like a token, not a path")
    );
    let check = sb.run(&["--check"], None);
    assert_eq!(check.code, 78);
    assert!(
        check.stdout.contains("PREFIXD_TOKEN_FILE = (set, "),
        "{}",
        check.stdout
    );
    let debug = sb.run(&["-v", "192.0.2.10"], Some(UDP));
    assert_no_token(
        "token file",
        &[
            &sb.log(),
            &r.stdout,
            &r.stderr,
            &check.stdout,
            &check.stderr,
            &debug.stderr,
        ],
    );
}

#[test]
fn urls_are_read_as_ureq_reads_them() {
    let srv = Server::start();
    for bad in [
        "http://127.0.0.1:99999",
        "http://prefixd:abc",
        "http://[::1",
    ] {
        let sb = {
            let mut sb = Sandbox::new(bad);
            sb.set("PREFIXD_RETRIES", "1");
            sb
        };
        let r = sb.run(&["192.0.2.10"], Some(UDP));
        assert_eq!(r.code, 78, "{bad}: {}", sb.log());
        assert!(
            sb.log().contains(&format!(
                "configuration error: PREFIXD_API={bad} (from environment): "
            )),
            "{}",
            sb.log()
        );
        assert_eq!(sb.spooled().len(), 1, "kept for after the fix");
    }
    assert!(srv.requests().is_empty());
    // The scheme in any case.
    let tls = Server::with(Options {
        tls: true,
        ..Default::default()
    });
    let mut sb = Sandbox::new(&tls.url.replace("https://", "HTTPS://"));
    sb.set("PREFIXD_CA_FILE", &format!("{TLS_DIR}/ca.pem"));
    assert_eq!(sb.run(&["192.0.2.10"], Some(UDP)).code, 0, "{}", sb.log());
    assert_eq!(tls.banned_ips(), ["192.0.2.10"]);
}

#[test]
fn an_env_file_is_read_as_the_shell_reads_it() {
    let srv = Server::start();
    let mut sb = Sandbox::new("http://127.0.0.1:9");
    sb.unset("PREFIXD_API");
    // A byte-order mark before line 1, and `export NAME` without a value.
    sb.write(
        "env",
        &format!("\u{feff}PREFIXD_API={}\nexport PREFIXD_API\n", srv.url),
    );
    assert_eq!(sb.run(&["192.0.2.10"], Some(UDP)).code, 0, "{}", sb.log());
    assert_eq!(srv.banned_ips(), ["192.0.2.10"]);
    assert!(!sb.log().contains("WARN"), "{}", sb.log());
}

#[test]
fn only_syslog_or_syslog_with_a_path_is_syslog() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_LOG", "syslog-fnm.log");
    let mut c = common::command(&["192.0.2.10"]);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(&sb.dir);
    for (k, v) in &sb.env {
        c.env(k, v);
    }
    let out = c.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let file = std::fs::read_to_string(sb.dir.join("syslog-fnm.log")).expect("a file");
    assert!(file.contains("INFO ban 192.0.2.10 vector="), "{file}");
}

#[test]
fn a_syslog_that_will_not_take_a_line_sends_it_to_stderr() {
    use std::os::unix::net::UnixDatagram;
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    let path = sb.path("log.sock");
    let _daemon = UnixDatagram::bind(&path).unwrap();
    // A daemon that stopped reading: its queue is full (bounded fill).
    let filler = UnixDatagram::unbound().unwrap();
    filler.connect(&path).unwrap();
    filler.set_nonblocking(true).unwrap();
    let mut queued = 0;
    while queued < 100_000 && filler.send(&[b'x'; 512]).is_ok() {
        queued += 1;
    }
    assert!(queued < 100_000, "the queue never filled");
    sb.set("PREFIXD_LOG", &format!("syslog:{path}"));
    let r = sb.run(&["192.0.2.10"], Some(UDP));
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("syslog send failed"), "{}", r.stderr);
    assert!(
        r.stderr.contains("INFO ban 192.0.2.10 vector="),
        "{}",
        r.stderr
    );
    assert!(r.took < std::time::Duration::from_secs(5), "{:?}", r.took);
}

#[test]
fn a_guardrail_422_is_not_retried_with_the_built_in_vector() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    let rules = sb.write("rules", "ack_flood protocol=udp\n");
    sb.set("PREFIXD_VECTOR_RULES", &rules);
    srv.reply(
        "POST /v1/events",
        422,
        r#"{"error":"guardrail violation: IP 192.0.2.10/32 is safelisted"}"#,
    );
    let r = sb.run(&["192.0.2.10"], Some(UDP));
    assert_eq!(r.code, 65, "{}", sb.log());
    let sent: Vec<String> = srv
        .requests()
        .iter()
        .map(|q| s(q.json().get("vector")))
        .collect();
    assert_eq!(
        sent,
        ["ack_flood"],
        "one POST: the guardrail refuses any vector"
    );
    assert!(
        !sb.log().contains("sending the built-in vector"),
        "{}",
        sb.log()
    );
    assert!(sb.log().contains("is safelisted"), "{}", sb.log());
}

#[test]
fn a_non_utf8_argument_after_double_dash_is_a_usage_error() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    let mut c = common::command(&["--"]);
    c.arg(std::ffi::OsStr::from_bytes(b"192.0.2.\xff"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    for (k, v) in &sb.env {
        c.env(k, v);
    }
    let out = c.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not valid UTF-8"));
    assert!(
        sb.log()
            .contains("argument \"192.0.2.\\xFF\" is not valid UTF-8"),
        "{}",
        sb.log()
    );
    assert!(srv.requests().is_empty());
}
