//! The spool: FastNetMon notices that could not be delivered yet, one file each, kept until
//! prefixd takes them. Files are written to a temporary name, fsynced, renamed and the
//! directory fsynced, so a crash leaves either the whole notice or a temporary file that the
//! next sweep recovers. Names sort by the time FastNetMon called us: per victim IP, that is
//! the order they are delivered in. Runs for one victim take turns through a lock file of
//! that victim's own, which exists only while a run holds or waits for it.

use crate::action::Action;
use crate::fastnetmon::notice::Notice;
use miniserde::{Deserialize, Serialize};
use std::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A FastNetMon notice as it arrived, so that it is rebuilt with the configuration in force
/// when it is finally sent; and how its delivery has gone so far.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
    pub victim_ip: String,
    pub direction: String,
    pub pps: Option<String>,
    pub action: Action,
    pub details: String,
    pub truncated: bool,
    /// Milliseconds since the epoch when FastNetMon called us.
    pub received_ms: u64,
    /// Delivery attempts that failed (absent in files of earlier versions: none recorded).
    pub attempts: Option<u32>,
    pub last_error: Option<String>,
}

/// Every file in the spool is its owner's and its group's: FastNetMon's user and the flush share
/// them, whichever users each runs as (Debian 13 runs FastNetMon as `fastnetmon`, the flush
/// timer as root). Set after creation, since a umask (the flush unit's 0077) would take the
/// group's bits away; the set-group-ID directory gives every file the spool's group.
pub const FILE_MODE: u32 = 0o660;
/// The spool and its `leases/`: owner and group, set-group-ID.
pub const DIR_MODE: u32 = 0o2770;

/// Gives a file this run created the spool's mode (`FILE_MODE`).
pub fn share(f: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
}

/// Creates a directory of the spool (`DIR_MODE`); one that exists is left as it is.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if dir.is_dir() {
        return Ok(());
    }
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)),
        Err(e) => Err(e),
    }
}

/// The spool's side of a notice: FastNetMon's room knows nothing of the spool, so the two
/// conversions live here, beside the file format they read and write.
impl Notice {
    /// A spooled notice, as FastNetMon gave it. It was valid when it came; warnings were
    /// logged then. `Err`: a file edited by hand, or written by something else.
    pub fn from_entry(e: &Entry) -> Result<Notice, String> {
        let (n, _) = Notice::parse(
            &e.victim_ip,
            Some(&e.direction),
            e.pps.as_deref(),
            Some(e.action.as_str()),
        )?;
        Ok(Notice {
            details: e.details.clone(),
            truncated: e.truncated,
            received_ms: e.received_ms,
            ..n
        })
    }

    /// The notice as the spool keeps it, with no attempt recorded yet.
    pub fn entry(&self) -> Entry {
        Entry {
            victim_ip: self.victim_ip.to_string(),
            direction: self.direction.clone(),
            pps: self.pps_given.clone(),
            action: self.action,
            details: self.details.clone(),
            truncated: self.truncated,
            received_ms: self.received_ms,
            attempts: None,
            last_error: None,
        }
    }
}

const SUFFIX: &str = ".notice";
const TMP: &str = ".tmp-";
/// A temporary file this old belongs to no live writer (they rename within milliseconds).
const TMP_SETTLED: Duration = Duration::from_secs(60);
/// Removals made durable together: one directory fsync per this many (and at the end).
const SYNC_EVERY: usize = 256;

/// A spooled notice's file name: `<received_ms>-<pid>-<random>-<action>-<victim_ip>.notice`.
/// Action and IP in the name let a run find its victim's queue, and a flush plan, without
/// reading any notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub received_ms: u64,
    pub pid: u32,
    pub random: String,
    pub action: Action,
    pub victim_ip: String,
}

impl Name {
    pub fn parse(file_name: &str) -> Option<Name> {
        let stem = file_name.strip_suffix(SUFFIX)?;
        let mut parts = stem.splitn(5, '-');
        let received_ms = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let random = parts.next()?.to_string();
        let action = Action::parse(parts.next()?).filter(|a| *a != Action::AttackDetails)?;
        let victim_ip = parts.next()?.to_string();
        (!victim_ip.is_empty()).then_some(Name {
            received_ms,
            pid,
            random,
            action,
            victim_ip,
        })
    }

    pub fn of(path: &Path) -> Option<Name> {
        Name::parse(path.file_name()?.to_str()?)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:016}-{:010}-{}-{}-{}{SUFFIX}",
            self.received_ms,
            self.pid,
            self.random,
            self.action.as_str(),
            self.victim_ip
        )
    }
}

/// A notice written to the spool. `warning`: the directory fsync after the rename failed —
/// the notice is there, but a power loss might take it back.
pub struct Kept {
    pub path: PathBuf,
    pub warning: Option<String>,
}

pub struct Spool {
    dir: PathBuf,
    /// Removals not yet made durable by a directory fsync.
    unsynced: Cell<usize>,
}

impl Spool {
    /// Opens (creating, `DIR_MODE`) the spool directory.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        create_dir(dir)?;
        if !fs::metadata(dir)?.is_dir() {
            return Err(io::Error::other("not a directory"));
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            unsynced: Cell::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The spooled notices, oldest first.
    pub fn list(&self) -> io::Result<Vec<PathBuf>> {
        files_ending(&self.dir, SUFFIX)
    }

    /// The spooled notices of one victim, oldest first.
    pub fn queue_of(&self, victim_ip: &str) -> io::Result<Vec<PathBuf>> {
        let mut q = self.list()?;
        q.retain(|p| Name::of(p).is_some_and(|n| n.victim_ip == victim_ip));
        Ok(q)
    }

    /// Proves the directory takes files: writes, syncs and removes a probe.
    pub fn probe(&self) -> io::Result<()> {
        let p = self.dir.join(format!("{TMP}probe-{}", std::process::id()));
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

    /// Writes the notice durably under a new name.
    pub fn append(&self, e: &Entry) -> io::Result<Kept> {
        let mut rnd = [0u8; 4];
        getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
        if e.action == Action::AttackDetails {
            return Err(io::Error::other("attack_details is never kept"));
        }
        let name = Name {
            received_ms: e.received_ms,
            pid: std::process::id(),
            random: rnd.iter().map(|x| format!("{x:02x}")).collect(),
            action: e.action,
            victim_ip: e.victim_ip.clone(),
        };
        let text = miniserde::json::to_string(e);
        self.write_text(&self.dir.join(name.to_string()), &text, true)
    }

    /// Rewrites a spooled notice in place (its attempts and last error), atomically.
    pub fn update(&self, path: &Path, e: &Entry) -> io::Result<Kept> {
        self.write_text(path, &miniserde::json::to_string(e), false)
    }

    /// Replaces the file at `path` (a lease): a temporary file renamed over it, so a killed
    /// run leaves the old one or the new one. `durable`: the temporary file is fsynced first;
    /// the directory is fsynced with the removals, in batches (every 256 and by `sync`).
    /// Without it nothing waits for the disk: a ban's run never did, and a lease is what a
    /// flush rewrites (durably) when it renews. A power loss may take back a lease not made
    /// durable yet: its victim is then not renewed, and its mitigation ends at prefixd's TTL.
    pub fn replace_text(&self, path: &Path, text: &str, durable: bool) -> io::Result<()> {
        self.write_file(path, text, false, durable)?;
        if durable {
            self.unsynced.set(self.unsynced.get() + 1);
            if self.unsynced.get() >= SYNC_EVERY {
                self.sync()?;
            }
        }
        Ok(())
    }

    /// Writes `text` as the file at `path` in the spool: a temporary file, fsynced, renamed,
    /// the directory fsynced. `new`: the name must not exist yet (a notice), and its
    /// temporary file is one the sweep can put back; otherwise the file is replaced (a
    /// rewrite) and a temporary file left by a killed run is only removed.
    pub fn write_text(&self, path: &Path, text: &str, new: bool) -> io::Result<Kept> {
        self.write_file(path, text, new, true)?;
        // The notice is in place: a failed fsync of the directory is a risk, not a failure.
        let warning = self.sync().err().map(|err| {
            format!(
                "{} written, but the spool directory could not be fsynced ({err}): a power loss may undo it",
                path.display()
            )
        });
        Ok(Kept {
            path: path.to_path_buf(),
            warning,
        })
    }

    /// Temporary file → fsync (`sync`) → rename.
    fn write_file(&self, path: &Path, text: &str, new: bool, sync: bool) -> io::Result<()> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // Beside its target: a rename within one directory does not take the filesystem's
        // rename lock, which a carpet of runs writing leases would queue on.
        let beside = path.parent().unwrap_or(&self.dir);
        let tmp = match new {
            true => beside.join(format!("{TMP}{name}")),
            false => beside.join(format!("{TMP}{name}.{}", std::process::id())),
        };
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(new)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            share(&f)?;
            f.write_all(text.as_bytes())?;
            if sync {
                f.sync_all()?;
            }
            if new && path.exists() {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "name taken"));
            }
            fs::rename(&tmp, path)
        })();
        if let Err(err) = written {
            let _ = fs::remove_file(&tmp);
            return Err(err);
        }
        Ok(())
    }

    pub fn read(path: &Path) -> io::Result<Result<Entry, String>> {
        let text = fs::read(path)?;
        Ok(std::str::from_utf8(&text)
            .ok()
            .and_then(|t| miniserde::json::from_str(t).ok())
            .ok_or_else(|| "not a spooled notice (unreadable JSON)".to_string()))
    }

    /// Removes a delivered (or dropped) notice. Removals are made durable in batches (every
    /// 256, and by `sync`): after a power loss, not a kill, a few delivered notices may come
    /// back and be sent again — never one lost.
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.unsynced.set(self.unsynced.get() + 1);
        if self.unsynced.get() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()?;
        self.unsynced.set(0);
        Ok(())
    }

    /// Sets aside a file that is not a notice, so it is neither retried for ever nor lost.
    pub fn quarantine(&self, path: &Path) -> io::Result<PathBuf> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".bad");
        let to = self.dir.join(name);
        fs::rename(path, &to)?;
        self.sync()?;
        Ok(to)
    }

    /// Tidies what killed runs left behind: a settled temporary file that holds a whole notice
    /// is put back in the spool (it was on its way in); one that does not is removed; a
    /// victim lock file nobody holds is removed. Returns the recovered notices.
    pub fn sweep(&self) -> Vec<PathBuf> {
        let mut recovered = Vec::new();
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return recovered;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Some(ip) = name
                .strip_prefix(".ip-")
                .and_then(|n| n.strip_suffix(".lock"))
            {
                // Taking it (without waiting) and letting go removes it.
                let _ = self.lock_ip(ip, None);
                continue;
            }
            let Some(target) = name.strip_prefix(TMP) else {
                continue;
            };
            let settled = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|d| d > TMP_SETTLED);
            if !settled {
                continue;
            }
            let whole =
                Name::parse(target).is_some() && Spool::read(&e.path()).is_ok_and(|r| r.is_ok());
            let to = self.dir.join(target);
            if whole && !to.exists() && fs::rename(e.path(), &to).is_ok() {
                recovered.push(to);
            } else {
                let _ = fs::remove_file(e.path());
            }
        }
        if !recovered.is_empty() {
            let _ = self.sync();
        }
        recovered
    }

    /// The lock that makes delivery of the whole spool one-at-a-time, waited for until
    /// `until` (None: one try).
    pub fn lock_flush(&self, until: Option<Instant>) -> io::Result<Option<File>> {
        lock_file(&self.dir.join(".flush.lock"), until)
    }

    /// The lock that makes runs for one victim take turns (so their order holds), waited for
    /// until `until` (None: one try). Its file is removed when it is let go.
    pub fn lock_ip(&self, victim_ip: &str, until: Option<Instant>) -> io::Result<Option<IpLock>> {
        let path = self.dir.join(format!(".ip-{victim_ip}.lock"));
        loop {
            let f = open_lock(&path)?;
            if !wait_for(&f, until)? {
                return Ok(None);
            }
            // The holder before us may have removed the file we waited on; then someone may
            // hold a new one at the same path. Ours counts only if it is still the file there.
            let ours = f.metadata()?;
            match fs::metadata(&path) {
                Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {
                    return Ok(Some(IpLock { path, _file: f }));
                }
                // One try (None) gives up here too, so the loop is bounded either way.
                _ if until.is_none_or(|t| Instant::now() >= t) => return Ok(None),
                _ => continue,
            }
        }
    }
}

/// The files in `dir` whose names end in `suffix` (not hidden ones: temporary files, locks),
/// sorted by name.
pub fn files_ending(dir: &Path, suffix: &str) -> io::Result<Vec<PathBuf>> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix) && !n.starts_with('.'))
        })
        .collect();
    names.sort();
    Ok(names)
}

/// An exclusive lock on the file at `path` (created if missing), waited for until `until`
/// (None: one try). Released when the file is dropped, or when the process dies.
pub fn lock_file(path: &Path, until: Option<Instant>) -> io::Result<Option<File>> {
    let f = open_lock(path)?;
    Ok(wait_for(&f, until)?.then_some(f))
}

fn open_lock(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    // Another user's lock file keeps its mode: only its owner may change it.
    let _ = share(&f);
    Ok(f)
}

/// Held while a run delivers one victim's notices. Letting go removes the file first, so lock
/// files do not pile up: there is one only while a run holds or waits for it.
pub struct IpLock {
    path: PathBuf,
    _file: File,
}

impl Drop for IpLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Takes the lock on `f`, trying every 20 ms until `until` (None: once). The lock goes with
/// the file, or with the process (kill -9 included).
fn wait_for(f: &File, until: Option<Instant>) -> io::Result<bool> {
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(true),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        match until {
            Some(t) if Instant::now() + Duration::from_millis(20) < t => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => return Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ip: &str, action: &str, received_ms: u64) -> Entry {
        Entry {
            victim_ip: ip.into(),
            direction: "incoming".into(),
            pps: Some("5".into()),
            action: Action::parse(action).unwrap(),
            details: "Attack type: udp_flood\n\u{1}\"".into(),
            truncated: false,
            received_ms,
            attempts: None,
            last_error: None,
        }
    }

    /// A spool directory (not created yet) inside a scratch directory removed on drop.
    fn scratch() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        (tmp, dir)
    }

    #[test]
    fn names_format_and_parse_back() {
        for ip in ["192.0.2.1", "2001:db8::1", "::"] {
            for action in [Action::Ban, Action::Unban] {
                let n = Name {
                    received_ms: 1_764_000_000_123,
                    pid: 4242,
                    random: "0a1b2c3d".into(),
                    action,
                    victim_ip: ip.into(),
                };
                let s = n.to_string();
                assert!(
                    s.starts_with("0001764000000123-0000004242-0a1b2c3d-"),
                    "{s}"
                );
                assert_eq!(Name::parse(&s), Some(n), "{s}");
            }
        }
        for bad in [
            "x.notice",
            "0001-0002-ab-ban-.notice",
            "0001-0002-ab-block-192.0.2.1.notice",
            "0001-0002-ab-attack_details-192.0.2.1.notice",
            "0001-0002-ab-ban-192.0.2.1",
            "zz-0002-ab-ban-192.0.2.1.notice",
        ] {
            assert_eq!(Name::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn append_list_read_update_remove_in_arrival_order() {
        let (_tmp, dir) = scratch();
        let s = Spool::open(&dir).unwrap();
        assert!(s.list().unwrap().is_empty());
        let late = s.append(&entry("192.0.2.1", "unban", 2_000)).unwrap().path;
        let early = s.append(&entry("192.0.2.1", "ban", 1_000)).unwrap().path;
        let other = s
            .append(&entry("2001:db8::1", "unban", 3_000))
            .unwrap()
            .path;
        fs::write(dir.join(".tmp-leftover"), "x").unwrap();
        assert_eq!(
            s.list().unwrap(),
            vec![early.clone(), late.clone(), other.clone()]
        );
        assert_eq!(
            s.queue_of("192.0.2.1").unwrap(),
            vec![early.clone(), late.clone()]
        );
        assert_eq!(s.queue_of("2001:db8::1").unwrap(), vec![other.clone()]);
        assert_eq!(Name::of(&other).unwrap().action, Action::Unban);
        let mut e = entry("192.0.2.1", "ban", 1_000);
        assert_eq!(Spool::read(&early).unwrap().unwrap(), e);
        e.attempts = Some(2);
        e.last_error = Some("HTTP 500".into());
        s.update(&early, &e).unwrap();
        assert_eq!(Spool::read(&early).unwrap().unwrap(), e);
        s.remove(&other).unwrap();
        s.remove(&early).unwrap();
        s.remove(&early).unwrap(); // already gone is fine
        assert_eq!(s.list().unwrap(), vec![late]);
        assert!(s.lock_flush(None).unwrap().is_some());
    }

    #[test]
    fn a_victim_lock_is_exclusive_and_leaves_no_file() {
        let (_tmp, dir) = scratch();
        let s = Spool::open(&dir).unwrap();
        let held = s.lock_ip("192.0.2.1", None).unwrap().expect("free");
        assert!(s.lock_ip("192.0.2.1", None).unwrap().is_none(), "taken");
        let other = s.lock_ip("192.0.2.2", None).unwrap();
        assert!(other.is_some(), "another victim never waits");
        drop(other);
        let soon = Instant::now() + Duration::from_millis(100);
        assert!(s.lock_ip("192.0.2.1", Some(soon)).unwrap().is_none());
        drop(held);
        let files: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert!(files.is_empty(), "lock files removed: {files:?}");
        assert!(s.lock_ip("192.0.2.1", None).unwrap().is_some());
    }

    #[test]
    fn the_sweep_recovers_whole_tmp_files_and_drops_the_rest() {
        let (_tmp, dir) = scratch();
        let s = Spool::open(&dir).unwrap();
        let e = entry("192.0.2.7", "ban", 5_000);
        let name = "0000000000005000-0000000001-00000000-ban-192.0.2.7.notice";
        fs::write(
            dir.join(format!(".tmp-{name}")),
            miniserde::json::to_string(&e),
        )
        .unwrap();
        fs::write(
            dir.join(".tmp-0000000000006000-0000000001-00000000-ban-192.0.2.8.notice"),
            "{\"victim_ip\":",
        )
        .unwrap();
        fs::write(dir.join(".ip-192.0.2.9.lock"), "").unwrap();
        assert!(s.sweep().is_empty(), "fresh tmp files may still be written");
        let old = std::time::SystemTime::now() - Duration::from_secs(120);
        for f in fs::read_dir(&dir).unwrap() {
            let f = File::options().write(true).open(f.unwrap().path()).unwrap();
            f.set_modified(old).unwrap();
        }
        assert_eq!(s.sweep(), vec![dir.join(name)]);
        let mut left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|f| f.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec![name.to_string()]);
        assert_eq!(Spool::read(&dir.join(name)).unwrap().unwrap(), e);
    }
}
