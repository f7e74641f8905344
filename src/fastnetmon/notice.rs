//! The FastNetMon call itself: victim IP, direction, pps, action and, for a ban, the details
//! text from stdin. Validation here decides what is a usage error (64) and what is only a
//! warning: a notice is never dropped for a field prefixd can live without.

use crate::action::Action;
use crate::pretty::printable;
use std::io::Read;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What we keep of stdin for `raw_details.raw`; the rest is read and discarded.
pub const KEEP_DETAILS: usize = 256 * 1024;

/// Stdin is read at most this far, kept or not: FastNetMon's details are a few MiB at the very
/// most, and a writer that never stops must not keep us reading until the deadline.
pub const READ_MAX: u64 = 64 * 1024 * 1024;

/// How long a call that is refused before we know what it is (bad arguments, an ACTION we do
/// not know) waits for its stdin to end: FastNetMon writes the details at once, but a stdin
/// inherited from elsewhere may never close.
pub const SHORT_DRAIN: Duration = Duration::from_secs(2);

/// One FastNetMon call, parsed once: from argv when FastNetMon calls, or from its spooled
/// `Entry` when the spool replays it. The two convert into each other directly, in
/// `spool::queue`: this room knows nothing of the spool.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Canonical text (RFC 5952 for IPv6): prefixd matches `victim_ip` byte for byte.
    pub victim_ip: IpAddr,
    pub direction: String,
    /// None: FastNetMon's PPS was not a non-negative integer (sent as `null`).
    pub pps: Option<i64>,
    pub action: Action,
    /// The details text from stdin (ban), at most `KEEP_DETAILS` bytes.
    pub details: String,
    /// The details were cut at `KEEP_DETAILS` or at the deadline.
    pub truncated: bool,
    /// Milliseconds since the epoch when FastNetMon called us.
    pub received_ms: u64,
    /// PPS as FastNetMon wrote it, so that a spooled copy reads exactly as it came.
    pub(crate) pps_given: Option<String>,
}

impl Notice {
    /// Validates FastNetMon's positional arguments (`IP [DIRECTION [PPS [ACTION]]]`, defaults
    /// as the bash script's). `Err` is a usage error; the `Vec` holds warnings. Details and
    /// the time received are set with `with_details`.
    pub fn parse(
        ip: &str,
        direction: Option<&str>,
        pps: Option<&str>,
        action: Option<&str>,
    ) -> Result<(Notice, Vec<String>), String> {
        let mut warnings = Vec::new();
        let victim_ip: IpAddr = ip.parse().map_err(|_| {
            format!(
                "IP {:?} is not a bare IPv4 or IPv6 address",
                printable(ip, 64)
            )
        })?;
        let given = action.unwrap_or("ban");
        let action = Action::parse(given).ok_or_else(|| {
            format!(
                "unknown ACTION {:?} (expected ban, unban or attack_details)",
                printable(given, 64)
            )
        })?;
        let direction = direction.unwrap_or("incoming");
        if !matches!(
            direction,
            "incoming" | "outgoing" | "other" | "internal" | "unknown"
        ) {
            warnings.push(format!(
                "unexpected DIRECTION {:?}; sent as given",
                printable(direction, 64)
            ));
        }
        let parsed_pps = match pps {
            None => Some(0),
            Some(p) => match p.parse::<u64>().ok().and_then(|n| i64::try_from(n).ok()) {
                Some(n) => Some(n),
                None => {
                    warnings.push(format!(
                        "PPS {:?} is not a non-negative integer; sent as null",
                        printable(p, 64)
                    ));
                    None
                }
            },
        };
        Ok((
            Notice {
                victim_ip,
                direction: printable(direction, 64),
                pps: parsed_pps,
                action,
                details: String::new(),
                truncated: false,
                received_ms: 0,
                pps_given: pps.map(str::to_string),
            },
            warnings,
        ))
    }

    /// The notice with what FastNetMon wrote on stdin, received at `received`.
    pub fn with_details(mut self, details: RawDetails, received: SystemTime) -> Notice {
        self.details = details.text;
        self.truncated = details.truncated;
        self.received_ms = crate::time::unix_ms(received);
        self
    }

    /// When FastNetMon called us about it.
    pub fn received(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.received_ms)
    }

    /// `ban 203.0.113.10`: what every log line about it names.
    pub fn subject(&self) -> String {
        format!("{} {}", self.action, self.victim_ip)
    }
}

/// The details text as read from stdin: read to EOF (FastNetMon fails its write otherwise),
/// the first `KEEP_DETAILS` bytes kept. A terminal is not read (someone running us by hand).
/// (`details::Details` is what is parsed out of it.)
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawDetails {
    pub text: String,
    pub truncated: bool,
}

/// Reads the details in a thread of its own, waited for until `until`: a stdin that is still
/// open then costs the rest of the details, never the notice. `Ok((details, true))`: the time
/// ran out; the details hold what was read and are marked truncated. Reading stops at
/// `READ_MAX` as at EOF.
pub fn read_details_until(
    input: impl Read + Send + 'static,
    is_terminal: bool,
    until: Instant,
) -> std::io::Result<(RawDetails, bool)> {
    let (details, stalled, _) = read_until(input, is_terminal, until, KEEP_DETAILS)?;
    Ok((details, stalled))
}

/// What draining stdin came to: bytes read and thrown away, and whether it ended (EOF, an
/// error, or `READ_MAX` read) before the time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub bytes: u64,
    pub ended: bool,
}

/// Reads stdin and throws it away, until EOF, `READ_MAX` or `until`, whichever comes first, so
/// that the writer (FastNetMon) does not fail on a call we refuse. A terminal is not read.
pub fn drain_until(
    input: impl Read + Send + 'static,
    is_terminal: bool,
    until: Instant,
) -> Drained {
    match read_until(input, is_terminal, until, 0) {
        Ok((_, stalled, bytes)) => Drained {
            bytes,
            ended: !stalled,
        },
        Err(_) => Drained {
            bytes: 0,
            ended: true,
        },
    }
}

/// Reads `input` in a thread of its own, keeping its first `keep` bytes, waited for until
/// `until`; also returns whether the time ran out, and how many bytes were read in all.
fn read_until(
    input: impl Read + Send + 'static,
    is_terminal: bool,
    until: Instant,
    keep: usize,
) -> std::io::Result<(RawDetails, bool, u64)> {
    if is_terminal {
        return Ok((RawDetails::default(), false, 0));
    }
    let shared = Arc::new((Mutex::new(Reading::default()), Condvar::new()));
    let s = shared.clone();
    std::thread::spawn(move || {
        let r = read_into(input, &s.0, keep);
        lock(&s.0).done = Some(r);
        s.1.notify_one();
    });
    let (state, finished) = &*shared;
    let mut r = lock(state);
    while r.done.is_none() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let mut d = details_of(&r);
            d.truncated = true;
            return Ok((d, true, r.total));
        }
        r = finished
            .wait_timeout(r, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    match r.done.take() {
        Some(Err(e)) => Err(e),
        // All read: the bytes move into the text instead of being copied.
        _ => Ok((
            RawDetails {
                text: String::from_utf8(std::mem::take(&mut r.kept))
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                truncated: r.truncated,
            },
            false,
            r.total,
        )),
    }
}

/// What the reading thread has so far, and how it ended.
#[derive(Default)]
struct Reading {
    kept: Vec<u8>,
    truncated: bool,
    /// Bytes read in all, kept or not.
    total: u64,
    done: Option<std::io::Result<()>>,
}

fn lock(m: &Mutex<Reading>) -> std::sync::MutexGuard<'_, Reading> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_into(mut input: impl Read, state: &Mutex<Reading>, keep: usize) -> std::io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut r = lock(state);
        let room = keep - r.kept.len();
        r.kept.extend_from_slice(&buf[..n.min(room)]);
        r.truncated |= n > room;
        r.total += n as u64;
        if r.total >= READ_MAX {
            r.truncated = true;
            return Ok(());
        }
    }
}

fn details_of(r: &Reading) -> RawDetails {
    RawDetails {
        text: String::from_utf8_lossy(&r.kept).into_owned(),
        truncated: r.truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_args(
        (ip, dir, pps, action): (&str, Option<&str>, Option<&str>, Option<&str>),
    ) -> Result<(Notice, Vec<String>), String> {
        Notice::parse(ip, dir, pps, action)
    }

    fn args<'a>(
        ip: &'a str,
        dir: Option<&'a str>,
        pps: Option<&'a str>,
        action: Option<&'a str>,
    ) -> (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>) {
        (ip, dir, pps, action)
    }

    #[test]
    fn defaults_are_the_scripts() {
        let (n, w) = from_args(args("192.0.2.1", None, None, None)).unwrap();
        assert_eq!(
            (n.direction.as_str(), n.pps, n.action),
            ("incoming", Some(0), Action::Ban)
        );
        assert!(w.is_empty());
    }

    #[test]
    fn ipv6_is_canonical() {
        let (n, _) = from_args(args("2001:0db8:0042::0010", None, None, Some("unban"))).unwrap();
        assert_eq!(n.victim_ip.to_string(), "2001:db8:42::10");
        let (n, _) = from_args(args("2001:DB8:0:0:1:0:0:1", None, None, None)).unwrap();
        assert_eq!(n.victim_ip.to_string(), "2001:db8::1:0:0:1");
    }

    #[test]
    fn usage_errors_and_warnings() {
        for ip in [
            "",
            "192.0.2.1/32",
            "999.1.1.1",
            "203.0.113.300",
            "fe80::1%eth0",
            "host.example",
            " 192.0.2.1",
        ] {
            assert!(from_args(args(ip, None, None, None)).is_err(), "{ip:?}");
        }
        assert!(
            from_args(args("192.0.2.1", None, None, Some("block")))
                .unwrap_err()
                .contains("unknown ACTION")
        );
        assert!(from_args(args("192.0.2.1", None, None, Some("Ban"))).is_err());
        for pps in [
            "-5",
            "abc",
            "1.5",
            "99999999999999999999",
            "9223372036854775808",
        ] {
            let (n, w) = from_args(args("192.0.2.1", None, Some(pps), None)).unwrap();
            assert_eq!(n.pps, None, "{pps}");
            assert_eq!(w.len(), 1, "{pps}");
        }
        let (n, _) = from_args(args("192.0.2.1", None, Some("9223372036854775807"), None)).unwrap();
        assert_eq!(n.pps, Some(i64::MAX));
    }

    #[test]
    fn details_are_read_to_eof_and_kept_bounded() {
        let read = |bytes: &[u8], tty: bool| {
            let far = Instant::now() + std::time::Duration::from_secs(30);
            read_details_until(std::io::Cursor::new(bytes.to_vec()), tty, far).map(|(d, _)| d)
        };
        let big = vec![b'a'; KEEP_DETAILS + 10_000];
        let d = read(&big[..], false).unwrap();
        assert_eq!((d.text.len(), d.truncated), (KEEP_DETAILS, true));
        let exact = vec![b'a'; KEEP_DETAILS];
        assert!(!read(&exact[..], false).unwrap().truncated);
        let d = read(&b"ok \xff\xfe end"[..], false).unwrap();
        assert_eq!(d.text, "ok \u{fffd}\u{fffd} end");
        assert_eq!(read(&b"ignored"[..], true).unwrap().text, "");
    }

    #[test]
    fn a_drain_reads_to_the_end_but_no_further_than_its_bounds() {
        let far = Instant::now() + Duration::from_secs(30);
        let d = drain_until(std::io::Cursor::new(vec![b'x'; 300_000]), false, far);
        assert_eq!(
            d,
            Drained {
                bytes: 300_000,
                ended: true
            }
        );
        // A writer that never stops: READ_MAX ends it, long before the time does.
        let d = drain_until(std::io::repeat(0), false, far);
        assert_eq!(
            d,
            Drained {
                bytes: READ_MAX,
                ended: true
            }
        );
        assert_eq!(
            drain_until(std::io::repeat(0), true, far).bytes,
            0,
            "a terminal"
        );
    }

    #[test]
    fn a_stdin_that_stays_open_is_cut_at_the_deadline() {
        struct Stall(bool);
        impl Read for Stall {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    std::thread::sleep(std::time::Duration::from_secs(30));
                    return Ok(0);
                }
                buf[..6].copy_from_slice(b"part 1");
                Ok(6)
            }
        }
        let until = Instant::now() + std::time::Duration::from_millis(200);
        let (d, stalled) = read_details_until(Stall(false), false, until).unwrap();
        assert!(stalled);
        assert_eq!((d.text.as_str(), d.truncated), ("part 1", true));
        let until = Instant::now() + std::time::Duration::from_secs(5);
        let (d, stalled) = read_details_until(&b"all of it"[..], false, until).unwrap();
        assert_eq!(
            (d.text.as_str(), d.truncated, stalled),
            ("all of it", false, false)
        );
    }
}
