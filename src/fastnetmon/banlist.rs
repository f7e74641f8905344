//! FastNetMon's own ban list: what it bans now. FastNetMon keeps its bans in memory only and
//! never sends the unbans of bans a restart or a crash made it forget (its issues #326, #945),
//! so `--flush` asks it before it renews anyone. `fastnetmon_api_client get_banlist`
//! (FastNetMon 1.2.4 and 1.2.9, gRPC to 127.0.0.1:50052) prints one line per banned host,
//! `203.0.113.30/32` or `2001:db8::1/128`, and nothing when none is banned. When FastNetMon is
//! down or its API is off it prints `Query failed …` and still exits 0: so only a whole answer
//! made of addresses and prefixes is a list; anything else means FastNetMon did not say.

use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The command when FASTNETMON_BANLIST is not set (run only when it is on PATH).
pub const DEFAULT_COMMAND: &str = "fastnetmon_api_client get_banlist";
/// An answer longer than this is not a ban list (a million bans would be 20 MB).
const MAX_OUTPUT: u64 = 16 * 1024 * 1024;
/// How long the command may take at most (less when the run's deadline is nearer).
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The prefixes FastNetMon bans: hosts (`/32`, `/128`) and any wider prefix it was given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BanList {
    pub prefixes: Vec<(IpAddr, u8)>,
}

impl BanList {
    /// Whether FastNetMon bans `ip`: listed as a host, or inside a listed prefix.
    pub fn covers(&self, ip: IpAddr) -> bool {
        self.prefixes
            .iter()
            .any(|&(net, len)| contains(net, len, ip))
    }
}

fn contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// The client's answer, read strictly: every non-empty line an address with an optional
/// prefix length (`/32` when none). `Err` names the first line that is not.
pub fn parse(text: &str) -> Result<BanList, String> {
    let mut list = BanList::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let said = || format!("not a ban list: {:?}", crate::pretty::printable(line, 120));
        let (addr, len) = line.split_once('/').unwrap_or((line, ""));
        let ip: IpAddr = addr.parse().map_err(|_| said())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            "" => max,
            l => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(said)?,
        };
        list.prefixes.push((ip, len));
    }
    Ok(list)
}

/// The command's words (no shell): FASTNETMON_BANLIST as given, or the default when it is
/// unset and its program is on PATH. None: not asked (`off`, or the default's program absent).
pub fn command(given: Option<&str>, path: Option<&str>) -> Option<Vec<String>> {
    match given.map(str::trim) {
        Some("off") => None,
        Some(g) if !g.is_empty() => Some(g.split_whitespace().map(str::to_string).collect()),
        _ => {
            let words: Vec<String> = DEFAULT_COMMAND.split(' ').map(str::to_string).collect();
            let on_path = path
                .unwrap_or("")
                .split(':')
                .any(|d| !d.is_empty() && Path::new(d).join(&words[0]).is_file());
            on_path.then_some(words)
        }
    }
}

/// Runs the command, at most `limit` and `MAX_OUTPUT`, and reads its answer. `Err` says why
/// FastNetMon did not say: it could not run, exited non-zero, took too long, or printed
/// something that is not a ban list.
pub fn read(words: &[String], limit: Duration) -> Result<BanList, String> {
    let (program, args) = words.split_first().ok_or("FASTNETMON_BANLIST is empty")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    // Each pipe read on a thread of its own, handed over through a channel, so that a pipe a
    // grandchild keeps open is given up at the limit instead of waited for.
    let pipe = |r: Option<Box<dyn Read + Send>>, max: u64| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(max + 1).read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let out = pipe(child.stdout.take().map(|o| Box::new(o) as _), MAX_OUTPUT);
    let err = pipe(child.stderr.take().map(|e| Box::new(e) as _), 4096);
    let started = Instant::now();
    // Bounded: at most `limit`, in 10-ms steps.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let late = || format!("{program} did not answer within {}s", limit.as_secs_f64());
    let Some(status) = status else {
        return Err(late());
    };
    let left = limit
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(100));
    let out = out.recv_timeout(left).map_err(|_| late())?;
    let err = err
        .recv_timeout(Duration::from_millis(100))
        .unwrap_or_default();
    let first_err = String::from_utf8_lossy(&err);
    let first_err = first_err.lines().next().unwrap_or("");
    if !status.success() {
        return Err(format!(
            "{program} exited with {status}{}",
            match first_err {
                "" => String::new(),
                e => format!(": {}", crate::pretty::printable(e, 200)),
            }
        ));
    }
    if out.len() as u64 > MAX_OUTPUT {
        return Err(format!("{program} printed more than {MAX_OUTPUT} bytes"));
    }
    parse(&String::from_utf8_lossy(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_prefixes_of_both_families_are_read() {
        let l = parse("203.0.113.30/32\n203.0.113.31/32\n2001:db8::1/128\n198.51.100.0/24\n\n")
            .unwrap();
        for (ip, listed) in [
            ("203.0.113.30", true),
            ("203.0.113.32", false),
            ("2001:db8::1", true),
            ("2001:db8:0:0::1", true),
            ("2001:db8::2", false),
            ("198.51.100.77", true),
            ("198.51.101.1", false),
        ] {
            assert_eq!(l.covers(ip.parse().unwrap()), listed, "{ip}");
        }
        assert_eq!(parse("").unwrap(), BanList::default());
        assert!(
            parse("0.0.0.0/0\n")
                .unwrap()
                .covers("192.0.2.1".parse().unwrap())
        );
        assert!(
            !parse("::/0\n")
                .unwrap()
                .covers("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn anything_else_is_not_a_list() {
        for bad in [
            "Query failed failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:50052: Failed to connect to remote host: Connection refused\n",
            "203.0.113.30/32\ngarbage\n",
            "203.0.113.30/33\n",
            "2001:db8::1/129\n",
            "ban, unban, get_banlist\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_runs_only_when_its_client_is_on_path() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().display().to_string();
        assert_eq!(command(None, Some(&dir)), None);
        std::fs::write(t.path().join("fastnetmon_api_client"), "").unwrap();
        assert_eq!(
            command(None, Some(&format!("/nonexistent:{dir}"))),
            Some(vec!["fastnetmon_api_client".into(), "get_banlist".into()])
        );
        assert_eq!(command(Some("off"), Some(&dir)), None);
        assert_eq!(
            command(Some("/opt/x list --all"), None),
            Some(vec!["/opt/x".into(), "list".into(), "--all".into()])
        );
    }
}
