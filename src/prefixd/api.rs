//! prefixd's wire format (plain miniserde structs named like its fields), the HTTP calls with
//! the operator's timeouts, retries and deadline (one ureq `Agent`, built once), and the one
//! place that reads what an answer means: `Answer`, or the `Error` an operator acts on.

use crate::config::Config;
use crate::error::Error;
use crate::log::Log;
use miniserde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use ureq::http;

/// The body of `POST /v1/events`, as the bash script sends it plus `bps`.
#[derive(Serialize, Debug)]
pub struct Event {
    pub event_id: String,
    pub timestamp: String,
    pub source: String,
    pub victim_ip: String,
    pub vector: String,
    pub action: String,
    pub pps: Option<i64>,
    pub bps: Option<i64>,
    /// 0.0–1.0 (README "Confidence"). prefixd ≥ v0.14 averages it per (victim, vector) signal
    /// group and mitigates nothing below its `confidence_threshold`, a missing value counting
    /// as 0 (`src/correlation/engine.rs`); v0.10.1 ignores it.
    pub confidence: Option<f64>,
    /// `{raw, direction, original_action, truncated}`, plus `replayed` and
    /// `replay_delay_seconds` for a ban sent from the spool.
    pub raw_details: miniserde::json::Value,
}

/// The 202 of `POST /v1/events` (`{event_id, external_event_id, status, mitigation_id}`).
#[derive(Deserialize, Debug)]
pub struct EventReply {
    pub status: Option<String>,
    pub mitigation_id: Option<String>,
    /// Not sent by v0.10.1 or v0.19.1; said when a later prefixd explains a held ban.
    pub reason: Option<String>,
}

/// What a ban's 202 did (shared/prefixd-api.md §1a, shared/prefixd-0.19.md §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanOutcome {
    /// `accepted` or `extended` with this `mitigation_id`: announced, or kept alive.
    Mitigated(String),
    /// Recorded, and nothing created or extended: why, in words.
    Held(String),
}

impl EventReply {
    pub fn outcome(&self, vector: &str) -> BanOutcome {
        let status = self.status.as_deref().unwrap_or("(no status)");
        let said = self
            .reason
            .as_deref()
            .map_or_else(String::new, |r| format!(": {r}"));
        match (status, &self.mitigation_id) {
            ("accepted" | "extended", Some(id)) => BanOutcome::Mitigated(id.clone()),
            ("accepted", None) => BanOutcome::Held(format!(
                "held by prefixd's correlation engine (its signal group's confidence or sources are below correlation.yaml's threshold){said}"
            )),
            ("accepted_no_mitigation", _) => BanOutcome::Held(format!(
                "the victim is in none of prefixd's inventory (no customer owns it){said}"
            )),
            ("accepted_no_playbook", _) => {
                BanOutcome::Held(format!("prefixd has no playbook for vector {vector}{said}"))
            }
            (other, _) => BanOutcome::Held(format!("status {other}{said}")),
        }
    }
}

/// A page of `GET /v1/mitigations`. v0.19.1 adds the cursor (shared/prefixd-0.19.md §3);
/// v0.10.1 sends neither field.
#[derive(Deserialize, Debug)]
pub struct MitigationList {
    pub mitigations: Vec<Mitigation>,
    /// Read loosely (any JSON): a page whose cursor fields are odd still lists its rows.
    pub next_cursor: Option<miniserde::json::Value>,
    pub has_more: Option<miniserde::json::Value>,
}

/// Where a page of `GET /v1/mitigations` says the listing goes on.
#[derive(Debug, PartialEq, Eq)]
pub enum NextPage {
    /// v0.10.1: no cursor fields.
    Unpaged,
    /// `has_more: false`.
    Done,
    /// `has_more: true` with this cursor.
    Cursor(String),
    /// `has_more` that is not `false` without a usable cursor: what, in words.
    Broken(String),
}

impl MitigationList {
    pub fn next_page(&self) -> NextPage {
        use miniserde::json::Value;
        match (&self.has_more, &self.next_cursor) {
            (None, None) => NextPage::Unpaged,
            (Some(Value::Bool(false)), _) | (None, Some(Value::Null)) => NextPage::Done,
            (Some(Value::Bool(true)), Some(Value::String(c))) if !c.is_empty() => {
                NextPage::Cursor(c.clone())
            }
            (Some(Value::Bool(true)), _) => NextPage::Broken("no cursor".into()),
            (None, Some(_)) => NextPage::Broken("a cursor without has_more".into()),
            (Some(_), _) => NextPage::Broken("has_more that is not true or false".into()),
        }
    }
}

/// `GET /v1/health` (public).
#[derive(Deserialize, Debug)]
pub struct Health {
    pub status: Option<String>,
    pub version: Option<String>,
    pub auth_mode: Option<String>,
}

impl Health {
    /// Which generation of prefixd's `/v1` this is, by its version: v0.11 brought cursor
    /// pages, v0.14 correlation, v0.19.1 the rate limit and the withdraw identity.
    pub fn generation(&self) -> &'static str {
        let version = self.version.as_deref().unwrap_or("");
        let mut parts = version.trim_start_matches('v').split('.');
        let major = parts.next().and_then(|p| p.parse::<u32>().ok());
        let minor = parts.next().and_then(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        match (major, minor) {
            (Some(0), Some(0..=10)) => "the v0.10 generation: offset pages, confidence ignored",
            (Some(0), Some(11..=13)) => "the v0.11+ generation: cursor pages",
            (Some(0), Some(14..=18)) => {
                "the v0.14+ generation: cursor pages, correlation (confidence counts)"
            }
            (Some(0), Some(_)) => {
                "the v0.19 generation: cursor pages, correlation (confidence counts), 429 with retry_after_seconds, withdraw identity from the token"
            }
            _ => {
                "of a generation we do not know (its version does not read as 0.N): spoken to as either"
            }
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
pub struct Mitigation {
    /// Optional here so that one odd row does not hide the others; a row without it is
    /// never acted on.
    pub mitigation_id: Option<String>,
    pub status: Option<String>,
    pub victim_ip: Option<String>,
    /// Moves when a later ban extends the mitigation (`created_at` never does).
    pub updated_at: Option<String>,
    /// When the TTL ends it unless a ban extends it (RFC 3339).
    pub expires_at: Option<String>,
    /// Set when withdrawn or expired.
    pub withdrawn_at: Option<String>,
    /// The playbook's words; once withdrawn `<identity>: <reason>` (v0.19.1: identity from the
    /// credentials; v0.10.1: the operator_id). Expiry keeps the old reason.
    pub reason: Option<String>,
}

/// The statuses a notify client acts on: what `status=pending,active,escalated` lists.
pub fn is_active(status: Option<&str>) -> bool {
    matches!(status, Some("pending" | "active" | "escalated"))
}

/// prefixd's mitigation ids are UUIDs: anything else is never put in a URL path.
pub fn is_mitigation_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[derive(Serialize, Debug)]
pub struct Withdraw {
    pub operator_id: String,
    pub reason: String,
}

/// What prefixd (or whatever answered in its place) answered: status, the first bytes of the
/// body, a proxy's `Retry-After`, and who says they answered.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// `Retry-After` in seconds, if the answer had one (prefixd itself never sends it).
    pub retry_after_header: Option<u64>,
    /// The `Server` header (prefixd sends none; nginx, cloudflare, awselb … do).
    pub server: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
}

/// The plain-text rejections of prefixd's extractors (axum), as they begin
/// (shared/prefixd-api.md §0).
const PREFIXD_PLAIN_TEXT: &[&str] = &[
    "Expected request with `Content-Type: application/json`",
    "Failed to parse the request body as JSON",
    "Failed to deserialize the JSON body into the target type",
    "Invalid URL",
    "Failed to deserialize query string",
    "length limit exceeded",
];

/// prefixd's JSON error shape, `{"error":"…"}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
}

/// What a server in front of prefixd says when a plain-HTTP request reaches its TLS port
/// (nginx; Apache; Go's net/http, as in Caddy and Traefik), lower-cased.
const PLAIN_HTTP_TO_TLS: &[&str] = &[
    "plain http request was sent to https port",
    "speaking plain http to an ssl-enabled server port",
    "client sent an http request to an https server",
];

/// prefixd's 429 body, `{"error":"rate_limited","retry_after_seconds":N}` (v0.19.1).
#[derive(Deserialize)]
struct RateLimited {
    retry_after_seconds: Option<f64>,
}

/// Bodies are read up to this; prefixd's largest answer (1000 mitigations) is ~700 KiB.
const MAX_BODY: u64 = 4 * 1024 * 1024;

impl Reply {
    /// The body as one short printable line, for the log; an HTML page as its title and who
    /// served it, not its markup.
    pub fn snippet(&self) -> String {
        if self.is_html() {
            return self.page();
        }
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let mut s: String = text.chars().take(300).collect();
        if text.chars().count() > 300 {
            s.push('…');
        }
        if s.is_empty() {
            "(empty body)".into()
        } else {
            s
        }
    }

    /// How long prefixd asks us to wait before the next request: `retry_after_seconds` from
    /// the JSON body (prefixd v0.19.1), else `Retry-After` (a proxy); whole seconds, 1 to 60.
    /// None: neither says a usable number.
    pub fn retry_after(&self) -> Option<Duration> {
        let body = self
            .json::<RateLimited>("")
            .ok()
            .and_then(|r| r.retry_after_seconds)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| s.ceil().min(60.0) as u64);
        let secs = body.or(self.retry_after_header)?;
        Some(Duration::from_secs(secs.clamp(1, 60)))
    }

    /// Whether this 4xx is in one of prefixd's own shapes (shared/prefixd-api.md §0): its JSON
    /// `{"error": …}`, one of its extractors' plain-text rejections, or an empty body where
    /// prefixd answers with one (401 on all but `POST /v1/events` and the public health, 404
    /// for what it does not have, 405 for a wrong method, 400 to a withdraw). Anything else —
    /// an HTML page, a proxy's own words — came from something in front of prefixd.
    pub fn is_prefixds(&self, endpoint: Endpoint) -> bool {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        if text.is_empty() {
            return match (self.status, endpoint) {
                (401, Endpoint::Events | Endpoint::Health) => false,
                (400, Endpoint::Withdraw) | (401 | 404 | 405, _) => true,
                _ => false,
            };
        }
        miniserde::json::from_str::<ErrorBody>(text).is_ok_and(|e| e.error.is_some())
            || PREFIXD_PLAIN_TEXT.iter().any(|m| text.starts_with(m))
    }

    fn is_html(&self) -> bool {
        let head: String = String::from_utf8_lossy(&self.body[..self.body.len().min(512)])
            .trim_start()
            .chars()
            .take(14)
            .collect::<String>()
            .to_ascii_lowercase();
        self.content_type
            .as_deref()
            .is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/html"))
            || head.starts_with("<!doctype html")
            || head.starts_with("<html")
    }

    /// Who answered and what it showed, in a few words: `nginx/1.22.1, HTML page "400 …"`.
    fn page(&self) -> String {
        let server = match &self.server {
            Some(s) => format!("Server: {}", crate::pretty::printable(s, 64)),
            None => "no Server header".into(),
        };
        let text = String::from_utf8_lossy(&self.body);
        let shown = if self.is_html() {
            match html_title(&text) {
                Some(t) => format!("HTML page \"{t}\""),
                None => "an HTML page without a title".into(),
            }
        } else if text.trim().is_empty() {
            "(empty body)".into()
        } else {
            let mut t = crate::pretty::printable(text.trim(), 100);
            if text.trim().chars().nth(100).is_some() {
                t.push('…');
            }
            format!("body \"{t}\"")
        };
        format!("{shown}, {server}")
    }

    /// The page says a plain-HTTP request reached a TLS port.
    fn says_plain_http_to_tls(&self) -> bool {
        let text = String::from_utf8_lossy(&self.body).to_ascii_lowercase();
        PLAIN_HTTP_TO_TLS.iter().any(|p| text.contains(p))
    }

    pub fn json<T: Deserialize>(&self, what: &str) -> Result<T, String> {
        std::str::from_utf8(&self.body)
            .ok()
            .and_then(|s| miniserde::json::from_str(s).ok())
            .ok_or_else(|| {
                format!(
                    "{what} answered {} with a body we do not understand: {}",
                    self.status,
                    self.snippet()
                )
            })
    }
}

/// An HTML page's `<title>` (else its first `<h1>`), as one short printable line.
fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let inner = |tag: &str| {
        let open = lower.find(&format!("<{tag}"))?;
        let start = open + lower[open..].find('>')? + 1;
        let end = start + lower[start..].find(&format!("</{tag}"))?;
        Some(&html[start..end])
    };
    let raw = inner("title").or_else(|| inner("h1"))?;
    // Tags inside, entities, and the page's line breaks out.
    let mut text = String::new();
    let mut in_tag = false;
    for c in raw.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = [
        ("&amp;", "&"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&nbsp;", " "),
    ]
    .iter()
    .fold(text, |t, (e, c)| t.replace(e, c));
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut title = crate::pretty::printable(&words.join(" "), 100);
    if words.join(" ").chars().nth(100).is_some() {
        title.push('…');
    }
    (!title.is_empty()).then_some(title)
}

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
        // With PREFIXD_CA_FILE our own TLS connector verifies (src/tls.rs); without it, ureq's
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
                Ok(r) if !transient(r.status) => return Ok(r),
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

/// Worth trying again: prefixd (or the way to it) may answer otherwise in a moment.
fn transient(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// 250 ms, 500 ms, 1 s … (capped at 4 s), each scaled by a random 50–100 % so that many
/// FastNetMon threads retrying at once do not hit prefixd in lock-step.
fn backoff(attempt: u32) -> Duration {
    let base = 250u64 << attempt.saturating_sub(1).min(4);
    let jitter = getrandom::u32().unwrap_or(0) % 500;
    Duration::from_millis(base * (500 + u64::from(jitter)) / 1000)
}

/// Which call an answer is to: a status means different things on different endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/events`.
    Events,
    /// `GET /v1/mitigations?…`.
    List,
    /// `GET /v1/mitigations/{id}`.
    Mitigation,
    /// `POST /v1/mitigations/{id}/withdraw`.
    Withdraw,
    /// `GET /v1/health`.
    Health,
}

/// prefixd's final answer, read once here (shared/prefixd-api.md, shared/prefixd-0.19.md);
/// the rest of the program matches on it. Answers that are not a verdict on the data (token,
/// configuration, transient) come as the `Error` an operator acts on instead.
pub enum Answer {
    /// 2xx: done; the body is the endpoint's (`EventReply`, `MitigationList`, …).
    Done(Reply),
    /// 409 to `POST /v1/events`: an event with this `event_id` was received already.
    AlreadyReceived(Reply),
    /// 400 or 404 to a withdraw, 404 to `GET /v1/mitigations/{id}`: not active any more, or
    /// unknown (a withdraw's caller asks again to be sure).
    Gone(Reply),
    /// 422 to `POST /v1/events` about its `vector` field: a vector this prefixd does not know.
    UnknownVector(Error),
    /// 422 `guardrail violation: quota exceeded` to `POST /v1/events`: prefixd's limit of
    /// active mitigations (per customer, POP or in all) is reached; waiting can change it.
    QuotaExceeded(Error),
    /// 413 to `POST /v1/events`, from prefixd (over its 1 MiB) or from a proxy in front of it
    /// (whatever its page): the body is too large, not the ban wrong; it goes again smaller.
    TooLarge(Reply),
}

impl Answer {
    /// Reads a final reply of `endpoint` (`what`: the request, for messages; `api`: the base
    /// URL, for the hint).
    pub fn read(endpoint: Endpoint, what: &str, reply: Reply, api: &str) -> Result<Answer, Error> {
        use Endpoint::*;
        match (reply.status, endpoint) {
            (200..=299, _) => Ok(Answer::Done(reply)),
            (413, Events) => Ok(Answer::TooLarge(reply)),
            // A 4xx that is not in prefixd's shape is no verdict of prefixd's on our data.
            (400..=499, _) if !transient(reply.status) && !reply.is_prefixds(endpoint) => {
                Err(not_prefixd(what, &reply, api))
            }
            (409, Events) => Ok(Answer::AlreadyReceived(reply)),
            (400 | 404, Withdraw) | (404, Mitigation) => Ok(Answer::Gone(reply)),
            // axum's extractor names the field it could not read: "vector: unknown variant …".
            (422, Events) if String::from_utf8_lossy(&reply.body).contains("vector") => {
                Ok(Answer::UnknownVector(failure(what, &reply, api)))
            }
            (422, Events)
                if String::from_utf8_lossy(&reply.body)
                    .contains("guardrail violation: quota exceeded") =>
            {
                Ok(Answer::QuotaExceeded(failure(what, &reply, api)))
            }
            _ => Err(failure(what, &reply, api)),
        }
    }
}

/// A 4xx from something in front of prefixd (a proxy's, a WAF's, a load balancer's page): a
/// configuration problem, said with what answered and, when a plain-HTTP request reached a
/// TLS port, the URL to use.
fn not_prefixd(what: &str, reply: &Reply, api: &str) -> Error {
    let head = format!(
        "{what} answered {} ({}), which is not prefixd's answer",
        reply.status,
        reply.page()
    );
    if let Some(https) = https_instead(api).filter(|_| reply.says_plain_http_to_tls()) {
        return Error::Config(format!(
            "{head}: PREFIXD_API={api} sends plain HTTP to a TLS port; use PREFIXD_API={https}"
        ));
    }
    Error::Config(format!(
        "{head}: a proxy, WAF or load balancer in front of prefixd answered instead; check PREFIXD_API={api} and what stands in front of prefixd"
    ))
}

/// `http://…` as `https://…`; None when `api` is not plain HTTP.
fn https_instead(api: &str) -> Option<String> {
    api.strip_prefix("http://")
        .map(|rest| format!("https://{rest}"))
}

/// A final answer that is not a success, as the error an operator acts on.
fn failure(what: &str, reply: &Reply, api: &str) -> Error {
    let msg = format!("{what} answered {}: {}", reply.status, reply.snippet());
    match reply.status {
        401 | 403 => {
            Error::Unauthorized(format!("{msg} (check PREFIXD_TOKEN / PREFIXD_TOKEN_FILE)"))
        }
        300..=399 => Error::Config(format!(
            "{msg} (redirects are not followed: set PREFIXD_API to the final URL)"
        )),
        // prefixd answers these only for a path or method it does not have.
        404 | 405 | 415 => Error::Config(format!(
            "{msg} (PREFIXD_API={api} does not lead to prefixd's API: check its path, or the proxy in front of prefixd)"
        )),
        s if transient(s) => Error::NotDelivered(msg),
        _ => Error::Refused(msg),
    }
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

    /// What a final reply of `endpoint` means (`what`: the request, for messages).
    pub fn read(&self, endpoint: Endpoint, what: &str, reply: Reply) -> Result<Answer, Error> {
        Answer::read(endpoint, what, reply, &self.base)
    }

    /// An answer the caller cannot use here (a withdraw's 404 for a mitigation that is still
    /// active, a 2xx with a body it cannot read), as the error its status means.
    pub fn unexpected(&self, answer: Answer, what: &str) -> Error {
        match answer {
            Answer::UnknownVector(e) | Answer::QuotaExceeded(e) => e,
            Answer::Done(r)
            | Answer::AlreadyReceived(r)
            | Answer::Gone(r)
            | Answer::TooLarge(r) => failure(what, &r, &self.base),
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
        match https_instead(&self.base) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_says_how_long_to_wait_in_whole_seconds() {
        let reply = |body: &str, header: Option<u64>| Reply {
            status: 429,
            body: body.as_bytes().to_vec(),
            retry_after_header: header,
            server: None,
            content_type: None,
        };
        let secs = |r: Reply| r.retry_after().map(|d| d.as_secs());
        let json = |v: &str| format!(r#"{{"error":"rate_limited","retry_after_seconds":{v}}}"#);
        assert_eq!(secs(reply(&json("1"), None)), Some(1));
        assert_eq!(secs(reply(&json("2.5"), None)), Some(3));
        assert_eq!(secs(reply(&json("0"), None)), Some(1));
        assert_eq!(secs(reply(&json("1e30"), None)), Some(60));
        assert_eq!(
            secs(reply(&json("-3"), Some(7))),
            Some(7),
            "the header then"
        );
        assert_eq!(secs(reply(&json(r#""4""#), None)), None);
        assert_eq!(secs(reply("<html>429</html>", Some(2))), Some(2));
        assert_eq!(secs(reply("", Some(86_400))), Some(60));
        assert_eq!(secs(reply("", None)), None);
    }

    fn reply(status: u16, body: &str, server: Option<&str>, ctype: Option<&str>) -> Reply {
        Reply {
            status,
            body: body.as_bytes().to_vec(),
            retry_after_header: None,
            server: server.map(str::to_string),
            content_type: ctype.map(str::to_string),
        }
    }

    #[test]
    fn only_prefixds_own_shapes_of_a_4xx_are_its_verdict() {
        use Endpoint::*;
        let ours = |status, body: &str, e| reply(status, body, None, None).is_prefixds(e);
        assert!(ours(
            400,
            r#"{"error":"invalid request: invalid IP address: 'x'"}"#,
            Events
        ));
        assert!(ours(
            422,
            r#" {"error":"guardrail violation: quota exceeded"} "#,
            Events
        ));
        for text in PREFIXD_PLAIN_TEXT {
            assert!(ours(400, &format!("{text}: more words"), Events), "{text}");
        }
        // Empty only where prefixd sends it empty.
        assert!(ours(400, "", Withdraw) && ours(404, "", Mitigation) && ours(401, "", List));
        assert!(ours(405, "", Events) && ours(404, "", Events));
        for (status, e) in [
            (400, Events),
            (401, Events),
            (401, Health),
            (403, List),
            (409, Events),
        ] {
            assert!(!ours(status, "", e), "{status} {e:?}");
        }
        // Anything else came from something in front of prefixd.
        for body in [
            "<html><head><title>400 Bad Request</title></head></html>",
            "Bad Request",
            r#"{"message":"Forbidden"}"#,
            r#"{"error":7}"#,
            "Client sent an HTTP request to an HTTPS server.",
        ] {
            assert!(!ours(400, body, Events), "{body}");
        }
    }

    #[test]
    fn an_html_page_is_said_by_its_title_and_server() {
        let page = |body: &str, server, ctype| reply(502, body, server, ctype).snippet();
        assert_eq!(
            page(
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body></body></html>",
                Some("nginx/1.22.1"),
                Some("text/html")
            ),
            "HTML page \"502 Bad Gateway\", Server: nginx/1.22.1"
        );
        assert_eq!(
            page(
                "<!DOCTYPE html><html><body><h1>Oops &amp;\n <b>sorry</b></h1>",
                None,
                None
            ),
            "HTML page \"Oops & sorry\", no Server header"
        );
        assert_eq!(
            page("<html><body>no heading</body></html>", None, None),
            "an HTML page without a title, no Server header"
        );
        // Not a page: the body as it was.
        assert_eq!(
            page("<h1>oops</h1>", None, Some("text/plain")),
            "<h1>oops</h1>"
        );
        let long = format!("<title>{}</title>", "x".repeat(500));
        assert_eq!(
            page(&long, None, Some("text/html; charset=utf-8"))
                .chars()
                .count(),
            "HTML page \"\"".len() + 101 + ", no Server header".len()
        );
    }

    #[test]
    fn a_page_says_where_the_listing_goes_on() {
        let page = |tail: &str| {
            miniserde::json::from_str::<MitigationList>(&format!(
                r#"{{"mitigations":[],"count":0{tail}}}"#
            ))
            .unwrap()
            .next_page()
        };
        assert_eq!(page(""), NextPage::Unpaged);
        assert_eq!(
            page(r#","next_cursor":null,"has_more":false"#),
            NextPage::Done
        );
        assert_eq!(
            page(r#","next_cursor":"c1","has_more":true"#),
            NextPage::Cursor("c1".into())
        );
        for odd in [
            r#","next_cursor":null,"has_more":true"#,
            r#","next_cursor":"","has_more":true"#,
            r#","next_cursor":5,"has_more":true"#,
            r#","next_cursor":"c1","has_more":"true""#,
            r#","next_cursor":"c1""#,
        ] {
            assert!(matches!(page(odd), NextPage::Broken(_)), "{odd}");
        }
    }

    #[test]
    fn the_generation_is_read_from_the_version() {
        let g = |v: Option<&str>| {
            Health {
                status: None,
                version: v.map(str::to_string),
                auth_mode: None,
            }
            .generation()
        };
        assert!(g(Some("0.10.1")).starts_with("the v0.10 generation"));
        assert!(g(Some("v0.12.0")).starts_with("the v0.11+ generation"));
        assert!(g(Some("0.14.2-rc1")).starts_with("the v0.14+ generation"));
        assert!(g(Some("0.19.1")).starts_with("the v0.19 generation"));
        for unknown in [
            None,
            Some("garbage"),
            Some("99999999999.1"),
            Some("1.0.0"),
            Some(""),
        ] {
            assert!(
                g(unknown).starts_with("of a generation we do not know"),
                "{unknown:?}"
            );
        }
    }
}
