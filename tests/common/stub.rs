//! `prefixd-stub`: the test suite's prefixd stand-in as a process, for `make demo` and
//! `make bench`. Loopback only; stops by itself after --seconds.
//!
//! usage: prefixd-stub [--port N] [--tls] [--token T] [--delay-ms N] [--seconds N] [--quiet]
//!                     [--v0.19] [--ttl-seconds N] [--quota N]
//! `--v0.19`: behave as prefixd v0.19.1 (correlation at 0.5, the 100/s token bucket, cursor
//! pages); `--ttl-seconds`: mitigations expire unless a ban extends them.

#[path = "server.rs"]
mod server;

use std::time::Duration;

fn main() {
    let mut opts = server::Options {
        log_stdout: true,
        ..Default::default()
    };
    let mut port = 0u16;
    let mut seconds = 600u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--port" => {
                port = value()
                    .parse()
                    .unwrap_or_else(|_| fail("--port: not a port"))
            }
            "--tls" => opts.tls = true,
            "--token" => opts.token = Some(value()),
            "--delay-ms" => {
                opts.delay = Duration::from_millis(
                    value()
                        .parse()
                        .unwrap_or_else(|_| fail("--delay-ms: not a number")),
                )
            }
            "--seconds" => {
                seconds = value()
                    .parse()
                    .unwrap_or_else(|_| fail("--seconds: not a number"))
            }
            "--quiet" => opts.log_stdout = false,
            "--v0.19" => {
                opts = server::Options {
                    tls: opts.tls,
                    token: opts.token.take(),
                    delay: opts.delay,
                    log_stdout: opts.log_stdout,
                    ttl: opts.ttl,
                    quota: opts.quota,
                    ..server::Options::of(server::Generation::V0_19_1)
                }
            }
            "--ttl-seconds" => {
                opts.ttl = Some(Duration::from_secs(
                    value()
                        .parse()
                        .unwrap_or_else(|_| fail("--ttl-seconds: not a number")),
                ))
            }
            "--quota" => {
                opts.quota = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|_| fail("--quota: not a number")),
                )
            }
            _ => fail(&format!("unknown argument {a}")),
        }
    }
    let srv = server::Server::bind(&format!("127.0.0.1:{port}"), opts);
    println!("listening {}", srv.url);
    std::thread::sleep(Duration::from_secs(seconds));
}

fn fail(msg: &str) -> ! {
    eprintln!("prefixd-stub: {msg}");
    std::process::exit(64);
}
