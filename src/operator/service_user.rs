//! Who runs the hook: the user FastNetMon runs as, read from its systemd unit as systemd reads
//! it (Debian 13's and upstream's unit since FastNetMon 1.2.7 say `User=fastnetmon`; Debian
//! 12's 1.2.4 and FastNetMon's own installer run it as root), and what that user may do to a
//! file by its owner, group and mode bits. `--check` (run as root) uses it to tell the truth
//! for the user that matters; `--fastnetmon-user` prints it for the package's scripts.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The unit search path for system units (systemd.unit(5)), highest priority first; Debian 12
/// keeps packaged units in `/lib/systemd/system`.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];
const UNIT: &str = "fastnetmon.service";
/// A unit file or drop-in larger than this is not read.
const MAX_UNIT_FILE: u64 = 256 * 1024;

/// The user FastNetMon's notify hook runs as, resolved against `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUser {
    pub name: String,
    pub uid: u32,
    /// The group it runs with: the unit's `Group=`, else the user's primary group.
    pub group: String,
    pub gid: u32,
    /// Every group it is in (its own and the supplementary ones of `/etc/group`).
    pub gids: Vec<u32>,
    /// Where that was read: a unit file and its drop-ins, FASTNETMON_USER, or why root.
    pub from: String,
}

/// What FastNetMon's unit says of its user: `User=` and `Group=` (None: not said, root), and
/// the files that said it (the unit, then its drop-ins in the order applied).
struct Unit {
    user: Option<String>,
    group: Option<String>,
    files: Vec<PathBuf>,
}

/// FastNetMon's unit below `root` (`/` on a host); `Err` when there is none (or it is masked).
fn read_unit(root: &Path) -> Result<Unit, String> {
    let at = |d: &str| root.join(d.trim_start_matches('/'));
    let Some(unit) = UNIT_DIRS
        .iter()
        .map(|d| at(d).join(UNIT))
        .find(|p| p.exists())
    else {
        return Err(format!("no {UNIT} in systemd's unit path"));
    };
    if std::fs::canonicalize(&unit).is_ok_and(|p| p == Path::new("/dev/null")) {
        return Err(format!("{} is masked", unit.display()));
    }
    // Drop-ins: `fastnetmon.service.d/*.conf` and `service.d/*.conf` in every directory of the
    // path; a name in a higher directory hides the same name below; applied in name order.
    let mut dropins: Vec<(String, PathBuf)> = Vec::new();
    for d in UNIT_DIRS {
        for sub in [format!("{UNIT}.d"), "service.d".to_string()] {
            let Ok(rd) = std::fs::read_dir(at(d).join(sub)) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".conf") && !dropins.iter().any(|(n, _)| *n == name) {
                    dropins.push((name, e.path()));
                }
            }
        }
    }
    dropins.sort();
    let mut files = vec![unit];
    files.extend(dropins.into_iter().map(|(_, p)| p));
    let (mut user, mut group) = (None, None);
    for f in &files {
        let (bytes, _, _) = crate::config::files::read_bounded(f, MAX_UNIT_FILE)
            .map_err(|e| format!("{}: {e}", f.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let (u, g) = service_settings(&text);
        // The last assignment wins; an empty one resets to the default (root).
        if let Some(u) = u {
            user = Some(u).filter(|u| !u.is_empty());
        }
        if let Some(g) = g {
            group = Some(g).filter(|g| !g.is_empty());
        }
    }
    Ok(Unit { user, group, files })
}

/// The last `User=` and `Group=` in the `[Service]` section of one unit file.
fn service_settings(text: &str) -> (Option<String>, Option<String>) {
    let (mut user, mut group) = (None, None);
    let mut in_service = false;
    let mut logical = String::new();
    for line in text.lines() {
        // A trailing backslash continues the line.
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let l = std::mem::take(&mut logical);
        let l = l.trim();
        if l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') {
            in_service = l == "[Service]";
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        if !in_service {
            continue;
        }
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "User" => user = Some(v),
            "Group" => group = Some(v),
            _ => {}
        }
    }
    (user, group)
}

/// The user FastNetMon runs as: `FASTNETMON_USER` when set (hosts without systemd), else its
/// unit below `root`, else root. `Err` when the name given is not a user here.
pub fn find(root: &Path, given: Option<&str>) -> Result<ServiceUser, String> {
    let (user, group, from) = match given.filter(|g| !g.is_empty()) {
        Some(u) => (Some(u.to_string()), None, "FASTNETMON_USER".to_string()),
        None => match read_unit(root) {
            Ok(unit) => {
                let said = match unit.user {
                    Some(_) => "User=",
                    None => "no User=: root",
                };
                let files: Vec<String> =
                    unit.files.iter().map(|f| f.display().to_string()).collect();
                (
                    unit.user,
                    unit.group,
                    format!("{said} in {}", files.join(" + ")),
                )
            }
            Err(e) => (None, None, format!("{e}: root")),
        },
    };
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let groups = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    resolve(
        user.as_deref().unwrap_or("root"),
        group.as_deref(),
        from,
        &passwd,
        &groups,
    )
}

/// A user (name or number) and optional group against passwd and group files' text.
fn resolve(
    user: &str,
    group: Option<&str>,
    from: String,
    passwd: &str,
    groups: &str,
) -> Result<ServiceUser, String> {
    let entry = |text: &str, key: &str| -> Option<Vec<String>> {
        text.lines()
            .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && (f[0] == key || f[2] == key))
    };
    let pw = entry(passwd, user).ok_or_else(|| format!("no user {user:?} here ({from})"))?;
    let uid: u32 = pw[2].parse().map_err(|_| format!("user {user}: bad uid"))?;
    let primary = pw[3].clone();
    let gr = entry(groups, group.unwrap_or(&primary));
    let (group, gid) = match (&gr, group) {
        (Some(g), _) => (g[0].clone(), g[2].parse().unwrap_or(u32::MAX)),
        (None, Some(g)) => return Err(format!("no group {g:?} here ({from})")),
        // A primary gid without a name in /etc/group.
        (None, None) => (primary.clone(), primary.parse().unwrap_or(u32::MAX)),
    };
    let mut gids = vec![gid];
    if let Ok(p) = primary.parse() {
        gids.push(p);
    }
    for f in groups.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
        if f.len() >= 4 && f[3].split(',').any(|m| m == pw[0]) {
            gids.extend(f[2].parse::<u32>());
        }
    }
    gids.sort_unstable();
    gids.dedup();
    Ok(ServiceUser {
        name: pw[0].clone(),
        uid,
        group,
        gid,
        gids,
        from,
    })
}

/// What the hook must be able to do to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    /// Append to it (the log).
    Write,
    /// Create, rename and remove files in it (a directory).
    Fill,
}

impl ServiceUser {
    /// Root, for when FastNetMon's user cannot be told (already reported as such).
    pub fn root() -> ServiceUser {
        ServiceUser {
            name: "root".into(),
            uid: 0,
            group: "root".into(),
            gid: 0,
            gids: vec![0],
            from: String::new(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether this user may do `need` to `path` (which exists), by owner, group and mode bits
    /// and the search bit of every directory above it — as the kernel decides without ACLs.
    /// `Err` says what stands in the way.
    pub fn may(&self, path: &Path, need: Need) -> Result<(), String> {
        if self.is_root() {
            return Ok(());
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for dir in path.ancestors().skip(1) {
            if let Ok(m) = std::fs::metadata(dir)
                && self.bits(&m) & 1 == 0
            {
                return Err(format!(
                    "cannot reach it: {} is {} {:04o}",
                    dir.display(),
                    owner_of(&m),
                    m.mode() & 0o7777
                ));
            }
        }
        let want = match need {
            Need::Read => 4,
            Need::Write => 2,
            Need::Fill => 7,
        };
        if self.bits(&meta) & want == want {
            return Ok(());
        }
        Err(format!(
            "is {} {:04o}",
            owner_of(&meta),
            meta.mode() & 0o7777
        ))
    }

    /// The rwx bits that apply to this user.
    fn bits(&self, m: &std::fs::Metadata) -> u32 {
        let mode = m.mode();
        if m.uid() == self.uid {
            (mode >> 6) & 7
        } else if self.gids.contains(&m.gid()) {
            (mode >> 3) & 7
        } else {
            mode & 7
        }
    }
}

/// `user:group` of a file, by name where `/etc/passwd` and `/etc/group` have one.
pub fn owner_of(m: &std::fs::Metadata) -> String {
    let name = |file: &str, id: u32| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[2] == id.to_string()).then(|| f[0].to_string())
                })
            })
            .unwrap_or_else(|| id.to_string())
    };
    format!(
        "{}:{}",
        name("/etc/passwd", m.uid()),
        name("/etc/group", m.gid())
    )
}

/// The users other than root and `user` who may read a file: its group's members (when the
/// group is not root's or the user's own) and everyone when it is world-readable. Empty: only
/// root and the hook's user.
pub fn other_readers(m: &std::fs::Metadata, user: &ServiceUser) -> Option<String> {
    let mode = m.mode();
    if mode & 0o004 != 0 {
        return Some("everyone (world-readable)".into());
    }
    let gid = m.gid();
    if mode & 0o040 != 0 && gid != 0 && gid != user.gid {
        return Some(format!(
            "group {}",
            owner_of(m).split(':').nth(1).unwrap_or("?")
        ));
    }
    if m.uid() != 0 && m.uid() != user.uid && mode & 0o400 != 0 {
        return Some(format!(
            "its owner {}",
            owner_of(m).split(':').next().unwrap_or("?")
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nfastnetmon:x:998:997::/nonexistant:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nadm:x:4:fastnetmon\nfastnetmon:x:997:\nnogroup:x:65534:\n";

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let p = t.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        t
    }

    #[test]
    fn debian_13s_unit_runs_it_as_fastnetmon() {
        let t = tree(&[
            (
                "usr/lib/systemd/system/fastnetmon.service",
                "[Unit]\nDescription=FastNetMon\n\n[Service]\nType=simple\nUser=fastnetmon\nGroup=fastnetmon\nExecStart=/usr/sbin/fastnetmon --log_to_console\n",
            ),
            ("etc/passwd", PASSWD),
            ("etc/group", GROUP),
        ]);
        let u = find(t.path(), None).unwrap();
        assert_eq!(
            (u.name.as_str(), u.uid, u.group.as_str(), u.gid),
            ("fastnetmon", 998, "fastnetmon", 997)
        );
        assert_eq!(u.gids, vec![4, 997]);
        assert!(u.from.starts_with("User= in "), "{}", u.from);
        assert!(
            u.from
                .ends_with("usr/lib/systemd/system/fastnetmon.service"),
            "{}",
            u.from
        );
    }

    #[test]
    fn debian_12s_unit_has_no_user_and_no_unit_is_root_too() {
        let t = tree(&[
            (
                "lib/systemd/system/fastnetmon.service",
                "[Service]\nType=forking\nExecStart=/usr/sbin/fastnetmon --daemonize\n",
            ),
            ("etc/passwd", PASSWD),
            ("etc/group", GROUP),
        ]);
        let u = find(t.path(), None).unwrap();
        assert_eq!((u.name.as_str(), u.uid, u.gid), ("root", 0, 0));
        assert!(u.from.starts_with("no User=: root in "), "{}", u.from);
        let none = tree(&[("etc/passwd", PASSWD), ("etc/group", GROUP)]);
        let u = find(none.path(), None).unwrap();
        assert_eq!(u.name, "root");
        assert!(
            u.from.starts_with("no fastnetmon.service in "),
            "{}",
            u.from
        );
    }

    #[test]
    fn drop_ins_win_in_name_order_and_etc_hides_the_package_s() {
        let t = tree(&[
            (
                "usr/lib/systemd/system/fastnetmon.service",
                "[Service]\nUser=fastnetmon\n",
            ),
            // Reset to root by an empty User=, then set again by a later name.
            (
                "etc/systemd/system/fastnetmon.service.d/10-root.conf",
                "[Service]\nUser=\n",
            ),
            (
                "etc/systemd/system/fastnetmon.service.d/20-nobody.conf",
                "[Service]\n# User=root\nUser=nobody\n",
            ),
            // The same name below /etc: hidden.
            (
                "usr/lib/systemd/system/fastnetmon.service.d/20-nobody.conf",
                "[Service]\nUser=root\n",
            ),
            // Not in [Service]: not a setting of the service.
            (
                "run/systemd/system/fastnetmon.service.d/30-unit.conf",
                "[Unit]\nUser=root\n",
            ),
            ("etc/passwd", PASSWD),
            ("etc/group", GROUP),
        ]);
        let u = find(t.path(), None).unwrap();
        assert_eq!((u.name.as_str(), u.group.as_str()), ("nobody", "nogroup"));
        assert!(
            u.from.contains("20-nobody.conf") && u.from.contains(" + "),
            "{}",
            u.from
        );
        // An empty User= at the end is root again.
        let t2 = tree(&[
            (
                "usr/lib/systemd/system/fastnetmon.service",
                "[Service]\nUser=fastnetmon\n",
            ),
            (
                "etc/systemd/system/fastnetmon.service.d/override.conf",
                "[Service]\nUser=\n",
            ),
            ("etc/passwd", PASSWD),
            ("etc/group", GROUP),
        ]);
        assert_eq!(find(t2.path(), None).unwrap().name, "root");
    }

    #[test]
    fn a_masked_unit_or_an_unknown_user_is_said() {
        let t = tree(&[("etc/passwd", PASSWD), ("etc/group", GROUP)]);
        std::fs::create_dir_all(t.path().join("etc/systemd/system")).unwrap();
        std::os::unix::fs::symlink(
            "/dev/null",
            t.path().join("etc/systemd/system/fastnetmon.service"),
        )
        .unwrap();
        let u = find(t.path(), None).unwrap();
        assert!(u.from.contains("is masked"), "{}", u.from);
        let e = find(t.path(), Some("nosuchuser")).unwrap_err();
        assert!(
            e.contains("no user \"nosuchuser\"") && e.contains("FASTNETMON_USER"),
            "{e}"
        );
        let u = find(t.path(), Some("998")).unwrap();
        assert_eq!(u.name, "fastnetmon");
    }

    #[test]
    fn continued_lines_and_quotes_are_read_as_systemd_does() {
        assert_eq!(
            service_settings("[Service]\nExecStart=/x \\\n  --y\nUser=\"fastnetmon\"\n"),
            (Some("fastnetmon".into()), None)
        );
    }

    #[test]
    fn what_a_user_may_do_follows_owner_group_and_other_bits() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "x").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        let other = ServiceUser {
            name: "x".into(),
            uid: m.uid() + 1,
            group: "x".into(),
            gid: m.gid() + 1,
            gids: vec![m.gid() + 1],
            from: String::new(),
        };
        let member = ServiceUser {
            gids: vec![m.gid()],
            ..other.clone()
        };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(other.may(&f, Need::Read).unwrap_err().contains("0640"));
        assert_eq!(member.may(&f, Need::Read), Ok(()));
        assert!(member.may(&f, Need::Write).is_err());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(other.may(&f, Need::Read), Ok(()));
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!(
            other_readers(&m, &other).as_deref(),
            Some("everyone (world-readable)")
        );
        // A directory above without the search bit for them.
        let d = t.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("g"), "x").unwrap();
        std::fs::set_permissions(d.join("g"), std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(
            other
                .may(&d.join("g"), Need::Read)
                .unwrap_err()
                .contains("cannot reach it")
        );
    }
}
