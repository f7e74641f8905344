//! As Debian 13 runs FastNetMon: the hook as FastNetMon's own user (here `nobody`, which every
//! Debian has, standing in for `fastnetmon`), the flush as another user (root, with the flush
//! unit's `UMask=0077`), sharing the env file, the spool and the log as the package's
//! `contrib/own-files` sets them up. These need root (CI and `make test` run as root); run as
//! anyone else they say so and check nothing.

mod common;

use common::server::{Options, Server};
use common::{Sandbox, dead_port};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

const TOKEN: &str = "s3cret-token";
const OWN_FILES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/own-files");

/// `nobody`'s uid and its group's gid, from /etc/passwd.
fn nobody() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let f: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .expect("a nobody user")
        .split(':')
        .collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

fn root() -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        eprintln!("not root: cannot run the hook as another user; nothing checked");
    }
    root
}

/// A sandbox laid out as the package lays out a host: env file, spool and log given to
/// `nobody` by `contrib/own-files` (the same script the postinst runs), and the sandbox
/// directory itself reachable by it.
fn deployed(api: &str) -> Sandbox {
    let mut sb = Sandbox::new(api);
    std::fs::set_permissions(&sb.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb.write(
        "env",
        &format!("PREFIXD_TOKEN={TOKEN}\nPREFIXD_RETRIES=1\n"),
    );
    std::fs::set_permissions(sb.path("env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    sb.set("PREFIXD_DEADLINE", "5");
    let out = Command::new(OWN_FILES)
        .arg("nobody")
        .env("PFN_BIN", &*common::BIN)
        .env("PREFIXD_ENV_FILE", sb.path("env"))
        .env("PREFIXD_SPOOL", sb.path("spool"))
        .env("PREFIXD_LOG", sb.path("log"))
        .env("PFN_FLUSH_DROPIN", sb.path("flush.d/fastnetmon-user.conf"))
        // Debug lines on stderr must not be taken for the answer (make e2e found that).
        .env("PREFIXD_DEBUG", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("FastNetMon runs the hook as nobody:") && said.contains("FASTNETMON_USER"),
        "{said}"
    );
    sb
}

/// Runs the binary as `uid:gid` (no supplementary groups, as systemd's `User=` gives
/// FastNetMon's user none here) with `umask`, as FastNetMon or the flush unit would.
fn run_as(
    sb: &Sandbox,
    who: (u32, u32),
    umask: &str,
    args: &[&str],
    stdin: &[u8],
) -> (i32, String) {
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(&*common::BIN)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")
        .envs(sb.env.iter().map(|(k, v)| (k, v)))
        .uid(who.0)
        .gid(who.1)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn owner_mode(path: &str) -> (u32, u32, u32) {
    let m = std::fs::metadata(path).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[test]
fn the_hook_as_fastnetmons_user_and_the_flush_as_root_share_every_file() {
    if !root() {
        return;
    }
    let (uid, gid) = nobody();
    let dead = dead_port();
    let mut sb = deployed(&format!("http://127.0.0.1:{}", dead.port));
    // What own-files made: the token readable by root and the group, nobody else.
    assert_eq!(owner_mode(&sb.path("env")), (0, gid, 0o640));
    assert_eq!(owner_mode(&sb.path("spool")), (uid, gid, 0o2770));
    assert_eq!(owner_mode(&sb.path("log")).0, uid);
    let dropin = std::fs::read_to_string(sb.path("flush.d/fastnetmon-user.conf")).unwrap();
    assert!(dropin.contains("\nUser=nobody\nGroup="), "{dropin}");

    // prefixd is down: FastNetMon's user keeps the ban (0022, FastNetMon's umask).
    let details = b"Attack type: udp_flood\nAttack direction: incoming\n";
    let (code, err) = run_as(&sb, (uid, gid), "022", &["203.0.113.11"], details);
    assert_eq!(code, 75, "kept, not lost: {err}\n{}", sb.log());
    assert_eq!(sb.spooled().len(), 1, "{}", sb.log());

    // prefixd is back; root flushes with the flush unit's umask, and writes the lease.
    let srv = dead.revive(Options {
        token: Some(TOKEN.into()),
        ..Default::default()
    });
    sb.set("PREFIXD_API", &srv.url);
    let (code, err) = run_as(&sb, (0, 0), "077", &["--flush"], b"");
    assert_eq!(code, 0, "{err}\n{}", sb.log());
    assert_eq!(srv.banned_ips(), ["203.0.113.11"]);
    assert!(sb.spooled().is_empty());
    assert_eq!(sb.leases().len(), 1, "{}", sb.log());
    // Every file and directory root made is the spool's group's, with the group's bits.
    let mut look = vec![sb.dir.join("spool")];
    while let Some(d) = look.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            let want = if m.is_dir() { 0o2770 } else { 0o660 };
            assert_eq!(
                (m.gid(), m.mode() & 0o7777),
                (gid, want),
                "{}",
                e.path().display()
            );
            if m.is_dir() {
                look.push(e.path());
            }
        }
    }

    // FastNetMon's unban, as its user: ends root's lease and withdraws.
    let (code, err) = run_as(
        &sb,
        (uid, gid),
        "022",
        &["203.0.113.11", "incoming", "0", "unban"],
        b"",
    );
    assert_eq!(code, 0, "{err}\n{}", sb.log());
    assert!(sb.leases().is_empty(), "{}", sb.log());
    assert!(
        srv.mitigations()
            .iter()
            .any(|m| m.victim_ip == "203.0.113.11" && m.status == "withdrawn"),
        "{:?}",
        srv.lines()
    );
    assert!(!srv.active("203.0.113.11"));
    let log = sb.log();
    // Both users wrote the one log; the token went nowhere.
    assert!(
        log.contains("INFO ban 203.0.113.11") && log.contains("unban 203.0.113.11"),
        "{log}"
    );
    assert!(
        !log.contains("cannot open log") && !log.contains(TOKEN),
        "{log}"
    );
    assert!(!err.contains(TOKEN));
}

#[test]
fn check_as_root_tells_what_fastnetmons_user_may_do_and_its_commands_fix_it() {
    if !root() {
        return;
    }
    let srv = Server::with(Options {
        token: Some(TOKEN.into()),
        ..Default::default()
    });
    let mut sb = Sandbox::new(&srv.url);
    std::fs::set_permissions(&sb.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // As an older package left a host: every file root's alone.
    sb.write("env", &format!("PREFIXD_TOKEN={TOKEN}\n"));
    std::fs::set_permissions(sb.path("env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(sb.path("log"), "").unwrap();
    std::fs::set_permissions(sb.path("log"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::create_dir(sb.path("spool")).unwrap();
    std::fs::set_permissions(sb.path("spool"), std::fs::Permissions::from_mode(0o700)).unwrap();
    sb.set("FASTNETMON_USER", "nobody");

    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 78, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("✔ FastNetMon runs the hook as nobody (uid "),
        "{}",
        r.stdout
    );
    let fixes: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with('✘'))
        .map(|l| l.rsplit(": ").next().unwrap())
        .collect();
    for (what, want) in [
        ("env file", "chown root:"),
        ("log", "chown nobody "),
        ("spool", "chown -R nobody:"),
    ] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.starts_with(&format!("✘ {what} ")) && l.contains("nobody cannot")),
            "{what} not flagged:\n{}",
            r.stdout
        );
        assert!(
            fixes.iter().any(|f| f.starts_with(want)),
            "{want} in {fixes:?}"
        );
    }
    // The commands it printed, run as printed, are the whole fix.
    for f in &fixes {
        let st = Command::new("/bin/sh").arg("-c").arg(f).status().unwrap();
        assert!(st.success(), "{f}");
    }
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("nobody can read it, nobody else but root"),
        "{}",
        r.stdout
    );
    // And as that user, it passes too.
    let (uid, gid) = nobody();
    let (code, err) = run_as(&sb, (uid, gid), "022", &["--check"], b"");
    assert_eq!(code, 0, "{err}");

    // A group that is not FastNetMon's may not read the token (FastNetMon's user owns it).
    let adm = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("adm:"))
        .map(|l| l.split(':').nth(2).unwrap().parse::<u32>().unwrap());
    if let Some(adm) = adm {
        std::os::unix::fs::chown(sb.path("env"), Some(uid), Some(adm)).unwrap();
        std::fs::set_permissions(sb.path("env"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let r = sb.run(&["--check"], None);
        assert_eq!(r.code, 78, "{}", r.stdout);
        assert!(
            r.stdout
                .contains("holds the token and group adm can read it"),
            "{}",
            r.stdout
        );
    }
}

#[test]
fn fastnetmon_user_prints_who_for_the_package_scripts() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.set("FASTNETMON_USER", "nobody");
    let r = sb.run(&["--fastnetmon-user"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let words: Vec<&str> = r.stdout.split_whitespace().collect();
    assert_eq!(words[0], "nobody", "{}", r.stdout);
    assert!(
        r.stdout.trim_end().ends_with(" FASTNETMON_USER"),
        "{}",
        r.stdout
    );
    // Nothing is written to the log: the package runs this before the log is FastNetMon's.
    assert!(!std::path::Path::new(&sb.path("log")).exists());
    sb.set("FASTNETMON_USER", "no-such-user-here");
    let r = sb.run(&["--fastnetmon-user"], None);
    assert_eq!(r.code, 78);
    assert!(
        r.stderr.contains("no user \"no-such-user-here\""),
        "{}",
        r.stderr
    );
}

#[test]
fn a_notice_that_cannot_be_kept_says_lost_on_stderr_too_with_its_replay() {
    let dead = dead_port();
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{}", dead.port));
    sb.set("PREFIXD_RETRIES", "1")
        .set("PREFIXD_SPOOL", "/proc/prefixd-spool");
    let r = sb.run(
        &["192.0.2.10", "incoming", "77", "ban"],
        Some(b"Attack type: udp_flood\n"),
    );
    assert_eq!(r.code, 73);
    let replay = "replay: prefixd-fastnetmon 192.0.2.10 incoming 77 ban </dev/null";
    // In the log, and where FastNetMon's journal gets it even when nobody reads the log.
    for (place, text) in [("log", sb.log()), ("stderr", r.stderr.clone())] {
        assert!(
            text.contains("ERROR ban 192.0.2.10 LOST unless replayed by hand")
                && text.contains(replay),
            "{place}: {text}"
        );
    }
    // The replay, run as printed once prefixd is back, sends the ban.
    let srv = dead.revive(Options::default());
    sb.set("PREFIXD_SPOOL", &sb.path("spool"));
    let cmd = replay.trim_start_matches("replay: prefixd-fastnetmon ");
    let args: Vec<&str> = cmd.trim_end_matches(" </dev/null").split(' ').collect();
    assert_eq!(sb.run(&args, None).code, 0, "{}", sb.log());
    assert_eq!(srv.banned_ips(), ["192.0.2.10"]);
}

/// Runs inside a mount namespace of its own whose /dev is a fresh tmpfs, so that this test can
/// be the local syslog at /dev/log without touching the host's.
const PRIVATE_DEV: &str = "PFN_TEST_IN_PRIVATE_DEV";

#[test]
fn a_log_that_cannot_be_opened_goes_to_syslog_as_well() {
    if std::env::var_os(PRIVATE_DEV).is_some() {
        return syslog_gets_what_the_log_could_not();
    }
    if !root() {
        return;
    }
    let me = std::env::current_exe().unwrap();
    let st = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs tmpfs /dev && : > /dev/null && exec "$0" --exact a_log_that_cannot_be_opened_goes_to_syslog_as_well --nocapture --test-threads=1"#)
        .arg(&me)
        .env(PRIVATE_DEV, "1")
        .status()
        .unwrap();
    assert!(st.success(), "the test inside its own /dev failed");
}

/// Inside: a datagram socket at /dev/log, and a ban whose log cannot be opened and whose
/// notice cannot be kept.
fn syslog_gets_what_the_log_could_not() {
    let syslog = std::os::unix::net::UnixDatagram::bind("/dev/log").unwrap();
    syslog
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let dead = dead_port();
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{}", dead.port));
    sb.set("PREFIXD_LOG", "/nonexistent-dir/prefixd-fastnetmon.log")
        .set("PREFIXD_RETRIES", "1")
        .set("PREFIXD_SPOOL", "/proc/prefixd-spool");
    let r = sb.run(
        &["192.0.2.20", "incoming", "5", "ban"],
        Some(b"Attack type: udp_flood\n"),
    );
    assert_eq!(r.code, 73, "{}", r.stderr);
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    // Bounded: the run has ended, its datagrams are queued; at most 20.
    for _ in 0..20 {
        match syslog.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    for want in [
        "WARN cannot open log /nonexistent-dir/prefixd-fastnetmon.log",
        "ERROR ban 192.0.2.20 LOST unless replayed by hand",
    ] {
        assert!(
            got.iter().any(|d| d.starts_with('<')
                && d.contains(" prefixd-fastnetmon[")
                && d.contains(want)),
            "{want} not in syslog: {got:#?}"
        );
        assert!(
            r.stderr.contains(want),
            "{want} not on stderr: {}",
            r.stderr
        );
    }
}
