//! prefixd-fastnetmon: FastNetMon's notify hook → prefixd's HTTP API.
//!
//! argv + stdin + env file + process env → Notice (what FastNetMon told us) + Config
//!   → outbox: deliver now, or keep in the spool, in order → log lines → exit code.

#![forbid(unsafe_code)]

use prefixd_fastnetmon::cli::{self, Mode};
use prefixd_fastnetmon::error::Error;
use prefixd_fastnetmon::modes::{self, Run};
use prefixd_fastnetmon::{config, lifecycle, log};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

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
            let log = log::Log::open(&cfg.log, false, cfg.token);
            log.error(&e.to_string());
            log.stderr(&format!("prefixd-fastnetmon: {e}\n{}\n", cli::USAGE));
            // Whatever was wrong with the arguments, FastNetMon may be writing details, unless
            // they say unban (FastNetMon gives that no stdin; it may never close).
            if !std::env::args_os().any(|a| a == "unban") {
                modes::drain_stdin(&log, started + cfg.deadline);
            }
            return ExitCode::from(e.exit_code());
        }
    };
    match cli.mode {
        Mode::Help => {
            print!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        Mode::Version => {
            println!("{}", cli::version());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let loaded = config::load(&cli.flags, &env);
    let cfg = &loaded.config;
    // FastNetMon's arguments, parsed once; every log line of the run names its notice.
    let (parsed, subject) = match &cli.mode {
        Mode::Notify(args) | Mode::DryRun(args) => {
            let parsed = args.notice();
            let subject = modes::subject(args, &parsed);
            (Some(parsed), subject)
        }
        _ => (None, String::new()),
    };
    // A dry run prints; `--fastnetmon-user` runs (as root) before the package gives the log to
    // FastNetMon's user, and must not make it root's first.
    let to_stderr = matches!(cli.mode, Mode::DryRun(_) | Mode::FastnetmonUser);
    let log = log::Log::open(
        if to_stderr { "-" } else { &cfg.log },
        cfg.debug,
        cfg.token.clone(),
    )
    .about(subject.clone());
    // Bad tuning values were replaced by their defaults: said on every run, which goes on.
    for w in loaded.warnings.iter().chain(&loaded.fallbacks) {
        log.warn(w);
    }
    log.debug(&format!(
        "env file {}; {}",
        cfg.env_file,
        config::describe(cfg).join(", ")
    ));
    if cfg.debug && matches!(cli.mode, Mode::Notify(_)) {
        log.debug(&modes::how_called(&cfg.log));
    }
    let deadline = started + cfg.deadline;
    let pending = lifecycle::start_watchdog(cfg, &log, subject);

    let run = Run {
        flags: &cli.flags,
        loaded: &loaded,
        log: &log,
        deadline,
    };
    let result = match (&cli.mode, parsed) {
        (Mode::Notify(args), Some(p)) => modes::notify(&run, args, p, received, &pending),
        (Mode::DryRun(args), Some(p)) => modes::dry_run(&run, args, p, received),
        (Mode::Flush, _) => modes::flush(&run),
        (Mode::Check, _) => modes::check(&run),
        (Mode::Status, _) => modes::status(&loaded, &log, cli.flags.verbose),
        (Mode::FastnetmonUser, _) => modes::fastnetmon_user(&loaded, &log),
        _ => Ok(()),
    };
    let code = result.map_or_else(|e| e.exit_code(), |()| 0);
    log.debug(&format!(
        "exit {code} after {:.3}s",
        started.elapsed().as_secs_f64()
    ));
    ExitCode::from(code)
}
