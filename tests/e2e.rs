//! The real detector drives the real binary, in both generations operators run: Debian
//! bookworm's FastNetMon 1.2.4 on the host, and Debian 13's 1.2.9 from a trixie chroot
//! (`tests/e2e/trixie-root.sh`). Fed NetFlow v5 on loopback by a generator written here, it runs
//! our static binary as its notify program (configured through FastNetMon's own environment, as
//! a systemd unit would), and the loopback prefixd stand-in records what arrives. `make e2e`
//! installs both and runs this (ignored by a plain `cargo test`: it needs the packages and takes
//! a minute or two per generation). The same scenarios run against both; where the
//! generations differ, the difference is asserted.

mod common;

use common::server::{self, Options, Server};
use common::{Sandbox, num, raw_details, s};
use miniserde::json::Value;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FASTNETMON: &str = "/usr/sbin/fastnetmon";

/// Which FastNetMon, and how it is run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Generation {
    /// Debian bookworm's package, on the host.
    V124,
    /// Debian 13's package, in the chroot at PFN_TRIXIE_ROOT.
    V129,
}

/// FastNetMon, stopped by its PID when dropped — also when an assertion fails.
struct Detector {
    child: Child,
    /// Where its log lines go: its `--log_file` (1.2.4), or its stdout and stderr — the
    /// journal under systemd — with `--log_to_console` as Debian 13's unit runs it (1.2.9).
    log: String,
}

impl Drop for Detector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // FastNetMon's API client exits 0 when it reached no FastNetMon.
    assert!(
        out.status.success() && !text.starts_with("Query failed"),
        "{cmd:?}: {text}"
    );
    text
}

/// A Debian 13 host of its own for one test: an overlay of the trixie chroot (which stays as
/// built), with /proc, /dev and the sandbox (at the same path, so that every path in
/// FastNetMon's configuration means the same file on both sides) mounted into it; all of it
/// unmounted on drop, the overlay's changes thrown away with its directory.
struct Host {
    root: String,
    mounts: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Host {
    fn new(sb: &Sandbox) -> Host {
        let dir = tempfile::Builder::new()
            .prefix("pfn-trixie-")
            .tempdir()
            .unwrap();
        let at = |p: &str| dir.path().join(p).display().to_string();
        for d in ["upper", "work", "root"] {
            std::fs::create_dir(at(d)).unwrap();
        }
        let (root, upper, work) = (at("root"), at("upper"), at("work"));
        let mut host = Host {
            root: root.clone(),
            mounts: Vec::new(),
            _dir: dir,
        };
        let opts = format!("lowerdir={},upperdir={upper},workdir={work}", trixie_root());
        host.mount(&["-t", "overlay", "overlay", "-o", &opts], &root);
        let sandbox = sb.dir.display().to_string();
        host.mount(&["-t", "proc", "proc"], &format!("{root}/proc"));
        host.mount(&["--bind", "/dev"], &format!("{root}/dev"));
        host.mount(&["--bind", &sandbox], &format!("{root}{sandbox}"));
        host
    }

    fn mount(&mut self, args: &[&str], at: &str) {
        std::fs::create_dir_all(at).unwrap();
        run(Command::new("mount").args(args).arg(at));
        self.mounts.push(at.to_string());
    }

    /// A path inside, as seen from outside.
    fn path(&self, p: &str) -> String {
        format!("{}{p}", self.root)
    }

    /// `program` inside, as root or as `user` (uid, gid: systemd's `User=`/`Group=`), with the
    /// environment systemd gives a unit (and `User=`'s additions).
    fn command(&self, user: Option<(u32, u32)>, program: &str) -> Command {
        let mut c = Command::new("chroot");
        if let Some((u, g)) = user {
            c.arg(format!("--userspec={u}:{g}"))
                .arg(format!("--groups={g}"));
        }
        c.arg(&self.root)
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin");
        if user.is_some() {
            c.env("HOME", "/nonexistant")
                .env("USER", "fastnetmon")
                .env("LOGNAME", "fastnetmon")
                .env("SHELL", "/usr/sbin/nologin");
        }
        c
    }

    /// A user's uid and primary gid from the host's own /etc/passwd.
    fn user(&self, name: &str) -> Option<(u32, u32)> {
        let passwd = std::fs::read_to_string(self.path("/etc/passwd")).unwrap();
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
    }

    /// The user and group the flush unit runs as: its drop-in's `User=`/`Group=`, else root.
    fn flush_user(&self) -> (u32, u32) {
        let dropin =
            std::fs::read_to_string(self.path(
                "/etc/systemd/system/prefixd-fastnetmon-flush.service.d/fastnetmon-user.conf",
            ))
            .unwrap_or_default();
        match dropin.lines().find_map(|l| l.strip_prefix("User=")) {
            Some(name) => self.user(name).expect("the drop-in's user exists"),
            None => (0, 0),
        }
    }

    /// Installs our .deb (`PFN_DEB`) beside Debian's FastNetMon: after it (the chroot has it),
    /// or before it (FastNetMon purged — which takes its user too — then ours, then FastNetMon
    /// again from apt's cache). Returns what dpkg said.
    fn install(&self, order: Order) -> String {
        let deb = std::env::var("PFN_DEB").expect("PFN_DEB: run `make e2e`");
        std::fs::copy(&deb, self.path("/tmp/prefixd-fastnetmon.deb")).unwrap();
        let dpkg = |args: &[&str]| run(self.command(None, "dpkg").args(args));
        match order {
            Order::OursAfter => dpkg(&["-i", "/tmp/prefixd-fastnetmon.deb"]),
            Order::OursFirst => {
                let cached = std::fs::read_dir(self.path("/var/cache/apt/archives"))
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .find(|n| n.starts_with("fastnetmon_") && n.ends_with(".deb"))
                    .expect("fastnetmon's .deb in the chroot's apt cache");
                let mut said = dpkg(&["--purge", "fastnetmon"]);
                assert_eq!(self.user("fastnetmon"), None, "purged with its user");
                said += &dpkg(&["-i", "/tmp/prefixd-fastnetmon.deb"]);
                said += &dpkg(&["-i", &format!("/var/cache/apt/archives/{cached}")]);
                said
            }
        }
    }

    /// Sets our variables in /etc/default/prefixd as an operator does: in the file itself,
    /// which keeps its owner and mode.
    fn configure(&self, vars: &[(&str, &str)]) {
        let path = self.path("/etc/default/prefixd");
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (k, v) in vars {
            text = text
                .lines()
                .filter(|l| !l.trim_start_matches('#').starts_with(&format!("{k}=")))
                .map(|l| format!("{l}\n"))
                .collect();
            text.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(&path, text).unwrap();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let ok = Command::new("umount")
                .arg(m)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                // Busy for a moment (a notify run still ending): detach it rather than leave it.
                let _ = Command::new("umount").args(["-l", m]).status();
            }
        }
    }
}

/// Which package comes first on a fresh Debian 13.
#[derive(Clone, Copy, Debug)]
enum Order {
    OursAfter,
    OursFirst,
}

/// Where the hook is and how it runs. 1.2.4 as the first e2e had it (the host, root,
/// configured through FastNetMon's environment); 1.2.9 as Debian 13 runs it: our .deb
/// installed before FastNetMon, FastNetMon as its unit's `User=fastnetmon` with the unit's
/// environment, the env file edited in place, the flush as the flush unit's user.
struct Deployment {
    host: Option<Host>,
    sb: Sandbox,
}

impl Deployment {
    fn new(g: Generation, api: &str) -> Deployment {
        let sb = Sandbox::new(api);
        let host = (g == Generation::V129).then(|| {
            let host = Host::new(&sb);
            let said = host.install(Order::OursFirst);
            assert!(
                said.contains("FastNetMon runs the hook as fastnetmon:fastnetmon"),
                "{said}"
            );
            host.configure(&[("PREFIXD_API", api)]);
            host
        });
        Deployment { host, sb }
    }

    /// Our variables: in FastNetMon's environment (1.2.4), in /etc/default/prefixd (1.2.9).
    fn set(&mut self, vars: &[(&str, &str)]) {
        match &self.host {
            Some(host) => host.configure(vars),
            None => {
                for (k, v) in vars {
                    self.sb.set(k, v);
                }
            }
        }
    }

    fn log(&self) -> String {
        match &self.host {
            Some(host) => std::fs::read_to_string(host.path("/var/log/prefixd-fastnetmon.log"))
                .unwrap_or_default(),
            None => self.sb.log(),
        }
    }

    fn leases(&self) -> Vec<String> {
        match &self.host {
            Some(host) => std::fs::read_dir(host.path("/var/spool/prefixd-fastnetmon/leases"))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.ends_with(".lease"))
                        .collect()
                })
                .unwrap_or_default(),
            None => self.sb.leases(),
        }
    }

    /// `--flush`, as the timer runs it: as the flush unit's user with its `UMask=0077`.
    fn flush(&self) -> i32 {
        match &self.host {
            Some(host) => host
                .command(Some(host.flush_user()), "/bin/sh")
                .args(["-c", "umask 077; exec /usr/bin/prefixd-fastnetmon --flush"])
                .stdin(Stdio::null())
                .output()
                .map_or(-1, |o| o.status.code().unwrap_or(-1)),
            None => self.sb.run(&["--flush"], None).code,
        }
    }

    /// A FastNetMon program (its API client), as root.
    fn fastnetmon_command(&self, program: &str) -> Command {
        match &self.host {
            Some(host) => host.command(None, program),
            None => Command::new(program),
        }
    }
}

impl Generation {
    /// The prefixd generation each FastNetMon meets: 1.2.4 v0.10.1, 1.2.9 v0.19.1 (correlation
    /// on at its shipped 0.5, the rate limit), so both are driven end to end.
    fn prefixd(self) -> server::Generation {
        match self {
            Generation::V124 => server::Generation::V0_10_1,
            Generation::V129 => server::Generation::V0_19_1,
        }
    }
}

/// A loopback UDP port free a moment ago, for FastNetMon's NetFlow collector.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn trixie_root() -> String {
    std::env::var("PFN_TRIXIE_ROOT").expect("PFN_TRIXIE_ROOT: run `make e2e`")
}

/// Whether something listens on 127.0.0.1:`port`: `/proc/net/udp`, or `tcp` and `tcp6` in
/// LISTEN (FastNetMon's gRPC API binds an IPv4-mapped IPv6 socket).
fn listening(proto: &str, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let tables: &[&str] = match proto {
        "udp" => &["udp"],
        _ => &["tcp", "tcp6"],
    };
    tables.iter().any(|t| {
        std::fs::read_to_string(format!("/proc/net/{t}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1).is_some_and(|a| a.ends_with(&local))
                    && (proto == "udp" || f.get(3) == Some(&"0A"))
            })
    })
}

/// FastNetMon's API (fastnetmon_api_client's fixed address).
const API_PORT: u16 = 50052;

/// Starts FastNetMon with our binary as its notify program and waits until it can take what
/// the test sends: its NetFlow socket bound and its API listening — what it needs, rather
/// than a line of its log, which it writes before it binds. Its stdin is a pipe nobody
/// writes to: what a generation passes on to the unban call (its own stdin) shows.
fn start_fastnetmon(d: &Deployment, netflow_port: u16) -> (Detector, std::process::ChildStdin) {
    let sb = &d.sb;
    let dir = sb.dir.display().to_string();
    std::fs::write(format!("{dir}/networks_list"), "203.0.113.0/24\n").unwrap();
    std::fs::write(format!("{dir}/networks_whitelist"), "").unwrap();
    let notify = match d.host {
        None => common::BIN.to_string(),
        Some(_) => "/usr/bin/prefixd-fastnetmon".to_string(),
    };
    let conf = include_str!("e2e/fastnetmon.conf")
        .replace("@DIR@", &dir)
        .replace("@NOTIFY@", &notify)
        .replace("@NETFLOW_PORT@", &netflow_port.to_string());
    let conf_path = sb.write("fastnetmon.conf", &conf);
    let (mut cmd, log) = match &d.host {
        None => {
            let log = sb.path("fastnetmon.log");
            let mut cmd = Command::new(FASTNETMON);
            cmd.args(["--log_file", &log])
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
            // Our configuration reaches the notify program through FastNetMon's environment.
            cmd.envs(sb.env.iter().map(|(k, v)| (k, v)));
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            (cmd, log)
        }
        Some(host) => {
            // As its unit: `User=fastnetmon`, `--log_to_console` into the journal (a file
            // here, FastNetMon's stdout and stderr), in a directory it may write.
            let user = host.user("fastnetmon").expect("Debian's fastnetmon user");
            std::os::unix::fs::chown(&sb.dir, Some(user.0), Some(user.1)).unwrap();
            let journal = sb.path("journal");
            // Appended to, as the journal is across a restart.
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&journal)
                .unwrap();
            let mut cmd = host.command(Some(user), FASTNETMON);
            cmd.arg("--log_to_console")
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            (cmd, journal)
        }
    };
    cmd.args(["--configuration_file", &conf_path, "--disable_pid_logic"])
        .current_dir(&sb.dir)
        .stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start fastnetmon (make e2e installs it): {e}"));
    let stdin = child.stdin.take().unwrap();
    let mut fnm = Detector { child, log };
    let started = Instant::now();
    wait_for_or(
        "FastNetMon's NetFlow socket and its API",
        Duration::from_secs(60),
        || listening("udp", netflow_port) && listening("tcp", API_PORT),
        || {
            format!(
                "NetFlow 127.0.0.1:{netflow_port} bound: {}; API 127.0.0.1:{API_PORT} listening: {}; FastNetMon: {:?}\nits log:\n{}",
                listening("udp", netflow_port),
                listening("tcp", API_PORT),
                fnm.child.try_wait(),
                std::fs::read_to_string(&fnm.log).unwrap_or_default()
            )
        },
    );
    eprintln!(
        "FastNetMon took NetFlow and API calls {:?} after its start",
        started.elapsed()
    );
    (fnm, stdin)
}

/// NetFlow v5: 24-byte header, 48-byte records.
fn datagram(seq: u32, uptime_ms: u32, flows: &[(Ipv4Addr, Ipv4Addr, u16, u16, u8, u8)]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let mut d = Vec::with_capacity(24 + 48 * flows.len());
    d.extend(5u16.to_be_bytes());
    d.extend((flows.len() as u16).to_be_bytes());
    d.extend(uptime_ms.to_be_bytes());
    d.extend((now.as_secs() as u32).to_be_bytes());
    d.extend(0u32.to_be_bytes());
    d.extend(seq.to_be_bytes());
    d.extend([0u8, 0, 0, 0]); // engine type/id, sampling interval
    for &(src, dst, sport, dport, proto, flags) in flows {
        d.extend(src.octets());
        d.extend(dst.octets());
        d.extend([0u8; 4]); // next hop
        d.extend(1u16.to_be_bytes());
        d.extend(2u16.to_be_bytes());
        d.extend(50u32.to_be_bytes()); // packets
        d.extend((50u32 * 1000).to_be_bytes()); // bytes
        d.extend(uptime_ms.saturating_sub(500).to_be_bytes());
        d.extend(uptime_ms.to_be_bytes());
        d.extend(sport.to_be_bytes());
        d.extend(dport.to_be_bytes());
        d.extend([0u8, flags, proto, 0]);
        d.extend([0u8; 4]); // AS numbers
        d.extend([24u8, 24, 0, 0]); // masks, padding
    }
    d
}

#[derive(Clone, Copy)]
struct Flood {
    victim: Ipv4Addr,
    proto: u8,
    tcp_flags: u8,
    outgoing: bool,
}

/// Sends floods to 127.0.0.1:port (4 datagrams of 30 flows × 50 packets a second per victim)
/// for `secs`, and on, up to `max` seconds, until `done` — an attack lasts until the detector
/// has seen it, however long a cold start takes. Bounded in time and count, loopback only.
fn send_floods(port: u16, floods: &[Flood], secs: u64, max: u64, done: impl Fn() -> bool) -> usize {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let (mut seq, mut sent) = (0u32, 0usize);
    let going =
        |t: Duration| t < Duration::from_secs(secs) || (t < Duration::from_secs(max) && !done());
    while going(started.elapsed()) && sent < 20_000 {
        let uptime = 60_000 + started.elapsed().as_millis() as u32;
        for f in floods {
            let flows: Vec<_> = (1..=30u8)
                .map(|i| {
                    let remote = Ipv4Addr::new(198, 51, 100, i);
                    let (src, dst) = if f.outgoing {
                        (f.victim, remote)
                    } else {
                        (remote, f.victim)
                    };
                    (
                        src,
                        dst,
                        1000 + u16::from(i),
                        if f.proto == 1 { 0 } else { 80 },
                        f.proto,
                        f.tcp_flags,
                    )
                })
                .collect();
            sock.send_to(&datagram(seq, uptime, &flows), ("127.0.0.1", port))
                .unwrap();
            seq += 30;
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    sent
}

fn wait_for(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    wait_for_or(what, limit, done, String::new);
}

/// As `wait_for`, with what to show when it times out.
fn wait_for_or(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
    why: impl FnOnce() -> String,
) {
    let started = Instant::now();
    while !done() {
        if started.elapsed() >= limit {
            panic!("timed out after {limit:?} waiting for {what}\n{}", why());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// FastNetMon's bans of `ip` (not the renewals `--flush` sends for it).
fn bans_for(srv: &Server, ip: &str) -> Vec<std::collections::BTreeMap<String, Value>> {
    srv.requests()
        .iter()
        .filter(|r| r.target == "/v1/events")
        .map(|r| r.json())
        .filter(|b| s(b.get("victim_ip")) == ip)
        .filter(|b| !raw_details(b).contains_key("renewal_of"))
        .collect()
}

/// The log lines about leases and renewals, for a failure message.
fn renewal_lines(d: &Deployment) -> Vec<&'static str> {
    let log: &'static str = Box::leak(d.log().into_boxed_str());
    log.lines()
        .filter(|l| {
            l.contains("renewal")
                || l.contains("expired")
                || l.contains("lease")
                || l.contains("flush:")
        })
        .collect()
}

/// Samples, every 250 ms until `stop`, whether each victim between its first mitigation and
/// its unban's withdrawal has an active mitigation; and after the withdrawal, that none came
/// back. Returns (samples in a ban, of which covered, active after the unban, what each
/// uncovered sample saw).
fn sample_coverage(
    srv: &Server,
    victims: &[&str],
    stop: &std::sync::atomic::AtomicBool,
) -> (u32, u32, u32, Vec<String>) {
    let (mut samples, mut covered, mut after) = (0, 0, 0);
    let mut gaps = Vec::new();
    let started = Instant::now();
    // Bounded: phase 1 ends within two minutes.
    for _ in 0..600 {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        let ms = srv.mitigations();
        for v in victims {
            let mine: Vec<_> = ms.iter().filter(|m| m.victim_ip == *v).collect();
            let active = mine.iter().any(|m| m.status == "active");
            match (
                mine.is_empty(),
                mine.iter().any(|m| m.status == "withdrawn"),
            ) {
                (true, _) => {}
                (false, false) => {
                    samples += 1;
                    covered += u32::from(active);
                    if !active {
                        gaps.push(format!(
                            "{v} at {:?}: {:?}",
                            started.elapsed(),
                            mine.iter().map(|m| m.status.as_str()).collect::<Vec<_>>()
                        ));
                    }
                }
                (false, true) => after += u32::from(active),
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    (samples, covered, after, gaps)
}

/// The `reason` prefixd stored when `ip`'s mitigation was withdrawn ("" while none is).
fn withdrawal_reason(srv: &Server, ip: &str) -> String {
    srv.mitigations()
        .iter()
        .find(|m| m.victim_ip == ip && m.status == "withdrawn")
        .map(|m| m.reason.clone())
        .unwrap_or_default()
}

fn withdrawn(srv: &Server, ip: &str) -> bool {
    srv.mitigations()
        .iter()
        .any(|m| m.victim_ip == ip && m.status == "withdrawn")
}

/// `Total <direction> traffic: N mbps` from FastNetMon's own text, × 1,000,000.
fn bps_in_text(text: &str, direction: &str) -> i64 {
    let label = format!("Total {direction} traffic: ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&label))
        .unwrap_or_else(|| panic!("no {label} in {text}"));
    line[label.len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse::<i64>()
        .unwrap()
        * 1_000_000
}

#[test]
#[ignore = "needs Debian's fastnetmon package: run `make e2e`"]
fn fastnetmon_1_2_4_drives_the_binary_end_to_end() {
    drives_the_binary_end_to_end(Generation::V124);
}

#[test]
#[ignore = "needs the Debian 13 chroot with FastNetMon 1.2.9: run `make e2e`"]
fn fastnetmon_1_2_9_drives_the_binary_end_to_end() {
    drives_the_binary_end_to_end(Generation::V129);
}

#[test]
#[ignore = "needs the Debian 13 chroot with FastNetMon 1.2.9: run `make e2e`"]
fn the_package_gives_fastnetmons_user_its_files_in_either_install_order() {
    for order in [Order::OursAfter, Order::OursFirst] {
        let srv = Server::with(Options {
            token: Some("t0ken".into()),
            ..Options::of(server::Generation::V0_19_1)
        });
        let sb = Sandbox::new(&srv.url);
        let host = Host::new(&sb);
        let said = host.install(order);
        assert!(
            said.contains("FastNetMon runs the hook as fastnetmon:fastnetmon (User= in /usr/lib/systemd/system/fastnetmon.service)"),
            "{order:?}: {said}"
        );
        let fastnetmon = host.user("fastnetmon").unwrap();
        let (uid, gid) = fastnetmon;
        let adm: u32 = std::fs::read_to_string(host.path("/etc/group"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("adm:x:"))
            .and_then(|r| r.split(':').next()?.parse().ok())
            .unwrap();
        let meta = |p: &str| {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(host.path(p)).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o7777)
        };
        for (path, want) in [
            ("/etc/default/prefixd", (0, gid, 0o640)),
            ("/var/spool/prefixd-fastnetmon", (uid, gid, 0o2770)),
            ("/var/log/prefixd-fastnetmon.log", (uid, adm, 0o640)),
        ] {
            assert_eq!(meta(path), want, "{order:?}: {path}");
        }
        assert_eq!(
            host.flush_user(),
            fastnetmon,
            "{order:?}: the flush unit's user"
        );
        eprintln!(
            "{order:?}: env file root:fastnetmon 0640, spool fastnetmon:fastnetmon 2770, log fastnetmon:adm 0640, flush as fastnetmon"
        );

        // The env file edited in place, as the README says; --check as root tells the truth
        // for FastNetMon's user, and passes as that user.
        host.configure(&[("PREFIXD_API", &srv.url), ("PREFIXD_TOKEN", "t0ken")]);
        let check = run(host
            .command(None, "/usr/bin/prefixd-fastnetmon")
            .arg("--check"));
        assert!(
            check.contains("✔ FastNetMon runs the hook as fastnetmon (uid ")
                && check.contains("fastnetmon can read it, nobody else but root")
                && check.contains("all checks passed"),
            "{order:?}: {check}"
        );
        run(host
            .command(Some(fastnetmon), "/usr/bin/prefixd-fastnetmon")
            .arg("--check"));

        // A ban as FastNetMon's user, then a flush as the flush unit's.
        let mut ban = host
            .command(Some(fastnetmon), "/usr/bin/prefixd-fastnetmon")
            .args(["203.0.113.10", "incoming", "150000", "ban"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let details = common::fixture("ban_ipv4_udp_flood.txt");
            ban.stdin
                .take()
                .unwrap()
                .write_all(details.as_bytes())
                .unwrap();
        }
        let out = ban.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{order:?}: {out:?}");
        assert_eq!(srv.banned_ips(), ["203.0.113.10"]);
        let flush = host
            .command(Some(host.flush_user()), "/usr/bin/prefixd-fastnetmon")
            .arg("--flush")
            .status()
            .unwrap();
        assert_eq!(flush.code(), Some(0), "{order:?}");

        // Removed, and FastNetMon purged with its user: nothing of ours is left owned by it.
        run(host
            .command(None, "dpkg")
            .args(["-r", "prefixd-fastnetmon"]));
        let left = run(host.command(None, "find").args([
            "/etc/default/prefixd",
            "/etc/systemd/system",
            "/var/spool/prefixd-fastnetmon",
            "/var/log",
            "-uid",
            &uid.to_string(),
        ]));
        assert_eq!(
            left.trim(),
            "",
            "{order:?}: owned by fastnetmon after the remove"
        );
        assert!(
            !std::path::Path::new(&host.path(
                "/etc/systemd/system/prefixd-fastnetmon-flush.service.d/fastnetmon-user.conf"
            ))
            .exists()
        );
    }
}

#[test]
#[ignore = "needs Debian's fastnetmon package: run `make e2e`"]
fn fastnetmon_1_2_4_restarted_forgets_its_bans_and_we_let_them_go() {
    restarted_fastnetmon_forgets_its_bans(Generation::V124);
}

#[test]
#[ignore = "needs the Debian 13 chroot with FastNetMon 1.2.9: run `make e2e`"]
fn fastnetmon_1_2_9_restarted_forgets_its_bans_and_we_let_them_go() {
    restarted_fastnetmon_forgets_its_bans(Generation::V129);
}

/// Two victims flooded and banned; FastNetMon restarted while both are banned (it forgets
/// both and never sends their unbans); one flood goes on. `--flush` (every second) reads
/// FastNetMon's ban list: the victim whose attack ended is withdrawn once the grace period has
/// passed, the other stays covered (FastNetMon bans it again) until its own unban.
fn restarted_fastnetmon_forgets_its_bans(g: Generation) {
    let netflow_port = free_udp_port();
    let prefixd = g.prefixd();
    let srv = Server::with(Options {
        ttl: Some(Duration::from_secs(3)),
        ..Options::of(prefixd)
    });
    // Longer than FastNetMon takes to see an attack again after a start (its
    // average_calculation_time is 5 s here), as FASTNETMON_BANLIST_GRACE's default (120 s) is
    // for a router's 60-s NetFlow export.
    let grace: u64 = 9;
    let mut d = Deployment::new(g, &srv.url);
    d.set(&[
        ("FASTNETMON_BANLIST_GRACE", &grace.to_string()),
        ("UNBAN_QUERY_RETRIES", "2"),
        ("PREFIXD_RETRIES", "2"),
        ("PREFIXD_DEADLINE", "8"),
        ("PREFIXD_RENEW_BEFORE", "2"),
    ]);
    if d.host.is_none() {
        // On 1.2.4's host the sandbox turns it off; named here. (1.2.9: the default, found on
        // the chroot's PATH.)
        d.set(&[("FASTNETMON_BANLIST", "fastnetmon_api_client get_banlist")]);
    }
    let d = d;
    let (fnm, _stdin) = start_fastnetmon(&d, netflow_port);
    let flood = |last: u8| Flood {
        victim: Ipv4Addr::new(203, 0, 113, last),
        proto: 17,
        tcp_flags: 0,
        outgoing: false,
    };
    let (going, ended) = ("203.0.113.70", "203.0.113.71");
    let both_banned = || !bans_for(&srv, going).is_empty() && !bans_for(&srv, ended).is_empty();
    send_floods(netflow_port, &[flood(70), flood(71)], 4, 40, both_banned);
    wait_for("both victims banned", Duration::from_secs(30), both_banned);
    assert_eq!(d.flush(), 0, "{}", d.log());
    drop(fnm);
    let restarted = Instant::now();
    let (fnm, _stdin) = start_fastnetmon(&d, netflow_port);
    eprintln!("{g:?}: FastNetMon restarted, its bans forgotten");

    let stop = std::sync::atomic::AtomicBool::new(false);
    let stopped = || stop.load(std::sync::atomic::Ordering::SeqCst);
    // When the test first saw `ended` withdrawn: the sampler looks every 250 ms.
    let first_seen = std::sync::OnceLock::new();
    let gone = || {
        let gone = withdrawn(&srv, ended);
        if gone {
            first_seen.get_or_init(|| restarted.elapsed());
        }
        gone
    };
    let (withdrawn_after, uncovered) = std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..300 {
                if stopped() {
                    break;
                }
                let _ = d.flush();
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        // The flood on `going` goes on from the restart until `ended` is withdrawn and a few
        // seconds more; `going` is sampled all along.
        let sampler = scope.spawn(|| {
            let mut uncovered = Vec::new();
            for _ in 0..400 {
                if stopped() {
                    break;
                }
                gone();
                // Until its own unban withdraws it.
                if !srv.active(going) && !withdrawn(&srv, going) {
                    uncovered.push(format!("{:?}", restarted.elapsed()));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            uncovered
        });
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            send_floods(netflow_port, &[flood(70)], grace + 6, 60, || {
                gone() && restarted.elapsed() > Duration::from_secs(grace + 6)
            });
            wait_for_or(
                "the forgotten ban withdrawn",
                Duration::from_secs(30),
                gone,
                || d.log(),
            );
            let at = withdrawal_reason(&srv, ended);
            assert!(
                at.contains("FastNetMon no longer bans 203.0.113.71"),
                "{at}"
            );
            // Its own unban, once the flood has ended, withdraws the other as always (the
            // flush renewing it until then).
            wait_for_or(
                "the still-attacked victim's unban",
                Duration::from_secs(60),
                || withdrawn(&srv, going),
                || d.log(),
            );
            *first_seen.get().unwrap()
        }));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let uncovered = sampler.join().unwrap();
        match outcome {
            Ok(t) => (t, uncovered),
            Err(p) => std::panic::resume_unwind(p),
        }
    });
    // The withdrawal's time: when the flush saw it, within a second of it.
    let log = d.log();
    let withdrawn_line = log
        .lines()
        .find(|l| l.contains(&format!("WARN {ended}: FastNetMon no longer bans it")))
        .unwrap_or_else(|| panic!("{log}"))
        .to_string();
    eprintln!(
        "{g:?}: {ended} withdrawn {withdrawn_after:?} after the restart (grace {grace} s, flush every 1 s); {going} uncovered in {} of its samples",
        uncovered.len()
    );
    assert!(
        withdrawn_after >= Duration::from_secs(grace)
            && withdrawn_after <= Duration::from_secs(grace + 2 + 1),
        "{withdrawn_after:?}: after the grace, within two flush periods (and a second for the restart): {withdrawn_line}"
    );
    assert!(
        uncovered.is_empty(),
        "{going}, still attacked, uncovered at {uncovered:?}:\n{log}"
    );
    let reason = withdrawal_reason(&srv, going);
    assert!(
        reason.contains("FastNetMon unban for 203.0.113.70"),
        "{reason}"
    );
    drop(fnm);
    eprintln!("{g:?}: restart scenario in {:?}", restarted.elapsed());
}

/// Our debug line for each call of `action` (see `how_called` in main.rs).
fn calls(log: &str, action: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!("DEBUG {action} 203.0.113.")) && l.contains(": called by "))
        .map(str::to_string)
        .collect()
}

fn drives_the_binary_end_to_end(g: Generation) {
    let started = Instant::now();
    let netflow_port = free_udp_port();
    let prefixd = g.prefixd();
    // A TTL of 3 s against FastNetMon's ban_time of 10 s (and more while the flood lasts):
    // only renewals keep a victim covered until its unban.
    // The token reaches prefixd from the env file the package made FastNetMon's user's (1.2.9).
    let token = "e2e-token";
    let srv = Server::with(Options {
        ttl: Some(Duration::from_secs(3)),
        token: Some(token.into()),
        ..Options::of(prefixd)
    });
    let mut d = Deployment::new(g, &srv.url);
    d.set(&[
        ("PREFIXD_TOKEN", token),
        ("UNBAN_QUERY_RETRIES", "2"),
        ("PREFIXD_RETRIES", "2"),
        ("PREFIXD_DEADLINE", "8"),
        ("PREFIXD_RENEW_BEFORE", "2"),
        ("PREFIXD_DEBUG", "1"),
    ]);
    let d = d;
    let (fnm, _fnm_stdin) = start_fastnetmon(&d, netflow_port);

    // Phase 1: prefixd up. UDP, SYN, ICMP, an outgoing flood, two at once, and a manual ban.
    let ip = |last: u8| Ipv4Addr::new(203, 0, 113, last);
    let floods = [
        Flood {
            victim: ip(10),
            proto: 17,
            tcp_flags: 0,
            outgoing: false,
        },
        Flood {
            victim: ip(11),
            proto: 6,
            tcp_flags: 0x02,
            outgoing: false,
        },
        Flood {
            victim: ip(20),
            proto: 1,
            tcp_flags: 0,
            outgoing: false,
        },
        Flood {
            victim: ip(40),
            proto: 17,
            tcp_flags: 0,
            outgoing: true,
        },
        Flood {
            victim: ip(50),
            proto: 17,
            tcp_flags: 0,
            outgoing: false,
        },
        Flood {
            victim: ip(51),
            proto: 17,
            tcp_flags: 0,
            outgoing: false,
        },
    ];
    let victims = [
        "203.0.113.10",
        "203.0.113.11",
        "203.0.113.20",
        "203.0.113.40",
        "203.0.113.50",
        "203.0.113.51",
    ];
    // The flush timer, every second, and a sampler of every victim's coverage, from before
    // the first ban.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let t0 = Instant::now();
    let ((samples, covered, after, gaps), (manual, banned_after)) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| sample_coverage(&srv, &victims, &stop));
        scope.spawn(|| {
            for _ in 0..600 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let _ = d.flush();
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let ended = || stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let phase = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let manual = d
                .fastnetmon_command("fastnetmon_api_client")
                .args(["ban", "203.0.113.30"])
                .output();
            let all_banned = || victims.iter().all(|v| !bans_for(&srv, v).is_empty());
            let sent = send_floods(netflow_port, &floods, 8, 40, all_banned);
            eprintln!("phase 1: {sent} NetFlow datagrams in {:?}", t0.elapsed());
            wait_for_or(
                "a ban for every flooded victim",
                Duration::from_secs(30),
                all_banned,
                || {
                    let missing: Vec<_> = victims
                        .iter()
                        .filter(|v| bans_for(&srv, v).is_empty())
                        .collect();
                    let fnm_log = std::fs::read_to_string(&fnm.log).unwrap_or_default();
                    let tail: Vec<&str> = fnm_log.lines().rev().take(40).collect();
                    format!(
                        "not banned: {missing:?}\nFastNetMon's last lines (newest first):\n{}\nours:\n{}",
                        tail.join("\n"),
                        d.log()
                    )
                },
            );
            let banned_after = t0.elapsed();
            wait_for(
                "an unban for every flooded victim",
                Duration::from_secs(90),
                || victims.iter().all(|v| withdrawn(&srv, v)),
            );
            // A few more samples: nothing comes back after the unbans.
            std::thread::sleep(Duration::from_secs(3));
            (manual, banned_after)
        }));
        ended();
        let coverage = sampler.join().unwrap();
        match phase {
            Ok(banned_after) => (coverage, banned_after),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    eprintln!(
        "phase 1: all banned {banned_after:?}, all withdrawn {:?} after the floods began",
        t0.elapsed()
    );
    eprintln!(
        "{g:?}: coverage {:.1} % ({covered} of {samples} samples between ban and unban had an active mitigation; TTL 3 s, ban_time 10 s, flush every 1 s); active after the unban: {after}",
        f64::from(covered) * 100.0 / f64::from(samples.max(1))
    );
    assert!(samples > 0);
    let renewals: Vec<&str> = renewal_lines(&d);
    assert_eq!(
        covered,
        samples,
        "every sample between ban and unban covered; uncovered: {gaps:#?}\nrenewals:\n{}",
        renewals.join("\n")
    );
    assert_eq!(after, 0, "no mitigation after the unban");

    for (victim, vector, direction) in [
        ("203.0.113.10", "udp_flood", "incoming"),
        ("203.0.113.11", "syn_flood", "incoming"),
        ("203.0.113.20", "icmp_flood", "incoming"),
        ("203.0.113.40", "udp_flood", "outgoing"),
        ("203.0.113.50", "udp_flood", "incoming"),
        ("203.0.113.51", "udp_flood", "incoming"),
    ] {
        let bans = bans_for(&srv, victim);
        assert_eq!(
            bans.len(),
            1,
            "{victim}: one ban (attack_details sends nothing): {bans:?}"
        );
        let b = &bans[0];
        let rd = raw_details(b);
        let text = s(rd.get("raw"));
        assert_eq!(s(b.get("vector")), vector, "{victim}:\n{text}");
        assert_eq!(s(rd.get("direction")), direction, "{victim}");
        assert!(
            text.contains(&format!("Attack direction: {direction}")),
            "{victim}: {text}"
        );
        let pps = num(b.get("pps")).unwrap();
        assert!(
            text.contains(&format!("Initial attack power: {pps} packets per second")),
            "{victim}: pps {pps} is FastNetMon's $3"
        );
        assert_eq!(
            num(b.get("bps")).unwrap(),
            bps_in_text(&text, direction),
            "{victim}"
        );
        // FastNetMon named each attack (README "Confidence"); v0.19.1 mitigated it.
        assert_eq!(
            miniserde::json::to_string(b.get("confidence").unwrap()),
            "0.9",
            "{victim}"
        );
        assert!(withdrawn(&srv, victim), "{victim}");
    }
    let log = d.log();
    match g {
        Generation::V124 => assert!(
            log.contains("attack_details 203.0.113.10 incoming pps="),
            "FastNetMon 1.2.4 calls attack_details; we log it:\n{log}"
        ),
        Generation::V129 => assert!(
            !log.contains("attack_details"),
            "FastNetMon 1.2.9 makes no attack_details call:\n{log}"
        ),
    }
    // What each generation hands the hook: the ban's details come on a pipe of their own; the
    // unban gets FastNetMon's own stdin — here the test's pipe, under systemd /dev/null — in
    // 1.2.4 and in 1.2.9 alike (observed; the shared notes saw /dev/null because their
    // FastNetMon's own stdin was /dev/null).
    let own_stdin = {
        use std::os::fd::AsRawFd;
        std::fs::read_link(format!("/proc/self/fd/{}", _fnm_stdin.as_raw_fd()))
            .unwrap()
            .display()
            .to_string()
    };
    let (bans, unbans) = (calls(&log, "ban"), calls(&log, "unban"));
    assert!(!bans.is_empty() && !unbans.is_empty(), "{log}");
    for c in &bans {
        assert!(
            c.contains("; stdin pipe:[") && !c.contains(&own_stdin),
            "{c}"
        );
    }
    for c in &unbans {
        assert!(
            c.contains(&format!("; stdin {own_stdin};")),
            "{g:?} unban: {c} (FastNetMon's stdin: {own_stdin})"
        );
    }
    for c in bans.iter().chain(&unbans) {
        assert!(
            c.contains(": called by sh (pid "),
            "{g:?} runs the hook through sh -c: {c}"
        );
    }
    eprintln!(
        "{g:?} ban call: {}",
        bans[0].split(": called by ").nth(1).unwrap_or("")
    );
    eprintln!(
        "{g:?} unban call: {}",
        unbans[0].split(": called by ").nth(1).unwrap_or("")
    );
    for line in log.lines() {
        assert!(
            line.as_bytes().get(4) == Some(&b'-')
                && line.matches(" prefixd-fastnetmon[").count() == 1,
            "interleaved: {line:?}"
        );
    }

    match manual {
        Ok(out) if out.status.success() => {
            // The client exits 0 when it reached no FastNetMon (a `localhost` it cannot
            // resolve — no /etc/hosts — is how a fresh chroot met it).
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                !said.contains("Query failed"),
                "fastnetmon_api_client ban: {said}"
            );
            wait_for("the manual ban", Duration::from_secs(10), || {
                !bans_for(&srv, "203.0.113.30").is_empty()
            });
            let b = &bans_for(&srv, "203.0.113.30")[0];
            assert_eq!(
                (
                    s(b.get("vector")).as_str(),
                    num(b.get("pps")).unwrap(),
                    s(raw_details(b).get("direction")).as_str()
                ),
                ("unknown", 0, "other")
            );
            // An operator decided.
            assert_eq!(
                miniserde::json::to_string(b.get("confidence").unwrap()),
                "1.0"
            );
        }
        other => panic!("fastnetmon_api_client ban failed: {other:?}"),
    }

    if let Some(host) = &d.host {
        the_log_as_debian_13_keeps_it(&d, host, &srv);
    }

    // Phase 2: prefixd down when the attack starts; the ban is kept, delivered by --flush (as
    // the flush unit's user) once prefixd is back, before FastNetMon's unban.
    let port = srv.addr.port();
    drop(srv);
    let t1 = Instant::now();
    let kept = || d.log().contains("ban 203.0.113.60 kept in the spool");
    send_floods(
        netflow_port,
        &[Flood {
            victim: ip(60),
            proto: 17,
            tcp_flags: 0,
            outgoing: false,
        }],
        6,
        30,
        kept,
    );
    wait_for(
        "the ban to be kept in the spool",
        Duration::from_secs(30),
        kept,
    );
    let srv = Server::bind(
        &format!("127.0.0.1:{port}"),
        Options {
            token: Some(token.into()),
            ..Options::of(prefixd)
        },
    );
    assert_eq!(d.flush(), 0, "{}", d.log());
    let bans = bans_for(&srv, "203.0.113.60");
    assert_eq!(bans.len(), 1);
    assert!(matches!(
        raw_details(&bans[0]).get("replayed"),
        Some(Value::Bool(true))
    ));
    assert_eq!(s(bans[0].get("vector")), "udp_flood");
    wait_for("the unban after the flush", Duration::from_secs(60), || {
        withdrawn(&srv, "203.0.113.60")
    });
    eprintln!(
        "phase 2: kept, flushed and withdrawn {:?} after the flood began",
        t1.elapsed()
    );
    // Each unban ended its victim's lease: nothing is renewed after it. (The manual bans are
    // FastNetMon's to end: no flood, no unban within the test.)
    let unbanned: Vec<String> = victims
        .iter()
        .chain(&["203.0.113.60"])
        .map(|v| format!("{v}.lease"))
        .collect();
    wait_for_or(
        "no lease of an unbanned victim",
        Duration::from_secs(10),
        || d.leases().iter().all(|l| !unbanned.contains(l)),
        || format!("{:?}", d.leases()),
    );
    let fnm_log = std::fs::read_to_string(&fnm.log).unwrap_or_default();
    assert!(
        fnm_log.contains("Subprocess exit code: 19200"),
        "FastNetMon saw exit 75 (raw status 75*256):\n{fnm_log}"
    );
    assert!(!d.log().contains(token), "the token is never logged");
    eprintln!("{g:?}: end to end in {:?}", started.elapsed());
}

/// 1.2.9 as Debian 13 runs it: after `logrotate -f` the hook (FastNetMon's user) still writes
/// its log; a log it cannot open sends its lines to FastNetMon's journal instead.
fn the_log_as_debian_13_keeps_it(d: &Deployment, host: &Host, srv: &Server) {
    let log = host.path("/var/log/prefixd-fastnetmon.log");
    let manual_ban = |ip: &str| {
        run(d
            .fastnetmon_command("fastnetmon_api_client")
            .args(["ban", ip]));
        wait_for("the manual ban", Duration::from_secs(15), || {
            !bans_for(srv, ip).is_empty()
        });
    };
    run(host.command(None, "logrotate").args([
        "-f",
        "-s",
        "/tmp/logrotate.state",
        "/etc/logrotate.d/prefixd-fastnetmon",
    ]));
    assert!(
        std::path::Path::new(&format!("{log}.1")).exists(),
        "rotated"
    );
    let fastnetmon = host.user("fastnetmon").unwrap();
    let owner = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.mode() & 0o777)
    };
    assert_eq!(
        owner(&log),
        (fastnetmon.0, 0o640),
        "logrotate's new log keeps the owner"
    );
    manual_ban("203.0.113.31");
    wait_for(
        "the hook's line in the new log",
        Duration::from_secs(10),
        || d.log().contains("ban 203.0.113.31"),
    );

    // A log FastNetMon's user cannot open: the lines reach FastNetMon's journal.
    std::os::unix::fs::chown(&log, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    manual_ban("203.0.113.32");
    let journal = d.sb.path("journal");
    wait_for_or(
        "the hook's lines in FastNetMon's journal",
        Duration::from_secs(10),
        || {
            let j = std::fs::read_to_string(&journal).unwrap_or_default();
            j.contains("WARN cannot open log /var/log/prefixd-fastnetmon.log: Permission denied")
                && j.contains("INFO ban 203.0.113.32")
        },
        || std::fs::read_to_string(&journal).unwrap_or_default(),
    );
    assert!(!d.log().contains("203.0.113.32"));
    // The package's own-files gives it back.
    run(&mut host.command(None, "/usr/lib/prefixd-fastnetmon/own-files"));
    assert_eq!(owner(&log).0, fastnetmon.0);
    eprintln!(
        "V129: the log survives logrotate -f; an unwritable log goes to FastNetMon's journal"
    );
}

// ---- issue 26: the rule on the router must match the attack ----

#[test]
#[ignore = "needs Debian's fastnetmon package: run `make e2e`"]
fn fastnetmon_1_2_4_floods_one_port_and_the_rule_matches_it() {
    one_port_flood_gets_a_rule_that_matches_it(Generation::V124);
}

#[test]
#[ignore = "needs the Debian 13 chroot with FastNetMon 1.2.9: run `make e2e`"]
fn fastnetmon_1_2_9_floods_one_port_and_the_rule_matches_it() {
    one_port_flood_gets_a_rule_that_matches_it(Generation::V129);
}

/// UDP floods aimed at port 27015, from 30 sources, at two victims of prefixd's shipped
/// inventory: 203.0.113.10 in its DNS service (allowed udp 53), 203.0.113.50 in no service.
/// FastNetMon's ban carries the port in its dump; we send it as `top_dst_ports`; the rule
/// prefixd builds (here the stand-in, as prefixd does) matches the flood: all UDP to the DNS
/// host (27015 ∩ {53} is empty), port 27015 to the other. The bans' details are kept under
/// target/e2e/captures/ (real FastNetMon output, for tests/fixtures).
fn one_port_flood_gets_a_rule_that_matches_it(g: Generation) {
    let netflow_port = free_udp_port();
    let prefixd = g.prefixd();
    let (dns, plain) = ("203.0.113.10", "203.0.113.50");
    let srv = Server::with(Options {
        services: vec![server::Service::dns(&[dns, "203.0.113.11"])],
        ..Options::of(prefixd)
    });
    let mut d = Deployment::new(g, &srv.url);
    d.set(&[
        ("UNBAN_QUERY_RETRIES", "2"),
        ("PREFIXD_RETRIES", "2"),
        ("PREFIXD_DEADLINE", "8"),
    ]);
    let d = d;
    let (_fnm, _stdin) = start_fastnetmon(&d, netflow_port);
    let victims = [dns, plain];
    let banned = || victims.iter().all(|v| !bans_for(&srv, v).is_empty());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    // Bounded: 40 s at 4 datagrams a second per victim.
    for seq in 0..160u32 {
        if started.elapsed() > Duration::from_secs(6) && banned() {
            break;
        }
        let uptime = 60_000 + started.elapsed().as_millis() as u32;
        for v in victims {
            let victim: Ipv4Addr = v.parse().unwrap();
            let flows: Vec<_> = (1..=30u8)
                .map(|i| {
                    let remote = Ipv4Addr::new(198, 51, 100, i);
                    (remote, victim, 1000 + u16::from(i), 27015, 17, 0)
                })
                .collect();
            sock.send_to(
                &datagram(seq * 30, uptime, &flows),
                ("127.0.0.1", netflow_port),
            )
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_for_or(
        "a ban of each victim",
        Duration::from_secs(30),
        banned,
        || d.log(),
    );
    let captures = concat!(env!("CARGO_MANIFEST_DIR"), "/target/e2e/captures");
    let dir = format!(
        "{captures}/fastnetmon-{}",
        if g == Generation::V124 {
            "1.2.4"
        } else {
            "1.2.9"
        }
    );
    std::fs::create_dir_all(&dir).unwrap();
    for v in victims {
        let b = &bans_for(&srv, v)[0];
        let text = s(raw_details(b).get("raw"));
        std::fs::write(format!("{dir}/ban-{v}-udp-27015.txt"), &text).unwrap();
        assert_eq!(
            miniserde::json::to_string(b.get("top_dst_ports").unwrap()),
            "[27015]",
            "{g:?} {v}:\n{text}\n{}",
            d.log()
        );
    }
    assert_eq!(srv.rules(dns), [(Some(17), vec![])], "{g:?}");
    assert_eq!(srv.rules(plain), [(Some(17), vec![27015])], "{g:?}");
    let log = d.log();
    for (v, ports) in [(dns, "any"), (plain, "27015")] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("INFO ban {v} vector=udp_flood")))
            .unwrap_or_else(|| panic!("{g:?}: {log}"));
        assert!(
            line.contains(" top_dst_ports=27015 ")
                && line.contains(&format!(
                    "rule proto=udp dst_ports={ports} matches 100 % of the attack"
                )),
            "{g:?}: {line}"
        );
        eprintln!("{g:?}: {}", &line[line.find("ban ").unwrap_or(0)..]);
    }
    wait_for("the unbans", Duration::from_secs(60), || {
        victims.iter().all(|v| withdrawn(&srv, v))
    });
}
