//! Where and how to send: the env file (`/etc/default/prefixd`) under the process environment
//! under command-line flags, each value remembering where it came from so that an error, and
//! `--check`, can name its source.
//!
//! The configuration's room: this table and its loading, the env file's shell subset
//! (`envfile`), each variable's parser (`values`), the token policy (`token`) and the
//! operator's files read bounded (`files`). It uses FastNetMon's room (a rules file is parsed
//! by its `rules`) and the leaves; never prefixd's side, the spool or the modes.

pub mod envfile;
pub(crate) mod files;
mod token;
mod values;

use files::{load_rules, read_env_file};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use token::{Given, looks_like_a_token, resolve_token};
use values::{
    parse_bool, parse_count, parse_fraction, parse_operator, parse_seconds, parse_token, parse_url,
};

pub const DEFAULT_ENV_FILE: &str = "/etc/default/prefixd";
pub const DEFAULT_LOG: &str = "/var/log/prefixd-fastnetmon.log";

/// How a variable's text becomes its value, with its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Url,
    Token,
    Operator,
    Text,
    Path,
    /// A directory, or `off`.
    Spool,
    Count {
        min: u32,
        max: u32,
    },
    Seconds {
        zero_ok: bool,
    },
    /// A fraction from 0 to 1 (prefixd's `confidence`).
    Fraction,
    Bool,
}

/// What a bad value of a variable does to a call (README "Configuration").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfBad {
    /// Nothing safe to fall back to (where to send, with which credentials, where to keep):
    /// a configuration error (exit 78) that stops the call; the notice is kept.
    Stops,
    /// A tuning value with a safe default: the default is used, with a WARN naming the
    /// variable, its source and the value used, and the call goes on. `--check` fails on it.
    FallsBack,
}

use IfBad::{FallsBack, Stops};

/// One variable we read: the single source of its name, default (empty: none), parser and
/// range, what a bad value of it does, and help text. `load`, `--help` and `--check` all read
/// this table.
pub struct Var {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
    pub if_bad: IfBad,
    pub help: &'static str,
}

const fn var(
    name: &'static str,
    default: &'static str,
    kind: Kind,
    if_bad: IfBad,
    help: &'static str,
) -> Var {
    Var {
        name,
        default,
        kind,
        if_bad,
        help,
    }
}

/// The table's row for `name`.
pub fn variable(name: &str) -> Option<&'static Var> {
    VARIABLES.iter().find(|v| v.name == name)
}

/// Every variable, in the `--help` and `--check` order.
pub const VARIABLES: &[Var] = &[
    var(
        "PREFIXD_API",
        "http://localhost:8080",
        Kind::Url,
        Stops,
        "prefixd's base URL; https:// uses TLS",
    ),
    var("PREFIXD_TOKEN", "", Kind::Token, Stops, "bearer token"),
    var(
        "PREFIXD_TOKEN_FILE",
        "",
        Kind::Path,
        Stops,
        "file whose first line is the token",
    ),
    var(
        "PREFIXD_OPERATOR",
        "fastnetmon",
        Kind::Operator,
        FallsBack,
        "operator_id on withdrawals",
    ),
    var(
        "PREFIXD_LOG",
        DEFAULT_LOG,
        Kind::Text,
        FallsBack,
        "log file; - for stderr; syslog",
    ),
    var(
        "UNBAN_QUERY_RETRIES",
        "5",
        Kind::Count { min: 0, max: 100 },
        FallsBack,
        "lookups of active mitigations on unban; 0 as 1",
    ),
    var(
        "UNBAN_QUERY_DELAY_SECONDS",
        "1",
        Kind::Seconds { zero_ok: true },
        FallsBack,
        "pause between those lookups",
    ),
    var(
        "PREFIXD_CA_FILE",
        "",
        Kind::Path,
        Stops,
        "PEM CAs to trust instead of the bundled roots",
    ),
    var(
        "PREFIXD_CONNECT_TIMEOUT",
        "3",
        Kind::Seconds { zero_ok: false },
        FallsBack,
        "seconds to connect",
    ),
    var(
        "PREFIXD_TIMEOUT",
        "5",
        Kind::Seconds { zero_ok: false },
        FallsBack,
        "seconds for one request",
    ),
    var(
        "PREFIXD_DEADLINE",
        "20",
        Kind::Seconds { zero_ok: false },
        FallsBack,
        "seconds for the whole run, retries included",
    ),
    var(
        "PREFIXD_RETRIES",
        "3",
        Kind::Count { min: 1, max: 20 },
        FallsBack,
        "attempts per request on transient failure",
    ),
    var(
        "PREFIXD_SPOOL",
        "/var/spool/prefixd-fastnetmon",
        Kind::Spool,
        Stops,
        "spool directory; off disables it",
    ),
    var(
        "PREFIXD_SPOOL_MAX_AGE",
        "3600",
        Kind::Seconds { zero_ok: false },
        FallsBack,
        "seconds after which a kept ban is dropped",
    ),
    var(
        "PREFIXD_UNBAN_MAX_AGE",
        "7200",
        Kind::Seconds { zero_ok: false },
        FallsBack,
        "seconds after which a kept unban is dropped",
    ),
    var(
        "PREFIXD_RENEW_BEFORE",
        "90",
        Kind::Seconds { zero_ok: false },
        FallsBack,
        "renew a held victim's mitigation expiring within this",
    ),
    var(
        "PREFIXD_RENEW_MAX",
        "21600",
        Kind::Seconds { zero_ok: true },
        FallsBack,
        "stop renewing this long after the ban; 0: never renew",
    ),
    var(
        "PREFIXD_CONFIDENCE",
        "",
        Kind::Fraction,
        FallsBack,
        "confidence 0-1 sent on every ban instead of the table",
    ),
    var(
        "PREFIXD_VECTOR_RULES",
        "",
        Kind::Path,
        FallsBack,
        "file of custom vector rules",
    ),
    var(
        "PREFIXD_METRICS",
        "",
        Kind::Path,
        FallsBack,
        "node_exporter textfile to write",
    ),
    var(
        "FASTNETMON_USER",
        "",
        Kind::Text,
        FallsBack,
        "user FastNetMon runs as (--check); default: its unit's",
    ),
    var(
        "FASTNETMON_BANLIST",
        crate::fastnetmon::banlist::DEFAULT_COMMAND,
        Kind::Text,
        FallsBack,
        "command printing FastNetMon's ban list; off: not asked",
    ),
    var(
        "FASTNETMON_BANLIST_GRACE",
        "120",
        Kind::Seconds { zero_ok: false },
        FallsBack,
        "seconds a held victim may be unlisted before its unban",
    ),
    var(
        "PREFIXD_DEBUG",
        "0",
        Kind::Bool,
        FallsBack,
        "1: debug lines in the log, as -v",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File { path: String, line: usize },
    Environment,
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{path}:{line}"),
            Source::Environment => f.write_str("environment"),
            Source::Flag => f.write_str("command line"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Origin {
    pub name: &'static str,
    pub source: Source,
    /// The value as given, for display (the token as its length only).
    pub shown: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL without a trailing slash.
    pub api: String,
    pub token: Option<String>,
    /// PREFIXD_TOKEN_FILE, when the token comes from a file.
    pub token_file: Option<PathBuf>,
    pub operator: String,
    pub log: String,
    pub unban_query_retries: u32,
    pub unban_query_delay: Duration,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub deadline: Duration,
    pub retries: u32,
    /// None: `PREFIXD_SPOOL=off`.
    pub spool: Option<PathBuf>,
    pub spool_max_age: Duration,
    /// A kept unban older than this is dropped: prefixd's TTL has ended what it was about.
    pub unban_max_age: Duration,
    /// node_exporter textfile (`PREFIXD_METRICS`); None: no metrics.
    pub metrics: Option<PathBuf>,
    /// The user FastNetMon runs as, when said (`FASTNETMON_USER`); None: read from its unit.
    pub fastnetmon_user: Option<String>,
    /// The command that prints FastNetMon's ban list (`FASTNETMON_BANLIST`, or the default when
    /// its client is on PATH); None: FastNetMon is not asked, leases end only by unbans.
    pub banlist: Option<Vec<String>>,
    /// FASTNETMON_BANLIST was set (a command that cannot run is then worth a warning).
    pub banlist_given: bool,
    /// How long a held victim may be missing from FastNetMon's ban list before that counts as
    /// its unban (`FASTNETMON_BANLIST_GRACE`).
    pub banlist_grace: Duration,
    /// Renew a held victim's mitigation when it ends within this (PREFIXD_RENEW_BEFORE).
    pub renew_before: Duration,
    /// Stop renewing this long after FastNetMon's ban (PREFIXD_RENEW_MAX); zero: no leases.
    pub renew_max: Duration,
    /// PREFIXD_CONFIDENCE: sent on every ban instead of README's table; None: the table.
    pub confidence: Option<f64>,
    /// Custom vector rules (`PREFIXD_VECTOR_RULES`), first match wins.
    pub rules: Vec<crate::fastnetmon::rules::Rule>,
    /// PREFIXD_VECTOR_RULES, the file they came from.
    pub rules_file: Option<PathBuf>,
    pub debug: bool,
    /// Where each variable's value came from, in `VARIABLES` order.
    pub sources: Vec<Origin>,
    pub env_file: String,
}

/// The outcome of loading: a usable `Config` (invalid values replaced by defaults, so the log
/// and deadline still work), and what was wrong.
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
    /// Bad values with a safe default (`IfBad::FallsBack`), each with the value used instead:
    /// WARN lines for a call, which goes on; failures for `--check`.
    pub fallbacks: Vec<String>,
    /// What stops a call (`IfBad::Stops`, the env file, the token): exit 78.
    pub errors: Vec<String>,
}

/// Command-line settings that take part in the precedence.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flags {
    pub env_file: Option<String>,
    pub verbose: bool,
}

pub fn load(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> Loaded {
    let mut warnings = Vec::new();
    let mut fallbacks = Vec::new();
    let mut errors = Vec::new();
    let (env_file, named) = env_file_path(flags, env);
    let (mut raw, env_file_mode) = env_file_layer(&env_file, named, &mut warnings, &mut errors);
    environment_layer(&mut raw, flags, env);

    let mut r = Resolver {
        raw,
        errors: &mut errors,
        fallbacks: &mut fallbacks,
        sources: Vec::new(),
    };
    let api = r.text("PREFIXD_API");
    let token_inline = r.opt_text("PREFIXD_TOKEN");
    let token_file = r.path("PREFIXD_TOKEN_FILE");
    let operator = r.text("PREFIXD_OPERATOR");
    let log = r.text("PREFIXD_LOG");
    let unban_query_retries = r.count("UNBAN_QUERY_RETRIES");
    let unban_query_delay = r.seconds("UNBAN_QUERY_DELAY_SECONDS");
    let ca_file = r.path("PREFIXD_CA_FILE");
    let connect_timeout = r.seconds("PREFIXD_CONNECT_TIMEOUT");
    let timeout = r.seconds("PREFIXD_TIMEOUT");
    let deadline = r.seconds("PREFIXD_DEADLINE");
    let retries = r.count("PREFIXD_RETRIES");
    let spool = r.path("PREFIXD_SPOOL");
    let spool_max_age = r.seconds("PREFIXD_SPOOL_MAX_AGE");
    let unban_max_age = r.seconds("PREFIXD_UNBAN_MAX_AGE");
    let renew_before = r.seconds("PREFIXD_RENEW_BEFORE");
    let renew_max = r.seconds("PREFIXD_RENEW_MAX");
    let confidence = r.fraction("PREFIXD_CONFIDENCE");
    let rules_file = r.path("PREFIXD_VECTOR_RULES");
    let metrics = r.path("PREFIXD_METRICS");
    let fastnetmon_user = r.opt_text("FASTNETMON_USER").filter(|u| !u.is_empty());
    let banlist_text = r.opt_text("FASTNETMON_BANLIST");
    let banlist_grace = r.seconds("FASTNETMON_BANLIST_GRACE");
    let debug = r.flag("PREFIXD_DEBUG");
    let sources = r.sources;

    let source_of = |name: &str| {
        sources
            .iter()
            .find(|o| o.name == name)
            .map_or(Source::Default, |o| o.source.clone())
    };
    // FastNetMon's ban list: as given, or the default command when its client is on PATH.
    let banlist_given = source_of("FASTNETMON_BANLIST") != Source::Default;
    let banlist = crate::fastnetmon::banlist::command(
        banlist_text.as_deref().filter(|_| banlist_given),
        env("PATH").as_deref(),
    );
    let given = Given {
        token_from: source_of("PREFIXD_TOKEN").to_string(),
        token_file_from: source_of("PREFIXD_TOKEN_FILE").to_string(),
        token_in_env_file: matches!(source_of("PREFIXD_TOKEN"), Source::File { .. }),
    };
    let token = resolve_token(
        token_inline,
        token_file.clone(),
        given,
        (&env_file, env_file_mode),
        &mut warnings,
        &mut errors,
    );
    let mut bad_rules = Vec::new();
    let rules = load_rules(rules_file.as_deref(), &mut warnings, &mut bad_rules);
    match variable("PREFIXD_VECTOR_RULES").map(|v| v.if_bad) {
        Some(IfBad::FallsBack) => fallbacks.extend(bad_rules),
        _ => errors.extend(bad_rules),
    }

    let config = Config {
        api,
        token,
        token_file,
        operator,
        log,
        unban_query_retries,
        unban_query_delay,
        ca_file,
        connect_timeout,
        timeout,
        deadline,
        retries,
        spool,
        spool_max_age,
        unban_max_age,
        metrics,
        fastnetmon_user,
        banlist,
        banlist_given,
        banlist_grace,
        renew_before,
        renew_max,
        confidence,
        rules,
        rules_file,
        debug,
        sources,
        env_file,
    };
    Loaded {
        config,
        warnings,
        fallbacks,
        errors,
    }
}

/// The env file to read, and whether it was named (then a missing file is an error).
fn env_file_path(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> (String, bool) {
    match (
        &flags.env_file,
        env("PREFIXD_ENV_FILE").filter(|s| !s.is_empty()),
    ) {
        (Some(f), _) => (f.clone(), true),
        (None, Some(f)) => (f, true),
        (None, None) => (DEFAULT_ENV_FILE.to_string(), false),
    }
}

type Raw = BTreeMap<&'static str, (String, Source)>;

/// Layer 1: our variables in the env file (others are prefixd's own), and the file's mode.
fn env_file_layer(
    env_file: &str,
    named: bool,
    warnings: &mut Vec<String>,
    errors: &mut Vec<String>,
) -> (Raw, Option<u32>) {
    let mut raw = Raw::new();
    let text = match read_env_file(env_file) {
        Ok(Some((text, mode))) => (text, mode),
        Ok(None) if named => {
            errors.push(format!("env file {env_file}: no such file"));
            return (raw, None);
        }
        Ok(None) => return (raw, None),
        Err(e) => {
            errors.push(format!("env file {env_file}: {e}"));
            return (raw, None);
        }
    };
    for line in envfile::parse(&text.0) {
        match line {
            envfile::Line::Assign {
                line,
                key,
                value,
                literal_warning,
            } => {
                let Some(name) = VARIABLES.iter().map(|v| v.name).find(|n| *n == key) else {
                    continue; // the file may be shared with prefixd itself
                };
                if let Some(w) = literal_warning {
                    warnings.push(format!("{env_file}:{line}: {name}: {w}"));
                }
                let path = env_file.to_string();
                raw.insert(name, (value, Source::File { path, line }));
            }
            envfile::Line::Malformed { line, reason } => {
                warnings.push(format!("{env_file}:{line}: {reason}; line skipped"));
            }
        }
    }
    (raw, Some(text.1))
}

/// Layer 2: the process environment, then the command line. Empty counts as unset, as
/// `${VAR:-default}` does.
fn environment_layer(raw: &mut Raw, flags: &Flags, env: &dyn Fn(&str) -> Option<String>) {
    for name in VARIABLES.iter().map(|v| v.name) {
        if let Some(v) = env(name).filter(|v| !v.is_empty()) {
            raw.insert(name, (v, Source::Environment));
        }
    }
    if flags.verbose {
        raw.insert("PREFIXD_DEBUG", ("1".to_string(), Source::Flag));
    }
}

/// One line per variable: `NAME = value (source)`; the token only as its length.
pub fn describe(cfg: &Config) -> Vec<String> {
    cfg.sources
        .iter()
        .map(|s| format!("{} = {} ({})", s.name, s.shown, s.source))
        .collect()
}

struct Resolver<'a> {
    raw: BTreeMap<&'static str, (String, Source)>,
    errors: &'a mut Vec<String>,
    fallbacks: &'a mut Vec<String>,
    sources: Vec<Origin>,
}

/// A variable's value, as its `Kind` makes it.
enum Value {
    Text(String),
    Path(Option<PathBuf>),
    Count(u32),
    Seconds(Duration),
    Fraction(f64),
    Bool(bool),
}

fn parse(kind: Kind, s: &str) -> Result<Value, String> {
    Ok(match kind {
        Kind::Url => Value::Text(parse_url(s)?),
        Kind::Token => Value::Text(parse_token(s)?),
        Kind::Operator => Value::Text(parse_operator(s)?),
        Kind::Text => Value::Text(s.to_string()),
        Kind::Path => Value::Path(Some(PathBuf::from(s))),
        Kind::Spool => Value::Path((s != "off").then(|| PathBuf::from(s))),
        Kind::Count { min, max } => Value::Count(parse_count(s, min, max)?),
        Kind::Seconds { zero_ok } => Value::Seconds(parse_seconds(s, zero_ok)?),
        Kind::Fraction => Value::Fraction(parse_fraction(s)?),
        Kind::Bool => Value::Bool(parse_bool(s)?),
    })
}

impl Resolver<'_> {
    /// The value of `name`: as set, or its table default when unset, empty or invalid (the
    /// invalid case is recorded, naming the variable and its source, as an error or a
    /// fallback as the table's `if_bad` says). None: no value and no default.
    fn value(&mut self, name: &'static str) -> Option<Value> {
        let var = variable(name)?;
        let default = || {
            parse(var.kind, var.default)
                .ok()
                .filter(|_| !var.default.is_empty())
        };
        let Some((value, source)) = self.raw.remove(name).filter(|(v, _)| !v.is_empty()) else {
            let shown = if var.default.is_empty() {
                "(unset)".into()
            } else {
                var.default.to_string()
            };
            self.sources.push(Origin {
                name,
                source: Source::Default,
                shown,
            });
            return default();
        };
        let parsed = parse(var.kind, &value);
        // Never echo a token's value, even a malformed one, nor a token given where its
        // file's path belongs.
        let shown = if var.kind == Kind::Token || looks_like_a_token(name, &value) {
            format!("(set, {} chars)", value.trim().len())
        } else {
            let mut shown = crate::pretty::printable(&value, 80);
            if value.chars().nth(80).is_some() {
                shown.push('…');
            }
            shown
        };
        if let Err(why) = &parsed {
            let said = format!("{name}={shown} (from {source}): {why}");
            match var.if_bad {
                IfBad::Stops => self.errors.push(said),
                IfBad::FallsBack if var.default.is_empty() => {
                    self.fallbacks.push(format!("{said}; ignored, as if unset"))
                }
                IfBad::FallsBack => self
                    .fallbacks
                    .push(format!("{said}; using the default {}", var.default)),
            }
        }
        self.sources.push(Origin {
            name,
            source,
            shown,
        });
        parsed.ok().or_else(default)
    }

    fn opt_text(&mut self, name: &'static str) -> Option<String> {
        match self.value(name) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }

    fn text(&mut self, name: &'static str) -> String {
        self.opt_text(name).unwrap_or_default()
    }

    fn path(&mut self, name: &'static str) -> Option<PathBuf> {
        match self.value(name) {
            Some(Value::Path(p)) => p,
            _ => None,
        }
    }

    fn count(&mut self, name: &'static str) -> u32 {
        match self.value(name) {
            Some(Value::Count(n)) => n,
            _ => 0,
        }
    }

    fn seconds(&mut self, name: &'static str) -> Duration {
        match self.value(name) {
            Some(Value::Seconds(d)) => d,
            _ => Duration::ZERO,
        }
    }

    fn fraction(&mut self, name: &'static str) -> Option<f64> {
        match self.value(name) {
            Some(Value::Fraction(x)) => Some(x),
            _ => None,
        }
    }

    fn flag(&mut self, name: &'static str) -> bool {
        matches!(self.value(name), Some(Value::Bool(true)))
    }
}

#[cfg(test)]
mod tests {

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn every_default_in_the_table_parses_as_its_kind() {
        for v in VARIABLES {
            if !v.default.is_empty() {
                assert!(parse(v.kind, v.default).is_ok(), "{}={}", v.name, v.default);
            }
            assert!(!v.help.is_empty(), "{}", v.name);
        }
        let mut names: Vec<_> = VARIABLES.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VARIABLES.len(), "each variable once");
        // The defaults a bare configuration gets are the table's.
        let c = load(&Flags::default(), &|_| None).config;
        assert_eq!(c.api, "http://localhost:8080");
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.unban_max_age, Duration::from_secs(7200));
        assert_eq!(
            c.spool.as_deref(),
            Some(std::path::Path::new("/var/spool/prefixd-fastnetmon"))
        );
        assert_eq!((c.retries, c.unban_query_retries, c.debug), (3, 5, false));
        assert_eq!((c.metrics, c.ca_file, c.token), (None, None, None));
    }

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn load_with(file: &str, env: &[(&str, &str)]) -> Loaded {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prefixd");
        std::fs::write(&path, file).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let flags = Flags {
            env_file: Some(path.display().to_string()),
            verbose: false,
        };
        load(&flags, &env_of(env))
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let l = load(
            &Flags::default(),
            &env_of(&[("PREFIXD_ENV_FILE", "/nonexistent/default")]),
        );
        assert_eq!(
            l.errors,
            vec!["env file /nonexistent/default: no such file".to_string()]
        );
        let l = load_with("", &[]);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        let c = l.config;
        assert_eq!(c.api, "http://localhost:8080");
        assert_eq!(c.token, None);
        assert_eq!(c.operator, "fastnetmon");
        assert_eq!(c.unban_query_retries, 5);
        assert_eq!(c.unban_query_delay, secs(1));
        assert_eq!(
            (c.connect_timeout, c.timeout, c.deadline),
            (secs(3), secs(5), secs(20))
        );
        assert!(!c.debug);
    }

    #[test]
    fn environment_beats_file_and_sources_are_kept() {
        let l = load_with(
            "PREFIXD_API=https://file.example/\nPREFIXD_OPERATOR=fromfile\nUNBAN_QUERY_DELAY_SECONDS=0.25\n",
            &[
                ("PREFIXD_API", "http://env.example:9000"),
                ("PREFIXD_OPERATOR", ""),
            ],
        );
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!(l.config.api, "http://env.example:9000");
        // An empty environment value counts as unset, so the file's value stays.
        assert_eq!(l.config.operator, "fromfile");
        assert_eq!(l.config.unban_query_delay, Duration::from_millis(250));
        let src = |n: &str| {
            l.config
                .sources
                .iter()
                .find(|o| o.name == n)
                .unwrap()
                .source
                .to_string()
        };
        assert_eq!(src("PREFIXD_API"), "environment");
        assert!(
            src("PREFIXD_OPERATOR").ends_with("prefixd:2"),
            "{}",
            src("PREFIXD_OPERATOR")
        );
        assert_eq!(src("PREFIXD_TIMEOUT"), "default");
    }

    #[test]
    fn bad_values_name_the_variable_and_source() {
        let l = load_with(
            "PREFIXD_TIMEOUT=soon\nPREFIXD_API=localhost:8080\n",
            &[("UNBAN_QUERY_RETRIES", "-1")],
        );
        // Where to send has no safe default: it stops the call.
        assert_eq!(l.errors.len(), 1, "{:?}", l.errors);
        assert!(
            l.errors[0].starts_with("PREFIXD_API=localhost:8080 (from "),
            "{}",
            l.errors[0]
        );
        assert!(l.errors[0].contains("prefixd:2)"), "{}", l.errors[0]);
        // Tuning values fall back to their defaults, each saying the value used.
        assert_eq!(l.fallbacks.len(), 2, "{:?}", l.fallbacks);
        assert!(l.fallbacks.iter().any(|e| {
            e.starts_with("UNBAN_QUERY_RETRIES=-1 (from environment)")
                && e.ends_with("; using the default 5")
        }));
        assert!(
            l.fallbacks
                .iter()
                .any(|e| e.starts_with("PREFIXD_TIMEOUT=soon (from")
                    && e.contains("prefixd:1")
                    && e.ends_with("; using the default 5"))
        );
        assert_eq!(
            l.config.timeout,
            secs(5),
            "invalid value falls back so the run stays bounded"
        );
    }

    #[test]
    fn only_what_has_no_safe_default_stops_a_call() {
        let stops: Vec<&str> = VARIABLES
            .iter()
            .filter(|v| v.if_bad == IfBad::Stops)
            .map(|v| v.name)
            .collect();
        assert_eq!(
            stops,
            [
                "PREFIXD_API",
                "PREFIXD_TOKEN",
                "PREFIXD_TOKEN_FILE",
                "PREFIXD_CA_FILE",
                "PREFIXD_SPOOL"
            ]
        );
        // What the bash script took: a decimal comma, and no retry at all.
        let l = load_with(
            "UNBAN_QUERY_DELAY_SECONDS=0,5\nUNBAN_QUERY_RETRIES=0\n",
            &[("PREFIXD_CONFIDENCE", "0,8")],
        );
        assert!(
            l.errors.is_empty() && l.fallbacks.is_empty(),
            "{:?}",
            l.fallbacks
        );
        assert_eq!(l.config.unban_query_delay, Duration::from_millis(500));
        assert_eq!(l.config.unban_query_retries, 0);
        assert_eq!(l.config.confidence, Some(0.8));
        // A bad value with no default is left unset, and says so.
        let l = load_with(
            "",
            &[
                ("PREFIXD_CONFIDENCE", "high"),
                ("PREFIXD_DEBUG", "yes please"),
            ],
        );
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!((l.config.confidence, l.config.debug), (None, false));
        assert!(
            l.fallbacks.iter().any(
                |f| f.starts_with("PREFIXD_CONFIDENCE=high (from environment)")
                    && f.ends_with("; ignored, as if unset")
            ),
            "{:?}",
            l.fallbacks
        );
        assert!(
            l.fallbacks
                .iter()
                .any(|f| f.ends_with("; using the default 0")),
            "{:?}",
            l.fallbacks
        );
    }

    #[test]
    fn token_value_is_never_echoed_in_errors() {
        let l = load_with(
            "",
            &[
                ("PREFIXD_TOKEN", "sec ret\u{1}"),
                ("PREFIXD_TOKEN_FILE", "/x"),
            ],
        );
        assert!(!l.errors.is_empty());
        for e in &l.errors {
            assert!(!e.contains("sec ret"), "{e}");
        }
    }
}
