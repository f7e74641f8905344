//! What an operator touches: --check, --dry-run, custom vector rules, syslog, make install,
//! make deb. The built binary against the loopback prefixd stand-in.

mod common;

use common::server::{Options, Server};
use common::{Sandbox, s};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn check_passes_against_a_healthy_prefixd() {
    let srv = Server::with(Options {
        token: Some("good-token".into()),
        ..Default::default()
    });
    let mut sb = Sandbox::new(&srv.url);
    let env = sb.write("env", "PREFIXD_TOKEN=good-token\n");
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
    sb.set("PREFIXD_OPERATOR", "noc");
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let out = &r.stdout;
    for want in [
        "PREFIXD_API = http://127.0.0.1:",
        "PREFIXD_OPERATOR = noc (environment)",
        "PREFIXD_TIMEOUT = 5 (default)",
        "/env:1)",
        "✔ env file ",
        " 0600, ",
        "✔ log ",
        "✔ spool ",
        "0 notice(s) waiting",
        "✔ TLS roots: the bundled Mozilla roots",
        "/v1/health -> 200 ok (prefixd 0.10.1, auth bearer)",
        "/v1/mitigations?limit=1 -> 200: token accepted",
        "all checks passed",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(out.contains("PREFIXD_TOKEN = (set, 10 chars)"), "{out}");
    assert!(
        !out.contains("good-token") && !r.stderr.contains("good-token"),
        "{out}"
    );
    assert!(!out.contains('✘'), "{out}");
    let targets: Vec<String> = srv.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/v1/health", "/v1/mitigations?limit=1"]);
}

#[test]
fn check_says_plainly_when_the_token_is_wrong_or_prefixd_unreachable() {
    let srv = Server::with(Options {
        token: Some("good".into()),
        ..Default::default()
    });
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_TOKEN", "bad");
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 77, "{}", r.stdout);
    assert!(
        r.stdout.contains("✘ GET ") && r.stdout.contains("-> 401: prefixd REFUSED THE TOKEN"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("✔ GET ") && r.stdout.contains("/v1/health -> 200"),
        "{}",
        r.stdout
    );

    sb.unset("PREFIXD_TOKEN");
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 77);
    assert!(
        r.stdout
            .contains("prefixd needs a token (auth bearer) and none is set"),
        "{}",
        r.stdout
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sb = Sandbox::new(&format!("http://127.0.0.1:{port}"));
    sb.set("PREFIXD_RETRIES", "1")
        .set("PREFIXD_CA_FILE", "/nonexistent/ca.pem");
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 78, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("✘ PREFIXD_CA_FILE /nonexistent/ca.pem: No such file"),
        "{}",
        r.stdout
    );
    sb.unset("PREFIXD_CA_FILE");
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 75, "{}", r.stdout);
    assert!(
        r.stdout.contains("/v1/health -> not delivered: ")
            && r.stdout.contains("connection refused"),
        "{}",
        r.stdout
    );
}

#[test]
fn check_reports_a_malformed_rule_and_a_readable_token_file() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    let rules = sb.write("rules", "udp_flood protocol=udp\nsyn_flood colour=blue\n");
    let env = sb.write("env", "PREFIXD_TOKEN=x\n");
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    sb.set("PREFIXD_VECTOR_RULES", &rules);
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 78);
    assert!(
        r.stdout.contains("✘ configuration: PREFIXD_VECTOR_RULES ")
            && r.stdout
                .contains("/rules:2: \"colour=blue\": unknown condition"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            " 0644, holds the token and everyone (world-readable) can read it: chown root:"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn dry_run_prints_the_request_and_sends_nothing() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_TOKEN", "secret-value");
    let details = common::fixture("ban_ipv4_syn_flood.txt");
    let r = sb.run(
        &["--dry-run", "198.51.100.77", "incoming", "187650", "ban"],
        Some(details.as_bytes()),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(srv.requests().is_empty());
    assert!(sb.spooled().is_empty());
    let out = &r.stdout;
    assert!(
        out.starts_with("# vector syn_flood from built-in detection"),
        "{out}"
    );
    assert!(out.contains(&format!("POST {}/v1/events\nAuthorization: Bearer <redacted>\nContent-Type: application/json\n\n{{\n", srv.url)), "{out}");
    assert!(out.contains("\n  \"vector\": \"syn_flood\",\n"), "{out}");
    assert!(out.contains("\n  \"bps\": 90000000,\n"), "{out}");
    assert!(
        out.contains("\n# confidence 0.9 (FastNetMon named the attack)\n")
            && out.contains("\n  \"confidence\": 0.9,\n"),
        "{out}"
    );
    assert!(!out.contains("secret-value"));

    let r = sb.run(
        &["--dry-run", "2001:0db8::1", "incoming", "0", "unban"],
        None,
    );
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with(&format!("GET {}/v1/mitigations?status=pending,active,escalated&victim_ip=2001:db8::1&limit=1000", srv.url)), "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("\"reason\": \"FastNetMon unban for 2001:db8::1 (direction=incoming) [prefixd-fastnetmon@{} unban 2001:db8::1]\"", common::hostname())),
        "{}",
        r.stdout
    );
    assert!(srv.requests().is_empty());
}

const RULES: &str = "\
# vector          conditions
dns_amplification protocol=udp sport=53     # prefixd v0.10.1 does not know this one
udp_flood         contains=\"memcached\"
icmp_flood        type=unknown pps>=5000 mbps>=100
syn_flood         dport=443 protocol=tcp
";

fn udp_dump(sport: u16) -> String {
    format!("2025-05-14 10:21:07.113204 198.51.100.7:{sport} > 192.0.2.10:41234 protocol: udp frag: 0  packets: 1 size: 1466 bytes ttl: 54 sample ratio: 1  \n").repeat(3)
}

#[test]
fn custom_rules_choose_the_vector_and_a_refused_vector_falls_back() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    let rules = sb.write("rules", RULES);
    sb.set("PREFIXD_VECTOR_RULES", &rules);
    let cases: Vec<(String, &str, &str, &str)> = vec![
        // (details, pps, vector sent first, rule line)
        (format!("Attack type: unknown\nAttack protocol: udp\n{}", udp_dump(53)), "10", "dns_amplification", ":2"),
        ("Attack type: syn_flood\nflows from a MemCached reflector\n".into(), "10", "udp_flood", ":3"),
        ("Attack type: unknown\nAttack protocol: icmp\nTotal incoming traffic: 150 mbps\n".into(), "6000", "icmp_flood", ":4"),
        ("Attack type: unknown\nAttack protocol: tcp\n2025-05-14 10:21:07.1 198.51.100.7:999 > 192.0.2.10:443 protocol: tcp flags: psh,ack frag: 0  packets: 1 size: 60 bytes ttl: 1 sample ratio: 1  \n".into(), "1", "syn_flood", ":5"),
    ];
    for (details, pps, vector, line) in &cases {
        srv.clear();
        let r = sb.run(
            &["192.0.2.10", "incoming", pps, "ban"],
            Some(details.as_bytes()),
        );
        assert_eq!(r.code, 0, "{vector}: {}", sb.log());
        let sent: Vec<String> = srv.bans().iter().map(|b| s(b.get("vector"))).collect();
        assert_eq!(sent[0], *vector, "{details}");
        assert!(
            sb.log().contains(&format!("rule={rules}{line}")),
            "{}",
            sb.log()
        );
    }
    // The stand-in, like prefixd v0.10.1, refuses dns_amplification (422): sent again at once
    // with the built-in vector.
    srv.clear();
    let r = sb.run(
        &["192.0.2.10", "incoming", "10", "ban"],
        Some(cases[0].0.as_bytes()),
    );
    assert_eq!(r.code, 0);
    let sent: Vec<String> = srv.bans().iter().map(|b| s(b.get("vector"))).collect();
    assert_eq!(sent, ["dns_amplification", "udp_flood"]);
    assert!(
        sb.log()
            .contains("prefixd refused vector dns_amplification from rule"),
        "{}",
        sb.log()
    );
    assert!(
        sb.log()
            .contains("sending the built-in vector udp_flood instead")
    );
    assert!(
        sb.log()
            .contains("vector \\\"dns_amplification\\\" is not one prefixd v0.10.1 knows")
            || sb.log().contains("is not one prefixd v0.10.1 knows"),
        "{}",
        sb.log()
    );
    // No rule matches: built-in detection.
    srv.clear();
    assert_eq!(
        sb.run(&["192.0.2.10"], Some(b"Attack type: udp_flood\n"))
            .code,
        0
    );
    assert_eq!(s(srv.requests()[0].json().get("vector")), "udp_flood");

    // --dry-run says which rule matched.
    let r = sb.run(
        &["--dry-run", "192.0.2.10", "incoming", "10", "ban"],
        Some(cases[0].0.as_bytes()),
    );
    assert!(
        r.stdout.starts_with(&format!(
            "# vector dns_amplification from rule {rules}:2 (built-in detection says udp_flood)"
        )),
        "{}",
        r.stdout
    );
}

#[test]
fn syslog_lines_are_rfc3164_datagrams() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    let sock_path = sb.path("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    sb.set("PREFIXD_LOG", &format!("syslog:{sock_path}"))
        .set("PREFIXD_TOKEN", "hidden-token");
    assert_eq!(
        sb.run(
            &["192.0.2.10", "incoming", "7", "ban"],
            Some(b"Attack type: udp_flood\n")
        )
        .code,
        0
    );
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).unwrap();
    let d = String::from_utf8_lossy(&buf[..n]).into_owned();
    // <30> = facility daemon (3) * 8 + info (6); "Mmm dd hh:mm:ss"; tag[pid]: message.
    assert!(d.starts_with("<30>"), "{d}");
    let ts = &d[4..19];
    assert!(
        ts.as_bytes()[3] == b' ' && ts.as_bytes()[6] == b' ' && ts.as_bytes()[9] == b':',
        "{d}"
    );
    let rest = &d[20..];
    assert!(
        rest.starts_with("prefixd-fastnetmon[")
            && rest.contains("]: INFO ban 192.0.2.10 vector=udp_flood pps=7"),
        "{d}"
    );
    assert!(!d.contains('\n') && !d.contains("hidden-token"));

    // No socket: stderr, with a warning.
    sb.set("PREFIXD_LOG", "syslog:/nonexistent/log.sock");
    let r = sb.run(&["192.0.2.10"], Some(b""));
    assert_eq!(r.code, 0);
    assert!(
        r.stderr
            .contains("WARN cannot reach syslog at /nonexistent/log.sock"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("INFO ban 192.0.2.10"), "{}", r.stderr);
}

fn make(args: &[&str]) -> std::process::Output {
    Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("make")
}

fn tree(root: &std::path::Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .arg("-mindepth")
        .arg("1")
        .arg("-printf")
        .arg("%m %p\n")
        .current_dir(root)
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort_by(|a, b| a.split(' ').nth(1).cmp(&b.split(' ').nth(1)));
    v
}

#[test]
fn make_install_puts_every_file_with_its_mode() {
    let sb = Sandbox::new("http://127.0.0.1:9");
    let dest = sb.dir.join("root");
    let bin = format!("BIN={}", &*common::BIN);
    let out = make(&["install", &format!("DESTDIR={}", dest.display()), &bin]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        tree(&dest),
        [
            "755 ./etc",
            "755 ./etc/default",
            "600 ./etc/default/prefixd",
            "755 ./etc/logrotate.d",
            "644 ./etc/logrotate.d/prefixd-fastnetmon",
            "755 ./etc/systemd",
            "755 ./etc/systemd/system",
            "644 ./etc/systemd/system/prefixd-fastnetmon-flush.service",
            "644 ./etc/systemd/system/prefixd-fastnetmon-flush.timer",
            "644 ./etc/systemd/system/prefixd-fastnetmon-owner.path",
            "644 ./etc/systemd/system/prefixd-fastnetmon-owner.service",
            "755 ./usr",
            "755 ./usr/local",
            "755 ./usr/local/bin",
            "755 ./usr/local/bin/prefixd-fastnetmon",
            "755 ./usr/local/lib",
            "755 ./usr/local/lib/prefixd-fastnetmon",
            "755 ./usr/local/lib/prefixd-fastnetmon/own-files",
            "755 ./usr/local/share",
            "755 ./usr/local/share/doc",
            "755 ./usr/local/share/doc/prefixd-fastnetmon",
            "644 ./usr/local/share/doc/prefixd-fastnetmon/prefixd.env.example",
        ]
    );
    // The spool, the log and the env file's group are FastNetMon's user's, made on the host
    // by own-files (a staged install leaves them to the package's postinst); it runs the
    // installed binary.
    let own =
        std::fs::read_to_string(dest.join("usr/local/lib/prefixd-fastnetmon/own-files")).unwrap();
    assert!(
        own.contains("bin=${PFN_BIN:-/usr/local/bin/prefixd-fastnetmon}"),
        "{own}"
    );
    let owner =
        std::fs::read_to_string(dest.join("etc/systemd/system/prefixd-fastnetmon-owner.service"))
            .unwrap();
    assert!(
        owner.contains("ExecStart=/usr/local/lib/prefixd-fastnetmon/own-files"),
        "{owner}"
    );
    let unit =
        std::fs::read_to_string(dest.join("etc/systemd/system/prefixd-fastnetmon-flush.service"))
            .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/prefixd-fastnetmon --flush"),
        "{unit}"
    );

    // An operator's own env file is never overwritten.
    std::fs::write(
        dest.join("etc/default/prefixd"),
        "PREFIXD_API=http://mine\n",
    )
    .unwrap();
    assert!(
        make(&["install", &format!("DESTDIR={}", dest.display()), &bin])
            .status
            .success()
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/default/prefixd")).unwrap(),
        "PREFIXD_API=http://mine\n"
    );
}

#[test]
fn make_deb_builds_a_package_with_conffiles_and_postinst() {
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        panic!("dpkg-deb is part of every Debian system");
    }
    let sb = Sandbox::new("http://127.0.0.1:9");
    // The binary under test may be a debug build, which lintian rightly refuses; lintian's
    // verdict on the shipped binary is CI's `make deb`.
    let out = make(&[
        "deb",
        "DEB_ARCHS=amd64",
        "LINTIAN=",
        &format!("BIN_amd64={}", &*common::BIN),
        &format!("DEBDIR={}", sb.dir.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(deb.ends_with("_amd64.deb"), "{deb}");
    let list = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for (mode, path) in [
        ("drwxr-xr-x root/root", " ./"),
        ("-rwxr-xr-x root/root", "./usr/bin/prefixd-fastnetmon"),
        ("-rw------- root/root", "./etc/default/prefixd"),
        (
            "-rw-r--r-- root/root",
            "./etc/logrotate.d/prefixd-fastnetmon",
        ),
        (
            "-rw-r--r-- root/root",
            "./lib/systemd/system/prefixd-fastnetmon-flush.service",
        ),
        (
            "-rw-r--r-- root/root",
            "./lib/systemd/system/prefixd-fastnetmon-flush.timer",
        ),
        (
            "-rw-r--r-- root/root",
            "./lib/systemd/system/prefixd-fastnetmon-owner.path",
        ),
        (
            "-rwxr-xr-x root/root",
            "./usr/lib/prefixd-fastnetmon/own-files",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/doc/prefixd-fastnetmon/prefixd.env.example",
        ),
    ] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{mode} {path} in:\n{list}"
        );
    }
    let info = Command::new("dpkg-deb")
        .args(["-I", &deb])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("Package: prefixd-fastnetmon") && info.contains("Architecture: amd64"),
        "{info}"
    );
    let dir = sb.dir.join("ctrl");
    assert!(
        Command::new("dpkg-deb")
            .args(["-e", &deb])
            .arg(&dir)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("conffiles")).unwrap(),
        "/etc/default/prefixd\n/etc/logrotate.d/prefixd-fastnetmon\n"
    );
    let postinst = std::fs::read_to_string(dir.join("postinst")).unwrap();
    // The one line both FastNetMon generations need (1.2.4's switch is mentioned), and the
    // timer enabled the Debian way.
    assert!(
        postinst.contains("\nnotify_script_path = /usr/bin/prefixd-fastnetmon\n")
            && postinst.contains("\"notify_script_enabled = on\""),
        "{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-helper enable \"$UNIT\"")
            && postinst.contains("deb-systemd-invoke start \"$UNIT\"")
            && !postinst.contains("systemctl enable"),
        "{postinst}"
    );
    for script in ["prerm", "postrm"] {
        assert!(dir.join(script).exists(), "{script}");
    }
    // FastNetMon's user gets the files at install and whenever FastNetMon's unit changes.
    assert!(
        postinst.contains("configure)\n") && postinst.contains("triggered)\n"),
        "{postinst}"
    );
    assert!(!list.contains("./var/spool/"), "made by own-files: {list}");
    let triggers = std::fs::read_to_string(dir.join("triggers")).unwrap();
    for unit in [
        "interest-noawait /lib/systemd/system/fastnetmon.service\n",
        "interest-noawait /usr/lib/systemd/system/fastnetmon.service\n",
    ] {
        assert!(triggers.contains(unit), "{triggers}");
    }
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let r = common::command(&["--help"]).output().unwrap();
    assert_eq!(r.status.code(), Some(0));
    let text = String::from_utf8_lossy(&r.stdout);
    for v in prefixd_fastnetmon::config::VARIABLES {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", v.name)))
            .unwrap_or_else(|| panic!("{} not in --help:\n{text}", v.name));
        let default = if v.default.is_empty() { "-" } else { v.default };
        assert!(line.contains(&format!(" {default} ")), "{line}");
        assert!(line.ends_with(v.help), "{line}");
    }
    assert!(
        text.contains("73 not delivered and could not be kept"),
        "{text}"
    );
}
