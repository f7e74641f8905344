//! The FastNetMon call itself: victim IP, direction, pps, action and, for a ban, the details
//! text from stdin. Validation here decides what is a usage error (64) and what is only a
//! warning: a notice is never dropped for a field prefixd can live without.

use std::io::Read;
use std::net::IpAddr;

/// What we keep of stdin for `raw_details.raw`; the rest is read and discarded.
pub const KEEP_DETAILS: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ban,
    Unban,
    /// FastNetMon ≤ 1.2.5 sends this after a ban with a packet dump; it is not a new ban.
    AttackDetails,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Canonical text (RFC 5952 for IPv6): prefixd matches `victim_ip` byte for byte.
    pub victim_ip: IpAddr,
    pub direction: String,
    pub pps: Option<i64>,
    pub action: Action,
}

/// Validates the arguments. `Err` is a usage error; the `Vec` holds warnings.
pub fn from_args(args: &crate::cli::Args) -> Result<(Notice, Vec<String>), String> {
    let mut warnings = Vec::new();
    let victim_ip: IpAddr = args.ip.parse().map_err(|_| {
        format!(
            "IP {:?} is not a bare IPv4 or IPv6 address",
            printable(&args.ip)
        )
    })?;
    let action = match args.action.as_deref().unwrap_or("ban") {
        "ban" => Action::Ban,
        "unban" => Action::Unban,
        "attack_details" => Action::AttackDetails,
        other => {
            return Err(format!(
                "unknown ACTION {:?} (expected ban, unban or attack_details)",
                printable(other)
            ));
        }
    };
    let direction = args.direction.clone().unwrap_or_else(|| "incoming".into());
    if !matches!(
        direction.as_str(),
        "incoming" | "outgoing" | "other" | "internal" | "unknown"
    ) {
        warnings.push(format!(
            "unexpected DIRECTION {:?}; sent as given",
            printable(&direction)
        ));
    }
    let direction = printable(&direction);
    let pps = match args.pps.as_deref() {
        None => Some(0),
        Some(p) => match p.parse::<u64>().ok().and_then(|n| i64::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                warnings.push(format!(
                    "PPS {:?} is not a non-negative integer; sent as null",
                    printable(p)
                ));
                None
            }
        },
    };
    Ok((
        Notice {
            victim_ip,
            direction,
            pps,
            action,
        },
        warnings,
    ))
}

/// At most 64 characters, control characters replaced: it goes into logs and prefixd's reason.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The details text: stdin read to EOF (FastNetMon fails its write otherwise), the first
/// `KEEP_DETAILS` bytes kept. A terminal is not read (someone running us by hand).
pub struct Details {
    pub text: String,
    pub truncated: bool,
}

pub fn read_details(mut input: impl Read, is_terminal: bool) -> std::io::Result<Details> {
    if is_terminal {
        return Ok(Details {
            text: String::new(),
            truncated: false,
        });
    }
    let mut kept = Vec::new();
    (&mut input)
        .take(KEEP_DETAILS as u64)
        .read_to_end(&mut kept)?;
    let mut truncated = false;
    let mut sink = [0u8; 8192];
    loop {
        match input.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => truncated = true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Details {
        text: String::from_utf8_lossy(&kept).into_owned(),
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Args;

    fn args(ip: &str, dir: Option<&str>, pps: Option<&str>, action: Option<&str>) -> Args {
        Args {
            ip: ip.into(),
            direction: dir.map(Into::into),
            pps: pps.map(Into::into),
            action: action.map(Into::into),
        }
    }

    #[test]
    fn defaults_are_the_scripts() {
        let (n, w) = from_args(&args("192.0.2.1", None, None, None)).unwrap();
        assert_eq!(
            (n.direction.as_str(), n.pps, n.action),
            ("incoming", Some(0), Action::Ban)
        );
        assert!(w.is_empty());
    }

    #[test]
    fn ipv6_is_canonical() {
        let (n, _) = from_args(&args("2001:0db8:0042::0010", None, None, Some("unban"))).unwrap();
        assert_eq!(n.victim_ip.to_string(), "2001:db8:42::10");
        let (n, _) = from_args(&args("2001:DB8:0:0:1:0:0:1", None, None, None)).unwrap();
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
            assert!(from_args(&args(ip, None, None, None)).is_err(), "{ip:?}");
        }
        assert!(
            from_args(&args("192.0.2.1", None, None, Some("block")))
                .unwrap_err()
                .contains("unknown ACTION")
        );
        assert!(from_args(&args("192.0.2.1", None, None, Some("Ban"))).is_err());
        for pps in [
            "-5",
            "abc",
            "1.5",
            "99999999999999999999",
            "9223372036854775808",
        ] {
            let (n, w) = from_args(&args("192.0.2.1", None, Some(pps), None)).unwrap();
            assert_eq!(n.pps, None, "{pps}");
            assert_eq!(w.len(), 1, "{pps}");
        }
        let (n, _) =
            from_args(&args("192.0.2.1", None, Some("9223372036854775807"), None)).unwrap();
        assert_eq!(n.pps, Some(i64::MAX));
    }

    #[test]
    fn details_are_read_to_eof_and_kept_bounded() {
        let big = vec![b'a'; KEEP_DETAILS + 10_000];
        let d = read_details(&big[..], false).unwrap();
        assert_eq!((d.text.len(), d.truncated), (KEEP_DETAILS, true));
        let exact = vec![b'a'; KEEP_DETAILS];
        assert!(!read_details(&exact[..], false).unwrap().truncated);
        let d = read_details(&b"ok \xff\xfe end"[..], false).unwrap();
        assert_eq!(d.text, "ok \u{fffd}\u{fffd} end");
        assert_eq!(read_details(&b"ignored"[..], true).unwrap().text, "");
    }
}
