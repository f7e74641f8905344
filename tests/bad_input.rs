//! Bad input everywhere — argv, stdin, env file, prefixd's replies — as one table. Every case
//! must end with its documented exit code, a log line naming the problem, no panic, and the
//! notice kept in the spool whenever it was not delivered but could be later.

mod common;

use common::server::{Behavior, Server};
use common::{BIN, Sandbox};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

const UDP: &[u8] = b"Attack type: udp_flood\nAttack protocol: udp\n";
const MITIGATION: &str = "00000000-0000-4000-8000-0000000000aa";
/// A lookup that finds nothing active.
const NONE: &str = r#"{"mitigations":[],"count":0}"#;

struct Case {
    name: &'static str,
    args: Vec<String>,
    stdin: Vec<u8>,
    /// Variables to set (value "" removes it).
    env: Vec<(&'static str, String)>,
    /// Scripted replies, queued before the run.
    replies: Vec<(&'static str, Behavior)>,
    code: i32,
    /// Must appear in the log (or stderr when the log is not reachable).
    says: &'static str,
    /// How many requests prefixd must have seen (None: any).
    requests: Option<usize>,
}

fn case(name: &'static str, args: &[&str], code: i32, says: &'static str) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: UDP.to_vec(),
        env: vec![],
        replies: vec![],
        code,
        says,
        requests: None,
    }
}

impl Case {
    fn stdin(mut self, s: impl Into<Vec<u8>>) -> Self {
        self.stdin = s.into();
        self
    }
    fn env(mut self, k: &'static str, v: &str) -> Self {
        self.env.push((k, v.to_string()));
        self
    }
    fn reply(mut self, route: &'static str, b: Behavior) -> Self {
        self.replies.push((route, b));
        self
    }
    fn status(self, route: &'static str, status: u16, body: &str) -> Self {
        self.reply(
            route,
            Behavior::Reply {
                status,
                body: body.into(),
            },
        )
    }
    fn sends(mut self, n: usize) -> Self {
        self.requests = Some(n);
        self
    }
}

fn list_of(row: &str) -> String {
    format!(r#"{{"mitigations":[{row}],"count":1}}"#)
}

fn cases(sb_dir: &str) -> Vec<Case> {
    let ban = ["192.0.2.10", "incoming", "1000", "ban"];
    let unban = ["192.0.2.10", "incoming", "1000", "unban"];
    let big_line = format!("PREFIXD_OPERATOR={}\n", "x".repeat(1024 * 1024));
    // FastNetMon's details as it writes them into a refused call: far more than a pipe holds.
    let details_300k = [UDP, &vec![b'x'; 300_000][..]].concat();
    let huge_file = "# padding\n".repeat(500_000);
    vec![
        // argv
        case("missing IP", &[], 64, "usage: missing IP").sends(0),
        // Refused before the action is known, with FastNetMon writing 300 KB of details: the
        // details are read (and thrown away), so FastNetMon's write does not fail.
        case("no arguments, 300 KB on stdin", &[], 64, "usage: missing IP")
            .stdin(details_300k.clone())
            .sends(0),
        case(
            "unknown action, 300 KB on stdin",
            &["192.0.2.10", "incoming", "90000", "partial_block"],
            64,
            "unknown ACTION \"partial_block\"",
        )
        .stdin(details_300k.clone())
        .sends(0),
        case(
            "five arguments, 300 KB on stdin",
            &["192.0.2.10", "incoming", "90000", "ban", "extra"],
            64,
            "too many arguments",
        )
        .stdin(details_300k.clone())
        .sends(0),
        case(
            "unknown flag, 300 KB on stdin",
            &["--force", "192.0.2.10", "incoming", "90000", "ban"],
            64,
            "unknown option --force",
        )
        .stdin(details_300k.clone())
        .sends(0),
        case(
            "bad IP, 300 KB on stdin",
            &["192.0.2.300", "incoming", "90000", "ban"],
            64,
            "is not a bare",
        )
        .stdin(details_300k.clone())
        .sends(0),
        case(
            "dry run without IP, 300 KB on stdin",
            &["--dry-run"],
            64,
            "usage: missing IP",
        )
        .stdin(details_300k.clone())
        .sends(0),
        case(
            "attack_details, 300 KB on stdin",
            &["192.0.2.10", "incoming", "90000", "attack_details"],
            0,
            "logged only, nothing sent",
        )
        .stdin(details_300k.clone())
        .sends(0),
        case(
            "configuration error, 300 KB on stdin",
            &ban,
            78,
            "PREFIXD_API=prefixd:8080 (from environment)",
        )
        .stdin(details_300k.clone())
        .env("PREFIXD_API", "prefixd:8080")
        .sends(0),
        case(
            "CIDR",
            &["192.0.2.10/32"],
            64,
            "is not a bare IPv4 or IPv6 address",
        )
        .sends(0),
        case(
            "octet over 255",
            &["999.1.1.1"],
            64,
            "\"999.1.1.1\" is not a bare",
        )
        .sends(0),
        case("empty IP", &[""], 64, "\"\" is not a bare").sends(0),
        case("hostname", &["prefixd.example"], 64, "is not a bare").sends(0),
        case("IPv6 zone", &["fe80::1%eth0"], 64, "is not a bare").sends(0),
        case(
            "unknown action",
            &["192.0.2.10", "incoming", "5", "block"],
            64,
            "unknown ACTION \"block\"",
        )
        .sends(0),
        case(
            "action is case-sensitive",
            &["192.0.2.10", "incoming", "5", "BAN"],
            64,
            "unknown ACTION",
        )
        .sends(0),
        case(
            "stray argument",
            &["192.0.2.10", "incoming", "5", "ban", "x"],
            64,
            "too many arguments",
        )
        .sends(0),
        case(
            "unknown flag",
            &["--force", "192.0.2.10"],
            64,
            "unknown option --force",
        )
        .sends(0),
        case(
            "flag without value",
            &["--env-file"],
            64,
            "--env-file needs a path",
        )
        .sends(0),
        case(
            "huge pps",
            &["192.0.2.10", "incoming", "99999999999999999999999", "ban"],
            0,
            "sent as null",
        )
        .sends(1),
        case(
            "negative pps",
            &["192.0.2.10", "incoming", "-5", "ban"],
            0,
            "PPS \"-5\" is not a non-negative integer",
        )
        .sends(1),
        case(
            "non-numeric pps",
            &["192.0.2.10", "incoming", "1e6", "ban"],
            0,
            "sent as null",
        )
        .sends(1),
        case(
            "odd direction",
            &["192.0.2.10", "in\u{7}coming", "5", "ban"],
            0,
            "unexpected DIRECTION \"in?coming\"",
        )
        .sends(1),
        // stdin
        case("empty stdin", &ban, 0, "vector=unknown")
            .stdin(b"".to_vec())
            .sends(1),
        case("10 MiB stdin", &ban, 0, "-> 202")
            .stdin(vec![b'A'; 10 << 20])
            .sends(1),
        case("binary stdin", &ban, 0, "-> 202")
            .stdin((0..=255u8).cycle().take(70_000).collect::<Vec<u8>>())
            .sends(1),
        case("NUL bytes", &ban, 0, "-> 202")
            .stdin(b"Attack type: udp_flood\0\0\0\n".to_vec())
            .sends(1),
        case("invalid UTF-8", &ban, 0, "vector=udp_flood")
            .stdin(b"Attack type: udp_flood\n\xc3\x28\xff\n".to_vec())
            .sends(1),
        // env file
        case("env file is a directory", &ban, 78, "not a regular file")
            .env("PREFIXD_ENV_FILE", "/tmp"),
        case("env file under a file", &ban, 78, "Not a directory")
            .env("PREFIXD_ENV_FILE", "/etc/hostname/x"),
        case("env file is binary", &ban, 78, "holds NUL bytes")
            .env("PREFIXD_ENV_FILE", &format!("{sb_dir}/binary.env")),
        case(
            "1 MiB line",
            &ban,
            0,
            "line longer than 64 KiB; line skipped",
        )
        .env("PREFIXD_ENV_FILE", &write(sb_dir, "bigline.env", &big_line))
        .sends(1),
        case("env file over 4 MiB", &ban, 78, "larger than 4 MiB")
            .env("PREFIXD_ENV_FILE", &write(sb_dir, "huge.env", &huge_file)),
        case(
            "token file missing",
            &ban,
            78,
            "PREFIXD_TOKEN_FILE /nonexistent/token: No such file",
        )
        .env("PREFIXD_TOKEN_FILE", "/nonexistent/token")
        .sends(0),
        case("token twice", &ban, 78, "are both set")
            .env("PREFIXD_TOKEN", "a")
            .env("PREFIXD_TOKEN_FILE", "/etc/hostname")
            .sends(0),
        case(
            "URL without scheme",
            &ban,
            78,
            "PREFIXD_API=prefixd:8080 (from environment): must start with http",
        )
        .env("PREFIXD_API", "prefixd:8080")
        .sends(0),
        case(
            "named env file missing",
            &ban,
            78,
            "env file /nonexistent/prefixd: no such file",
        )
        .env("PREFIXD_ENV_FILE", "/nonexistent/prefixd")
        .sends(0),
        case(
            "CA file missing",
            &ban,
            78,
            "PREFIXD_CA_FILE /nonexistent/ca.pem: No such file",
        )
        .env("PREFIXD_CA_FILE", "/nonexistent/ca.pem")
        .sends(0),
        // A bad tuning value (it has a safe default) does not stop the ban: the default is
        // used, said in a WARN naming the variable, its source and the value used. (These two
        // were configuration errors, exit 78, until operators lost bans to them.)
        case(
            "zero deadline",
            &ban,
            0,
            "PREFIXD_DEADLINE=0 (from environment): expected seconds, more than 0 up to 86400; using the default 20",
        )
        .env("PREFIXD_DEADLINE", "0")
        .sends(1),
        case(
            "unbounded retries",
            &ban,
            0,
            "PREFIXD_RETRIES=1000 (from environment): expected a whole number from 1 to 20; using the default 3",
        )
        .env("PREFIXD_RETRIES", "1000")
        .sends(1),
        case(
            "decimal comma in a delay",
            &unban,
            0,
            "nothing to withdraw after 2 lookup(s)",
        )
        .env("UNBAN_QUERY_DELAY_SECONDS", "0,05")
        .env("UNBAN_QUERY_RETRIES", "2")
        .status("GET /v1/mitigations?", 200, NONE)
        .status("GET /v1/mitigations?", 200, NONE)
        .sends(2),
        case(
            "no unban retry",
            &unban,
            0,
            "nothing to withdraw after 1 lookup(s)",
        )
        .env("UNBAN_QUERY_RETRIES", "0")
        .status("GET /v1/mitigations?", 200, NONE)
        .sends(1),
        case(
            "unban lookups not a number",
            &unban,
            0,
            "UNBAN_QUERY_RETRIES=five (from environment): expected a whole number from 0 to 100; using the default 5",
        )
        .env("UNBAN_QUERY_RETRIES", "five")
        .env("UNBAN_QUERY_DELAY_SECONDS", "0")
        .status("GET /v1/mitigations?", 200, NONE)
        .status("GET /v1/mitigations?", 200, NONE)
        .status("GET /v1/mitigations?", 200, NONE)
        .status("GET /v1/mitigations?", 200, NONE)
        .status("GET /v1/mitigations?", 200, NONE)
        .sends(5),
        case(
            "delay with a semicolon",
            &ban,
            0,
            "UNBAN_QUERY_DELAY_SECONDS=0;5 (from environment): expected a number of seconds; using the default 1",
        )
        .env("UNBAN_QUERY_DELAY_SECONDS", "0;5")
        .sends(1),
        case(
            "thousands comma in an age",
            &ban,
            0,
            "PREFIXD_SPOOL_MAX_AGE=3,600 (from environment): \"3,600\" could be 3.600 (decimal comma) or 3600 (thousands): write 3.600 or 3600; using the default 3600",
        )
        .env("PREFIXD_SPOOL_MAX_AGE", "3,600")
        .sends(1),
        case(
            "timeout in words",
            &ban,
            0,
            "PREFIXD_TIMEOUT=five seconds (from environment): expected a number of seconds; using the default 5",
        )
        .env("PREFIXD_TIMEOUT", "five seconds")
        .sends(1),
        case(
            "negative connect timeout",
            &ban,
            0,
            "PREFIXD_CONNECT_TIMEOUT=-3 (from environment)",
        )
        .env("PREFIXD_CONNECT_TIMEOUT", "-3")
        .sends(1),
        case(
            "renewal window in minutes",
            &ban,
            0,
            "PREFIXD_RENEW_BEFORE=2m (from environment): expected a number of seconds; using the default 90",
        )
        .env("PREFIXD_RENEW_BEFORE", "2m")
        .sends(1),
        case(
            "confidence as a percentage",
            &ban,
            0,
            "PREFIXD_CONFIDENCE=80% (from environment): expected a number from 0 to 1; ignored, as if unset",
        )
        .env("PREFIXD_CONFIDENCE", "80%")
        .sends(1),
        case(
            "debug in words",
            &ban,
            0,
            "PREFIXD_DEBUG=verbose (from environment): expected 1 or 0; using the default 0",
        )
        .env("PREFIXD_DEBUG", "verbose")
        .sends(1),
        case(
            "operator too long",
            &unban,
            0,
            "using the default fastnetmon",
        )
        .env("PREFIXD_OPERATOR", &"o".repeat(65))
        .status(
            "GET /v1/mitigations?",
            200,
            &list_of(&format!(
                r#"{{"mitigation_id":"{MITIGATION}","status":"active","victim_ip":"192.0.2.10"}}"#
            )),
        )
        .status("POST /v1/mitigations/", 200, "{}")
        .sends(2),
        case(
            "rules file missing",
            &ban,
            0,
            "PREFIXD_VECTOR_RULES /nonexistent/rules: No such file or directory (os error 2); no custom rules, built-in detection",
        )
        .env("PREFIXD_VECTOR_RULES", "/nonexistent/rules")
        .sends(1),
        // prefixd's replies
        case(
            "non-JSON 202",
            &ban,
            0,
            "delivered; POST /v1/events answered 202 with a body we do not understand: an HTML page without a title",
        )
        .status("POST /v1/events", 202, "<html>ok</html>")
        .sends(1),
        case(
            "empty 202",
            &ban,
            0,
            "answered 202 with a body we do not understand: (empty body)",
        )
        .status("POST /v1/events", 202, "")
        .sends(1),
        case("truncated body", &ban, 0, "body not read")
            .reply(
                "POST /v1/events",
                Behavior::Raw(
                    "HTTP/1.1 202 Accepted\r\ncontent-length: 500\r\n\r\n{\"status\":\"acc".into(),
                ),
            )
            .sends(1),
        case(
            "wrong types in reply",
            &ban,
            0,
            "with a body we do not understand",
        )
        .status(
            "POST /v1/events",
            202,
            r#"{"status":7,"mitigation_id":[1]}"#,
        )
        .sends(1),
        case("1 GB reply", &ban, 0, "body not read: reply larger than")
            .reply("POST /v1/events", Behavior::Huge(202))
            .sends(1),
        case("3xx redirect", &ban, 78, "answered 301")
            .status("POST /v1/events", 301, "")
            .sends(1),
        // A path that is not prefixd's API (PREFIXD_API with a wrong path, a proxy that does
        // not route /v1/…): the configuration is wrong, and the ban is kept for after the fix.
        case(
            "404 wrong base path",
            &ban,
            78,
            "does not lead to prefixd's API",
        )
        .status("POST /v1/events", 404, "")
        .sends(1),
        case("405 wrong method", &ban, 78, "answered 405")
            .status("POST /v1/events", 405, "")
            .sends(1),
        case("415 wrong content type", &ban, 78, "answered 415")
            .status("POST /v1/events", 415, "")
            .sends(1),
        // A 413 is about the size of the details, not the ban: it goes again at once, smaller.
        // (It was exit 65, the ban lost.)
        case(
            "413 too large",
            &ban,
            0,
            "POST /v1/events answered 413 (length limit exceeded) for a request of ",
        )
        .status("POST /v1/events", 413, "length limit exceeded")
        .sends(2),
        case(
            "proxy's 413 page",
            &ban,
            0,
            "answered 413 (HTML page \"413 Request Entity Too Large\", Server: nginx/1.22.1) for a request of ",
        )
        .reply("POST /v1/events", nginx_page(413, "413 Request Entity Too Large"))
        .sends(2),
        case(
            "413 at every size",
            &ban,
            78,
            "even for the ban without its details",
        )
        .status("POST /v1/events", 413, "length limit exceeded")
        .status("POST /v1/events", 413, "length limit exceeded")
        .status("POST /v1/events", 413, "length limit exceeded")
        .sends(3),
        case("400 invalid IP", &ban, 65, "invalid IP address")
            .status(
                "POST /v1/events",
                400,
                r#"{"error":"invalid request: invalid IP address: 'x'"}"#,
            )
            .sends(1),
        // A 4xx that is not in prefixd's shape came from something in front of it: a
        // configuration problem (78, kept), named by what answered, never prefixd's verdict.
        case(
            "nginx TLS port page",
            &ban,
            78,
            "answered 400 (HTML page \"400 The plain HTTP request was sent to HTTPS port\", Server: nginx/1.22.1), which is not prefixd's answer: PREFIXD_API=http://127.0.0.1:",
        )
        .reply("POST /v1/events", nginx_page(400, "400 The plain HTTP request was sent to HTTPS port"))
        .sends(1),
        case(
            "WAF block page",
            &ban,
            78,
            "answered 403 (HTML page \"Attention Required! | Cloudflare\", Server: cloudflare)",
        )
        .reply(
            "POST /v1/events",
            Behavior::page(
                "403 Forbidden",
                &[("Server", "cloudflare"), ("Content-Type", "text/html")],
                "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head></html>",
            ),
        )
        .sends(1),
        case(
            "proxy's 401 page",
            &ban,
            78,
            "answered 401 (HTML page \"401 Authorization Required\", Server: nginx/1.22.1), which is not prefixd's answer",
        )
        .reply("POST /v1/events", nginx_page(401, "401 Authorization Required"))
        .sends(1),
        case(
            "proxy's 404 page on lookup",
            &unban,
            78,
            "lookup -> configuration error: GET /v1/mitigations answered 404 (HTML page \"404 Not Found\"",
        )
        .reply("GET /v1/mitigations?", nginx_page(404, "404 Not Found"))
        .sends(1),
        case(
            "proxy's 409 text",
            &ban,
            78,
            "answered 409 (body \"Conflict\", no Server header)",
        )
        .status("POST /v1/events", 409, "Conflict")
        .sends(1),
        case("409 duplicate", &ban, 0, "409 already received")
            .status("POST /v1/events", 409, r#"{"error":"duplicate event"}"#)
            .sends(1),
        case(
            "429 then 202",
            &ban,
            0,
            "HTTP 429: (empty body); prefixd gave no wait we can read; 1s",
        )
        .status("POST /v1/events", 429, "")
        .sends(2),
        case("408 then 202", &ban, 0, "attempt 1/3: HTTP 408")
            .status("POST /v1/events", 408, "")
            .sends(2),
        case("500 HTML then 202", &ban, 0, "HTTP 500: <h1>oops</h1>")
            .status("POST /v1/events", 500, "<h1>oops</h1>")
            .sends(2),
        case("garbage status line", &ban, 0, "attempt 1/3")
            .reply(
                "POST /v1/events",
                Behavior::Raw("SPDY/9 banana\r\n\r\n".into()),
            )
            .sends(2),
        case("slowloris", &ban, 75, "timed out")
            .reply(
                "POST /v1/events",
                Behavior::Trickle(
                    "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}".into(),
                    Duration::from_millis(400),
                ),
            )
            .env("PREFIXD_TIMEOUT", "1")
            .env("PREFIXD_DEADLINE", "1.5")
            .env("PREFIXD_RETRIES", "1")
            .sends(1),
        case(
            "401 empty on lookup",
            &unban,
            77,
            "GET /v1/mitigations answered 401: (empty body)",
        )
        .status("GET /v1/mitigations?", 401, "")
        .sends(1),
        case(
            "lookup not JSON",
            &unban,
            75,
            "GET /v1/mitigations answered 200 with a body we do not understand",
        )
        .status("GET /v1/mitigations?", 200, "not json")
        .sends(1),
        case("lookup wrong types", &unban, 75, "we do not understand")
            .status("GET /v1/mitigations?", 200, r#"{"mitigations":"none"}"#)
            .sends(1),
        case(
            "mitigation_id not a UUID",
            &unban,
            65,
            "not a UUID: \"../../x\"",
        )
        .status(
            "GET /v1/mitigations?",
            200,
            &list_of(r#"{"mitigation_id":"../../x","status":"active","victim_ip":"192.0.2.10"}"#),
        )
        .sends(1),
        case(
            "other victim's row ignored",
            &unban,
            0,
            "nothing to withdraw",
        )
        .env("UNBAN_QUERY_RETRIES", "1")
        .status(
            "GET /v1/mitigations?",
            200,
            &list_of(&format!(
                r#"{{"mitigation_id":"{MITIGATION}","status":"active","victim_ip":"192.0.2.99"}}"#
            )),
        )
        .sends(1),
        case("withdraw 500 then 200", &unban, 0, "attempt 1/3: HTTP 500")
            .status(
                "GET /v1/mitigations?",
                200,
                &list_of(&format!(
                    r#"{{"mitigation_id":"{MITIGATION}","status":"active","victim_ip":"192.0.2.10"}}"#
                )),
            )
            .status("POST /v1/mitigations/", 500, "")
            .status("POST /v1/mitigations/", 200, "{}")
            .sends(3),
    ]
}

/// nginx's own error page with this status and title.
fn nginx_page(status: u16, title: &str) -> Behavior {
    Behavior::page(
        &format!("{status} Whatever"),
        &[("Server", "nginx/1.22.1"), ("Content-Type", "text/html")],
        &format!(
            "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"
        ),
    )
}

fn write(dir: &str, name: &str, content: &str) -> String {
    let p = format!("{dir}/{name}");
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn bad_input_table() {
    let srv = Server::start();
    let scratch = Sandbox::new(&srv.url);
    let dir = scratch.dir.display().to_string();
    std::fs::write(format!("{dir}/binary.env"), b"PREFIXD_API=x\0\x01\x02").unwrap();
    let table = cases(&dir);
    assert!(table.len() >= 40, "{} cases", table.len());
    let mut failures = Vec::new();
    for c in table {
        srv.clear();
        let mut sb = Sandbox::new(&srv.url);
        sb.set("PREFIXD_RETRIES", "3");
        for (k, v) in &c.env {
            if v.is_empty() {
                sb.unset(k);
            } else {
                sb.set(k, v);
            }
        }
        for (route, b) in &c.replies {
            srv.script(route, b.clone());
        }
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let r = sb.run(&args, Some(&c.stdin));
        let log = sb.log();
        let said = log.contains(c.says) || r.stderr.contains(c.says);
        let kept = sb.spooled().len();
        let mut wrong = Vec::new();
        if r.code != c.code {
            wrong.push(format!("exit {} (want {})", r.code, c.code));
        }
        if !said {
            wrong.push(format!("no {:?}", c.says));
        }
        if r.stderr.contains("panicked") || log.contains("panicked") {
            wrong.push("panicked".into());
        }
        if let Some(n) = c.requests
            && srv.requests().len() != n
        {
            wrong.push(format!("{} requests (want {n})", srv.requests().len()));
        }
        // Not delivered but deliverable later: kept. Delivered or final: not kept.
        let want_kept = usize::from(matches!(c.code, 75 | 77 | 78));
        if kept != want_kept {
            wrong.push(format!("{kept} spooled (want {want_kept})"));
        }
        if !r.stdout.is_empty() {
            wrong.push(format!("stdout not quiet: {:?}", r.stdout));
        }
        // Whatever went wrong, FastNetMon's write of the details must not fail (an unban is
        // given no stdin by FastNetMon, and never reads one).
        if let Some(e) = &r.write_error
            && !c.args.iter().any(|a| a == "unban")
        {
            wrong.push(format!("stdin not read: FastNetMon's write got {e}"));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n   log: {}",
                c.name,
                wrong.join(", "),
                log.lines().last().unwrap_or(&r.stderr)
            ));
        }
        // Scripted replies a case did not use must not leak into the next one.
        srv.clear_script();
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn argv_that_is_not_utf8_is_a_usage_error() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    let out = std::process::Command::new(&*BIN)
        .arg(std::ffi::OsStr::from_bytes(b"192.0.2.\xff"))
        .env_clear()
        .envs(sb.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(sb.log().contains("is not valid UTF-8"), "{}", sb.log());
    assert!(srv.requests().is_empty());
}

#[test]
fn a_terminal_on_stdin_is_not_read() {
    // `script` gives the run a pseudo-terminal as stdin; a ban must not wait for it. It is in
    // Debian's bsdutils (essential; `make test` installs it where it is missing): without it
    // this test fails rather than pass having checked nothing.
    assert!(
        std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_ok(),
        "no `script` on this machine: apt-get install bsdutils (make test does)"
    );
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    let env: String = sb.env.iter().map(|(k, v)| format!("{k}='{v}' ")).collect();
    let cmd = format!(
        "env -i {env} {} 192.0.2.10 incoming 5 ban; echo exit=$?",
        &*BIN
    );
    let out = std::process::Command::new("timeout")
        .args(["20", "script", "-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("exit=0"), "{text}");
    assert_eq!(srv.requests().len(), 1);
    assert!(sb.log().contains("vector=unknown"), "{}", sb.log());
}

#[test]
fn a_refused_call_waits_for_a_stdin_that_never_closes_only_briefly() {
    // Whatever is refused before the action is known drains stdin for at most a couple of
    // seconds (a stdin inherited from elsewhere may never close); an unban never reads it,
    // even one refused for its arguments.
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    for (args, at_most) in [
        (&["192.0.2.10", "incoming", "5", "partial_block"][..], 5.0),
        (&["192.0.2.10", "incoming", "5", "ban", "extra"][..], 5.0),
        (&[][..], 5.0),
        (&["192.0.2.10", "incoming", "5", "unban", "extra"][..], 1.5),
        (&["192.0.2.300", "incoming", "5", "unban"][..], 1.5),
    ] {
        let r = sb.run_with_open_stdin(args);
        assert_eq!(r.code, 64, "{args:?}: {}", sb.log());
        assert!(
            r.took.as_secs_f64() < at_most,
            "{args:?} took {:?} with stdin open",
            r.took
        );
    }
    assert!(srv.requests().is_empty());
}
