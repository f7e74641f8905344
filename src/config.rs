//! Where and how to send: the env file (`/etc/default/prefixd`) under the process environment
//! under command-line flags, each value remembering where it came from so that an error, and
//! `--check`, can name its source.

use crate::envfile;
use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_ENV_FILE: &str = "/etc/default/prefixd";
pub const DEFAULT_LOG: &str = "/var/log/prefixd-fastnetmon.log";
/// An env file larger than this is not an env file.
const MAX_ENV_FILE: u64 = 4 * 1024 * 1024;

/// Every variable we read, with its default (empty: none). The order is the `--check` order.
pub const VARIABLES: &[(&str, &str)] = &[
    ("PREFIXD_API", "http://localhost:8080"),
    ("PREFIXD_TOKEN", ""),
    ("PREFIXD_TOKEN_FILE", ""),
    ("PREFIXD_OPERATOR", "fastnetmon"),
    ("PREFIXD_LOG", DEFAULT_LOG),
    ("UNBAN_QUERY_RETRIES", "5"),
    ("UNBAN_QUERY_DELAY_SECONDS", "1"),
    ("PREFIXD_CA_FILE", ""),
    ("PREFIXD_CONNECT_TIMEOUT", "3"),
    ("PREFIXD_TIMEOUT", "5"),
    ("PREFIXD_DEADLINE", "20"),
    ("PREFIXD_RETRIES", "3"),
    ("PREFIXD_SPOOL", "/var/spool/prefixd-fastnetmon"),
    ("PREFIXD_SPOOL_MAX_AGE", "3600"),
    ("PREFIXD_UNBAN_MAX_AGE", "7200"),
    ("PREFIXD_VECTOR_RULES", ""),
    ("PREFIXD_METRICS", ""),
    ("PREFIXD_DEBUG", "0"),
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
    /// Custom vector rules (`PREFIXD_VECTOR_RULES`), first match wins.
    pub rules: Vec<crate::rules::Rule>,
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
    let mut errors = Vec::new();

    let (env_file, named) = match (
        &flags.env_file,
        env("PREFIXD_ENV_FILE").filter(|s| !s.is_empty()),
    ) {
        (Some(f), _) => (f.clone(), true),
        (None, Some(f)) => (f, true),
        (None, None) => (DEFAULT_ENV_FILE.to_string(), false),
    };

    // Layer 1: the env file.
    let mut raw: BTreeMap<&'static str, (String, Source)> = BTreeMap::new();
    let mut env_file_mode = None;
    match read_env_file(&env_file) {
        Ok(Some((text, mode))) => {
            env_file_mode = Some(mode);
            for line in envfile::parse(&text) {
                match line {
                    envfile::Line::Assign {
                        line,
                        key,
                        value,
                        literal_warning,
                    } => {
                        let Some(&(name, _)) = VARIABLES.iter().find(|(n, _)| *n == key) else {
                            continue; // the file may be shared with prefixd itself
                        };
                        if let Some(w) = literal_warning {
                            warnings.push(format!("{env_file}:{line}: {name}: {w}"));
                        }
                        raw.insert(
                            name,
                            (
                                value,
                                Source::File {
                                    path: env_file.clone(),
                                    line,
                                },
                            ),
                        );
                    }
                    envfile::Line::Malformed { line, reason } => {
                        warnings.push(format!("{env_file}:{line}: {reason}; line skipped"));
                    }
                }
            }
        }
        Ok(None) if named => errors.push(format!("env file {env_file}: no such file")),
        Ok(None) => {}
        Err(e) => errors.push(format!("env file {env_file}: {e}")),
    }

    // Layer 2: the process environment. Empty counts as unset, as `${VAR:-default}` does.
    for &(name, _) in VARIABLES {
        if let Some(v) = env(name).filter(|v| !v.is_empty()) {
            raw.insert(name, (v, Source::Environment));
        }
    }
    if flags.verbose {
        raw.insert("PREFIXD_DEBUG", ("1".to_string(), Source::Flag));
    }

    let mut r = Resolver {
        raw,
        errors: &mut errors,
        sources: Vec::new(),
    };
    let api = r.get(
        "PREFIXD_API",
        parse_url,
        "http://localhost:8080".to_string(),
    );
    let token_inline = r.opt("PREFIXD_TOKEN", parse_token);
    let token_file = r.opt("PREFIXD_TOKEN_FILE", |s| Ok(PathBuf::from(s)));
    let operator = r.get("PREFIXD_OPERATOR", parse_operator, "fastnetmon".to_string());
    let log = r.get(
        "PREFIXD_LOG",
        |s| Ok(s.to_string()),
        DEFAULT_LOG.to_string(),
    );
    let unban_query_retries = r.get("UNBAN_QUERY_RETRIES", |s| parse_count(s, 1, 100), 5);
    let unban_query_delay = r.get(
        "UNBAN_QUERY_DELAY_SECONDS",
        |s| parse_seconds(s, true),
        secs(1),
    );
    let ca_file = r.opt("PREFIXD_CA_FILE", |s| Ok(PathBuf::from(s)));
    let connect_timeout = r.get(
        "PREFIXD_CONNECT_TIMEOUT",
        |s| parse_seconds(s, false),
        secs(3),
    );
    let timeout = r.get("PREFIXD_TIMEOUT", |s| parse_seconds(s, false), secs(5));
    let deadline = r.get("PREFIXD_DEADLINE", |s| parse_seconds(s, false), secs(20));
    let retries = r.get("PREFIXD_RETRIES", |s| parse_count(s, 1, 20), 3);
    let spool = r.get(
        "PREFIXD_SPOOL",
        |s| Ok((s != "off").then(|| PathBuf::from(s))),
        Some(PathBuf::from("/var/spool/prefixd-fastnetmon")),
    );
    let spool_max_age = r.get(
        "PREFIXD_SPOOL_MAX_AGE",
        |s| parse_seconds(s, false),
        secs(3600),
    );
    let unban_max_age = r.get(
        "PREFIXD_UNBAN_MAX_AGE",
        |s| parse_seconds(s, false),
        secs(7200),
    );
    let rules_file = r.opt("PREFIXD_VECTOR_RULES", |s| Ok(PathBuf::from(s)));
    let metrics = r.opt("PREFIXD_METRICS", |s| Ok(PathBuf::from(s)));
    let debug = r.get("PREFIXD_DEBUG", parse_bool, false);
    let sources = r.sources;

    let source_of = |name: &str| {
        sources
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.source.clone())
    };
    let token = match (token_inline, token_file) {
        (Some(_), Some(_)) => {
            errors.push(format!(
                "PREFIXD_TOKEN ({}) and PREFIXD_TOKEN_FILE ({}) are both set; keep one",
                source_of("PREFIXD_TOKEN").unwrap_or(Source::Default),
                source_of("PREFIXD_TOKEN_FILE").unwrap_or(Source::Default)
            ));
            None
        }
        (Some(t), None) => {
            if matches!(source_of("PREFIXD_TOKEN"), Some(Source::File { .. }))
                && env_file_mode.is_some_and(|m| m & 0o044 != 0)
            {
                warnings.push(format!(
                    "{env_file} holds PREFIXD_TOKEN and is readable by group or others (chmod 600 it)"
                ));
            }
            Some(t)
        }
        (None, Some(path)) => match read_token_file(&path) {
            Ok((t, mode)) => {
                if mode & 0o044 != 0 {
                    warnings.push(format!(
                        "token file {} is readable by group or others (chmod 600 it)",
                        path.display()
                    ));
                }
                Some(t)
            }
            Err(e) => {
                errors.push(format!("PREFIXD_TOKEN_FILE {}: {e}", path.display()));
                None
            }
        },
        (None, None) => None,
    };

    let rules = match &rules_file {
        None => Vec::new(),
        Some(path) => match read_rules_file(path).and_then(|text| {
            crate::rules::parse(&path.display().to_string(), &text).map_err(|e| e.join("; "))
        }) {
            Ok((rules, w)) => {
                warnings.extend(w);
                rules
            }
            Err(e) => {
                errors.push(format!("PREFIXD_VECTOR_RULES {}: {e}", path.display()));
                Vec::new()
            }
        },
    };

    let config = Config {
        api,
        token,
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
        rules,
        debug,
        sources,
        env_file,
    };
    Loaded {
        config,
        warnings,
        errors,
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
    sources: Vec<Origin>,
}

impl Resolver<'_> {
    /// The value of `name` parsed by `parse`, or `default` when unset, empty or invalid (the
    /// invalid case is recorded as an error that names the variable and its source).
    fn get<T>(
        &mut self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
        default: T,
    ) -> T {
        self.opt(name, parse).unwrap_or(default)
    }

    fn opt<T>(
        &mut self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let Some((value, source)) = self.raw.remove(name).filter(|(v, _)| !v.is_empty()) else {
            let default = VARIABLES
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("", |(_, d)| d);
            let shown = if default.is_empty() {
                "(unset)".into()
            } else {
                default.to_string()
            };
            self.sources.push(Origin {
                name,
                source: Source::Default,
                shown,
            });
            return None;
        };
        let parsed = parse(&value);
        // Never echo a token's value, even a malformed one.
        let shown = if name == "PREFIXD_TOKEN" {
            format!("(set, {} chars)", value.trim().len())
        } else {
            printable(&value)
        };
        if let Err(why) = &parsed {
            self.errors
                .push(format!("{name}={shown} (from {source}): {why}"));
        }
        self.sources.push(Origin {
            name,
            source,
            shown,
        });
        parsed.ok()
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

pub fn parse_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("has no host".into());
    }
    if host.contains('@') {
        return Err("must not carry credentials (use PREFIXD_TOKEN)".into());
    }
    if s.contains(['?', '#']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be a plain base URL (no query, fragment or spaces)".into());
    }
    Ok(s.trim_end_matches('/').to_string())
}

fn parse_token(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err("holds characters that cannot go in an HTTP header".into());
    }
    Ok(t.to_string())
}

fn parse_operator(s: &str) -> Result<String, String> {
    if s.len() > 64 {
        return Err("longer than 64 bytes (prefixd refuses it)".into());
    }
    Ok(s.to_string())
}

fn parse_count(s: &str, min: u32, max: u32) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// Seconds as a decimal number ("1", "0.5"); zero only where `zero_ok`.
pub fn parse_seconds(s: &str, zero_ok: bool) -> Result<Duration, String> {
    let n: f64 = s
        .trim()
        .parse()
        .map_err(|_| "expected a number of seconds".to_string())?;
    if !n.is_finite() || !(0.0..=86_400.0).contains(&n) || (n == 0.0 && !zero_ok) {
        let lo = if zero_ok { "0" } else { "more than 0" };
        return Err(format!("expected seconds, {lo} up to 86400"));
    }
    Ok(Duration::from_secs_f64(n))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected 1 or 0".into()),
    }
}

/// A regular file's first `max` bytes, whether there was more, and its mode. Every file we
/// read (env file, token file, rules) comes from an operator and is read bounded.
fn read_bounded(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool, u32)> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    let more = bytes.len() as u64 > max;
    bytes.truncate(max as usize);
    Ok((bytes, more, meta.permissions().mode()))
}

/// `Ok(None)` when the file does not exist.
fn read_env_file(path: &str) -> Result<Option<(String, u32)>, String> {
    let (bytes, more, mode) = match read_bounded(Path::new(path), MAX_ENV_FILE) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if more {
        return Err("larger than 4 MiB; not an env file".into());
    }
    if bytes.contains(&0) {
        return Err("holds NUL bytes; not a text file".into());
    }
    Ok(Some((String::from_utf8_lossy(&bytes).into_owned(), mode)))
}

/// The rules file, at most 1 MiB.
fn read_rules_file(path: &Path) -> Result<String, String> {
    const MAX: u64 = 1024 * 1024;
    match read_bounded(path, MAX).map_err(|e| e.to_string())? {
        (_, true, _) => Err(format!("larger than {MAX} bytes")),
        (bytes, false, _) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// The token is the first line; anything past 64 KiB is not read.
fn read_token_file(path: &Path) -> Result<(String, u32), String> {
    let (bytes, _, mode) = read_bounded(path, 64 * 1024).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes);
    let token = parse_token(text.lines().next().unwrap_or(""))?;
    if token.is_empty() {
        return Err("first line is empty".into());
    }
    Ok((token, mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn load_with(file: &str, env: &[(&str, &str)]) -> Loaded {
        let dir = std::env::temp_dir().join(format!(
            "pfn-config-{}-{}",
            std::process::id(),
            crate::uuid::v4().unwrap()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("prefixd");
        std::fs::write(&path, file).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let flags = Flags {
            env_file: Some(path.display().to_string()),
            verbose: false,
        };
        let loaded = load(&flags, &env_of(env));
        std::fs::remove_dir_all(&dir).unwrap();
        loaded
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
        assert_eq!(l.errors.len(), 3, "{:?}", l.errors);
        assert!(
            l.errors[0].starts_with("PREFIXD_API=localhost:8080 (from "),
            "{}",
            l.errors[0]
        );
        assert!(l.errors[0].contains("prefixd:2)"), "{}", l.errors[0]);
        assert!(
            l.errors
                .iter()
                .any(|e| e.starts_with("UNBAN_QUERY_RETRIES=-1 (from environment)"))
        );
        assert!(
            l.errors
                .iter()
                .any(|e| e.starts_with("PREFIXD_TIMEOUT=soon (from") && e.contains("prefixd:1"))
        );
        assert_eq!(
            l.config.timeout,
            secs(5),
            "invalid value falls back so the run stays bounded"
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

    #[test]
    fn urls_and_seconds() {
        assert_eq!(
            parse_url("https://p.example:8443/prefixd/").unwrap(),
            "https://p.example:8443/prefixd"
        );
        assert_eq!(parse_url("http://[::1]:8080").unwrap(), "http://[::1]:8080");
        for bad in [
            "localhost:8080",
            "ftp://x",
            "http://",
            "http:///x",
            "http://u:p@h",
            "http://h/?q=1",
            "http://h x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_seconds("0.5", false).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_seconds("0", true).unwrap(), Duration::ZERO);
        for bad in ["0", "-1", "soon", "NaN", "inf", "1e9", ""] {
            assert!(parse_seconds(bad, false).is_err(), "{bad}");
        }
    }
}
