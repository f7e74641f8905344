//! The log: one line per step, `TIME prefixd-fastnetmon[PID] LEVEL message`, appended with a
//! single `write` so that concurrent runs never interleave, the file reopened on every run so
//! logrotate needs no signal. The token is redacted here, and only here, on every line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

enum Sink {
    File(File),
    Stderr,
    /// RFC 3164 datagrams to a local syslog socket (`/dev/log`).
    Syslog(UnixDatagram),
    /// The log file could not be opened: stderr (FastNetMon's journal under systemd, the
    /// terminal by hand) and, where there is one, the local syslog, so that a line meant for
    /// the operator still reaches a place they read.
    Fallback(Option<UnixDatagram>),
}

/// The local syslog socket, when this host has one.
const DEV_LOG: &str = "/dev/log";

fn syslog_socket(path: &str) -> std::io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    sock.connect(path)?;
    // A syslog daemon that stalls must not stall a ban.
    sock.set_write_timeout(Some(std::time::Duration::from_secs(1)))?;
    Ok(sock)
}

/// `LOG_DAEMON`: FastNetMon and prefixd are daemons' helpers.
const FACILITY: u8 = 3;

pub struct Log {
    sink: Sink,
    debug: bool,
    secret: Option<String>,
    pid: u32,
    /// The notice this run is about (`ban 203.0.113.10`), named on every line.
    subject: String,
    /// A syslog send failed: the rest of the run writes to stderr.
    syslog_failed: std::sync::atomic::AtomicBool,
}

impl Log {
    /// Opens `spec` (a path, or `-` for stderr). An unwritable path falls back to stderr and
    /// says so in the first line, so the message is never lost.
    pub fn open(spec: &str, debug: bool, secret: Option<String>) -> Log {
        let mut log = Log {
            sink: Sink::Stderr,
            debug,
            secret: secret.filter(|s| !s.is_empty()),
            pid: std::process::id(),
            subject: String::new(),
            syslog_failed: Default::default(),
        };
        if spec == "-" {
            return log;
        }
        // Exactly `syslog` is /dev/log; `syslog:/absolute/path` another socket (tests,
        // chroots). Anything else, `syslog-fnm.log` included, is a file.
        let socket = match spec {
            "syslog" => Some("/dev/log"),
            _ => spec.strip_prefix("syslog:").filter(|p| p.starts_with('/')),
        };
        if let Some(path) = socket {
            match syslog_socket(path) {
                Ok(sock) => log.sink = Sink::Syslog(sock),
                Err(e) => log.warn(&format!(
                    "cannot reach syslog at {path}: {e}; logging to stderr"
                )),
            }
            return log;
        }
        match OpenOptions::new().append(true).create(true).open(spec) {
            Ok(f) => log.sink = Sink::File(f),
            Err(e) => {
                let syslog = syslog_socket(DEV_LOG).ok();
                let also = if syslog.is_some() { " and syslog" } else { "" };
                log.sink = Sink::Fallback(syslog);
                log.warn(&format!(
                    "cannot open log {spec}: {e}; logging to stderr{also}"
                ));
            }
        }
        log
    }

    /// Every line names `subject` (action and victim of a notify run) unless it starts with it.
    pub fn about(mut self, subject: String) -> Log {
        self.subject = subject;
        self
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write(Level::Debug, msg);
        }
    }
    pub fn info(&self, msg: &str) {
        self.write(Level::Info, msg);
    }
    pub fn warn(&self, msg: &str) {
        self.write(Level::Warn, msg);
    }
    pub fn error(&self, msg: &str) {
        self.write(Level::Error, msg);
    }

    /// A line the operator must see even when the log is a file nobody watches (a notice
    /// LOST): in the log, and on stderr and the local syslog as well.
    pub fn shout(&self, level: Level, msg: &str) {
        self.write(level, msg);
        if let Sink::File(_) = self.sink {
            let _ = std::io::stderr()
                .lock()
                .write_all(self.format(level, msg).as_bytes());
            if let Ok(sock) = syslog_socket(DEV_LOG) {
                let _ = sock.send(self.syslog_datagram(level, msg).as_bytes());
            }
        }
    }

    pub fn write(&self, level: Level, msg: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Sink::Fallback(Some(sock)) = &self.sink {
            let _ = sock.send(self.syslog_datagram(level, msg).as_bytes());
        }
        if let Sink::Syslog(sock) = &self.sink
            && !self.syslog_failed.load(Relaxed)
        {
            match sock.send(self.syslog_datagram(level, msg).as_bytes()) {
                Ok(_) => return,
                // Never dropped: to stderr, with why, and so is the rest of the run.
                Err(e) => {
                    self.syslog_failed.store(true, Relaxed);
                    let warning = self.format(
                        Level::Warn,
                        &format!("syslog send failed ({e}); this line goes to stderr"),
                    );
                    let line = self.format(level, msg);
                    let _ = std::io::stderr()
                        .lock()
                        .write_all(format!("{warning}{line}").as_bytes());
                    return;
                }
            }
        }
        let line = self.format(level, msg);
        // One write call of one buffer: O_APPEND makes it atomic against other writers.
        let _ = match &self.sink {
            Sink::File(f) => (&*f).write(line.as_bytes()),
            Sink::Stderr | Sink::Syslog(_) | Sink::Fallback(_) => {
                std::io::stderr().lock().write(line.as_bytes())
            }
        };
    }

    fn format(&self, level: Level, msg: &str) -> String {
        let mut line = String::with_capacity(msg.len() + 64);
        line.push_str(&crate::time::now());
        line.push_str(" prefixd-fastnetmon[");
        line.push_str(&self.pid.to_string());
        line.push_str("] ");
        line.push_str(level.name());
        line.push(' ');
        self.push_message(&mut line, msg);
        line.push('\n');
        line
    }

    /// `<PRI>Mmm dd hh:mm:ss prefixd-fastnetmon[PID]: LEVEL message`, as glibc's syslog()
    /// sends it to the local socket (the daemon adds the host name).
    fn syslog_datagram(&self, level: Level, msg: &str) -> String {
        let severity = match level {
            Level::Debug => 7,
            Level::Info => 6,
            Level::Warn => 4,
            Level::Error => 3,
        };
        let mut d = format!(
            "<{}>{} prefixd-fastnetmon[{}]: {} ",
            FACILITY * 8 + severity,
            crate::time::bsd_syslog(std::time::SystemTime::now()),
            self.pid,
            level.name()
        );
        self.push_message(&mut d, msg);
        d
    }

    /// The message, redacted, on one line: control characters from outside (prefixd's
    /// bodies) are escaped.
    fn push_message(&self, line: &mut String, msg: &str) {
        let mut msg = self.redact(msg);
        if !self.subject.is_empty() && !msg.starts_with(&self.subject) {
            msg = format!("{}: {msg}", self.subject);
        }
        for c in msg.chars() {
            match c {
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                '\t' => line.push(' '),
                c if c.is_control() => line.push('?'),
                c => line.push(c),
            }
        }
    }

    /// Standard output, through the same redaction as every log line: the one way text
    /// other than the log leaves the process.
    pub fn stdout(&self, text: &str) {
        let _ = std::io::stdout()
            .lock()
            .write_all(self.redact(text).as_bytes());
    }

    /// Standard error, likewise.
    pub fn stderr(&self, text: &str) {
        let _ = std::io::stderr()
            .lock()
            .write_all(self.redact(text).as_bytes());
    }

    /// The message with the token replaced, in every spelling a server or proxy may echo it
    /// back in: as it is, percent-encoded (a URL), JSON-escaped (a body).
    pub fn redact(&self, msg: &str) -> String {
        let Some(secret) = &self.secret else {
            return msg.to_string();
        };
        let percent: String = secret
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let json = miniserde::json::to_string(secret.as_str());
        let json = json.trim_matches('"');
        let mut out = msg.replace(secret.as_str(), "<redacted>");
        for spelling in [percent.as_str(), json] {
            if spelling != secret {
                out = out.replace(spelling, "<redacted>");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shape_redaction_and_one_line() {
        let log = Log {
            sink: Sink::Stderr,
            debug: false,
            secret: Some("tok3n".into()),
            pid: 42,
            subject: String::new(),
            syslog_failed: Default::default(),
        };
        let line = log.format(Level::Info, "ban x token=tok3n\nsecond\u{7}");
        assert!(
            line.ends_with(" prefixd-fastnetmon[42] INFO ban x token=<redacted>\\nsecond?\n"),
            "{line}"
        );
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(&line[4..5], "-");
        assert_eq!(&line[19..21], "Z ");
        let d = log.syslog_datagram(Level::Warn, "spool tok3n\nx");
        assert!(d.starts_with("<28>"), "{d}");
        assert!(
            d.ends_with(" prefixd-fastnetmon[42]: WARN spool <redacted>\\nx"),
            "{d}"
        );
        assert_eq!(log.syslog_datagram(Level::Error, "").get(..4), Some("<27>"));
        let log = log.about("unban 192.0.2.1".into());
        assert!(
            log.format(Level::Info, "unban 192.0.2.1 -> ok")
                .ends_with("INFO unban 192.0.2.1 -> ok\n")
        );
        assert!(
            log.format(Level::Warn, "lookup: 500")
                .ends_with("WARN unban 192.0.2.1: lookup: 500\n")
        );
    }

    #[test]
    fn a_token_echoed_encoded_is_redacted_too() {
        let log = Log::open("-", false, Some(r#"s3cr3t-T0KEN+/="q\"#.into()));
        for echoed in [
            r#"s3cr3t-T0KEN+/="q\"#,
            "s3cr3t-T0KEN%2B%2F%3D%22q%5C",
            r#"s3cr3t-T0KEN+/=\"q\\"#,
        ] {
            assert_eq!(
                log.redact(&format!("body: {{\"auth\":\"{echoed}\"}}")),
                "body: {\"auth\":\"<redacted>\"}",
                "{echoed}"
            );
        }
    }
}
