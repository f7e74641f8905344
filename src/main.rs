//! prefixd-fastnetmon: FastNetMon's notify hook → prefixd's HTTP API.
//!
//! argv + stdin + env file + process env → Notice + Config → Client → prefixd → log → exit code.

mod api;
mod cli;
mod config;
mod deliver;
mod details;
mod envfile;
mod error;
mod log;
mod notice;
mod pretty;
mod time;
mod uuid;

use error::Error;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

fn main() -> ExitCode {
    let started = Instant::now();
    let received = SystemTime::now();
    let cli = match cli::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            // The configured log is still the place an operator looks for a failed call.
            let loaded = config::load(&config::Flags::default(), &|k| std::env::var(k).ok());
            let log = log::Log::open(&loaded.config.log, false, loaded.config.token.clone());
            let e = Error::Usage(e);
            log.error(&e.to_string());
            eprintln!("prefixd-fastnetmon: {e}\n{}", cli::USAGE);
            return ExitCode::from(e.exit_code());
        }
    };
    let args = match cli.mode {
        cli::Mode::Help => {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        cli::Mode::Version => {
            println!("{}", version());
            return ExitCode::SUCCESS;
        }
        cli::Mode::Notify(ref a) | cli::Mode::DryRun(ref a) => a.clone(),
        cli::Mode::Flush | cli::Mode::Check => {
            let e = Error::Usage(
                "--flush and --check come with the spool and operator-tools work".into(),
            );
            eprintln!("prefixd-fastnetmon: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let dry_run = matches!(cli.mode, cli::Mode::DryRun(_));

    let loaded = config::load(&cli.flags, &|k| std::env::var(k).ok());
    let cfg = &loaded.config;
    let log = if dry_run {
        log::Log::open("-", cfg.debug, cfg.token.clone())
    } else {
        log::Log::open(&cfg.log, cfg.debug, cfg.token.clone())
    };
    for w in &loaded.warnings {
        log.warn(w);
    }
    if cfg.debug {
        log.debug(&format!(
            "env file {}; {}",
            cfg.env_file,
            config::describe(cfg).join(", ")
        ));
    }
    let deadline = started + cfg.deadline;
    start_watchdog(cfg.deadline, &cfg.log, cfg.token.clone());

    let code = match run(&args, &loaded, &log, deadline, received, dry_run) {
        Ok(()) => 0,
        Err(e) => {
            if dry_run {
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

fn run(
    args: &cli::Args,
    loaded: &config::Loaded,
    log: &log::Log,
    deadline: Instant,
    received: SystemTime,
    dry_run: bool,
) -> Result<(), Error> {
    let cfg = &loaded.config;
    // FastNetMon writes the details into our stdin on ban (and attack_details) and fails if we
    // do not read them; it gives no stdin on unban, where a read could block for ever.
    let reads_stdin = matches!(
        args.action.as_deref(),
        None | Some("ban" | "attack_details")
    );
    let text = if reads_stdin {
        let stdin = std::io::stdin();
        let tty = stdin.is_terminal();
        notice::read_details(stdin.lock(), tty).map_err(|e| {
            let e = Error::Internal(format!("reading details from stdin: {e}"));
            log.error(&e.to_string());
            e
        })?
    } else {
        notice::Details {
            text: String::new(),
            truncated: false,
        }
    };

    let (notice, warnings) = notice::from_args(args).map_err(|m| {
        let e = Error::Usage(m);
        log.error(&format!("{e}; nothing sent"));
        e
    })?;
    for w in warnings {
        log.warn(&w);
    }
    if let Some(first) = loaded.errors.first() {
        for e in &loaded.errors {
            log.error(&format!("configuration error: {e}"));
        }
        log.error(&format!(
            "{:?} {} not sent: configuration error",
            notice.action, notice.victim_ip
        ));
        return Err(Error::Config(first.clone()));
    }
    if notice.action == notice::Action::AttackDetails {
        log.info(&format!(
            "attack_details {} {} pps={}: logged only, nothing sent",
            notice.victim_ip,
            notice.direction,
            args.pps.as_deref().unwrap_or("0")
        ));
        return Ok(());
    }
    if dry_run {
        return dry_run_print(cfg, &notice, &text, received);
    }

    let client = api::Client::new(cfg, deadline).inspect_err(|e| log.error(&e.to_string()))?;
    match notice.action {
        notice::Action::Ban => deliver::ban(&client, log, &notice, &text, received),
        notice::Action::Unban => deliver::unban(&client, cfg, log, &notice),
        notice::Action::AttackDetails => Ok(()),
    }
}

/// Prints what a real run would send, and sends nothing.
fn dry_run_print(
    cfg: &config::Config,
    notice: &notice::Notice,
    text: &notice::Details,
    received: SystemTime,
) -> Result<(), Error> {
    let auth = if cfg.token.is_some() {
        "Authorization: Bearer <redacted>\n"
    } else {
        ""
    };
    match notice.action {
        notice::Action::Ban => {
            let event = deliver::ban_event(notice, text, received)?;
            let body = miniserde::json::to_string(&event);
            println!(
                "POST {}/v1/events\n{auth}Content-Type: application/json\n\n{}",
                cfg.api,
                pretty::json(&body)
            );
        }
        _ => {
            let ip = notice.victim_ip.to_string();
            println!("GET {}{}\n{auth}", cfg.api, deliver::lookup_path(&ip));
            println!(
                "then, for each mitigation_id listed:\nPOST {}/v1/mitigations/{{mitigation_id}}/withdraw\n{auth}Content-Type: application/json\n\n{}",
                cfg.api,
                pretty::json(&deliver::withdraw_body(cfg, notice))
            );
        }
    }
    Ok(())
}

/// FastNetMon waits for us with no timeout of its own: whatever happens, this process ends by
/// the deadline (plus a moment for the request that is timing out to say so itself).
fn start_watchdog(deadline: std::time::Duration, log_spec: &str, token: Option<String>) {
    let log_spec = log_spec.to_string();
    std::thread::spawn(move || {
        std::thread::sleep(deadline + std::time::Duration::from_millis(500));
        let log = log::Log::open(&log_spec, false, token);
        let e = Error::NotDelivered(format!(
            "PREFIXD_DEADLINE of {:.1}s reached; stopped",
            deadline.as_secs_f64()
        ));
        log.error(&e.to_string());
        std::process::exit(i32::from(e.exit_code()));
    });
}

fn version() -> String {
    format!(
        "prefixd-fastnetmon {} ({}, commit {})",
        env!("CARGO_PKG_VERSION"),
        env!("PFN_TARGET"),
        env!("PFN_COMMIT")
    )
}

fn help() -> String {
    let mut h = format!(
        "{}\n\n{}\n\nVariables (env file {}, overridden by the environment):\n",
        version(),
        cli::USAGE,
        config::DEFAULT_ENV_FILE
    );
    for (name, default) in config::VARIABLES {
        let default = if default.is_empty() { "-" } else { default };
        h.push_str(&format!("  {name:<27} {default}\n"));
    }
    h.push_str(
        "
DIRECTION defaults to incoming, PPS to 0, ACTION to ban (ban | unban | attack_details).
Options: -v/--verbose debug lines in the log; --env-file PATH instead of /etc/default/prefixd
(or PREFIXD_ENV_FILE); --dry-run prints the request(s) and sends nothing.

Exit codes: 0 done | 64 bad arguments | 65 refused by prefixd (400/413/422) | 70 internal
error | 75 not delivered (unreachable, 5xx, timeout) | 77 token refused (401/403) | 78 config
",
    );
    h
}
