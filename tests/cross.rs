//! The smoke test `make cross-test` runs for every cross-built binary under qemu-user
//! (`PFN_BIN` = the binary, `PFN_RUNNER` = the emulator): it starts, bans over HTTP and over
//! HTTPS with a test CA, and unbans — asserting on what prefixd received, as the other tests.
//! Without `PFN_RUNNER` it checks the host binary the same way.

mod common;

use common::server::{Options, Server, TLS_DIR};
use common::{Sandbox, fixture, s};

#[test]
fn version_http_ban_https_ban_and_unban() {
    let out = common::command(&["--version"])
        .output()
        .expect("run --version");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && version.starts_with("prefixd-fastnetmon "),
        "{version}"
    );
    eprintln!("{}", version.trim());

    let http = Server::start();
    let sb = Sandbox::new(&http.url);
    let r = sb.run(
        &["192.0.2.10", "incoming", "412345", "ban"],
        Some(fixture("ban_ipv4_udp_flood.txt").as_bytes()),
    );
    assert_eq!(r.code, 0, "{}{}", r.stderr, sb.log());
    let body = http.requests()[0].json();
    assert_eq!(
        (
            s(body.get("victim_ip")).as_str(),
            s(body.get("vector")).as_str()
        ),
        ("192.0.2.10", "udp_flood")
    );

    let r = sb.run(&["192.0.2.10", "incoming", "412345", "unban"], None);
    assert_eq!(r.code, 0, "{}{}", r.stderr, sb.log());
    // After the ban and its look at the rule prefixd made.
    let lines: Vec<String> = http.lines();
    assert_eq!(
        lines[2..],
        [
            "GET /v1/mitigations?status=pending,active,escalated&victim_ip=192.0.2.10&limit=1000",
            "POST /v1/mitigations/00000000-0000-4000-8000-000000000001/withdraw"
        ]
    );
    assert_eq!(http.mitigations()[0].status, "withdrawn");

    let https = Server::with(Options {
        tls: true,
        ..Default::default()
    });
    let mut sb = Sandbox::new(&https.url);
    sb.set("PREFIXD_CA_FILE", &format!("{TLS_DIR}/ca.pem"))
        .set("PREFIXD_TOKEN", "t0ken");
    let r = sb.run(
        &["2001:0db8::0010", "incoming", "9", "ban"],
        Some(fixture("ban_ipv6_udp_flood.txt").as_bytes()),
    );
    assert_eq!(r.code, 0, "{}{}", r.stderr, sb.log());
    let req = &https.requests()[0];
    assert_eq!(req.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(s(req.json().get("victim_ip")), "2001:db8::10");

    // A refusal is said in words, also in appliance builds (their derived Debug is shallow).
    let other = format!("{TLS_DIR}/other-ca.pem");
    let mut sb = Sandbox::new(&https.url);
    sb.set("PREFIXD_CA_FILE", &other)
        .set("PREFIXD_RETRIES", "1");
    assert_eq!(sb.run(&["192.0.2.10"], Some(b"")).code, 75);
    assert!(
        sb.log().contains(&format!(
            "TLS handshake failed: prefixd's certificate is not signed by any CA in PREFIXD_CA_FILE ({other})"
        )),
        "{}",
        sb.log()
    );
}
