//! TLS as `curl --cacert` takes it, with certificates this test makes with openssl: a
//! self-signed certificate listed in PREFIXD_CA_FILE is trusted as prefixd's own (CA:TRUE as
//! OpenSSL 3 makes it, or CA:FALSE), a private CA signs a leaf, and every refusal is said in
//! words: unknown issuer, wrong name, expired, plain HTTP on the port.

mod common;

use common::Sandbox;
use common::server::{Options, Server};
use std::process::Command;

const UDP: &[u8] = b"Attack type: udp_flood\n";

/// A scratch directory of certificates, removed on drop.
struct Certs(tempfile::TempDir);

impl Certs {
    fn new(tag: &str) -> Certs {
        Certs(
            tempfile::Builder::new()
                .prefix(&format!("pfn-tls-{tag}-"))
                .tempdir()
                .unwrap(),
        )
    }

    fn path(&self, name: &str) -> String {
        self.0.path().join(name).display().to_string()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.0.path())
            .output()
            .expect("openssl (Debian's openssl package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `openssl req -x509` as operators run it: self-signed, and CA:TRUE unless `extra` says
    /// otherwise. Returns (cert, key).
    fn self_signed(&self, name: &str, san: &str, extra: &[&str]) -> (String, String) {
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        let san = format!("subjectAltName={san}");
        let mut args = vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "30",
            "-subj",
            "/CN=prefixd",
            "-addext",
            &san,
        ];
        args.extend_from_slice(extra);
        self.openssl(&args);
        (self.path(&cert), self.path(&key))
    }

    /// A leaf for `san`, signed by `ca` (a self_signed name), valid `days` (negative: expired).
    fn leaf(&self, name: &str, ca: &str, san: &str, days: &str, ext: &str) -> (String, String) {
        let (cert, key, csr, extfile) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        std::fs::write(
            self.0.path().join(&extfile),
            format!("subjectAltName={san}\n{ext}\n"),
        )
        .unwrap();
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=prefixd",
        ]);
        let (ca_cert, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        let mut args = vec!["x509", "-req", "-in", &csr, "-out", &cert, "-days", days];
        if ca == name {
            args.extend_from_slice(&["-signkey", &key]);
        } else {
            args.extend_from_slice(&["-CA", &ca_cert, "-CAkey", &ca_key, "-CAcreateserial"]);
        }
        args.extend_from_slice(&["-extfile", &extfile]);
        self.openssl(&args);
        (self.path(&cert), self.path(&key))
    }
}

fn https(cert: (String, String)) -> Server {
    Server::with(Options {
        tls: true,
        cert: Some(cert),
        ..Default::default()
    })
}

/// A ban to `srv` with PREFIXD_CA_FILE = `ca_file`: exit code and log.
fn ban(srv: &Server, ca_file: &str) -> (i32, String, Sandbox) {
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_CA_FILE", ca_file)
        .set("PREFIXD_RETRIES", "1");
    let r = sb.run(&["192.0.2.10"], Some(UDP));
    (r.code, sb.log(), sb)
}

#[test]
fn a_self_signed_certificate_listed_in_the_ca_file_is_trusted_as_curl_does() {
    let c = Certs::new("selfsigned");
    // What `openssl req -x509` makes by default in OpenSSL 3: CA:TRUE.
    let ca_true = c.self_signed("catrue", "IP:127.0.0.1", &[]);
    let srv = https(ca_true.clone());
    let (code, log, _) = ban(&srv, &ca_true.0);
    assert_eq!(code, 0, "{log}");
    assert_eq!(srv.banned_ips(), ["192.0.2.10"]);

    let ca_false = c.self_signed(
        "cafalse",
        "IP:127.0.0.1",
        &["-addext", "basicConstraints=critical,CA:FALSE"],
    );
    let srv = https(ca_false.clone());
    let (code, log, _) = ban(&srv, &ca_false.0);
    assert_eq!(code, 0, "{log}");
    assert_eq!(srv.banned_ips(), ["192.0.2.10"]);
}

#[test]
fn a_private_ca_signs_the_leaf() {
    let c = Certs::new("private");
    let ca = c.self_signed("ca", "DNS:ca.example.net", &[]);
    let leaf = c.leaf(
        "leaf",
        "ca",
        "IP:127.0.0.1",
        "30",
        "basicConstraints=critical,CA:FALSE",
    );
    let srv = https(leaf);
    let (code, log, _) = ban(&srv, &ca.0);
    assert_eq!(code, 0, "{log}");
    assert_eq!(srv.banned_ips(), ["192.0.2.10"]);
}

#[test]
fn refusals_are_said_in_words_and_nothing_loosens() {
    let c = Certs::new("refused");
    let listed = c.self_signed("listed", "IP:127.0.0.1", &[]);
    let stranger = c.self_signed("stranger", "IP:127.0.0.1", &[]);
    let ca_file = listed.0.clone();

    // A self-signed certificate that is not in the file.
    let srv = https(stranger);
    let (code, log, sb) = ban(&srv, &ca_file);
    assert_eq!(code, 75, "{log}");
    assert!(srv.requests().is_empty());
    assert!(log.contains(&format!(
        "TLS handshake failed: prefixd's certificate is not signed by any CA in PREFIXD_CA_FILE ({ca_file})"
    )), "{log}");
    assert!(
        !log.contains("OtherError") && !log.contains("UnknownIssuer"),
        "{log}"
    );
    assert_eq!(sb.spooled().len(), 1, "kept for after the fix");

    // Listed, but for another name.
    let named = c.self_signed("named", "DNS:prefixd.example.net", &[]);
    let srv = https(named.clone());
    let (code, log, _) = ban(&srv, &named.0);
    assert_eq!(code, 75, "{log}");
    assert!(srv.requests().is_empty());
    assert!(
        log.contains(
            "TLS handshake failed: prefixd's certificate is for prefixd.example.net, not 127.0.0.1"
        ),
        "{log}"
    );

    // Listed, CA:TRUE like the ones trusted above, but expired.
    let expired = c.leaf(
        "expired",
        "expired",
        "IP:127.0.0.1",
        "-1",
        "basicConstraints=critical,CA:TRUE",
    );
    let srv = https(expired.clone());
    let (code, log, _) = ban(&srv, &expired.0);
    assert_eq!(code, 75, "{log}");
    assert!(srv.requests().is_empty());
    assert!(
        log.contains("TLS handshake failed: prefixd's certificate expired on 20"),
        "{log}"
    );

    // A leaf of the private CA, expired.
    let ca = c.self_signed("ca", "DNS:ca.example.net", &[]);
    let old = c.leaf(
        "old",
        "ca",
        "IP:127.0.0.1",
        "-1",
        "basicConstraints=critical,CA:FALSE",
    );
    let srv = https(old);
    let (code, log, _) = ban(&srv, &ca.0);
    assert_eq!(code, 75, "{log}");
    assert!(log.contains("prefixd's certificate expired on 20"), "{log}");
}

/// A plain HTTP server as prefixd's (hyper) is to a TLS hello: "400 Bad Request", closed.
/// Answers up to `n` connections.
fn plain_http_server(n: usize) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", l.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for conn in l.incoming().take(n) {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = c.read(&mut [0u8; 1024]);
            let _ = c.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    url
}

#[test]
fn plain_http_on_the_port_is_said_so() {
    let c = Certs::new("plain");
    let listed = c.self_signed("listed", "IP:127.0.0.1", &[]);
    for ca in [None, Some(listed.0.as_str())] {
        let mut sb = Sandbox::new(&plain_http_server(1));
        sb.set("PREFIXD_RETRIES", "1");
        if let Some(ca) = ca {
            sb.set("PREFIXD_CA_FILE", ca);
        }
        let r = sb.run(&["192.0.2.10"], Some(UDP));
        assert_eq!(r.code, 75, "{}", sb.log());
        assert!(
            sb.log().contains(
                "TLS handshake failed: prefixd speaks plain HTTP on this port (use http://)"
            ),
            "{}",
            sb.log()
        );
    }
}

#[test]
fn check_names_the_tls_failure() {
    let c = Certs::new("check");
    let listed = c.self_signed("listed", "IP:127.0.0.1", &[]);
    let stranger = c.self_signed("stranger", "IP:127.0.0.1", &[]);
    let srv = https(stranger);
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_CA_FILE", &listed.0)
        .set("PREFIXD_RETRIES", "1");
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 75, "{}", r.stdout);
    assert!(r.stdout.contains(&format!(
        "TLS handshake failed: prefixd's certificate is not signed by any CA in PREFIXD_CA_FILE ({})",
        listed.0
    )), "{}", r.stdout);
    assert!(!r.stdout.contains("not reachable"), "{}", r.stdout);
    assert!(r.stderr.contains("TLS handshake failed"), "{}", r.stderr);
    // And trusted, it passes.
    let srv = https(listed.clone());
    sb.set("PREFIXD_API", &srv.url);
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 0, "{}", r.stdout);
}
