//! `--check`: the doctor an operator runs before (or during) an incident. It prints the
//! configuration in force with where each value came from, then one ✔/✘ line per check:
//! env file, log, spool, CA file, rules, prefixd's health, and an authenticated request.

use crate::config::{Loaded, Source};
use crate::error::Error;
use crate::log::Log;
use crate::prefixd::answer::Answer;
use crate::prefixd::client::Client;
use crate::prefixd::wire::{Endpoint, Health};
use crate::spool::queue::Spool;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

struct Checklist {
    lines: Vec<String>,
    /// The first failure: its exit code (78 configuration, 75 unreachable or TLS, 77 token)
    /// and what it was.
    first: Option<(u8, String)>,
}

impl Checklist {
    fn ok(&mut self, what: String) {
        self.lines.push(format!("✔ {what}"));
    }
    fn fail(&mut self, code: u8, what: String) {
        self.lines.push(format!("✘ {what}"));
        self.first.get_or_insert((code, what));
    }

    /// A request that did not get the answer hoped for, said for what it is: its error's
    /// exit code (a GET has no data to refuse: such a 4xx is configuration).
    fn failed(&mut self, url: &str, e: &Error) {
        let code = match e {
            Error::Refused(_) => 78,
            e => e.exit_code(),
        };
        self.fail(code, format!("GET {url} -> {e}"));
    }
}

/// Runs every check; prints the report; `Err` (with the first failure's code) unless all pass.
pub fn run(loaded: &Loaded, deadline: Instant, log: &Log) -> Result<(), Error> {
    let cfg = &loaded.config;
    log.stdout(&format!("configuration (env file {}):\n", cfg.env_file));
    for line in crate::config::describe(cfg) {
        log.stdout(&format!("  {line}\n"));
    }
    let mut r = Checklist {
        lines: Vec::new(),
        first: None,
    };
    for w in &loaded.warnings {
        r.lines.push(format!("! {w}"));
    }
    for e in &loaded.errors {
        r.fail(78, format!("configuration: {e}"));
    }
    // A call goes on with the default; the doctor still wants the value fixed.
    for f in &loaded.fallbacks {
        r.fail(78, format!("configuration: {f}"));
    }

    // The env file: present or not, and not readable by others when it holds the token.
    match std::fs::metadata(&cfg.env_file) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            let holds_token = cfg
                .sources
                .iter()
                .any(|o| o.name == "PREFIXD_TOKEN" && matches!(o.source, Source::File { .. }));
            if holds_token && mode & 0o044 != 0 {
                r.fail(
                    78,
                    format!(
                        "env file {}: mode {mode:04o} and it holds the token: chmod 600 it",
                        cfg.env_file
                    ),
                );
            } else {
                r.ok(format!("env file {}: mode {mode:04o}", cfg.env_file));
            }
        }
        Err(_) => r.ok(format!(
            "env file {}: absent (defaults and environment only)",
            cfg.env_file
        )),
    }

    match cfg.log.as_str() {
        "-" => r.ok("log: stderr".into()),
        s if s.starts_with("syslog") => r.ok(format!("log: {s}")),
        path => match std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            Ok(_) => r.ok(format!("log {path}: writable")),
            Err(e) => r.fail(
                78,
                format!("log {path}: {e} (lines would go to stderr, which FastNetMon discards)"),
            ),
        },
    }

    match &cfg.spool {
        None => {
            r.ok("spool: off (PREFIXD_SPOOL=off): an undelivered notice is only in the log".into())
        }
        Some(dir) => match Spool::open(dir).and_then(|s| s.probe().map(|()| s)) {
            Ok(s) => {
                let waiting = s.list().map(|l| l.len()).unwrap_or(0);
                r.ok(format!(
                    "spool {}: writable, {waiting} notice(s) waiting",
                    dir.display()
                ));
            }
            Err(e) => r.fail(78, format!("spool {}: {e}", dir.display())),
        },
    }

    match &cfg.ca_file {
        None => r.ok("TLS roots: the bundled Mozilla roots".into()),
        Some(p) => match crate::config::files::load_ca_file(p) {
            Ok(certs) => r.ok(format!(
                "CA file {}: {} certificate(s)",
                p.display(),
                certs.len()
            )),
            Err(e) => r.fail(78, e),
        },
    }
    if !cfg.rules.is_empty() {
        r.ok(format!("vector rules: {} rule(s)", cfg.rules.len()));
    }

    match Client::new(cfg, deadline) {
        Err(e) => r.fail(78, format!("client: {e}")),
        Ok(client) => reach(&client, cfg.token.is_some(), log, &mut r),
    }

    for l in &r.lines {
        log.stdout(&format!("{l}\n"));
    }
    match r.first {
        None => {
            log.stdout("all checks passed\n");
            Ok(())
        }
        Some((code, what)) => Err(match code {
            75 => Error::NotDelivered(what),
            77 => Error::Unauthorized(what),
            _ => Error::Config(what),
        }),
    }
}

/// `GET /v1/health` (public), then an authenticated `GET /v1/mitigations?limit=1`.
fn reach(client: &Client, has_token: bool, log: &Log, r: &mut Checklist) {
    let started = Instant::now();
    let url = client.url("/v1/health");
    let health = match client.ask(log, Endpoint::Health, "GET", "/v1/health", || Ok(None)) {
        Err(e) => return r.failed(&url, &e),
        Ok(Answer::Done(reply)) => reply.json::<Health>("GET /v1/health"),
        Ok(other) => return r.failed(&url, &client.unexpected(other, "GET /v1/health")),
    };
    let took = started.elapsed().as_secs_f64();
    let auth_mode = match health {
        Ok(h) => {
            let auth = h.auth_mode.clone().unwrap_or_else(|| "?".into());
            // prefixd's words, printed: cut and without control characters.
            let said = |v: &Option<String>, none: &str| {
                crate::pretty::printable(v.as_deref().unwrap_or(none), 64)
            };
            let auth = crate::pretty::printable(&auth, 64);
            r.ok(format!(
                "GET {url} -> 200 {} (prefixd {}, auth {auth}) in {took:.3}s",
                said(&h.status, "?"),
                said(&h.version, "?")
            ));
            r.ok(format!(
                "prefixd {} is {}; this client speaks to both generations",
                said(&h.version, "(version not given)"),
                h.generation()
            ));
            auth
        }
        Err(e) => return r.fail(75, e),
    };

    let path = "/v1/mitigations?limit=1";
    let url = client.url(path);
    let answer = client.request(log, "GET", path, || Ok(None)).map(|reply| {
        let status = reply.status;
        (
            status,
            client.read(Endpoint::List, "GET /v1/mitigations", reply),
        )
    });
    match answer {
        Ok((_, Ok(Answer::Done(_)))) => r.ok(format!(
            "GET {url} -> 200: {}",
            if has_token { "token accepted" } else { "no token needed" }
        )),
        Ok((status, Err(Error::Unauthorized(_)))) => r.fail(
            77,
            if has_token {
                format!("GET {url} -> {status}: prefixd REFUSED THE TOKEN (wrong or expired PREFIXD_TOKEN / PREFIXD_TOKEN_FILE)")
            } else {
                format!("GET {url} -> {status}: prefixd needs a token (auth {auth_mode}) and none is set")
            },
        ),
        Ok((_, Err(e))) | Err(e) => r.failed(&url, &e),
        Ok((_, Ok(other))) => r.failed(&url, &client.unexpected(other, "GET /v1/mitigations")),
    }
}
