//! `--check`: the doctor an operator runs before (or during) an incident. It prints the
//! configuration in force with where each value came from, then one ✔/✘ line per check:
//! env file, log, spool, CA file, rules, prefixd's health, and an authenticated request.

use crate::config::{Loaded, Source};
use crate::error::Error;
use crate::log::Log;
use crate::operator::service_user::{Need, ServiceUser, other_readers};
use crate::prefixd::answer::Answer;
use crate::prefixd::client::Client;
use crate::prefixd::wire::{Endpoint, Health};
use crate::spool::queue::Spool;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
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

    // Who runs the hook, and what it may do to each file: what decides whether a ban works
    // (Debian 13 runs FastNetMon, and so the hook, as `fastnetmon`).
    let user = crate::operator::service_user::find(Path::new("/"), cfg.fastnetmon_user.as_deref());
    match &user {
        Ok(u) => r.ok(format!(
            "FastNetMon runs the hook as {} (uid {}, group {}): {}",
            u.name, u.uid, u.group, u.from
        )),
        Err(e) => r.fail(78, format!("FastNetMon's user: {e}")),
    }
    let user = user.unwrap_or_else(|_| crate::operator::service_user::ServiceUser::root());
    secret_file(
        &mut r,
        &user,
        "env file",
        Path::new(&cfg.env_file),
        holds_token(cfg),
    );
    // Only a file the token was read from: PREFIXD_TOKEN_FILE holding the token itself is
    // never printed.
    if let Some(f) = cfg.token_file.as_ref().filter(|_| cfg.token.is_some()) {
        secret_file(&mut r, &user, "token file", f, true);
    }
    log_file(&mut r, &user, &cfg.log);
    match &cfg.spool {
        None => {
            r.ok("spool: off (PREFIXD_SPOOL=off): an undelivered notice is only in the log".into())
        }
        Some(dir) => spool_dir(&mut r, &user, dir),
    }
    if let Some(m) = &cfg.metrics {
        let dir = m.parent().unwrap_or(Path::new("/"));
        match user.may(dir, Need::Fill) {
            Ok(()) => r.ok(format!(
                "metrics {}: {} may write it",
                m.display(),
                user.name
            )),
            Err(e) => r.fail(
                78,
                format!(
                    "metrics {}: {} cannot write in {} ({e}): chgrp {} {} && chmod g+rwx {}",
                    m.display(),
                    user.name,
                    dir.display(),
                    user.group,
                    dir.display(),
                    dir.display()
                ),
            ),
        }
    }

    match &cfg.ca_file {
        None => r.ok("TLS roots: the bundled Mozilla roots".into()),
        Some(p) => match crate::config::files::load_ca_file(p) {
            Ok(certs) => {
                r.ok(format!(
                    "CA file {}: {} certificate(s)",
                    p.display(),
                    certs.len()
                ));
                readable(&mut r, &user, "CA file", p);
            }
            Err(e) => r.fail(78, e),
        },
    }
    if !cfg.rules.is_empty() {
        r.ok(format!("vector rules: {} rule(s)", cfg.rules.len()));
    }
    if let Some(p) = &cfg.rules_file {
        readable(&mut r, &user, "vector rules", p);
    }

    banlist(&mut r, cfg);

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

/// FastNetMon's ban list, which `--flush` reads to let go of the victims a restarted
/// FastNetMon forgot: readable, or why not.
fn banlist(r: &mut Checklist, cfg: &crate::config::Config) {
    use crate::fastnetmon::banlist::{self, DEFAULT_COMMAND, MAX_WAIT};
    let Some(words) = &cfg.banlist else {
        return match cfg.banlist_given {
            true => r.ok("FastNetMon's ban list: not asked (FASTNETMON_BANLIST=off): leases end only by FastNetMon's unbans".into()),
            false => r.lines.push(format!(
                "! FastNetMon's ban list: not asked ({DEFAULT_COMMAND}: not on PATH): a restarted FastNetMon's forgotten bans stay mitigated up to PREFIXD_RENEW_MAX"
            )),
        };
    };
    let command = words.join(" ");
    match banlist::read(words, MAX_WAIT) {
        Ok(list) => r.ok(format!(
            "FastNetMon's ban list ({command}): {} entr{}",
            list.prefixes.len(),
            if list.prefixes.len() == 1 { "y" } else { "ies" }
        )),
        Err(e) => r.fail(
            75,
            format!("FastNetMon's ban list ({command}): {e}; --flush keeps every held victim until FastNetMon answers"),
        ),
    }
}

/// Whether the env file is where PREFIXD_TOKEN was set.
fn holds_token(cfg: &crate::config::Config) -> bool {
    cfg.sources
        .iter()
        .any(|o| o.name == "PREFIXD_TOKEN" && matches!(o.source, Source::File { .. }))
}

/// A file the hook reads that may hold the token: FastNetMon's user can read it, and when it
/// holds the token nobody else can (root aside).
fn secret_file(r: &mut Checklist, user: &ServiceUser, what: &str, path: &Path, token: bool) {
    let shown = path.display();
    let Ok(m) = std::fs::metadata(path) else {
        return r.ok(format!(
            "{what} {shown}: absent (defaults and environment only)"
        ));
    };
    let mode = m.permissions().mode() & 0o7777;
    let owner = crate::operator::service_user::owner_of(&m);
    let fix = format!("chown root:{} {shown} && chmod 0640 {shown}", user.group);
    if let Err(e) = user.may(path, Need::Read) {
        return r.fail(
            78,
            format!("{what} {shown}: {} cannot read it ({e}): {fix}", user.name),
        );
    }
    match other_readers(&m, user).filter(|_| token) {
        Some(who) => r.fail(
            78,
            format!(
                "{what} {shown}: {owner} {mode:04o}, holds the token and {who} can read it: {fix}"
            ),
        ),
        None => r.ok(format!(
            "{what} {shown}: {owner} {mode:04o}, {} can read it{}",
            user.name,
            if token { ", nobody else but root" } else { "" }
        )),
    }
}

/// A file the hook only reads (CA file, rules).
fn readable(r: &mut Checklist, user: &ServiceUser, what: &str, path: &Path) {
    if let Err(e) = user.may(path, Need::Read) {
        let p = path.display();
        r.fail(
            78,
            format!(
                "{what} {p}: {} cannot read it ({e}): chmod 0644 {p}",
                user.name
            ),
        );
    }
}

/// The log: FastNetMon's user appends to it (or creates it).
fn log_file(r: &mut Checklist, user: &ServiceUser, log: &str) {
    let path = match log {
        "-" => return r.ok("log: stderr".into()),
        s if s.starts_with("syslog") => return r.ok(format!("log: {s}")),
        path => Path::new(path),
    };
    let p = path.display();
    let lost = "(its lines would go to FastNetMon's journal and syslog only)";
    if path.exists() {
        let mine = std::fs::OpenOptions::new().append(true).open(path);
        match (user.may(path, Need::Write), mine) {
            (Ok(()), Ok(_)) => r.ok(format!("log {p}: writable by {}", user.name)),
            (Err(e), _) => r.fail(
                78,
                format!(
                    "log {p}: {} cannot write it ({e}) {lost}: chown {} {p}",
                    user.name, user.name
                ),
            ),
            (Ok(()), Err(e)) => r.fail(78, format!("log {p}: {e} {lost}")),
        }
        return;
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    match user.may(dir, Need::Fill) {
        Ok(()) => r.ok(format!("log {p}: absent; {} creates it", user.name)),
        Err(_) => r.fail(
            78,
            format!(
                "log {p}: absent, and {} cannot create it in {} {lost}: install -o {} -g adm -m 0640 /dev/null {p}",
                user.name,
                dir.display(),
                user.name
            ),
        ),
    }
}

/// The spool: FastNetMon's user creates, reads and removes files in it, and every file there
/// (notices, leases, locks) is its to read and write; the directory is set-group-ID so that
/// files the flush makes as another user are the group's too.
fn spool_dir(r: &mut Checklist, user: &ServiceUser, dir: &Path) {
    let d = dir.display();
    let fix = format!(
        "chown -R {u}:{g} {d} && chmod -R u+rwX,g+rwX,o-rwx {d} && find {d} -type d -exec chmod g+s {{}} +",
        u = user.name,
        g = user.group
    );
    // Created here only for the user that will use it: made by root for another user, it
    // would shut that user out.
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if !(dir.exists() || user.is_root() || me == Some(user.uid)) {
        let parent = dir.parent().unwrap_or(Path::new("/"));
        return match user.may(parent, Need::Fill) {
            Ok(()) => r.ok(format!("spool {d}: absent; {} creates it", user.name)),
            Err(_) => r.fail(
                78,
                format!(
                    "spool {d}: absent, and {} cannot create it: install -d -o {} -g {} -m 2770 {d}",
                    user.name, user.name, user.group
                ),
            ),
        };
    }
    if let Err(e) = user.may(dir, Need::Fill) {
        return r.fail(
            78,
            format!("spool {d}: {} cannot write in it ({e}): {fix}", user.name),
        );
    }
    let mut barred = Vec::new();
    let mut look = vec![dir.to_path_buf()];
    while let Some(d) = look.pop() {
        for e in std::fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .take(100_000)
        {
            let p = e.path();
            let need = match p.is_dir() {
                true => {
                    look.push(p.clone());
                    Need::Fill
                }
                false => Need::Write,
            };
            if user
                .may(&p, need)
                .and_then(|()| user.may(&p, Need::Read))
                .is_err()
            {
                barred.push(p);
            }
        }
    }
    if let Some(first) = barred.first() {
        return r.fail(
            78,
            format!(
                "spool {d}: {} of its files are not {}'s to read and write (e.g. {}): {fix}",
                barred.len(),
                user.name,
                first.display()
            ),
        );
    }
    let m = std::fs::metadata(dir);
    let shared = m
        .as_ref()
        .is_ok_and(|m| m.mode() & 0o2000 != 0 && user.gids.contains(&m.gid()));
    if !user.is_root() && !shared {
        return r.fail(
            78,
            format!(
                "spool {d}: not set-group-ID with group {}: files the flush writes as root would shut {} out: {fix}",
                user.group, user.name
            ),
        );
    }
    match Spool::open(dir).and_then(|s| s.probe().map(|()| s)) {
        Ok(s) => {
            let waiting = s.list().map(|l| l.len()).unwrap_or(0);
            r.ok(format!(
                "spool {d}: {} may write it, {waiting} notice(s) waiting",
                user.name
            ));
        }
        Err(e) => r.fail(78, format!("spool {d}: {e}")),
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
