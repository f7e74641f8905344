//! Issue "What operators ran into": each kind of failure an operator met in production, with
//! the example they reported and other inputs of the same kind. A ban must not be lost to a
//! bad tuning value, to the size of its details, or to an answer that is not prefixd's.

mod common;

use common::server::{Behavior, Options, Server};
use common::{Sandbox, raw_details};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

const UDP: &[u8] = b"Attack type: udp_flood\nAttack protocol: udp\n";

// --- A bad tuning value stops every ban -----------------------------------------------------

#[test]
fn the_bash_scripts_tuning_values_no_longer_stop_a_ban() {
    // Both were taken by the bash script; both made every ban exit 78 and wait in the spool
    // during the attack.
    for line in ["UNBAN_QUERY_DELAY_SECONDS=0,5", "UNBAN_QUERY_RETRIES=0"] {
        let srv = Server::start();
        let sb = Sandbox::new(&srv.url);
        sb.write("env", &format!("{line}\n"));
        let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
        assert_eq!(r.code, 0, "{line}: {}", sb.log());
        assert_eq!(srv.banned_ips(), ["192.0.2.10"], "{line}");
        assert!(sb.spooled().is_empty(), "{line}");
        // Read as meant: no warning either.
        assert!(!sb.log().contains("WARN"), "{line}: {}", sb.log());
    }
}

#[test]
fn a_decimal_comma_delay_and_no_retry_shape_the_unban_as_meant() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    sb.write(
        "env",
        "UNBAN_QUERY_RETRIES=0\nUNBAN_QUERY_DELAY_SECONDS=0,5\n",
    );
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    // 0 retries: one lookup, no pause, no retry.
    assert_eq!(srv.lines().len(), 1, "{:?}", srv.lines());
    assert!(
        sb.log().contains("nothing to withdraw after 1 lookup(s)"),
        "{}",
        sb.log()
    );
    assert!(r.took.as_secs_f64() < 0.5, "{:?}", r.took);

    let sb = Sandbox::new(&srv.url);
    srv.clear();
    sb.write(
        "env",
        "UNBAN_QUERY_RETRIES=3\nUNBAN_QUERY_DELAY_SECONDS=0,25\n",
    );
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!((r.code, srv.lines().len()), (0, 3), "{}", sb.log());
    // Two pauses of 0.25 s (not 1 s, the default, nor 25 s).
    assert!((0.5..1.5).contains(&r.took.as_secs_f64()), "{:?}", r.took);
}

#[test]
fn a_bad_tuning_value_falls_back_to_its_default_with_a_warning_and_the_ban_goes_out() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    let env = sb.write(
        "env",
        "# tuned by hand\nPREFIXD_TIMEOUT=5s\nPREFIXD_RETRIES=0\nPREFIXD_SPOOL_MAX_AGE=1h\n",
    );
    let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
    assert_eq!(r.code, 0, "{}", sb.log());
    assert_eq!(srv.banned_ips(), ["192.0.2.10"]);
    assert!(sb.spooled().is_empty());
    let log = sb.log();
    for want in [
        format!(
            " WARN ban 192.0.2.10: PREFIXD_TIMEOUT=5s (from {env}:2): expected a number of seconds; using the default 5"
        ),
        format!(
            " WARN ban 192.0.2.10: PREFIXD_RETRIES=0 (from {env}:3): expected a whole number from 1 to 20; using the default 3"
        ),
        format!(
            " WARN ban 192.0.2.10: PREFIXD_SPOOL_MAX_AGE=1h (from {env}:4): expected a number of seconds; using the default 3600"
        ),
    ] {
        assert!(log.contains(&want), "{want}\n{log}");
    }
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn a_bad_rule_line_is_skipped_and_the_other_rules_still_apply() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    let rules = sb.write(
        "rules",
        "syn_flood colour=blue\nicmp_flood contains=\"magic\"\nudp_flood sport=99999\n",
    );
    sb.set("PREFIXD_VECTOR_RULES", &rules);
    let r = sb.run(
        &["192.0.2.10", "incoming", "90000", "ban"],
        Some(b"Attack type: unknown\nmagic words\n"),
    );
    assert_eq!(r.code, 0, "{}", sb.log());
    let ban = &srv.requests()[0];
    assert_eq!(common::s(ban.json().get("vector")), "icmp_flood");
    let log = sb.log();
    assert!(log.contains(&format!("rule={rules}:2")), "{log}");
    for line in [1, 3] {
        let want = format!("WARN ban 192.0.2.10: PREFIXD_VECTOR_RULES {rules}:{line}: ");
        assert!(log.contains(&want), "{want}\n{log}");
    }
    assert!(
        log.contains("; rule skipped, the other 1 rule(s) apply"),
        "{log}"
    );
}

#[test]
fn what_has_no_safe_default_still_stops_the_call_and_keeps_the_ban() {
    let srv = Server::start();
    for (var, value, says) in [
        (
            "PREFIXD_API",
            "prefixd:8080",
            "configuration error: PREFIXD_API=prefixd:8080 (from environment): must start with http:// or https://",
        ),
        (
            "PREFIXD_TOKEN_FILE",
            "/nonexistent/token",
            "configuration error: PREFIXD_TOKEN_FILE /nonexistent/token: No such file",
        ),
        (
            "PREFIXD_CA_FILE",
            "/nonexistent/ca.pem",
            "configuration error: PREFIXD_CA_FILE /nonexistent/ca.pem: No such file",
        ),
        (
            "PREFIXD_ENV_FILE",
            "/nonexistent/prefixd",
            "configuration error: env file /nonexistent/prefixd: no such file",
        ),
    ] {
        srv.clear();
        let mut sb = Sandbox::new(&srv.url);
        sb.set(var, value);
        let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
        assert_eq!(r.code, 78, "{var}: {}", sb.log());
        assert!(srv.requests().is_empty(), "{var}");
        assert_eq!(sb.spooled().len(), 1, "{var}");
        assert!(sb.log().contains(says), "{var}: {}", sb.log());
    }
}

#[test]
fn check_still_fails_on_every_bad_value_and_dry_run_shows_the_warnings() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.set("UNBAN_QUERY_RETRIES", "-1")
        .set("PREFIXD_CONFIDENCE", "90%")
        .set("PREFIXD_DEADLINE", "3,600");
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 78, "{}", r.stdout);
    for want in [
        "✘ configuration: UNBAN_QUERY_RETRIES=-1 (from environment): expected a whole number from 0 to 100; using the default 5\n",
        "✘ configuration: PREFIXD_CONFIDENCE=90% (from environment): expected a number from 0 to 1; ignored, as if unset\n",
        "✘ configuration: PREFIXD_DEADLINE=3,600 (from environment): \"3,600\" could be 3.600 (decimal comma) or 3600 (thousands): write 3.600 or 3600; using the default 20\n",
    ] {
        assert!(r.stdout.contains(want), "{want}\n{}", r.stdout);
    }

    // --dry-run: the warnings on stderr (the log) and above the request it shaped.
    let r = sb.run(
        &["--dry-run", "192.0.2.10", "incoming", "90000", "ban"],
        Some(UDP),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with(
            "# WARN UNBAN_QUERY_RETRIES=-1 (from environment): expected a whole number from 0 to 100; using the default 5\n"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\nPOST "), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("WARN ban 192.0.2.10: PREFIXD_CONFIDENCE=90% (from environment)"),
        "{}",
        r.stderr
    );
    // The table's confidence, since the bad value is ignored.
    assert!(r.stdout.contains("\"confidence\": 0.9,"), "{}", r.stdout);

    // A value with no safe default: the dry run says the real run would send nothing.
    sb.set("PREFIXD_API", "prefixd:8080");
    let r = sb.run(
        &["--dry-run", "192.0.2.10", "incoming", "90000", "ban"],
        Some(UDP),
    );
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr
            .contains("configuration error: PREFIXD_API=prefixd:8080 (from environment)")
            && r.stderr.contains("a real run sends nothing"),
        "{}",
        r.stderr
    );
    assert!(
        srv.requests()
            .iter()
            .all(|q| q.target == "/v1/health" || q.target.starts_with("/v1/mitigations?limit=1"))
    );
}

#[test]
fn an_operator_id_prefixd_would_refuse_is_replaced_by_the_default() {
    let srv = Server::start();
    let id = srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_OPERATOR", &"noc-".repeat(20));
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    let withdraw = srv
        .requests()
        .into_iter()
        .find(|q| q.target == format!("/v1/mitigations/{id}/withdraw"))
        .expect("a withdrawal");
    assert_eq!(common::s(withdraw.json().get("operator_id")), "fastnetmon");
    assert!(
        sb.log()
            .contains("longer than 64 bytes (prefixd refuses it); using the default fastnetmon"),
        "{}",
        sb.log()
    );
}

// --- An answer that is not prefixd's is taken as prefixd's verdict ---------------------------

/// nginx 1.22's page for a plain-HTTP request on its TLS port, as it sends it.
const NGINX_400: &str = "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";

fn nginx_https_port() -> Behavior {
    Behavior::page(
        "400 Bad Request",
        &[("Server", "nginx/1.22.1"), ("Content-Type", "text/html")],
        NGINX_400,
    )
}

/// Apache's page for the same mistake.
const APACHE_400: &str = "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>400 Bad Request</title>\n</head><body>\n<h1>Bad Request</h1>\n<p>Your browser sent a request that this server could not understand.<br />\nReason: You're speaking plain HTTP to an SSL-enabled server port.<br />\n Instead use the HTTPS scheme to access this URL, please.<br />\n</p>\n</body></html>\n";

/// A WAF's block page.
const CLOUDFLARE_403: &str = "<!DOCTYPE html>\n<!--[if lt IE 7]> <html class=\"no-js ie6 oldie\" lang=\"en-US\"> <![endif]-->\n<head>\n<title>Attention Required! | Cloudflare</title>\n<meta charset=\"UTF-8\" />\n</head>\n<body><div id=\"cf-wrapper\"><h1 data-translate=\"block_headline\">Sorry, you have been blocked</h1></div></body></html>\n";

/// Answers every request with `b`.
fn answered_by(b: Behavior) -> (Server, Sandbox) {
    let srv = Server::start();
    srv.always("", b);
    let sb = Sandbox::new(&srv.url);
    (srv, sb)
}

#[test]
fn nginx_on_its_tls_port_is_a_configuration_error_that_names_it_and_says_https() {
    let (srv, sb) = answered_by(nginx_https_port());
    let https = srv.url.replace("http://", "https://");
    let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
    assert_eq!(r.code, 78, "{}", sb.log());
    assert_eq!(
        srv.requests().len(),
        1,
        "no retry: another attempt gets the same page"
    );
    // Kept for after the fix, not dropped as refused.
    assert_eq!(sb.spooled().len(), 1);
    let log = sb.log();
    let line = log
        .lines()
        .find(|l| l.contains(" ERROR ban 192.0.2.10 vector="))
        .expect("the ban's line");
    assert!(
        line.ends_with(&format!(
            "-> configuration error: POST /v1/events answered 400 (HTML page \"400 The plain HTTP request was sent to HTTPS port\", Server: nginx/1.22.1), which is not prefixd's answer: PREFIXD_API={} sends plain HTTP to a TLS port; use PREFIXD_API={https}",
            srv.url
        )),
        "{line}"
    );
    assert!(
        !log.contains("<html>") && !log.contains("refused by prefixd"),
        "{log}"
    );

    // The unban is not dropped either (it replaces the ban it follows in the spool).
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 78, "{}", sb.log());
    assert!(
        matches!(&sb.spooled()[..], [u] if u.contains("-unban-192.0.2.10")),
        "{:?}",
        sb.spooled()
    );

    // --check says it in one line.
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 78, "{}", r.stdout);
    let fails: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with('✘')).collect();
    assert_eq!(fails.len(), 1, "{}", r.stdout);
    assert!(
        fails[0].contains("GET /v1/health answered 400 (HTML page \"400 The plain HTTP request was sent to HTTPS port\", Server: nginx/1.22.1)")
            && fails[0].ends_with(&format!("use PREFIXD_API={https}")),
        "{}",
        fails[0]
    );
}

#[test]
fn other_servers_on_a_tls_port_get_the_same_https_hint() {
    for (who, b) in [
        (
            "Apache",
            Behavior::page(
                "400 Bad Request",
                &[
                    ("Server", "Apache/2.4.57 (Debian)"),
                    ("Content-Type", "text/html; charset=iso-8859-1"),
                ],
                APACHE_400,
            ),
        ),
        (
            // Caddy, Traefik: Go's net/http, in plain text.
            "Go",
            Behavior::Raw(
                "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
                    .into(),
            ),
        ),
    ] {
        let (srv, sb) = answered_by(b);
        let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
        assert_eq!(r.code, 78, "{who}: {}", sb.log());
        assert_eq!(sb.spooled().len(), 1, "{who}");
        let want = format!("use PREFIXD_API={}", srv.url.replace("http://", "https://"));
        assert!(sb.log().contains(&want), "{who}: {}", sb.log());
    }
}

#[test]
fn a_proxys_own_page_is_a_configuration_error_not_prefixds_verdict() {
    let cases = [
        // (what, its answer, exit code it used to get, what the line must name)
        (
            "Cloudflare block page",
            Behavior::page(
                "403 Forbidden",
                &[
                    ("Server", "cloudflare"),
                    ("Content-Type", "text/html; charset=UTF-8"),
                    ("CF-RAY", "8d1f2a3b4c5d6e7f-FRA"),
                ],
                CLOUDFLARE_403,
            ),
            "answered 403 (HTML page \"Attention Required! | Cloudflare\", Server: cloudflare)",
        ),
        (
            "HAProxy deny, no Server header, no title",
            Behavior::page(
                "403 Forbidden",
                &[("cache-control", "no-cache"), ("content-type", "text/html")],
                "<html><body><h1>403 Forbidden</h1>\nRequest forbidden by administrative rules.\n</body></html>\n",
            ),
            "answered 403 (HTML page \"403 Forbidden\", no Server header)",
        ),
        (
            "AWS load balancer",
            Behavior::page(
                "400 Bad Request",
                &[("Server", "awselb/2.0"), ("Content-Type", "text/html")],
                "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n</body>\r\n</html>\r\n",
            ),
            "answered 400 (HTML page \"400 Bad Request\", Server: awselb/2.0)",
        ),
        (
            "nginx basic auth in front of prefixd",
            Behavior::page(
                "401 Unauthorized",
                &[
                    ("Server", "nginx"),
                    ("Content-Type", "text/html"),
                    ("WWW-Authenticate", "Basic realm=\"prefixd\""),
                ],
                "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
            ),
            "answered 401 (HTML page \"401 Authorization Required\", Server: nginx)",
        ),
        (
            "a proxy's plain-text 400",
            Behavior::page(
                "400 Bad Request",
                &[("Server", "envoy"), ("content-type", "text/plain")],
                "Bad Request",
            ),
            "answered 400 (body \"Bad Request\", Server: envoy)",
        ),
    ];
    for (what, b, names) in cases {
        let (srv, sb) = answered_by(b);
        let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
        assert_eq!(r.code, 78, "{what}: {}", sb.log());
        assert_eq!(srv.requests().len(), 1, "{what}");
        assert_eq!(sb.spooled().len(), 1, "{what}");
        let log = sb.log();
        assert!(
            log.contains(names)
                && log.contains("which is not prefixd's answer: a proxy, WAF or load balancer in front of prefixd answered instead; check PREFIXD_API="),
            "{what}: {log}"
        );
        assert!(
            !log.contains("<h1>") && !log.contains("https://"),
            "{what}: {log}"
        );
        // The unban too is kept, not dropped.
        let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
        assert_eq!(r.code, 78, "{what}: {}", sb.log());
        assert!(
            matches!(&sb.spooled()[..], [u] if u.contains("-unban-192.0.2.10")),
            "{what}: {:?}",
            sb.spooled()
        );
    }
}

#[test]
fn a_proxys_404_page_on_a_withdraw_is_not_taken_for_already_gone() {
    let srv = Server::start();
    srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    // prefixd lists the mitigation; the proxy does not route the withdrawal (nor the look).
    srv.always(
        "POST /v1/mitigations/",
        Behavior::page(
            "404 Not Found",
            &[("Server", "nginx/1.22.1"), ("Content-Type", "text/html")],
            "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n",
        ),
    );
    let sb = Sandbox::new(&srv.url);
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 78, "{}", sb.log());
    assert!(srv.active("192.0.2.10"));
    assert_eq!(sb.spooled().len(), 1);
    assert!(!sb.log().contains("already gone"), "{}", sb.log());
    assert!(
        sb.log()
            .contains("answered 404 (HTML page \"404 Not Found\", Server: nginx/1.22.1), which is not prefixd's answer"),
        "{}",
        sb.log()
    );
}

#[test]
fn prefixds_own_refusals_in_each_of_its_shapes_stay_its_verdict() {
    for (status, body, code) in [
        (
            400,
            r#"{"error":"invalid request: invalid IP address: 'x'"}"#,
            65,
        ),
        (
            422,
            "Failed to deserialize the JSON body into the target type: pps: invalid type: string \"x\", expected i64 at line 1 column 9",
            65,
        ),
        (
            400,
            "Failed to parse the request body as JSON: EOF while parsing a value at line 1 column 0",
            65,
        ),
        (
            415,
            "Expected request with `Content-Type: application/json`",
            78,
        ),
        (
            401,
            r#"{"error":"unauthorized: authentication required"}"#,
            77,
        ),
        (404, "", 78),
    ] {
        let srv = Server::start();
        srv.reply("POST /v1/events", status, body);
        let sb = Sandbox::new(&srv.url);
        let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
        assert_eq!(r.code, code, "{status} {body}: {}", sb.log());
        assert!(!sb.log().contains("not prefixd's answer"), "{}", sb.log());
    }
}

/// A port that speaks only TLS, as a TLS-only proxy does: a ClientHello gets a TLS alert
/// record; anything else is reset (`reset_plain`) or gets an alert too. With
/// `reset_plain` and `never_tls`, every connection is reset and nothing speaks TLS.
fn raw_port(reset_plain: bool, never_tls: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(64) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut first = [0u8; 1];
            if conn.read_exact(&mut first).is_err() {
                continue;
            }
            // Read what came with it, so that only linger decides how the close goes.
            std::thread::sleep(Duration::from_millis(20));
            let mut rest = [0u8; 4096];
            let _ = conn.set_nonblocking(true);
            let _ = conn.read(&mut rest);
            let _ = conn.set_nonblocking(false);
            if first[0] == 0x16 && !never_tls {
                // alert(21), TLS 1.2, length 2: fatal handshake_failure.
                let _ = conn.write_all(&[21, 3, 3, 0, 2, 2, 40]);
            } else if reset_plain || never_tls {
                let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
            } else {
                let _ = conn.write_all(&[21, 3, 3, 0, 2, 2, 50]);
            }
        }
    });
    port
}

#[test]
fn http_to_a_plain_tls_port_gets_the_https_hint_whether_reset_or_answered_in_tls() {
    // A real TLS server (the stand-in over rustls: it answers plain HTTP with an alert), a
    // TLS port that resets plain HTTP, and one that answers it with an alert.
    let tls = Server::with(Options {
        tls: true,
        ..Default::default()
    });
    let ports = [
        ("rustls", tls.addr.port()),
        ("reset", raw_port(true, false)),
        ("alert", raw_port(false, false)),
    ];
    for (what, port) in ports {
        let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
        sb.set("PREFIXD_RETRIES", "3");
        let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
        assert_eq!(r.code, 78, "{what}: {}", sb.log());
        assert_eq!(sb.spooled().len(), 1, "{what}");
        let log = sb.log();
        assert!(
            log.contains(&format!(
                "configuration error: PREFIXD_API=http://127.0.0.1:{port} sends plain HTTP to a TLS port ("
            )) && log.contains(&format!("use PREFIXD_API=https://127.0.0.1:{port}")),
            "{what}: {log}"
        );
        assert!(
            !log.contains("retrying"),
            "{what}: no retry can mend it: {log}"
        );
        let r = sb.run(&["--check"], None);
        assert_eq!(r.code, 78, "{what}: {}", r.stdout);
        assert!(
            r.stdout.lines().any(|l| l.starts_with('✘')
                && l.ends_with(&format!("use PREFIXD_API=https://127.0.0.1:{port}"))),
            "{what}: {}",
            r.stdout
        );
    }
    assert!(tls.requests().is_empty());
}

#[test]
fn a_connection_reset_by_a_port_that_does_not_speak_tls_stays_a_transient_failure() {
    let port = raw_port(true, true);
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "2");
    let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
    assert_eq!(r.code, 75, "{}", sb.log());
    assert_eq!(sb.spooled().len(), 1);
    assert!(!sb.log().contains("https://"), "{}", sb.log());
}

// --- The request size is never bounded, and a 413 loses the ban ------------------------------

/// The operators' example: 300,000 control bytes, six bytes each once JSON-escaped.
fn control_bytes_300k() -> Vec<u8> {
    [&b"Attack type: udp_flood\n"[..], &[1u8; 300_000][..]].concat()
}

/// The `raw_details.raw` prefixd received, and whether it was marked truncated.
fn raw_sent(q: &common::server::Recorded) -> (String, bool) {
    let raw = raw_details(&q.json());
    let truncated = matches!(
        raw.get("truncated"),
        Some(miniserde::json::Value::Bool(true))
    );
    (common::s(raw.get("raw")), truncated)
}

fn limited(limit: usize) -> Server {
    Server::with(Options {
        body_limit: Some(limit),
        ..Default::default()
    })
}

#[test]
fn details_that_escape_to_more_than_prefixd_takes_are_cut_and_the_ban_goes_out() {
    for (what, details) in [
        ("control bytes", control_bytes_300k()),
        // A packet dump of zeros: NUL is six bytes too.
        (
            "NUL bytes",
            [&b"Attack type: syn_flood\n"[..], &[0u8; 200_000][..]].concat(),
        ),
    ] {
        let srv = Server::start(); // prefixd's own 1 MiB limit
        let sb = Sandbox::new(&srv.url);
        let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(&details));
        assert_eq!(r.code, 0, "{what}: {}", sb.log());
        let reqs = srv.requests();
        assert_eq!(reqs.len(), 1, "{what}: one request, no 413");
        assert!(
            reqs[0].body.len() <= 1_000_000,
            "{what}: {}",
            reqs[0].body.len()
        );
        assert!(
            reqs[0].body.len() > 990_000,
            "{what}: cut no more than needed"
        );
        let (raw, truncated) = raw_sent(&reqs[0]);
        assert!(truncated, "{what}");
        assert!(
            String::from_utf8_lossy(&details).starts_with(&raw),
            "{what}: the start of the details is kept"
        );
        assert!(sb.spooled().is_empty(), "{what}");
        let log = sb.log();
        assert!(
            log.contains(&format!(
                "WARN ban 192.0.2.10: raw_details.raw cut to {} of {} bytes (marked truncated): with all of them the request would be ",
                raw.len(),
                details.len().min(262_144)
            )) && log.contains("bytes, over the 1000000 sent at most"),
            "{what}: {log}"
        );
        // --dry-run shows the request as it would go, cut, and says so.
        let r = sb.run(
            &["--dry-run", "192.0.2.10", "incoming", "90000", "ban"],
            Some(&details),
        );
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        assert!(
            r.stdout
                .contains(&format!("\n# raw_details.raw cut to {} of ", raw.len())),
            "{what}: {}",
            &r.stdout[..r.stdout.len().min(2000)]
        );
    }
}

#[test]
fn a_proxy_with_a_lower_limit_gets_the_ban_again_at_once_with_less_of_its_details() {
    // (limit, details, requests, what the ban that got through carried)
    let plain_100k = [&b"Attack type: udp_flood\n"[..], &[b'a'; 100_000][..]].concat();
    for (limit, details, requests, raw_left) in [
        (64 * 1024, control_bytes_300k(), 2, true),
        (16 * 1024, plain_100k.clone(), 2, true),
        (2 * 1024, plain_100k, 3, false),
    ] {
        let srv = limited(limit);
        let sb = Sandbox::new(&srv.url);
        let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(&details));
        assert_eq!(r.code, 0, "{limit}: {}", sb.log());
        let reqs = srv.requests();
        assert_eq!(reqs.len(), requests, "{limit}");
        let last = reqs.last().unwrap();
        assert!(last.body.len() <= 8 * 1024, "{limit}: {}", last.body.len());
        let (raw, truncated) = raw_sent(last);
        assert!(truncated, "{limit}");
        assert_eq!(!raw.is_empty(), raw_left, "{limit}: {raw:?}");
        assert!(raw_left || last.body.len() < 1024, "{limit}");
        assert!(srv.active("192.0.2.10"), "{limit}");
        assert!(sb.spooled().is_empty(), "{limit}");
        let log = sb.log();
        assert!(
            log.contains(&format!(
                "WARN ban 192.0.2.10: POST /v1/events answered 413 (length limit exceeded) for a request of {} bytes; sending the ban again at once with raw_details.raw cut to fit a request of 8192 bytes",
                reqs[0].body.len()
            )),
            "{limit}: {log}"
        );
        if !raw_left {
            assert!(
                log.contains("; sending the ban again at once with no raw_details.raw"),
                "{log}"
            );
        }
        assert!(
            log.contains(" INFO ban 192.0.2.10 vector=udp_flood"),
            "{log}"
        );
    }
}

#[test]
fn a_limit_below_even_a_bare_ban_is_a_configuration_error_and_the_ban_is_kept() {
    let srv = limited(100);
    let sb = Sandbox::new(&srv.url);
    let r = sb.run(
        &["192.0.2.10", "incoming", "90000", "ban"],
        Some(&control_bytes_300k()),
    );
    assert_eq!(r.code, 78, "{}", sb.log());
    assert_eq!(srv.requests().len(), 3);
    assert_eq!(sb.spooled().len(), 1);
    assert!(
        sb.log()
            .contains("configuration error: POST /v1/events answered 413 (length limit exceeded) even for the ban without its details ("),
        "{}",
        sb.log()
    );
}

#[test]
fn a_kept_ban_with_large_details_is_delivered_by_the_flush_within_the_limit() {
    let dead = common::dead_port();
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{}", dead.port));
    sb.set("PREFIXD_RETRIES", "1");
    let r = sb.run(
        &["192.0.2.10", "incoming", "90000", "ban"],
        Some(&control_bytes_300k()),
    );
    assert_eq!(r.code, 75, "{}", sb.log());
    assert_eq!(sb.spooled().len(), 1);
    // prefixd comes back behind a proxy that takes 64 KiB at most.
    let srv = dead.revive(Options {
        body_limit: Some(64 * 1024),
        ..Default::default()
    });
    let r = sb.run(&["--flush"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    assert!(sb.spooled().is_empty());
    let bans: Vec<_> = srv
        .requests()
        .into_iter()
        .filter(|q| q.target == "/v1/events")
        .collect();
    assert_eq!(bans.len(), 2, "{:?}\n{}", srv.lines(), sb.log());
    let (_, truncated) = raw_sent(&bans[1]);
    assert!(truncated);
    assert!(srv.active("192.0.2.10"));
}
