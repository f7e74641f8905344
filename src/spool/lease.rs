//! Leases: a victim FastNetMon banned stays *held* until FastNetMon's unban, so that `--flush`
//! can keep its mitigation alive past prefixd's TTL (prefixd ends a mitigation at its
//! playbook's TTL unless another ban extends it: shared/prefixd-0.19.md §5). One file per
//! victim in the spool directory's `leases/`, `<victim_ip>.lease`, written as notices are (temporary
//! name → fsync → rename), so a crash leaves the old lease or the new one; the directory is
//! fsynced in batches (`Spool::replace_text`). What a lease holds is `prefixd::ban::Lease`
//! (a ban as prefixd took it); this is where it is kept, with the victim's other mitigations
//! it follows (`follow`).

use crate::prefixd::ban::Lease;
use crate::spool::queue::Spool;
use std::io;
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".lease";

/// Leases live apart from the notices: every run lists the notices (its victim's queue), and
/// a carpet's thousand leases would make each listing a thousand entries longer.
const DIR: &str = "leases";

/// The most mitigations one victim's lease follows (its bans of different scopes while it is
/// held: FastNetMon bans a host once, so more is a spool replaying an odd history).
pub const MAX_SCOPES: usize = 8;

/// The victim's lease once `new` (a ban just delivered) joins the one it had: `new` takes the
/// place of the mitigation it created or extended, and of an earlier ban of the same scope
/// (its vector's protocol and its `top_dst_ports`: what prefixd keys a mitigation on, short of
/// the service's ports we cannot see); every other mitigation stays followed, newest first,
/// at most `MAX_SCOPES` in all. Also returns how many were let go for that limit.
pub fn follow(old: Option<Lease>, mut new: Lease) -> (Lease, usize) {
    let Some(mut old) = old else {
        return (new, 0);
    };
    let mut all = old.earlier.take().unwrap_or_default();
    all.insert(0, old);
    let scope = |l: &Lease| {
        use crate::fastnetmon::ports;
        let given = l.top_dst_ports.clone().unwrap_or_default();
        (ports::vector_protocol(&l.vector), ports::ascending(given))
    };
    all.retain(|l| {
        let same_id = l.mitigation_id.is_some() && l.mitigation_id == new.mitigation_id;
        !same_id && scope(l) != scope(&new)
    });
    let dropped = all.len().saturating_sub(MAX_SCOPES - 1);
    all.truncate(MAX_SCOPES - 1);
    for l in &mut all {
        l.earlier = None;
    }
    new.earlier = (!all.is_empty()).then_some(all);
    (new, dropped)
}

/// Where `victim_ip`'s lease lives: `<spool>/leases/<victim_ip>.lease`.
pub fn path(dir: &Path, victim_ip: &str) -> PathBuf {
    dir.join(DIR).join(format!("{victim_ip}{SUFFIX}"))
}

/// Writes (or replaces) the victim's lease; `durable`: fsynced (`Spool::replace_text`).
pub fn write(spool: &Spool, lease: &Lease, durable: bool) -> io::Result<()> {
    let p = path(spool.dir(), &lease.victim_ip);
    if let Some(parent) = p.parent() {
        crate::spool::queue::create_dir(parent)?;
    }
    let text = miniserde::json::to_string(lease);
    if !durable {
        // A ban's first lease (nothing to replace): created in place, one directory change
        // instead of two — a carpet of runs queues on its directory's lock. One write of a few
        // hundred bytes; a run killed between the create and the write leaves an empty file,
        // which the next flush sets aside.
        match new_file(&p, &text) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            r => return r,
        }
    }
    spool.replace_text(&p, &text, durable)
}

fn new_file(p: &Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)?;
    crate::spool::queue::share(&f)?;
    f.write_all(text.as_bytes())
}

/// The victim's lease; `Ok(None)` when it holds none.
pub fn read(dir: &Path, victim_ip: &str) -> io::Result<Option<Lease>> {
    read_path(&path(dir, victim_ip))
}

fn read_path(p: &Path) -> io::Result<Option<Lease>> {
    match std::fs::read_to_string(p) {
        // Its victim names lock files: a bare IP address, nothing that could be a path.
        Ok(text) => miniserde::json::from_str::<Lease>(&text)
            .ok()
            .filter(|l| l.victim_ip.parse::<std::net::IpAddr>().is_ok())
            .map(Some)
            .ok_or_else(|| io::Error::other(format!("{} is not a lease", p.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Ends the victim's lease; `Ok(true)` if it held one.
pub fn remove(dir: &Path, victim_ip: &str) -> io::Result<bool> {
    match std::fs::remove_file(path(dir, victim_ip)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every lease in the spool directory; an unreadable one as its path.
/// The held victims' IPs, from the leases' file names alone (nothing read).
pub fn victims(dir: &Path) -> io::Result<Vec<String>> {
    let paths = match crate::spool::queue::files_ending(&dir.join(DIR), SUFFIX) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r?,
    };
    Ok(paths
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.strip_suffix(SUFFIX))
        .map(str::to_string)
        .collect())
}

pub fn all(dir: &Path) -> io::Result<Vec<Result<Lease, PathBuf>>> {
    let paths = match crate::spool::queue::files_ending(&dir.join(DIR), SUFFIX) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r?,
    };
    Ok(paths
        .into_iter()
        .filter_map(|p| match read_path(&p) {
            Ok(Some(l)) => Some(Ok(l)),
            // Ended while we listed.
            Ok(None) => None,
            Err(_) => Some(Err(p)),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_written_read_listed_and_ended() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path()).unwrap();
        let lease = Lease {
            victim_ip: "2001:db8::10".into(),
            direction: "incoming".into(),
            vector: "udp_flood".into(),
            confidence: 0.9,
            pps: Some(1000),
            bps: None,
            banned_ms: 1_796_000_000_000,
            event_id: "8182c3a0-5b20-4dac-91b9-30ecca53d81e".into(),
            mitigation_id: Some("00000000-0000-4000-8000-000000000001".into()),
            expires_ms: None,
            renewed_ms: None,
            renewals: 0,
            waiting: None,
            quota: false,
            top_dst_ports: Some(vec![27015]),
            earlier: None,
            unlisted_ms: Some(1_796_000_060_000),
        };
        write(&spool, &lease, true).unwrap();
        assert_eq!(
            read(tmp.path(), "2001:db8::10").unwrap(),
            Some(lease.clone())
        );
        let mut again = lease.clone();
        again.renewals = 1;
        write(&spool, &again, false).unwrap();
        assert_eq!(all(tmp.path()).unwrap(), vec![Ok(again)]);
        assert!(spool.list().unwrap().is_empty(), "a lease is not a notice");
        std::fs::write(path(tmp.path(), "192.0.2.1"), "{").unwrap();
        assert_eq!(spool.list().unwrap().len(), 0);
        assert_eq!(
            all(tmp.path())
                .unwrap()
                .iter()
                .filter(|l| l.is_err())
                .count(),
            1
        );
        assert!(remove(tmp.path(), "2001:db8::10").unwrap());
        assert!(!remove(tmp.path(), "2001:db8::10").unwrap());
        assert_eq!(read(tmp.path(), "2001:db8::10").unwrap(), None);
    }

    /// A lease as 0.2.0 wrote it (no ports, no earlier mitigations): the format is a promise.
    const LEASE_0_2_0: &str = r#"{"victim_ip":"203.0.113.10","direction":"incoming","vector":"udp_flood","confidence":0.9,"pps":1000,"bps":null,"banned_ms":1796000000000,"event_id":"8182c3a0-5b20-4dac-91b9-30ecca53d81e","mitigation_id":"00000000-0000-4000-8000-000000000001","expires_ms":null,"renewed_ms":null,"renewals":0,"waiting":null,"quota":false}"#;

    fn ban(vector: &str, ports: Option<Vec<u16>>, id: Option<&str>) -> Lease {
        let mut l: Lease = miniserde::json::from_str(LEASE_0_2_0).unwrap();
        l.vector = vector.into();
        l.top_dst_ports = ports;
        l.mitigation_id = id.map(str::to_string);
        l
    }

    #[test]
    fn a_lease_of_the_previous_release_loads_with_no_ports() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(DIR)).unwrap();
        std::fs::write(path(tmp.path(), "203.0.113.10"), LEASE_0_2_0).unwrap();
        let l = read(tmp.path(), "203.0.113.10").unwrap().unwrap();
        assert_eq!((l.top_dst_ports, l.earlier), (None, None));
    }

    #[test]
    fn a_lease_follows_every_scope_its_bans_made() {
        let a = Some("00000000-0000-4000-8000-00000000000a");
        let b = Some("00000000-0000-4000-8000-00000000000b");
        // Other ports: a second mitigation, followed too.
        let (l, dropped) = follow(
            Some(ban("udp_flood", Some(vec![53]), a)),
            ban("udp_flood", Some(vec![27015]), b),
        );
        assert_eq!(dropped, 0);
        assert_eq!(l.mitigation_id.as_deref(), b);
        let earlier = l.earlier.clone().unwrap();
        assert_eq!(earlier.len(), 1);
        assert_eq!(earlier[0].mitigation_id.as_deref(), a);
        // The same mitigation extended (a service's ports made both bans one rule): replaced.
        let (l2, _) = follow(Some(l.clone()), ban("udp_flood", Some(vec![53, 80]), a));
        assert_eq!(l2.mitigation_id.as_deref(), a);
        assert_eq!(l2.earlier.unwrap()[0].mitigation_id.as_deref(), b);
        // The same scope again (its mitigation had ended: a new one): replaced.
        let c = Some("00000000-0000-4000-8000-00000000000c");
        let (l3, _) = follow(Some(l.clone()), ban("udp_flood", Some(vec![27015]), c));
        assert_eq!(l3.earlier.unwrap().len(), 1);
        // syn_flood and ack_flood on the same ports are one scope for prefixd (TCP).
        let (l4, _) = follow(
            Some(ban("syn_flood", None, a)),
            ban("ack_flood", None, None),
        );
        assert_eq!((l4.vector.as_str(), l4.earlier), ("ack_flood", None));
        // An old lease without ports and a ban without ports: the same scope.
        let (l5, _) = follow(
            Some(ban("udp_flood", None, a)),
            ban("udp_flood", Some(vec![]), b),
        );
        assert_eq!(l5.earlier, None);
        // Bounded.
        let mut l = ban("udp_flood", Some(vec![1]), None);
        let mut dropped = 0;
        for port in 2..20 {
            let (next, d) = follow(Some(l), ban("udp_flood", Some(vec![port]), None));
            (l, dropped) = (next, dropped + d);
        }
        assert_eq!(l.earlier.as_ref().unwrap().len(), MAX_SCOPES - 1);
        assert_eq!(dropped, 19 - MAX_SCOPES);
        assert!(l.earlier.unwrap().iter().all(|e| e.earlier.is_none()));
    }
}
