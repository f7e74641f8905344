//! Runs the built binary as FastNetMon would, in a scratch directory with its own env file and
//! log, against the loopback prefixd stand-in in `server.rs`.
#![allow(dead_code)]

pub mod dump;
pub mod server;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: the cargo-built one, or the static release binary (`PFN_BIN`).
pub static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("PFN_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_prefixd-fastnetmon").to_string())
});
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect(name)
}

/// A scratch directory (removed on drop) with an env file and a log file.
pub struct Sandbox {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    _tmp: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
    /// What writing stdin met, as FastNetMon's write would (`Broken pipe` when the run exited
    /// without reading it); None: all of it was taken.
    pub write_error: Option<String>,
}

impl Sandbox {
    /// Talks to `api`, logs to `<dir>/log`, reads `<dir>/env` (empty unless written).
    pub fn new(api: &str) -> Sandbox {
        let tmp = tempfile::Builder::new()
            .prefix("pfn-it-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("env"), "").unwrap();
        let mut sb = Sandbox {
            dir,
            env: Vec::new(),
            _tmp: tmp,
        };
        let env_file = sb.path("env");
        let log = sb.path("log");
        let spool = sb.path("spool");
        sb.set("PREFIXD_ENV_FILE", &env_file);
        sb.set("PREFIXD_LOG", &log);
        sb.set("PREFIXD_SPOOL", &spool);
        sb.set("PREFIXD_API", api);
        // This machine's FastNetMon client (make e2e installs it) must not decide a test: the
        // tests that ask a ban list name a stand-in of their own.
        sb.set("FASTNETMON_BANLIST", "off");
        sb
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub fn set(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn unset(&mut self, k: &str) -> &mut Self {
        self.env.retain(|(key, _)| key != k);
        self
    }

    pub fn write(&self, name: &str, content: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// The spooled notices' file names, oldest first.
    pub fn spooled(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("spool"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    // As the spool lists them: a `.tmp-…` being written is not a notice yet.
                    .filter(|n| n.ends_with(".notice") && !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Makes every spooled notice and every lease `secs` older, as if FastNetMon had called
    /// that much earlier: a notice's recorded time (in the file and in its name), a lease's
    /// `banned_ms` (and `unlisted_ms`, since when FastNetMon's ban list has not shown it),
    /// move back. Tests age notices this way instead of waiting for the clock.
    pub fn backdate(&self, secs: f64) {
        use prefixd_fastnetmon::spool::queue::{Entry, Name};
        let back = (secs * 1000.0) as u64;
        for lease in self.leases() {
            let path = self.dir.join("spool/leases").join(format!("{lease}.lease"));
            let mut text = std::fs::read_to_string(&path).unwrap();
            for field in ["\"banned_ms\":", "\"unlisted_ms\":"] {
                let Some((head, rest)) = text.split_once(field) else {
                    continue;
                };
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if digits.is_empty() {
                    continue; // null
                }
                let older = digits.parse::<u64>().unwrap() - back;
                text = format!("{head}{field}{older}{}", &rest[digits.len()..]);
            }
            std::fs::write(&path, text).unwrap();
        }
        for name in self.spooled() {
            let path = self.dir.join("spool").join(&name);
            let text = std::fs::read_to_string(&path).unwrap();
            let mut entry: Entry = miniserde::json::from_str(&text).unwrap();
            entry.received_ms -= back;
            let mut n = Name::parse(&name).unwrap();
            n.received_ms -= back;
            let to = self.dir.join("spool").join(n.to_string());
            std::fs::write(&to, miniserde::json::to_string(&entry)).unwrap();
            std::fs::remove_file(&path).unwrap();
        }
    }

    /// The held victims: the IPs of the leases in the spool directory, sorted.
    pub fn leases(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("spool/leases"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        Some(n.strip_suffix(".lease")?.to_string()).filter(|n| !n.starts_with('.'))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = command(args);
        c.env_clear().env("PATH", "/usr/bin:/bin");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs with `stdin` written and closed (None: /dev/null).
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let started = Instant::now();
        let mut c = self.command(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn binary");
        let (tx, written) = std::sync::mpsc::channel();
        if let Some(data) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = tx.send(pipe.write_all(&data).map_err(|e| e.to_string()));
            });
        } else {
            let _ = tx.send(Ok(()));
        }
        let mut run = finish(child, started);
        // The run has ended: the write has too (all taken, or a broken pipe).
        run.write_error = match written.recv_timeout(Duration::from_secs(10)) {
            Ok(r) => r.err(),
            Err(_) => Some("the write of stdin never ended".into()),
        };
        run
    }

    /// Starts the binary without waiting for it (for concurrent runs), stdout and stderr
    /// discarded, `stdin` written and the pipe closed.
    pub fn spawn(&self, args: &[&str], stdin: &[u8]) -> std::process::Child {
        let mut child = self.spawn_open(args);
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child
    }

    /// The same, with the stdin pipe left to the caller (dropping it closes it).
    pub fn spawn_open(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn binary")
    }

    /// Runs with a stdin pipe that is never written nor closed, as a terminal-less FastNetMon
    /// unban may leave it; the run must not wait for it.
    pub fn run_with_open_stdin(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn binary");
        let _keep_open = child.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
        }
        finish(child, started)
    }
}

fn finish(child: std::process::Child, started: Instant) -> Run {
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
        write_error: None,
    }
}

/// The binary with `args`, run through `PFN_RUNNER` (e.g. `qemu-arm -cpu arm1176`) when set,
/// so that the same tests check a cross-built binary under emulation.
pub fn command(args: &[&str]) -> Command {
    let runner = std::env::var("PFN_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let mut c = match words.next() {
        Some(prog) => {
            let mut c = Command::new(prog);
            c.args(words).arg(&*BIN);
            c
        }
        None => Command::new(&*BIN),
    };
    c.args(args);
    c
}

/// A loopback port where nothing listens, and nothing else can listen: a socket bound to it
/// that does not listen (a connect is refused). When prefixd comes back, the very same socket
/// starts listening, so the port is never free in between for someone else to take.
pub struct DeadPort {
    pub port: u16,
    socket: socket2::Socket,
}

impl DeadPort {
    /// prefixd comes back: the stand-in listens on this very port.
    pub fn revive(self, opts: server::Options) -> server::Server {
        self.socket.listen(1024).expect("listen on the held port");
        server::Server::on(self.socket.into(), opts)
    }
}

pub fn dead_port() -> DeadPort {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    DeadPort { port, socket }
}

/// This machine's name, as our withdrawal marker carries it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// The value of one sample line (`name{labels} value`) in a metrics file.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// The string value of a JSON field.
pub fn s(v: Option<&miniserde::json::Value>) -> String {
    match v {
        Some(miniserde::json::Value::String(s)) => s.clone(),
        other => panic!("expected a string, got {other:?}"),
    }
}

/// An integer JSON field (None for null).
pub fn num(v: Option<&miniserde::json::Value>) -> Option<i64> {
    use miniserde::json::{Number, Value};
    match v {
        Some(Value::Number(Number::U64(n))) => Some(*n as i64),
        Some(Value::Number(Number::I64(n))) => Some(*n),
        Some(Value::Null) => None,
        other => panic!("expected a number or null, got {other:?}"),
    }
}

/// The `raw_details` object of a ban body.
pub fn raw_details(
    body: &std::collections::BTreeMap<String, miniserde::json::Value>,
) -> std::collections::BTreeMap<String, miniserde::json::Value> {
    match body.get("raw_details") {
        Some(miniserde::json::Value::Object(o)) => o.clone().into_iter().collect(),
        other => panic!("raw_details: {other:?}"),
    }
}

pub fn is_uuid_v4(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
        && &id[14..15] == "4"
}
