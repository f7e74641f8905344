//! A loopback stand-in for prefixd, used by the integration tests, `make demo` and `make bench`,
//! in two generations: v0.10.1 as `shared/prefixd-api.md` describes it (202 statuses, list,
//! withdraw's 400/404, 401 JSON vs empty, 422 schema errors), and v0.19.1 as
//! `shared/prefixd-0.19.md` does (correlation with a threshold, one global token bucket with
//! its JSON 429, cursor pages that ignore `offset`, withdraw identity from the credentials).
//! It records every request exactly as received, and can be told to misbehave: scripted
//! replies, delays, hangs, dropped connections.
#![allow(dead_code)]

use miniserde::json::{self, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path with the query string, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> BTreeMap<String, Value> {
        match json::from_str::<Value>(&self.body) {
            Ok(Value::Object(o)) => o.into_iter().collect(),
            _ => panic!("body is not a JSON object: {:?}", self.body),
        }
    }
}

/// What to do with the next request that matches a route prefix like `"POST /v1/events"`.
#[derive(Debug, Clone)]
pub enum Behavior {
    Reply {
        status: u16,
        body: String,
    },
    /// Accept, read the request, say nothing for this long, then close.
    Hang(Duration),
    /// Close the connection without answering.
    Drop,
    /// Send these bytes as they are, then close.
    Raw(String),
    /// Send these bytes one at a time, this far apart (a slowloris server).
    Trickle(String, Duration),
    /// A status line and a body claiming to be 1 GB, streamed until the client hangs up
    /// (bounded at 64 MiB).
    Huge(u16),
}

impl Behavior {
    /// A whole answer as something in front of prefixd sends it (a proxy's page): this status
    /// line, these headers, this body, then the connection closed.
    pub fn page(status_line: &str, headers: &[(&str, &str)], body: &str) -> Behavior {
        let mut head = format!("HTTP/1.1 {status_line}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        Behavior::Raw(format!(
            "{head}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ))
    }
}

#[derive(Debug, Clone)]
pub struct Mitigation {
    pub id: String,
    pub victim_ip: String,
    pub vector: String,
    /// The rule prefixd built (`rule`): IANA protocol (None: any) and destination ports (empty:
    /// any). With the victim, its scope: a ban of the same scope extends it.
    pub protocol: Option<u8>,
    pub dst_ports: Vec<u16>,
    pub status: String,
    /// RFC 3339; moves when a ban extends the mitigation, as in prefixd.
    pub updated_at: String,
    /// As prefixd stores it: the playbook's words, then `<identity>: <reason>` once withdrawn.
    pub reason: String,
    /// With a TTL: when it ends unless a ban extends it.
    pub expires: Option<std::time::SystemTime>,
    /// Every event_id that created or extended it, in order.
    pub events: Vec<String>,
}

/// A service of prefixd's inventory: its assets and their `allowed_ports`. An IP in no
/// service (only in a customer's prefix) has none: prefixd then takes the event's ports.
#[derive(Debug, Clone, Default)]
pub struct Service {
    pub name: String,
    pub ips: Vec<String>,
    pub udp: Vec<u16>,
    pub tcp: Vec<u16>,
}

impl Service {
    /// The DNS service of prefixd's shipped inventory (`allowed_ports: {udp: [53], tcp:
    /// [53]}`; there on 203.0.113.10 and .11), on `ips`.
    pub fn dns(ips: &[&str]) -> Service {
        Service {
            name: "dns".into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            udp: vec![53],
            tcp: vec![53],
        }
    }
}

/// The rule prefixd builds for a ban (its `PolicyEngine::evaluate` and
/// `compute_port_intersection`; shared/prefixd-api.md "The rule prefixd builds"): the
/// vector's protocol (udp 17, syn/ack 6, icmp 1, unknown any), and for udp_flood (UDP ports)
/// and syn_flood/ack_flood (TCP ports) the event's `top_dst_ports` ∩ the service's
/// `allowed_ports`; no event ports → the allowed ports; no service, or no allowed ports for
/// that protocol → the event's ports. Other vectors take the event's ports as they are.
pub fn rule(services: &[Service], ip: &str, vector: &str, ports: &[u16]) -> (Option<u8>, Vec<u16>) {
    let protocol = match vector {
        "udp_flood" => Some(17),
        "syn_flood" | "ack_flood" => Some(6),
        "icmp_flood" => Some(1),
        _ => None,
    };
    let service = services.iter().find(|s| s.ips.iter().any(|i| i == ip));
    let allowed: &[u16] = match (vector, service) {
        ("udp_flood", Some(s)) => &s.udp,
        ("syn_flood" | "ack_flood", Some(s)) => &s.tcp,
        _ => &[],
    };
    let dst_ports = if allowed.is_empty() {
        ports.to_vec()
    } else if ports.is_empty() {
        allowed.to_vec()
    } else {
        ports
            .iter()
            .copied()
            .filter(|p| allowed.contains(p))
            .collect()
    };
    (protocol, dst_ports)
}

/// Which prefixd the stand-in is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    V0_10_1,
    V0_19_1,
}

impl Generation {
    pub const BOTH: [Generation; 2] = [Generation::V0_10_1, Generation::V0_19_1];
}

/// prefixd v0.19.1's rate limit: one global token bucket (`src/api/ratelimit.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    pub burst: f64,
    pub per_second: f64,
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<(String, Behavior)>>,
    /// Behaviours that answer every matching request, after the one-shot script.
    always: Mutex<Vec<(String, Behavior)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    mitigations: Mutex<Vec<Mitigation>>,
    token: Option<String>,
    delay: Duration,
    stop: AtomicBool,
    log_stdout: bool,
    generation: Option<Generation>,
    /// v0.19.1's correlation `confidence_threshold`; None: correlation off.
    threshold: Option<f64>,
    /// Rows per page at most (prefixd clamps `limit` to 1000).
    page_max: usize,
    bucket: Option<Bucket>,
    ttl: Option<Duration>,
    quota: Option<usize>,
    body_limit: Option<usize>,
    services: Vec<Service>,
    max_ports: usize,
    /// Tokens left and when they were counted.
    tokens: Mutex<Option<(f64, std::time::Instant)>>,
    rate_limited: AtomicUsize,
}

pub struct Options {
    pub tls: bool,
    /// With `tls`: serve this certificate chain and key (PEM files) instead of tests/tls's.
    pub cert: Option<(String, String)>,
    pub token: Option<String>,
    pub delay: Duration,
    /// Print each request on stdout (the stub binary).
    pub log_stdout: bool,
    pub generation: Generation,
    /// v0.19.1: correlation's `confidence_threshold` (prefixd's shipped correlation.yaml: on,
    /// 0.5); None turns correlation off.
    pub threshold: Option<f64>,
    /// Rows per page at most.
    pub page_max: usize,
    /// v0.19.1: the token bucket in front of every endpoint; None: no limit.
    pub bucket: Option<Bucket>,
    /// The playbook's TTL: a mitigation expires this long after its last ban (prefixd's
    /// reconciler, here checked whenever a mitigation is looked at); None: never.
    pub ttl: Option<Duration>,
    /// Active mitigations allowed at once (prefixd's per-customer quota, 5 by default; the
    /// stand-in has one customer); None: no limit.
    pub quota: Option<usize>,
    /// Request bodies larger than this get 413 `length limit exceeded` (text/plain) before
    /// anything else is looked at, as prefixd's `RequestBodyLimitLayer` (1 MiB) or a proxy's
    /// lower limit does; None: no limit.
    pub body_limit: Option<usize>,
    /// prefixd's inventory: the services and their `allowed_ports` (every other IP is in a
    /// customer's prefix, with no service).
    pub services: Vec<Service>,
    /// The `max_ports` guardrail: more ports in a rule get 422 (prefixd's default 8).
    pub max_ports: usize,
}

/// prefixd's request body limit (shared/prefixd-api.md §0).
pub const PREFIXD_BODY_LIMIT: usize = 1024 * 1024;

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: false,
            cert: None,
            token: None,
            delay: Duration::ZERO,
            log_stdout: false,
            generation: Generation::V0_10_1,
            threshold: Some(0.5),
            page_max: 1000,
            bucket: None,
            ttl: None,
            quota: None,
            body_limit: Some(PREFIXD_BODY_LIMIT),
            services: Vec::new(),
            max_ports: 8,
        }
    }
}

impl Options {
    /// This generation, as it ships (v0.19.1: correlation on at 0.5, bucket 100/s burst 500).
    pub fn of(generation: Generation) -> Options {
        Options {
            generation,
            bucket: (generation == Generation::V0_19_1).then_some(Bucket {
                burst: 500.0,
                per_second: 100.0,
            }),
            ..Options::default()
        }
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub url: String,
    state: Arc<State>,
}

pub const TLS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls");

impl Server {
    pub fn start() -> Server {
        Server::with(Options::default())
    }

    pub fn with(opts: Options) -> Server {
        Server::bind("127.0.0.1:0", opts)
    }

    pub fn bind(addr: &str, opts: Options) -> Server {
        Server::on(TcpListener::bind(addr).expect("bind loopback"), opts)
    }

    /// Serves on a listener the caller made.
    pub fn on(listener: TcpListener, opts: Options) -> Server {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            token: opts.token,
            delay: opts.delay,
            log_stdout: opts.log_stdout,
            generation: Some(opts.generation),
            threshold: opts.threshold,
            page_max: opts.page_max,
            bucket: opts.bucket,
            ttl: opts.ttl,
            quota: opts.quota,
            body_limit: opts.body_limit,
            services: opts.services,
            max_ports: opts.max_ports,
            ..State::default()
        });
        let tls = opts.tls.then(|| {
            let (cert, key) = opts.cert.clone().unwrap_or_else(|| {
                (
                    format!("{TLS_DIR}/server.pem"),
                    format!("{TLS_DIR}/server.key"),
                )
            });
            tls_config(&cert, &key)
        });
        let url = format!(
            "{}://127.0.0.1:{}",
            if tls.is_some() { "https" } else { "http" },
            addr.port()
        );
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let _ = conn.set_nodelay(true);
                let st = st.clone();
                let tls = tls.clone();
                // Small stacks: a carpet bench holds a thousand connections at once.
                let _ = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                        match tls {
                            None => serve(&st, conn),
                            Some(cfg) => {
                                let Ok(sc) = rustls::ServerConnection::new(cfg) else {
                                    return;
                                };
                                serve(&st, rustls::StreamOwned::new(sc, conn));
                            }
                        }
                    });
            }
        });
        Server { addr, url, state }
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// `METHOD target` of everything received, in order.
    pub fn lines(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }

    /// `victim_ip` of every `POST /v1/events`, in arrival order.
    pub fn banned_ips(&self) -> Vec<String> {
        let ip = |r: &Recorded| match r.json().get("victim_ip") {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        self.requests()
            .iter()
            .filter(|r| r.target == "/v1/events")
            .map(ip)
            .collect()
    }

    /// The body of every `POST /v1/events`, in arrival order (a ban's look at its rule, a
    /// `GET`, left out).
    pub fn bans(&self) -> Vec<BTreeMap<String, Value>> {
        self.requests()
            .iter()
            .filter(|r| r.target == "/v1/events")
            .map(Recorded::json)
            .collect()
    }

    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// Queue a behaviour for the next request whose `METHOD path` starts with `route`.
    pub fn script(&self, route: &str, b: Behavior) {
        self.state
            .script
            .lock()
            .unwrap()
            .push_back((route.to_string(), b));
    }

    /// Answer every request whose `METHOD path` starts with `route` this way, from now on.
    pub fn always(&self, route: &str, b: Behavior) {
        self.state
            .always
            .lock()
            .unwrap()
            .push((route.to_string(), b));
    }

    /// The most requests that were being answered at one moment.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn clear_script(&self) {
        self.state.script.lock().unwrap().clear();
    }

    pub fn reply(&self, route: &str, status: u16, body: &str) {
        self.script(
            route,
            Behavior::Reply {
                status,
                body: body.to_string(),
            },
        );
    }

    /// Adds an active mitigation as if a ban had created it; returns its id.
    pub fn add_mitigation(&self, victim_ip: &str, vector: &str, status: &str) -> String {
        self.add_mitigation_updated(
            victim_ip,
            vector,
            status,
            "2026-11-25T11:43:03.123456+00:00",
        )
    }

    /// The same, last updated (created or extended) at `updated_at`.
    pub fn add_mitigation_updated(
        &self,
        victim_ip: &str,
        vector: &str,
        status: &str,
        updated_at: &str,
    ) -> String {
        let (protocol, dst_ports) = rule(&self.state.services, victim_ip, vector, &[]);
        let mut m = self.state.mitigations.lock().unwrap();
        let id = format!("00000000-0000-4000-8000-{:012x}", m.len() + 1);
        m.push(Mitigation {
            id: id.clone(),
            victim_ip: victim_ip.into(),
            vector: vector.into(),
            protocol,
            dst_ports,
            status: status.into(),
            updated_at: updated_at.into(),
            reason: format!("{vector} to unknown service (playbook: test)"),
            expires: self.state.ttl.map(|t| std::time::SystemTime::now() + t),
            events: Vec::new(),
        });
        id
    }

    /// A person withdraws a mitigation by hand (the dashboard, or the API with a token).
    pub fn withdraw_by_hand(&self, id: &str, identity: &str, reason: &str) {
        let mut ms = self.state.mitigations.lock().unwrap();
        if let Some(m) = ms.iter_mut().find(|m| m.id == id) {
            m.status = "withdrawn".into();
            m.reason = format!("{identity}: {reason}");
        }
    }

    /// The reconciler ends a mitigation now, as if its TTL had run out.
    pub fn expire_now(&self, id: &str) {
        let mut ms = self.state.mitigations.lock().unwrap();
        if let Some(m) = ms.iter_mut().find(|m| m.id == id) {
            m.status = "expired".into();
            m.expires = Some(std::time::SystemTime::now());
        }
    }

    /// Whether `ip` has an active mitigation now (its TTL counted).
    pub fn active(&self, ip: &str) -> bool {
        let mut ms = self.state.mitigations.lock().unwrap();
        expire(&mut ms);
        ms.iter().any(|m| m.victim_ip == ip && m.status == "active")
    }

    /// Answers given 429 (rate limited).
    pub fn rate_limited(&self) -> usize {
        self.state.rate_limited.load(Ordering::SeqCst)
    }

    /// The rules (protocol, destination ports) of `ip`'s mitigations, as the stand-in built
    /// them, oldest first.
    pub fn rules(&self, ip: &str) -> Vec<(Option<u8>, Vec<u16>)> {
        self.mitigations()
            .into_iter()
            .filter(|m| m.victim_ip == ip)
            .map(|m| (m.protocol, m.dst_ports))
            .collect()
    }

    pub fn mitigations(&self) -> Vec<Mitigation> {
        let mut ms = self.state.mitigations.lock().unwrap();
        expire(&mut ms);
        ms.clone()
    }

    pub fn set_status(&self, id: &str, status: &str) {
        for m in self
            .state
            .mitigations
            .lock()
            .unwrap()
            .iter_mut()
            .filter(|m| m.id == id)
        {
            m.status = status.into();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn tls_config(cert: &str, key: &str) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .expect("certificate file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(key).expect("key file");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server cert");
    Arc::new(cfg)
}

/// Serves requests on one connection, kept alive as prefixd (hyper) does, until the client
/// closes it, asks for `connection: close`, or a scripted misbehaviour ends it.
fn serve<S: Read + Write>(st: &State, stream: S) {
    let mut reader = BufReader::new(stream);
    for _ in 0..100_000 {
        if !serve_one(st, &mut reader) {
            return;
        }
    }
}

/// One request; false when the connection is to be closed.
fn serve_one<S: Read + Write>(st: &State, reader: &mut BufReader<S>) -> bool {
    let Some(req) = read_request(reader) else {
        return false;
    };
    if st.log_stdout {
        println!("{} {} {}", req.method, req.target, req.body);
    }
    st.requests.lock().unwrap().push(req.clone());
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let open = answer(st, reader, &req);
    st.in_flight.fetch_sub(1, Ordering::SeqCst);
    open
}

fn answer<S: Read + Write>(st: &State, reader: &mut BufReader<S>, req: &Recorded) -> bool {
    let route = format!("{} {}", req.method, req.target);
    let scripted = {
        let mut script = st.script.lock().unwrap();
        let pos = script
            .iter()
            .position(|(r, _)| route.starts_with(r.as_str()));
        pos.and_then(|i| script.remove(i)).map(|(_, b)| b)
    }
    .or_else(|| {
        let always = st.always.lock().unwrap();
        always
            .iter()
            .find(|(r, _)| route.starts_with(r.as_str()))
            .map(|(_, b)| b.clone())
    });
    if !st.delay.is_zero() {
        std::thread::sleep(st.delay);
    }
    let (status, body) = match scripted {
        Some(Behavior::Hang(d)) => {
            std::thread::sleep(d);
            return false;
        }
        Some(Behavior::Drop) => return false,
        Some(Behavior::Raw(bytes)) => {
            let _ = reader.get_mut().write_all(bytes.as_bytes());
            return false;
        }
        Some(Behavior::Trickle(bytes, gap)) => {
            for b in bytes.as_bytes().chunks(1).take(10_000) {
                if reader
                    .get_mut()
                    .write_all(b)
                    .and_then(|()| reader.get_mut().flush())
                    .is_err()
                {
                    return false;
                }
                std::thread::sleep(gap);
            }
            return false;
        }
        Some(Behavior::Huge(status)) => {
            let s = reader.get_mut();
            let head = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n",
                reason(status)
            );
            let _ = s.write_all(head.as_bytes());
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..1024 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
            return false;
        }
        Some(Behavior::Reply { status, body }) => (status, body),
        None => prefixd(st, req),
    };
    let ctype = if body.starts_with('{') {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let close = req
        .header("connection")
        .is_some_and(|c| c.eq_ignore_ascii_case("close"));
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n{}x-request-id: test\r\n\r\n",
        reason(status),
        body.len(),
        if close { "connection: close\r\n" } else { "" }
    );
    let stream = reader.get_mut();
    // One write: head and body in two segments would meet Nagle and delayed ACKs (40 ms).
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    let ok = stream.write_all(&out).and_then(|()| stream.flush());
    ok.is_ok() && !close
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn read_request<R: BufRead>(r: &mut R) -> Option<Recorded> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    // Not HTTP (a TLS hello, say): no request, as hyper would not take it for one.
    let method = parts
        .next()
        .filter(|m| m.bytes().all(|b| b.is_ascii_uppercase()))?
        .to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut len = 0usize;
    for _ in 0..100 {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        if k.eq_ignore_ascii_case("content-length") {
            len = v.parse().ok()?;
        }
        headers.push((k, v));
    }
    let mut body = vec![0u8; len.min(8 << 20)];
    r.read_exact(&mut body).ok()?;
    Some(Recorded {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn authorized(st: &State, req: &Recorded) -> bool {
    match &st.token {
        None => true,
        Some(t) => req.header("authorization") == Some(&format!("Bearer {t}")),
    }
}

fn query(target: &str) -> BTreeMap<String, String> {
    let q = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mitigation_json(st: &State, m: &Mitigation) -> String {
    // v0.19 adds acknowledgement and correlation fields a client must ignore.
    let extra = if st.v019() {
        r#","acknowledged_at":null,"acknowledged_by":null,"correlation":{"signal_group_id":"22222222-2222-4222-8222-222222222222","derived_confidence":0.9,"source_count":1,"sources":["fastnetmon"]}"#
    } else {
        ""
    };
    format!(
        r#"{{"mitigation_id":"{}","status":"{}","customer_id":null,"service_id":null,"pop":"test","victim_ip":"{}","vector":"{}","action_type":"discard","rate_bps":null,"dst_prefix":"{}/32","protocol":{},"dst_ports":{},"created_at":"2026-11-25T11:43:03.123456+00:00","updated_at":"{}","expires_at":"{}","withdrawn_at":null,"triggering_event_id":"{}","last_event_id":"{}","scope_hash":"0123456789abcdef0123456789abcdef","reason":{}{extra}}}"#,
        m.id,
        m.status,
        m.victim_ip,
        m.vector,
        m.victim_ip,
        m.protocol
            .map_or_else(|| "null".to_string(), |p| p.to_string()),
        json::to_string(&m.dst_ports),
        m.updated_at,
        m.expires
            // Without a TTL the stand-in's mitigations never end.
            .map_or_else(|| "2099-01-01T00:00:00.000000+00:00".to_string(), stamp),
        m.id,
        m.id,
        json::to_string(&m.reason)
    )
}

/// prefixd's reconciler: an active mitigation past its `expires_at` is `expired`.
fn expire(ms: &mut [Mitigation]) {
    let now = std::time::SystemTime::now();
    for m in ms.iter_mut() {
        if m.status == "active" && m.expires.is_some_and(|e| e <= now) {
            m.status = "expired".into();
        }
    }
}

/// RFC 3339 as prefixd writes it (`+00:00`, microseconds).
fn stamp(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    prefixd_fastnetmon::time::rfc3339_from_unix((ms / 1000) as u64)
        .replace('Z', &format!(".{:03}000+00:00", ms % 1000))
}

impl State {
    fn v019(&self) -> bool {
        self.generation == Some(Generation::V0_19_1)
    }

    /// v0.19.1's token bucket: false when the request is over the limit.
    fn take_token(&self) -> bool {
        let Some(b) = self.bucket else {
            return true;
        };
        let now = std::time::Instant::now();
        let mut t = self.tokens.lock().unwrap();
        let (left, then) = t.unwrap_or((b.burst, now));
        let left = (left + now.duration_since(then).as_secs_f64() * b.per_second).min(b.burst);
        let ok = left >= 1.0;
        *t = Some((if ok { left - 1.0 } else { left }, now));
        ok
    }
}

/// A query value as sent: `%XX` decoded.
fn percent_decoded(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            v.get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// axum's `Json` extractor, as prefixd runs it before authentication: 415 without the JSON
/// content type, 400 for a body that is not a JSON object.
fn json_body(req: &Recorded) -> Result<miniserde::json::Object, (u16, String)> {
    if !req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Err((
            415,
            "Expected request with `Content-Type: application/json`".into(),
        ));
    }
    match json::from_str::<Value>(&req.body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err((400, "Failed to parse the request body as JSON".into())),
    }
}

/// The fake prefixd's answer, following shared/prefixd-api.md: one function per endpoint.
fn prefixd(st: &State, req: &Recorded) -> (u16, String) {
    // v0.19.1: before the body size, auth and JSON, for every endpoint and every client.
    if !st.take_token() {
        st.rate_limited.fetch_add(1, Ordering::SeqCst);
        return (
            429,
            r#"{"error":"rate_limited","retry_after_seconds":1}"#.into(),
        );
    }
    // The body limit comes before auth and JSON.
    if st.body_limit.is_some_and(|max| req.body.len() > max) {
        return (413, "length limit exceeded".into());
    }
    let path = req.target.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("GET", "/v1/health") => (
            200,
            format!(
                r#"{{"status":"ok","version":"{}","auth_mode":"bearer"}}"#,
                if st.v019() { "0.19.1" } else { "0.10.1" }
            ),
        ),
        ("POST", "/v1/events") => post_event(st, req),
        ("GET", "/v1/mitigations") => list(st, req),
        ("GET", p) if p.starts_with("/v1/mitigations/") => {
            get_one(st, req, &p["/v1/mitigations/".len()..])
        }
        ("POST", p) if p.starts_with("/v1/mitigations/") && p.ends_with("/withdraw") => withdraw(
            st,
            req,
            &p["/v1/mitigations/".len()..p.len() - "/withdraw".len()],
        ),
        _ => (404, String::new()),
    }
}

/// `POST /v1/events`: a ban creates a mitigation, or extends the victim's active one of the
/// same scope (the victim, the rule's protocol and ports: syn_flood and ack_flood collapse).
fn post_event(st: &State, req: &Recorded) -> (u16, String) {
    let o = match json_body(req) {
        Ok(o) => o,
        Err(refusal) => return refusal,
    };
    let s = |k: &str| match o.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let (Some(ts), Some(_src), Some(ip), Some(vector)) =
        (s("timestamp"), s("source"), s("victim_ip"), s("vector"))
    else {
        return (
            422,
            "Failed to deserialize the JSON body into the target type: missing field".into(),
        );
    };
    if !(ts.ends_with('Z') || ts.ends_with("+00:00")) {
        return (
            422,
            "Failed to deserialize the JSON body into the target type: timestamp".into(),
        );
    }
    if !matches!(
        vector.as_str(),
        "udp_flood" | "syn_flood" | "ack_flood" | "icmp_flood" | "unknown"
    ) {
        return (
            422,
            format!(
                "Failed to deserialize the JSON body into the target type: vector: unknown variant `{vector}`"
            ),
        );
    }
    if !authorized(st, req) {
        return (
            401,
            r#"{"error":"unauthorized: authentication required"}"#.into(),
        );
    }
    if ip.parse::<std::net::IpAddr>().is_err() {
        return (
            400,
            format!(r#"{{"error":"invalid request: invalid IP address: '{ip}'"}}"#),
        );
    }
    // `top_dst_ports`: an array of u16 or null (serde's Vec<u16>); anything else is a 422.
    let mut ports: Vec<u16> = match o.get("top_dst_ports") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            let read: Option<Vec<u16>> = a
                .iter()
                .map(|p| match p {
                    Value::Number(json::Number::U64(n)) => u16::try_from(*n).ok(),
                    _ => None,
                })
                .collect();
            match read {
                Some(p) => p,
                None => {
                    return (
                        422,
                        "Failed to deserialize the JSON body into the target type: top_dst_ports: invalid value".into(),
                    );
                }
            }
        }
        Some(_) => {
            return (
                422,
                "Failed to deserialize the JSON body into the target type: top_dst_ports: invalid type".into(),
            );
        }
    };
    ports.dedup();
    let event_id = s("event_id").unwrap_or_default();
    // v0.19.1's correlation: one source, so the group's confidence is this event's; a missing
    // confidence counts as 0. Below the threshold nothing is created, nothing extended.
    let confidence = match o.get("confidence") {
        Some(Value::Number(n)) => json::to_string(n).parse::<f64>().unwrap_or(0.0),
        _ => 0.0,
    };
    if st.v019() && st.threshold.is_some_and(|t| confidence < t) {
        return (
            202,
            format!(
                r#"{{"event_id":"11111111-1111-4111-8111-111111111111","external_event_id":"{event_id}","status":"accepted","mitigation_id":null}}"#
            ),
        );
    }
    // The rule; its scope is the victim, the protocol and the sorted ports.
    let (protocol, dst_ports) = rule(&st.services, &ip, &vector, &ports);
    let scope = |p: &[u16]| {
        let mut p = p.to_vec();
        p.sort_unstable();
        p.dedup();
        p
    };
    let mut ms = st.mitigations.lock().unwrap();
    expire(&mut ms);
    let now = prefixd_fastnetmon::time::now().replace('Z', ".000000+00:00");
    let until = st.ttl.map(|t| std::time::SystemTime::now() + t);
    let active = ms.iter().filter(|m| m.status == "active").count();
    let existing = ms.iter_mut().find(|m| {
        m.victim_ip == ip
            && m.protocol == protocol
            && scope(&m.dst_ports) == scope(&dst_ports)
            && m.status == "active"
    });
    let (status, id) = match existing {
        Some(m) => {
            m.updated_at = now;
            m.expires = m.expires.max(until);
            m.events.push(event_id.clone());
            ("extended", m.id.clone())
        }
        // Guardrails, for a new mitigation.
        None if dst_ports.len() > st.max_ports => {
            return (
                422,
                format!(
                    r#"{{"error":"guardrail violation: too many ports: {} (max={})"}}"#,
                    dst_ports.len(),
                    st.max_ports
                ),
            );
        }
        None if st.quota.is_some_and(|q| active >= q) => {
            return (
                422,
                format!(
                    r#"{{"error":"guardrail violation: quota exceeded: customer ({active}/{})"}}"#,
                    st.quota.unwrap_or(0)
                ),
            );
        }
        None => {
            let id = format!("00000000-0000-4000-8000-{:012x}", ms.len() + 1);
            let service = st
                .services
                .iter()
                .find(|s| s.ips.contains(&ip))
                .map_or("unknown service", |s| s.name.as_str());
            ms.push(Mitigation {
                id: id.clone(),
                reason: format!("{vector} to {service} (playbook: test)"),
                victim_ip: ip,
                vector,
                protocol,
                dst_ports,
                status: "active".into(),
                updated_at: now,
                expires: until,
                events: vec![event_id.clone()],
            });
            ("accepted", id)
        }
    };
    (
        202,
        format!(
            r#"{{"event_id":"11111111-1111-4111-8111-111111111111","external_event_id":"{event_id}","status":"{status}","mitigation_id":"{id}"}}"#
        ),
    )
}

/// `GET /v1/mitigations?status=…&victim_ip=…&limit=…`, newest first.
fn list(st: &State, req: &Recorded) -> (u16, String) {
    if !authorized(st, req) {
        return (401, String::new());
    }
    let q = query(&req.target);
    let statuses: Vec<&str> = q
        .get("status")
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100)
        .min(1000)
        .min(st.page_max);
    let mut ms = st.mitigations.lock().unwrap();
    expire(&mut ms);
    let matching: Vec<&Mitigation> = ms
        .iter()
        .rev()
        .filter(|m| !q.contains_key("status") || statuses.contains(&m.status.as_str()))
        .filter(|m| q.get("victim_ip").is_none_or(|v| *v == m.victim_ip))
        .collect();
    if !st.v019() {
        // v0.10.1: `offset`, no cursor, `count` is this page's.
        let offset: usize = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
        let rows: Vec<String> = matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|m| mitigation_json(st, m))
            .collect();
        return (
            200,
            format!(
                r#"{{"mitigations":[{}],"count":{}}}"#,
                rows.join(","),
                rows.len()
            ),
        );
    }
    // v0.19.1: keyset pages after the cursor (the last row's id, wrapped in characters that
    // must be percent-encoded); `offset` is ignored.
    let start = match q.get("cursor").map(|c| percent_decoded(c)) {
        None => 0,
        Some(c) => {
            let after = c.trim_start_matches("k+/").trim_end_matches('=');
            match matching.iter().position(|m| m.id == after) {
                Some(i) => i + 1,
                None => return (400, r#"{"error":"invalid cursor"}"#.into()),
            }
        }
    };
    let page: Vec<&&Mitigation> = matching.iter().skip(start).take(limit).collect();
    let has_more = start + page.len() < matching.len();
    let next = match (has_more, page.last()) {
        (true, Some(m)) => json::to_string(&format!("k+/{}=", m.id)),
        _ => "null".into(),
    };
    let rows: Vec<String> = page.iter().map(|m| mitigation_json(st, m)).collect();
    (
        200,
        format!(
            r#"{{"mitigations":[{}],"count":{},"next_cursor":{next},"has_more":{has_more}}}"#,
            rows.join(","),
            rows.len()
        ),
    )
}

/// `GET /v1/mitigations/{id}`.
fn get_one(st: &State, req: &Recorded, id: &str) -> (u16, String) {
    if !authorized(st, req) {
        return (401, String::new());
    }
    let mut ms = st.mitigations.lock().unwrap();
    expire(&mut ms);
    match ms.iter().find(|m| m.id == id) {
        Some(m) => (200, mitigation_json(st, m)),
        None => (404, String::new()),
    }
}

/// `POST /v1/mitigations/{id}/withdraw`: 400 when not active, 404 when unknown.
fn withdraw(st: &State, req: &Recorded, id: &str) -> (u16, String) {
    let o = match json_body(req) {
        Ok(o) => o,
        Err(refusal) => return refusal,
    };
    let text = |k: &str| match o.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let missing = |field: &str| {
        (
            422,
            format!(
                "Failed to deserialize the JSON body into the target type: missing field `{field}`"
            ),
        )
    };
    let Some(reason) = text("reason") else {
        return missing("reason");
    };
    // v0.10.1 requires operator_id and stores it; v0.19.1 ignores it and names the identity
    // the credentials give.
    let identity = if st.v019() {
        if st.token.is_some() {
            "bearer-token"
        } else {
            "anonymous"
        }
        .to_string()
    } else {
        match text("operator_id") {
            None => return missing("operator_id"),
            Some(op) => op,
        }
    };
    if !authorized(st, req) {
        return (401, String::new());
    }
    if !st.v019() && (identity.is_empty() || identity.len() > 64) {
        return (400, String::new());
    }
    let mut ms = st.mitigations.lock().unwrap();
    expire(&mut ms);
    match ms.iter_mut().find(|m| m.id == id) {
        None => (404, String::new()),
        Some(m) if m.status != "active" => (400, String::new()),
        Some(m) => {
            m.status = "withdrawn".into();
            m.reason = format!("{identity}: {reason}");
            (200, mitigation_json(st, m))
        }
    }
}
