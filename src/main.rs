//! prefixd-fastnetmon: FastNetMon's notify hook → prefixd's HTTP API.
//!
//! argv + stdin + env file + process env → Entry (what FastNetMon told us) + Config
//!   → outbox: deliver now, or keep in the spool, in order → log lines → exit code.

use prefixd_fastnetmon::error::Error;
use prefixd_fastnetmon::modes::{self, Run};
use prefixd_fastnetmon::{cli, config, log, outbox};
use std::process::ExitCode;
use std::sync::Arc;
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
        cli::Mode::Notify(args) | cli::Mode::DryRun(args) => modes::subject(args),
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
        log.debug(&modes::how_called(&cfg.log));
    }
    let deadline = started + cfg.deadline;
    let pending = Arc::new(outbox::Pending::default());
    outbox::start_watchdog(cfg, subject, pending.clone());

    let run = Run {
        flags: &cli.flags,
        loaded: &loaded,
        log: &log,
        deadline,
    };
    let result = match &cli.mode {
        cli::Mode::Notify(args) | cli::Mode::DryRun(args) => {
            modes::notify(&run, args, received, dry_run, &pending)
        }
        cli::Mode::Flush => modes::flush(&run),
        cli::Mode::Check => {
            log.stdout(&format!("{}\n", cli::version()));
            prefixd_fastnetmon::check::run(&loaded, deadline, &log)
        }
        cli::Mode::Status => modes::status(&loaded, &log, cli.flags.verbose),
        cli::Mode::Help | cli::Mode::Version => Ok(()),
    };
    if matches!(cli.mode, cli::Mode::Notify(_) | cli::Mode::Flush) {
        modes::publish_metrics(cfg, &log, deadline);
    }
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            if dry_run || !matches!(cli.mode, cli::Mode::Notify(_) | cli::Mode::Status) {
                log.stderr(&format!("prefixd-fastnetmon: {e}\n"));
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
