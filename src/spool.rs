//! The spool: FastNetMon notices that could not be delivered yet, one file each, kept until
//! prefixd takes them. Files are written to a temporary name, fsynced, renamed and the
//! directory fsynced, so a crash leaves either the whole notice or nothing. Names sort by the
//! time FastNetMon called us, which is the order they are delivered in.

use miniserde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A FastNetMon notice as it arrived, so that it is rebuilt with the configuration in force
/// when it is finally sent.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
    pub victim_ip: String,
    pub direction: String,
    pub pps: Option<String>,
    pub action: String,
    pub details: String,
    pub truncated: bool,
    /// Milliseconds since the epoch when FastNetMon called us.
    pub received_ms: u64,
}

const SUFFIX: &str = ".notice";
/// Same-IP notices are serialised through one of this many lock files (a bounded set of files,
/// however many victims there have been).
const IP_LOCKS: u64 = 64;

pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating, mode 0700) the spool directory.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        if !fs::metadata(dir)?.is_dir() {
            return Err(io::Error::other("not a directory"));
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The spooled notices, oldest first.
    pub fn list(&self) -> io::Result<Vec<PathBuf>> {
        let mut names: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(SUFFIX) && !n.starts_with('.'))
            })
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.list()?.is_empty())
    }

    /// Proves the directory takes files: writes, syncs and removes a probe.
    pub fn probe(&self) -> io::Result<()> {
        let p = self.dir.join(format!(".tmp-probe-{}", std::process::id()));
        let r = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)
            .and_then(|f| f.sync_all());
        let _ = fs::remove_file(&p);
        r
    }

    /// Writes the notice durably; returns its path.
    pub fn append(&self, e: &Entry) -> io::Result<PathBuf> {
        let mut rnd = [0u8; 4];
        getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
        // Action and IP in the name let a flush plan (an unban drops earlier bans) without
        // reading every notice into memory first.
        let stem = format!(
            "{:016}-{:010}-{}-{}-{}",
            e.received_ms,
            std::process::id(),
            hex(&rnd),
            e.action,
            e.victim_ip
        );
        let tmp = self.dir.join(format!(".tmp-{stem}"));
        let path = self.dir.join(format!("{stem}{SUFFIX}"));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(miniserde::json::to_string(e).as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            self.sync_dir()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| path)
    }

    /// `(action, victim_ip)` of a spooled notice, from its name.
    pub fn action_and_ip(path: &Path) -> Option<(&str, &str)> {
        let stem = path.file_name()?.to_str()?.strip_suffix(SUFFIX)?;
        let mut parts = stem.splitn(5, '-').skip(3);
        Some((parts.next()?, parts.next()?))
    }

    pub fn read(path: &Path) -> Result<Entry, String> {
        let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
        miniserde::json::from_str(&text)
            .map_err(|_| "not a spooled notice (unreadable JSON)".to_string())
    }

    /// Removes a delivered (or dropped) notice. The removal is made durable by the next
    /// `sync` (a flush syncs every 256 removals and at its end): after a power loss, not a
    /// kill, a few delivered notices may come back and be sent again — never one lost.
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn sync(&self) -> io::Result<()> {
        self.sync_dir()
    }

    /// Sets aside a file that is not a notice, so it is neither retried for ever nor lost.
    pub fn quarantine(&self, path: &Path) -> io::Result<PathBuf> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".bad");
        let to = self.dir.join(name);
        fs::rename(path, &to)?;
        self.sync_dir()?;
        Ok(to)
    }

    /// Removes temporary files that a killed run left behind (older than `age`).
    pub fn sweep_tmp(&self, age: Duration) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|d| d > age);
            if old
                && e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(".tmp-"))
            {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// The lock that makes delivery of the spool one-at-a-time, waited for until `until`.
    pub fn lock_flush(&self, until: Option<Instant>) -> io::Result<Option<File>> {
        self.lock(".flush.lock", until)
    }

    /// The lock that serialises runs for one victim IP (so their order holds).
    pub fn lock_ip(&self, ip: &str, until: Instant) -> io::Result<Option<File>> {
        // FNV-1a: stable across runs and builds, unlike std's hasher.
        let h = ip.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        self.lock(&format!(".ip-{:02}.lock", h % IP_LOCKS), Some(until))
    }

    /// `until` None: one try. The lock is released when the returned file is dropped, or
    /// when the process dies (kill -9 included).
    fn lock(&self, name: &str, until: Option<Instant>) -> io::Result<Option<File>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.dir.join(name))?;
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(Some(f)),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
            match until {
                Some(t) if Instant::now() + Duration::from_millis(20) < t => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return Ok(None),
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ip: &str, action: &str, received_ms: u64) -> Entry {
        Entry {
            victim_ip: ip.into(),
            direction: "incoming".into(),
            pps: Some("5".into()),
            action: action.into(),
            details: "Attack type: udp_flood\n\u{1}\"".into(),
            truncated: false,
            received_ms,
        }
    }

    #[test]
    fn append_list_read_remove_in_arrival_order() {
        let dir = std::env::temp_dir().join(format!("pfn-spool-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = Spool::open(&dir).unwrap();
        assert!(s.is_empty().unwrap());
        let late = s.append(&entry("192.0.2.1", "unban", 2_000)).unwrap();
        let early = s.append(&entry("192.0.2.1", "ban", 1_000)).unwrap();
        fs::write(dir.join(".tmp-leftover"), "x").unwrap();
        assert_eq!(s.list().unwrap(), vec![early.clone(), late.clone()]);
        assert_eq!(Spool::action_and_ip(&early), Some(("ban", "192.0.2.1")));
        let v6 = s.append(&entry("2001:db8::1", "unban", 3_000)).unwrap();
        assert_eq!(Spool::action_and_ip(&v6), Some(("unban", "2001:db8::1")));
        s.remove(&v6).unwrap();
        assert_eq!(
            Spool::read(&early).unwrap(),
            entry("192.0.2.1", "ban", 1_000)
        );
        s.remove(&early).unwrap();
        s.remove(&early).unwrap(); // already gone is fine
        assert_eq!(s.list().unwrap(), vec![late]);
        let lock = s.lock_flush(None).unwrap();
        assert!(lock.is_some());
        fs::remove_dir_all(&dir).unwrap();
    }
}
