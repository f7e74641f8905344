//! prefixd-fastnetmon: FastNetMon's notify hook → prefixd's HTTP API.
//!
//! argv + stdin + env file + process env → Entry (what FastNetMon told us) + Config
//!   → outbox: deliver now, or keep in the spool, in order → log lines → exit code.

use prefixd_fastnetmon::error::Error;
use prefixd_fastnetmon::spool::{Entry, Spool};
use prefixd_fastnetmon::{api, cli, config, deliver, log, notice, outbox, pretty};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    let started = Instant::now();
    let received = SystemTime::now();
    let env = |k: &str| std::env::var(k).ok();
    let cli = match cli::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            // The configured log is still where an operator looks for a failed call.
            let cfg = config::load(&config::Flags::default(), &env).config;
            let e = Error::Usage(e);
            log::Log::open(&cfg.log, false, cfg.token).error(&e.to_string());
            eprintln!("prefixd-fastnetmon: {e}\n{}", cli::USAGE);
            return ExitCode::from(e.exit_code());
        }
    };
    match cli.mode {
        cli::Mode::Help => {
            print!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        cli::Mode::Version => {
            println!("{}", cli::version());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let dry_run = matches!(cli.mode, cli::Mode::DryRun(_));
    let loaded = config::load(&cli.flags, &env);
    let cfg = &loaded.config;
    let subject = match &cli.mode {
        cli::Mode::Notify(args) | cli::Mode::DryRun(args) => subject(args),
        _ => String::new(),
    };
    let log = log::Log::open(
        if dry_run { "-" } else { &cfg.log },
        cfg.debug,
        cfg.token.clone(),
    )
    .about(subject.clone());
    for w in &loaded.warnings {
        log.warn(w);
    }
    log.debug(&format!(
        "env file {}; {}",
        cfg.env_file,
        config::describe(cfg).join(", ")
    ));
    if cfg.debug && matches!(cli.mode, cli::Mode::Notify(_)) {
        log.debug(&how_called(&cfg.log));
    }
    let deadline = started + cfg.deadline;
    let pending = Arc::new(outbox::Pending::default());
    start_watchdog(cfg, subject, pending.clone());

    let result = match &cli.mode {
        cli::Mode::Notify(args) | cli::Mode::DryRun(args) => notify(
            args, &cli.flags, &loaded, &log, deadline, received, dry_run, &pending,
        ),
        cli::Mode::Flush => flush(&loaded, &log, deadline),
        cli::Mode::Check => {
            println!("{}", cli::version());
            prefixd_fastnetmon::check::run(&loaded, deadline, &log)
        }
        cli::Mode::Status => status(&loaded, cli.flags.verbose),
        cli::Mode::Help | cli::Mode::Version => Ok(()),
    };
    if matches!(cli.mode, cli::Mode::Notify(_) | cli::Mode::Flush) {
        publish_metrics(cfg, &log, deadline);
    }
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            if dry_run || !matches!(cli.mode, cli::Mode::Notify(_) | cli::Mode::Status) {
                eprintln!("prefixd-fastnetmon: {e}");
            }
            e.exit_code()
        }
    };
    log.debug(&format!(
        "exit {code} after {:.3}s",
        started.elapsed().as_secs_f64()
    ));
    ExitCode::from(code)
}

/// What the spool holds (read-only). Exit 75 while something waits, so a cron job or a
/// monitoring check can alert on it.
fn status(loaded: &config::Loaded, verbose: bool) -> Result<(), Error> {
    if let Some(e) = loaded.errors.first() {
        return Err(Error::Config(e.clone()));
    }
    let (text, waiting) = prefixd_fastnetmon::status::report(&loaded.config, verbose);
    print!("{text}");
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
        prefixd_fastnetmon::metrics::publish(path, cfg.spool.as_deref(), spool.as_ref(), until)
    {
        log.warn(&format!("metrics not written: {e}"));
    }
}

/// How FastNetMon started us (debug): the parent, what stdin is, and the descriptors it left
/// open for us — they differ between FastNetMon generations.
fn how_called(our_log: &str) -> String {
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

/// `ban 203.0.113.10`: what every log line of a notify run names.
fn subject(args: &cli::Args) -> String {
    match notice::from_args(args) {
        Ok((n, _)) => format!("{} {}", n.action.as_str(), n.victim_ip),
        Err(_) => format!(
            "{} {}",
            args.action.as_deref().unwrap_or("ban"),
            args.ip.escape_debug()
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn notify(
    args: &cli::Args,
    flags: &config::Flags,
    loaded: &config::Loaded,
    log: &log::Log,
    deadline: Instant,
    received: SystemTime,
    dry_run: bool,
    pending: &outbox::Pending,
) -> Result<(), Error> {
    let cfg = &loaded.config;
    // FastNetMon writes the details into our stdin on ban (and attack_details) and fails if we
    // do not read them; it gives no stdin on unban, where a read could block for ever.
    let reads_stdin = matches!(
        args.action.as_deref(),
        None | Some("ban" | "attack_details")
    );
    let (details, stalled) = if reads_stdin {
        let stdin = std::io::stdin();
        let tty = stdin.is_terminal();
        // A broken stdin costs the details, never the ban.
        notice::read_details_until(stdin, tty, deadline).unwrap_or_else(|e| {
            log.warn(&format!(
                "reading details from stdin: {e}; sending without them"
            ));
            Default::default()
        })
    } else {
        Default::default()
    };
    let (n, warnings) = notice::from_args(args)
        .map_err(Error::Usage)
        .inspect_err(|e| log.error(&format!("{e}; nothing sent")))?;
    for w in warnings {
        log.warn(&w);
    }
    if n.action == notice::Action::AttackDetails {
        log.info(&format!(
            "attack_details {} {} pps={}: logged only, nothing sent",
            n.victim_ip,
            n.direction,
            args.pps.as_deref().unwrap_or("0")
        ));
        return Ok(());
    }
    let entry = Arc::new(Entry {
        victim_ip: n.victim_ip.to_string(),
        direction: n.direction.clone(),
        pps: args.pps.clone(),
        action: n.action,
        details: details.text,
        truncated: details.truncated,
        received_ms: received
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
        attempts: None,
        last_error: None,
    });
    if dry_run {
        return print_dry_run(cfg, &n, &entry);
    }

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
    let client =
        match config_errors(loaded, log).map_or_else(|| api::Client::new(cfg, deadline), Err) {
            Ok(c) => c,
            Err(e) => {
                log.error(&format!(
                    "{} {} not sent: {e}",
                    entry.action, entry.victim_ip
                ));
                return Err(outbox::keep(log, &spool, &entry, e));
            }
        };
    let ctx = outbox::Ctx {
        cfg,
        log,
        client: &client,
        deadline,
    };
    let result = outbox::handle(&ctx, &spool, &entry, pending);
    // prefixd answers: a good moment for what the spool holds, without keeping FastNetMon.
    if let (Ok(()), Ok(spool)) = (&result, &spool) {
        outbox::flush_in_background(spool, flags, log);
    }
    result
}

/// Logs every configuration error; the first one is the run's error (exit 78).
fn config_errors(loaded: &config::Loaded, log: &log::Log) -> Option<Error> {
    for e in &loaded.errors {
        log.error(&format!("configuration error: {e}"));
    }
    loaded.errors.first().map(|e| Error::Config(e.clone()))
}

fn flush(loaded: &config::Loaded, log: &log::Log, deadline: Instant) -> Result<(), Error> {
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
    let client = api::Client::new(cfg, deadline)?;
    let ctx = outbox::Ctx {
        cfg,
        log,
        client: &client,
        deadline,
    };
    let report = outbox::flush(&ctx, &spool, true)?;
    if report.busy {
        log.info("flush: another run is delivering the spool until its deadline");
        return Ok(());
    }
    let mut line = format!(
        "flush: {} delivered or dropped as stale, {} refused, {} left",
        report.delivered + report.stale,
        report.refused,
        report.left
    );
    if report.skipped > 0 {
        line.push_str(&format!(
            ", {} being delivered by runs for their victims",
            report.skipped
        ));
    }
    log.info(&line);
    report.stopped.map_or(Ok(()), Err)
}

/// Prints what a real run would send, and sends nothing.
fn print_dry_run(cfg: &config::Config, n: &notice::Notice, entry: &Entry) -> Result<(), Error> {
    let auth = if cfg.token.is_some() {
        "Authorization: Bearer <redacted>\n"
    } else {
        ""
    };
    if n.action == notice::Action::Ban {
        let choice = deliver::choose_vector(&cfg.rules, n, entry);
        match &choice.rule {
            Some(rule) => println!(
                "# vector {} from rule {rule} (built-in detection says {})",
                choice.vector, choice.builtin
            ),
            None => println!(
                "# vector {} from built-in detection (no custom rule matched)",
                choice.vector
            ),
        }
        let body = miniserde::json::to_string(&deliver::ban_event(n, entry, false, &choice)?);
        println!(
            "POST {}/v1/events\n{auth}Content-Type: application/json\n\n{}",
            cfg.api,
            pretty::json(&body)
        );
    } else {
        println!(
            "GET {}{}\n{auth}",
            cfg.api,
            deliver::lookup_path(&entry.victim_ip)
        );
        println!(
            "then, for each mitigation_id listed:\nPOST {}/v1/mitigations/{{mitigation_id}}/withdraw\n{auth}Content-Type: application/json\n\n{}",
            cfg.api,
            pretty::json(&deliver::withdraw_body(cfg, n))
        );
    }
    Ok(())
}

/// FastNetMon waits for us with no timeout of its own: whatever happens, this process ends by
/// the deadline (plus a moment for a request that is timing out to say so itself), keeping
/// the notice in the spool if it was still on its way.
fn start_watchdog(cfg: &config::Config, subject: String, pending: Arc<outbox::Pending>) {
    let (deadline, log_spec, token, spool) = (
        cfg.deadline,
        cfg.log.clone(),
        cfg.token.clone(),
        cfg.spool.clone(),
    );
    // A small stack: it only sleeps, logs and keeps; a carpet runs a thousand of us at once.
    let watchdog = std::thread::Builder::new().stack_size(64 * 1024);
    let _ = watchdog.spawn(move || {
        std::thread::sleep(deadline + Duration::from_millis(500));
        let log = log::Log::open(&log_spec, false, token).about(subject);
        let e = Error::NotDelivered(format!(
            "PREFIXD_DEADLINE of {:.1}s reached; stopped",
            deadline.as_secs_f64()
        ));
        log.error(&e.to_string());
        let e = pending.with(|slot| match slot.take() {
            Some(entry) => outbox::keep(&log, &outbox::open_spool(spool.as_deref()), &entry, e),
            None => e,
        });
        std::process::exit(i32::from(e.exit_code()));
    });
}
