//! What each mode does with a loaded configuration: FastNetMon's call (and `--dry-run`),
//! `--flush`, `--check`, `--status`. Each says what it prints and whether it writes the
//! metrics; `main` picks one and maps its outcome to the exit code.

use crate::action::Action;
use crate::error::Error;
use crate::fastnetmon::notice::{self, Notice};
use crate::prefixd::client::Client;
use crate::prefixd::dry_run;
use crate::spool::outbox::Pending;
use crate::spool::queue::Spool;
use crate::spool::send::Ctx;
use crate::spool::{flush, outbox};
use crate::{cli, config, lifecycle, log};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What every mode works with.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    pub flags: &'a config::Flags,
    pub loaded: &'a config::Loaded,
    pub log: &'a log::Log,
    pub deadline: Instant,
}

/// FastNetMon's call: read the details, validate the notice (parsed once, by `main`), then
/// deliver it or keep it. Writes the metrics; prints nothing (FastNetMon reads our stdout on
/// unban and discards stderr: the log says it all).
pub fn notify(
    run: &Run,
    args: &cli::Args,
    parsed: Parsed,
    received: SystemTime,
    pending: &Pending,
) -> Result<(), Error> {
    let result = notify_or_dry_run(run, args, parsed, received, Some(pending));
    publish_metrics(&run.loaded.config, run.log, run.deadline);
    result
}

/// `--dry-run`: the request(s) a notify run would send, on stdout; errors on stderr too.
pub fn dry_run(
    run: &Run,
    args: &cli::Args,
    parsed: Parsed,
    received: SystemTime,
) -> Result<(), Error> {
    notify_or_dry_run(run, args, parsed, received, None).inspect_err(|e| to_stderr(run.log, e))
}

/// The argument check's outcome: the notice and its warnings, or the usage error.
pub type Parsed = Result<(Notice, Vec<String>), String>;

/// `pending`: None for a dry run.
fn notify_or_dry_run(
    run: &Run,
    args: &cli::Args,
    parsed: Parsed,
    received: SystemTime,
    pending: Option<&Pending>,
) -> Result<(), Error> {
    let Run {
        flags,
        loaded,
        log,
        deadline,
    } = *run;
    let cfg = &loaded.config;
    // FastNetMon writes the details into our stdin on ban (and attack_details) and fails if we
    // do not read them; it gives no stdin on unban, where a read could block for ever. An
    // ACTION we do not know may come with details or not: read briefly, and throw away.
    let (details, stalled) = match args.action.as_deref() {
        None | Some("ban" | "attack_details") => {
            let stdin = std::io::stdin();
            let tty = stdin.is_terminal();
            // A broken stdin costs the details, never the ban.
            notice::read_details_until(stdin, tty, deadline).unwrap_or_else(|e| {
                log.warn(&format!(
                    "reading details from stdin: {e}; sending without them"
                ));
                Default::default()
            })
        }
        Some("unban") => Default::default(),
        Some(_) => {
            drain_stdin(log, deadline);
            Default::default()
        }
    };
    let (n, warnings) = parsed
        .map_err(Error::Usage)
        .inspect_err(|e| log.error(&format!("{e}; nothing sent")))?;
    for w in warnings {
        log.warn(&w);
    }
    let notice = n.with_details(details, received);
    if notice.action == Action::AttackDetails {
        log.info(&format!(
            "attack_details {} {} pps={}: logged only, nothing sent",
            notice.victim_ip,
            notice.direction,
            args.pps.as_deref().unwrap_or("0")
        ));
        return Ok(());
    }
    let Some(pending) = pending else {
        // As a real run: a configuration error sends nothing; a bad tuning value is replaced by
        // its default, said above the request it shaped.
        if let Some(e) = config_errors(loaded, log) {
            log.error("a real run sends nothing and keeps the notice in the spool (exit 78)");
            return Err(e);
        }
        let mut out = String::new();
        for f in &loaded.fallbacks {
            out.push_str(&format!("# WARN {f}\n"));
        }
        out.push_str(&dry_run::requests(cfg, &notice)?);
        log.stdout(&out);
        return Ok(());
    };
    let entry = Arc::new(notice.entry());

    let spool = outbox::open_spool(cfg.spool.as_deref());
    if let Err(why) = &spool {
        log.debug(why);
    }
    if stalled {
        let e = Error::NotDelivered(format!(
            "stdin was still open at PREFIXD_DEADLINE ({:.1}s); kept with the {} bytes of details read",
            cfg.deadline.as_secs_f64(),
            entry.details.len()
        ));
        return Err(outbox::keep(log, &spool, &entry, e));
    }
    let client = match config_errors(loaded, log).map_or_else(|| Client::new(cfg, deadline), Err) {
        Ok(c) => c,
        Err(e) => {
            log.error(&format!(
                "{} {} not sent: {e}",
                entry.action, entry.victim_ip
            ));
            return Err(outbox::keep(log, &spool, &entry, e));
        }
    };
    let ctx = Ctx {
        cfg,
        log,
        client: &client,
        deadline,
    };
    let result = outbox::handle(&ctx, &spool, &notice, &entry, pending);
    // prefixd answers: a good moment for what the spool holds, without keeping FastNetMon.
    if let (Ok(()), Ok(spool)) = (&result, &spool) {
        lifecycle::flush_in_background(spool, flags, log);
    }
    result
}

/// A call refused before we know what it is (bad arguments, an ACTION we do not know): its
/// stdin, if it is not a terminal, is read and thrown away for at most `SHORT_DRAIN` (and not
/// past `deadline`), so that FastNetMon's write of the details does not fail ("can't pass data
/// to stdin") because we exited first.
pub fn drain_stdin(log: &log::Log, deadline: Instant) {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let until = deadline.min(Instant::now() + notice::SHORT_DRAIN);
    let d = notice::drain_until(stdin, tty, until);
    if tty {
        return;
    }
    log.debug(&format!(
        "stdin: {} byte(s) read and discarded{}",
        d.bytes,
        if d.ended {
            ""
        } else {
            "; still open, left behind"
        }
    ));
}

fn to_stderr(log: &log::Log, e: &Error) {
    log.stderr(&format!("prefixd-fastnetmon: {e}\n"));
}

/// Logs every configuration error; the first one is the run's error (exit 78).
fn config_errors(loaded: &config::Loaded, log: &log::Log) -> Option<Error> {
    for e in &loaded.errors {
        log.error(&format!("configuration error: {e}"));
    }
    loaded.errors.first().map(|e| Error::Config(e.clone()))
}

/// `--flush`: deliver what the spool holds. Writes the metrics; errors go to stderr too (a
/// systemd unit's journal, a cron mail).
pub fn flush(run: &Run) -> Result<(), Error> {
    let result = flush_spool(run).inspect_err(|e| to_stderr(run.log, e));
    publish_metrics(&run.loaded.config, run.log, run.deadline);
    result
}

/// `--check`: the doctor's report on stdout; its first failure on stderr too.
pub fn check(run: &Run) -> Result<(), Error> {
    run.log.stdout(&format!("{}\n", cli::version()));
    crate::operator::check::run(run.loaded, run.deadline, run.log)
        .inspect_err(|e| to_stderr(run.log, e))
}

/// `--fastnetmon-user`: `USER GROUP WHERE-READ` on one line, for the package's scripts (its
/// postinst, its trigger, `make install`), which give that user the hook's files.
pub fn fastnetmon_user(loaded: &config::Loaded, log: &log::Log) -> Result<(), Error> {
    let given = loaded.config.fastnetmon_user.as_deref();
    let u = crate::operator::service_user::find(std::path::Path::new("/"), given)
        .map_err(Error::Config)
        .inspect_err(|e| to_stderr(log, e))?;
    log.stdout(&format!("{} {} {}\n", u.name, u.group, u.from));
    Ok(())
}

fn flush_spool(run: &Run) -> Result<(), Error> {
    let Run {
        loaded,
        log,
        deadline,
        ..
    } = *run;
    let cfg = &loaded.config;
    if let Some(e) = config_errors(loaded, log) {
        return Err(e);
    }
    let Some(dir) = &cfg.spool else {
        log.info("flush: PREFIXD_SPOOL=off, nothing to deliver");
        return Ok(());
    };
    let spool = Spool::open(dir)
        .map_err(|e| Error::Config(format!("PREFIXD_SPOOL {}: {e}", dir.display())))?;
    let client = Client::new(cfg, deadline)?;
    let ctx = Ctx {
        cfg,
        log,
        client: &client,
        deadline,
    };
    let report = flush::flush(&ctx, &spool, true)?;
    if report.busy {
        log.info("flush: another run is delivering the spool until its deadline");
        return Ok(());
    }
    let w = &report.waiting;
    let mut line = format!(
        "flush: {} delivered or dropped as stale, {} refused, {} left",
        w.delivered + w.stale,
        w.refused,
        w.left
    );
    if w.skipped > 0 {
        line.push_str(&format!(
            ", {} being delivered by runs for their victims",
            w.skipped
        ));
    }
    let c = &report.reconciled;
    match &c.unanswered {
        _ if !c.asked => {}
        Some(_) => line.push_str("; FastNetMon's ban list not read"),
        None => line.push_str(&format!(
            "; FastNetMon's ban list read: {} held victim(s) not in it, {} unbanned for it, {} unban(s) kept",
            c.unlisted, c.withdrawn, c.kept
        )),
    }
    let r = &report.renewed;
    if r.held > 0 {
        line.push_str(&format!(
            "; {} held victim(s): {} ban(s) sent again, {} lease(s) ended, {} not renewed this time, {} left for runs delivering them",
            r.held, r.sent, r.ended, r.failed, r.skipped
        ));
    }
    log.info(&line);
    report.waiting.stopped.map_or(Ok(()), Err)
}

/// What the spool holds (read-only). Exit 75 while something waits, so a cron job or a
/// monitoring check can alert on it.
pub fn status(loaded: &config::Loaded, log: &log::Log, verbose: bool) -> Result<(), Error> {
    if let Some(e) = loaded.errors.first() {
        return Err(Error::Config(e.clone()));
    }
    let (text, waiting) = crate::operator::status::report(&loaded.config, verbose);
    log.stdout(&text);
    if waiting {
        return Err(Error::NotDelivered("notices wait in the spool".into()));
    }
    Ok(())
}

/// The running totals and the node_exporter file (PREFIXD_METRICS); a failure is a warning.
fn publish_metrics(cfg: &config::Config, log: &log::Log, deadline: Instant) {
    let Some(path) = &cfg.metrics else {
        return;
    };
    let spool = cfg.spool.as_deref().and_then(|d| Spool::open(d).ok());
    // Some time even for a run that used its deadline; the watchdog still ends it by then.
    let until = deadline.max(Instant::now() + Duration::from_millis(200));
    if let Err(e) =
        crate::operator::metrics::publish(path, cfg.spool.as_deref(), spool.as_ref(), until)
    {
        log.warn(&format!("metrics not written: {e}"));
    }
}

/// `ban 203.0.113.10`: what every log line of a notify run names; as given when the
/// arguments do not parse.
pub fn subject(args: &cli::Args, parsed: &Parsed) -> String {
    match parsed {
        Ok((n, _)) => n.subject(),
        Err(_) => format!(
            "{} {}",
            args.action.as_deref().unwrap_or("ban"),
            args.ip.escape_debug()
        ),
    }
}

/// How FastNetMon started us (debug): the parent, what stdin is, and the descriptors it left
/// open for us — they differ between FastNetMon generations.
pub fn how_called(our_log: &str) -> String {
    let link = |p: &str| {
        std::fs::read_link(p).map_or_else(|e| format!("({e})"), |t| t.display().to_string())
    };
    let mine = std::fs::canonicalize(our_log).unwrap_or_default();
    let parent = std::os::unix::process::parent_id();
    let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
    let mut inherited: Vec<u32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd > 2)
                // Not ours: the log file, this directory listing (gone once read).
                .filter(|fd| {
                    let t = std::fs::read_link(format!("/proc/self/fd/{fd}"));
                    t.is_ok_and(|t| t != mine && !t.starts_with("/proc/"))
                })
                .collect()
        })
        .unwrap_or_default();
    inherited.sort_unstable();
    format!(
        "called by {} (pid {parent}); stdin {}; inherited descriptors {:?}",
        comm.trim(),
        link("/proc/self/fd/0"),
        inherited
    )
}
