//! The HTTP client: one ureq `Agent` built once from the configuration (timeouts, TLS,
//! token; no proxy, no redirects), each request retried with backoff and 429 waits inside
//! the deadline, and a failed exchange said in words an operator can act on (a TLS probe
//! tells a plain-HTTP URL aimed at a TLS port).

use super::answer::{self, Answer};
use super::reply::Reply;
use super::wire::Endpoint;
use crate::config::Config;
use crate::error::Error;
use crate::log::Log;
use std::time::{Duration, Instant};
use ureq::http;

/// Bodies are read up to this; prefixd's largest answer (1000 mitigations) is ~700 KiB.
const MAX_BODY: u64 = 4 * 1024 * 1024;

pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// For TLS errors in words: which roots were trusted.
    ca_file: Option<std::path::PathBuf>,
    auth: Option<String>,
    connect_timeout: Duration,
    timeout: Duration,
    retries: u32,
    deadline: Instant,
}

impl Client {
    pub fn new(cfg: &Config, deadline: Instant) -> Result<Client, Error> {
        use ureq::tls::{TlsConfig, TlsProvider};
        // With PREFIXD_CA_FILE our own TLS connector verifies (`tls`); without it, ureq's
        // with the bundled Mozilla roots.
        let ca = match &cfg.ca_file {
            None => None,
            Some(path) => {
                let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
                    crate::config::files::load_ca_file(path)
                        .map_err(Error::Config)?
                        .iter()
                        .map(|c| c.der().to_vec().into())
                        .collect();
                let what = format!("PREFIXD_CA_FILE {}", path.display());
                Some(
                    crate::prefixd::tls::config(&certs)
                        .map_err(|e| Error::Config(format!("{what}: {e}")))?,
                )
            }
        };
        let tls = TlsConfig::builder().provider(TlsProvider::Rustls).build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            // A redirect would carry the token to wherever it points; report it instead.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("prefixd-fastnetmon/", env!("CARGO_PKG_VERSION")))
            .proxy(None)
            // ureq's 128 KiB defaults are zero-filled on every run: a third of a ban's CPU.
            // prefixd's headers are small; bodies stream through. Small buffers also keep a
            // carpet of a thousand concurrent runs small.
            .input_buffer_size(4 * 1024)
            // The request head: a v0.19 cursor (≤ 1 KiB, up to 3 KiB encoded) and a token
            // (≤ 2 KiB) must fit.
            .output_buffer_size(8 * 1024)
            .max_response_header_size(16 * 1024)
            .build();
        let resolver = LiteralFirst(ureq::unversioned::resolver::DefaultResolver::default());
        // TCP, then TLS for https://: no proxy connectors (proxies are off, see above).
        use ureq::unversioned::transport::{Connector, RustlsConnector, TcpConnector};
        let tcp = TcpConnector::default();
        let agent = match ca {
            None => {
                ureq::Agent::with_parts(config, tcp.chain(RustlsConnector::default()), resolver)
            }
            Some(tls) => ureq::Agent::with_parts(
                config,
                tcp.chain(crate::prefixd::tls::CaFileConnector(tls)),
                resolver,
            ),
        };
        Ok(Client {
            agent,
            base: cfg.api.clone(),
            ca_file: cfg.ca_file.clone(),
            auth: cfg.token.as_ref().map(|t| format!("Bearer {t}")),
            connect_timeout: cfg.connect_timeout,
            timeout: cfg.timeout,
            retries: cfg.retries,
            deadline,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// One HTTP exchange, bounded by `PREFIXD_TIMEOUT` and what is left of the deadline.
    fn attempt(
        &self,
        log: &Log,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Reply, NoAnswer> {
        let budget = self.timeout.min(self.remaining());
        if budget.is_zero() {
            return Err(NoAnswer::Retry("deadline reached".into()));
        }
        let started = Instant::now();
        let url = self.url(path);
        let mut req = http::Request::builder().method(method).uri(&url);
        if let Some(auth) = &self.auth {
            req = req.header("Authorization", auth);
        }
        let built = |e: http::Error| NoAnswer::Retry(e.to_string());
        let result = match body {
            Some(b) => {
                let req = req
                    .header("Content-Type", "application/json")
                    .body(b.as_bytes());
                self.exchange(req.map_err(built)?, budget)
            }
            None => self.exchange(req.body(()).map_err(built)?, budget),
        };
        let took = started.elapsed().as_secs_f64();
        if result.is_ok() {
            crate::tally::took(started.elapsed());
        }
        match &result {
            Ok(r) => log.debug(&format!("{method} {url} -> {} in {took:.3}s", r.status)),
            Err(NoAnswer::Retry(e)) => {
                log.debug(&format!("{method} {url} -> {e} after {took:.3}s"))
            }
            Err(NoAnswer::Stop(e)) => log.debug(&format!("{method} {url} -> {e} after {took:.3}s")),
        }
        result
    }

    fn exchange<B: ureq::AsSendBody>(
        &self,
        req: http::Request<B>,
        budget: Duration,
    ) -> Result<Reply, NoAnswer> {
        let req = self
            .agent
            .configure_request(req)
            .timeout_global(Some(budget))
            .timeout_connect(Some(self.connect_timeout.min(budget)))
            .build();
        let mut resp = self.agent.run(req).map_err(|e| self.no_answer(e))?;
        let status = resp.status().as_u16();
        // By their constants: parsing a header name from text brings http's whole table.
        let header = |name: http::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after_header =
            header(http::header::RETRY_AFTER).and_then(|v| v.trim().parse().ok());
        let (server, content_type) = (
            header(http::header::SERVER),
            header(http::header::CONTENT_TYPE),
        );
        // The status is prefixd's answer; a body cut short or too large does not undo it.
        let body = match resp.body_mut().with_config().limit(MAX_BODY).read_to_vec() {
            Ok(b) => b,
            Err(e) => format!("(body not read: {})", self.describe(e)).into_bytes(),
        };
        Ok(Reply {
            status,
            body,
            retry_after_header,
            server,
            content_type,
        })
    }

    /// Sends with retries on transient failures (connect errors, timeouts, 408, 5xx),
    /// jittered exponential backoff, all inside the deadline; a 429 waits as prefixd asks
    /// (`Reply::retry_after`, spread wider at each 429 so that a carpet of runs does not come
    /// back at once) and does not use up the attempts. `body` is asked again for each attempt,
    /// so a ban gets a fresh `event_id` every time. Returns the first final answer.
    pub fn request(
        &self,
        log: &Log,
        method: &str,
        path: &str,
        mut body: impl FnMut() -> Result<Option<String>, Error>,
    ) -> Result<Reply, Error> {
        let mut last = String::new();
        let (mut attempts, mut failures, mut rate_limited) = (0u32, 0u32, 0u32);
        while failures < self.retries && rate_limited <= MAX_RATE_LIMITED {
            attempts += 1;
            let b = body()?;
            let (pause, said) = match self.attempt(log, method, path, b.as_deref()) {
                Ok(r) if r.status == 429 => {
                    rate_limited += 1;
                    last = format!("HTTP 429: {}", r.snippet());
                    let asked = r.retry_after();
                    let wait = match asked {
                        Some(d) => format!("prefixd asks to wait {}s", d.as_secs()),
                        None => "prefixd gave no wait we can read; 1s".into(),
                    };
                    let said = format!("{last}; {wait} (rate limited {rate_limited} time(s))");
                    let asked = asked.unwrap_or(Duration::from_secs(1));
                    (rate_limited_wait(asked, rate_limited), said)
                }
                Ok(r) if !answer::transient(r.status) => return Ok(r),
                Err(NoAnswer::Stop(e)) => return Err(e),
                outcome => {
                    failures += 1;
                    last = match outcome {
                        Ok(r) => format!("HTTP {}: {}", r.status, r.snippet()),
                        Err(NoAnswer::Retry(e)) => e,
                        // Returned above.
                        Err(NoAnswer::Stop(e)) => e.to_string(),
                    };
                    if failures == self.retries {
                        break;
                    }
                    let said = format!("attempt {failures}/{}: {last}", self.retries);
                    (backoff(failures), said)
                }
            };
            if pause + Duration::from_millis(100) >= self.remaining() {
                last.push_str("; deadline leaves no time to retry");
                break;
            }
            log.warn(&format!(
                "{method} {} {said}; retrying in {:.2}s",
                self.url(path),
                pause.as_secs_f64()
            ));
            std::thread::sleep(pause);
        }
        Err(Error::NotDelivered(format!(
            "{method} {} failed after {attempts} attempt(s): {last}",
            self.url(path)
        )))
    }
}

/// 429s one request waits through before it is kept for later (the deadline comes first with
/// the defaults).
const MAX_RATE_LIMITED: u32 = 20;

/// prefixd's wait plus a random share of a window that doubles with each 429 in a row (1×,
/// 2×, 4× … the wait, up to 8 s): a thousand runs told "1 s" come back spread out, at about
/// the rate prefixd's bucket refills, instead of together.
fn rate_limited_wait(asked: Duration, nth: u32) -> Duration {
    let window = (asked * (1u32 << nth.saturating_sub(1).min(3))).min(Duration::from_secs(8));
    let share = f64::from(getrandom::u32().unwrap_or(0)) / f64::from(u32::MAX);
    asked + window.mul_f64(share)
}

/// An IP address in `PREFIXD_API` needs no lookup; ureq's resolver would still start a thread
/// for it (to bound the lookup by the timeout). Host names go to ureq's resolver.
#[derive(Debug)]
struct LiteralFirst(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for LiteralFirst {
    fn resolve(
        &self,
        uri: &http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                let mut addrs = self.empty();
                addrs.push(std::net::SocketAddr::new(ip, port));
                Ok(addrs)
            }
            Err(_) => self.0.resolve(uri, config, timeout),
        }
    }
}

/// 250 ms, 500 ms, 1 s … (capped at 4 s), each scaled by a random 50–100 % so that many
/// FastNetMon threads retrying at once do not hit prefixd in lock-step.
fn backoff(attempt: u32) -> Duration {
    let base = 250u64 << attempt.saturating_sub(1).min(4);
    let jitter = getrandom::u32().unwrap_or(0) % 500;
    Duration::from_millis(base * (500 + u64::from(jitter)) / 1000)
}

impl Client {
    /// `request`, then what its final answer means.
    pub fn ask(
        &self,
        log: &Log,
        endpoint: Endpoint,
        method: &str,
        path: &str,
        body: impl FnMut() -> Result<Option<String>, Error>,
    ) -> Result<Answer, Error> {
        let reply = self.request(log, method, path, body)?;
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        self.read(endpoint, &what, reply)
    }

    /// One attempt without a body, no retry and no wait: for a look whose answer only
    /// informs (the ban it follows is delivered), which must neither keep FastNetMon's thread
    /// waiting nor add to the load of a prefixd that is rate-limiting.
    pub fn ask_once(
        &self,
        log: &Log,
        endpoint: Endpoint,
        method: &str,
        path: &str,
    ) -> Result<Answer, Error> {
        let what = format!("{method} {path}");
        match self.attempt(log, method, path, None) {
            Ok(r) if answer::transient(r.status) => Err(Error::NotDelivered(format!(
                "{what} answered {}: {}",
                r.status,
                r.snippet()
            ))),
            Ok(r) => self.read(endpoint, &what, r),
            Err(NoAnswer::Retry(e)) => Err(Error::NotDelivered(format!("{what}: {e}"))),
            Err(NoAnswer::Stop(e)) => Err(e),
        }
    }

    /// What a final reply of `endpoint` means (`what`: the request, for messages).
    pub fn read(&self, endpoint: Endpoint, what: &str, reply: Reply) -> Result<Answer, Error> {
        Answer::read(endpoint, what, reply, &self.base)
    }

    /// An answer the caller cannot use here (a withdraw's 404 for a mitigation that is still
    /// active, a 2xx with a body it cannot read), as the error its status means.
    pub fn unexpected(&self, answer: Answer, what: &str) -> Error {
        match answer {
            Answer::UnknownVector(e) | Answer::QuotaExceeded(e) | Answer::PortsRefused(e) => e,
            Answer::Done(r)
            | Answer::AlreadyReceived(r)
            | Answer::Gone(r)
            | Answer::TooLarge(r) => answer::failure(what, &r, &self.base),
        }
    }
}

/// Why one exchange got no answer.
enum NoAnswer {
    /// Worth another attempt: unreachable, timed out, cut off (in words).
    Retry(String),
    /// Another attempt cannot help: plain HTTP to a port that speaks TLS.
    Stop(Error),
}

impl Client {
    /// A failed exchange: a connection cut off (reset, closed, or answered with bytes that are
    /// not HTTP) on a plain-HTTP `PREFIXD_API` is checked for a TLS port, which no retry
    /// mends; anything else is worth another attempt.
    fn no_answer(&self, e: ureq::Error) -> NoAnswer {
        use std::io::ErrorKind::*;
        let cut_off = match &e {
            ureq::Error::Protocol(_) => true,
            ureq::Error::Io(io) => matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe
            ),
            _ => false,
        };
        let said = self.describe(e);
        match answer::https_instead(&self.base) {
            Some(https) if cut_off && self.speaks_tls() => NoAnswer::Stop(Error::Config(format!(
                "PREFIXD_API={} sends plain HTTP to a TLS port ({said}; the port answers a TLS hello); use PREFIXD_API={https}",
                self.base
            ))),
            _ => NoAnswer::Retry(said),
        }
    }

    /// Whether `PREFIXD_API`'s host and port answer a TLS ClientHello as TLS does (a
    /// handshake or alert record), within a second and the deadline.
    fn speaks_tls(&self) -> bool {
        let Ok(uri) = self.base.parse::<http::Uri>() else {
            return false;
        };
        let host = uri
            .host()
            .unwrap_or("")
            .trim_matches(['[', ']'])
            .to_string();
        let port = uri.port_u16().unwrap_or(80);
        let wait = Duration::from_secs(1).min(self.remaining());
        if wait.is_zero() {
            return false;
        }
        let Some(hello) = client_hello(&host) else {
            return false;
        };
        let addrs: Vec<std::net::SocketAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .map(Iterator::collect)
                .unwrap_or_default(),
        };
        let Some(addr) = addrs.first() else {
            return false;
        };
        let probe = || -> std::io::Result<[u8; 3]> {
            use std::io::{Read, Write};
            let mut tcp = std::net::TcpStream::connect_timeout(addr, wait)?;
            tcp.set_read_timeout(Some(wait))?;
            tcp.set_write_timeout(Some(wait))?;
            tcp.write_all(&hello)?;
            let mut head = [0u8; 3];
            tcp.read_exact(&mut head)?;
            Ok(head)
        };
        // A TLS record: handshake (22) or alert (21), version 3.x.
        probe().is_ok_and(|h| matches!(h, [21 | 22, 3, 0..=4]))
    }
}

/// A TLS ClientHello for `host`, as the bytes rustls would send first.
fn client_hello(host: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::ServerName;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).ok()?;
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).ok()?;
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).ok()?;
    Some(hello)
}

impl Client {
    /// A failed exchange in words an operator can act on.
    fn describe(&self, e: ureq::Error) -> String {
        if let Some(tls) = crate::prefixd::tls::rustls_error(&e) {
            let host = self
                .base
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_string()))
                .unwrap_or_default();
            return format!(
                "TLS handshake failed: {}",
                crate::prefixd::tls::words(tls, &host, self.ca_file.as_deref())
            );
        }
        match e {
            ureq::Error::Timeout(t) => format!("not reachable: timed out ({t})"),
            ureq::Error::HostNotFound => "not reachable: host not found (DNS)".into(),
            ureq::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "not reachable: connection refused (is prefixd running?)".into()
                }
                _ => format!("network error: {io}"),
            },
            ureq::Error::BodyExceedsLimit(n) => format!("reply larger than {n} bytes"),
            other => other.to_string(),
        }
    }
}
