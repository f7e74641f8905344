//! argv → what to do. Strict: an unknown flag, a stray argument or a missing value is a usage
//! error (exit 64) that names the argument. Flags come before the positional arguments, so a
//! negative PPS (`-5`) is never mistaken for a flag.

use crate::config::Flags;
use crate::fastnetmon::notice::Notice;

#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    Notify(Args),
    DryRun(Args),
    Flush,
    Check,
    Status,
    /// `--fastnetmon-user`: the user FastNetMon runs as, for the package's scripts.
    FastnetmonUser,
    Help,
    Version,
}

/// FastNetMon's positional arguments, as given.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Args {
    pub ip: String,
    pub direction: Option<String>,
    pub pps: Option<String>,
    pub action: Option<String>,
}

impl Args {
    /// The notice these arguments make (parsed here, once per run), or the usage error.
    pub fn notice(&self) -> Result<(Notice, Vec<String>), String> {
        Notice::parse(
            &self.ip,
            self.direction.as_deref(),
            self.pps.as_deref(),
            self.action.as_deref(),
        )
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Cli {
    pub mode: Mode,
    pub flags: Flags,
}

pub const USAGE: &str =
    "usage: prefixd-fastnetmon [-v] [--env-file PATH] IP [DIRECTION [PPS [ACTION]]]
       prefixd-fastnetmon [-v] [--env-file PATH] --dry-run IP [DIRECTION [PPS [ACTION]]]
       prefixd-fastnetmon [-v] [--env-file PATH] --flush | --check | --status
       prefixd-fastnetmon [--env-file PATH] --fastnetmon-user
       prefixd-fastnetmon --help | --version";

/// `--version`: the version, the target it was built for, and the commit.
pub fn version() -> String {
    format!(
        "prefixd-fastnetmon {} ({}, commit {})",
        env!("CARGO_PKG_VERSION"),
        env!("PFN_TARGET"),
        env!("PFN_COMMIT")
    )
}

/// `--help`: usage, every variable from the configuration table, options and exit codes.
pub fn help() -> String {
    let mut h = format!(
        "{}\n\n{USAGE}\n\nVariables (env file {}, overridden by the environment):\n",
        version(),
        crate::config::DEFAULT_ENV_FILE
    );
    for v in crate::config::VARIABLES {
        let default = if v.default.is_empty() { "-" } else { v.default };
        h.push_str(&format!("  {:<27} {default:<32} {}\n", v.name, v.help));
    }
    let stops: Vec<&str> = crate::config::VARIABLES
        .iter()
        .filter(|v| v.if_bad == crate::config::IfBad::Stops)
        .map(|v| v.name)
        .collect();
    h.push_str(&format!(
        "A bad value falls back to its default with a WARN, and the call goes on, except for\n{} (configuration error, 78).\n",
        stops.join(", ")
    ));
    h.push_str(
        "
DIRECTION defaults to incoming, PPS to 0, ACTION to ban (ban | unban | attack_details).
Options: -v/--verbose debug lines in the log; --env-file PATH instead of /etc/default/prefixd
(or PREFIXD_ENV_FILE); --dry-run prints the request(s) and sends nothing; --flush delivers
what the spool holds; --status lists it, oldest first, with each notice's attempts and last
error (exit 75 while anything waits; -v adds the file names); --fastnetmon-user prints the user
and group FastNetMon runs the hook as, and where that was read (FASTNETMON_USER, else its
systemd unit and drop-ins, else root).

Exit codes: 0 done | 64 bad arguments | 65 refused by prefixd (400/422) | 70 internal
error | 73 not delivered and could not be kept (the log line holds the notice) | 75 not
delivered, kept in the spool | 77 token refused (401/403), kept | 78 configuration error
(404/405/415 from PREFIXD_API, and a 4xx page that is not prefixd's, included), kept when the
spool is usable
",
    );
    h
}

pub fn parse(argv: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Cli, String> {
    let mut flags = Flags::default();
    let mut command: Option<&'static str> = None;
    let mut positional: Vec<String> = Vec::new();
    let mut args = argv.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?;
        if !positional.is_empty() || arg == "-" || !arg.starts_with('-') {
            positional.push(arg);
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match name.as_str() {
            "-v" | "--verbose" => flags.verbose = true,
            "--env-file" => {
                let v = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .and_then(|v| v.into_string().ok())
                        .ok_or("--env-file needs a path")?,
                };
                if v.is_empty() {
                    return Err("--env-file needs a path".into());
                }
                flags.env_file = Some(v);
                continue;
            }
            "--dry-run" | "--flush" | "--check" | "--status" | "--fastnetmon-user" | "--help"
            | "-h" | "--version" | "-V" => {
                if let Some(prev) = command {
                    return Err(format!("{arg} cannot be combined with {prev}"));
                }
                command = Some(match name.as_str() {
                    "-h" => "--help",
                    "-V" => "--version",
                    "--dry-run" => "--dry-run",
                    "--flush" => "--flush",
                    "--check" => "--check",
                    "--status" => "--status",
                    "--fastnetmon-user" => "--fastnetmon-user",
                    "--help" => "--help",
                    _ => "--version",
                });
            }
            "--" => {
                for a in args.by_ref() {
                    positional.push(
                        a.into_string()
                            .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?,
                    );
                }
                break;
            }
            _ => return Err(format!("unknown option {arg}")),
        }
        if inline.is_some() {
            return Err(format!("{name} takes no value"));
        }
    }

    let mode = match command {
        Some("--help") => Mode::Help,
        Some("--version") => Mode::Version,
        Some(c @ ("--flush" | "--check" | "--status" | "--fastnetmon-user")) => {
            if let Some(extra) = positional.first() {
                return Err(format!("{c} takes no arguments (got {extra:?})"));
            }
            match c {
                "--flush" => Mode::Flush,
                "--check" => Mode::Check,
                "--status" => Mode::Status,
                _ => Mode::FastnetmonUser,
            }
        }
        Some(_) => Mode::DryRun(positional_args(positional)?),
        None => Mode::Notify(positional_args(positional)?),
    };
    Ok(Cli { mode, flags })
}

fn positional_args(p: Vec<String>) -> Result<Args, String> {
    if p.len() > 4 {
        return Err(format!(
            "too many arguments: {:?} (expected IP [DIRECTION [PPS [ACTION]]])",
            &p[4..]
        ));
    }
    let mut it = p.into_iter();
    let ip = it
        .next()
        .ok_or("missing IP (expected IP [DIRECTION [PPS [ACTION]]])")?;
    Ok(Args {
        ip,
        direction: it.next(),
        pps: it.next(),
        action: it.next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, String> {
        parse(args.iter().map(std::ffi::OsString::from))
    }

    #[test]
    fn accepted_command_lines() {
        let c = cli(&["192.0.2.1", "incoming", "1000", "ban"]).unwrap();
        assert_eq!(
            c.mode,
            Mode::Notify(Args {
                ip: "192.0.2.1".into(),
                direction: Some("incoming".into()),
                pps: Some("1000".into()),
                action: Some("ban".into())
            })
        );
        let c = cli(&["-v", "--env-file", "/x", "192.0.2.1"]).unwrap();
        assert!(c.flags.verbose);
        assert_eq!(c.flags.env_file.as_deref(), Some("/x"));
        assert!(matches!(
            c.mode,
            Mode::Notify(Args {
                direction: None,
                ..
            })
        ));
        assert_eq!(
            cli(&["--env-file=/y", "--flush"])
                .unwrap()
                .flags
                .env_file
                .as_deref(),
            Some("/y")
        );
        assert_eq!(cli(&["--check"]).unwrap().mode, Mode::Check);
        assert_eq!(cli(&["-h"]).unwrap().mode, Mode::Help);
        assert_eq!(cli(&["--version"]).unwrap().mode, Mode::Version);
        assert!(matches!(
            cli(&["--dry-run", "192.0.2.1", "incoming", "5", "unban"])
                .unwrap()
                .mode,
            Mode::DryRun(_)
        ));
        // A negative PPS after the IP is an argument, not a flag.
        assert!(matches!(
            cli(&["192.0.2.1", "incoming", "-5"]).unwrap().mode,
            Mode::Notify(Args { pps: Some(_), .. })
        ));
    }

    #[test]
    fn refused_command_lines_name_the_argument() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "missing IP"),
            (&["--bogus", "1.2.3.4"], "unknown option --bogus"),
            (&["1.2.3.4", "a", "b", "c", "d"], "too many arguments"),
            (&["--flush", "1.2.3.4"], "--flush takes no arguments"),
            (&["--check", "--flush"], "cannot be combined"),
            (&["--env-file"], "--env-file needs a path"),
            (&["--env-file="], "--env-file needs a path"),
            (&["--verbose=yes", "1.2.3.4"], "takes no value"),
            (&["--dry-run"], "missing IP"),
        ];
        for (args, want) in cases {
            let err = cli(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}
