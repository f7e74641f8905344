//! What came back, before it means anything: a reply's status, its first bytes and headers,
//! and whether it is in one of prefixd's own shapes or a page from something in front of
//! prefixd (a proxy's HTML, its `Retry-After`), said in one short line for messages.

use super::wire::Endpoint;
use miniserde::Deserialize;
use std::time::Duration;

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
    pub(super) fn page(&self) -> String {
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
    pub(super) fn says_plain_http_to_tls(&self) -> bool {
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
}
