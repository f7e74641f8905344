//! What prefixd's final answer means, read once here: an `Answer` the rest of the program
//! matches on, or the `Error` an operator acts on (a token, a proxy in front of prefixd, a
//! URL that does not lead to it).

use super::reply::Reply;
use super::wire::Endpoint;
use crate::error::Error;

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
    /// 422 to `POST /v1/events` about its ports: `guardrail violation: too many ports` (an
    /// operator's `max_ports` below our 8), or a `top_dst_ports` it cannot read.
    PortsRefused(Error),
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
            (422, Events)
                if String::from_utf8_lossy(&reply.body).contains("too many ports")
                    || String::from_utf8_lossy(&reply.body).contains("top_dst_ports") =>
            {
                Ok(Answer::PortsRefused(failure(what, &reply, api)))
            }
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
pub(super) fn https_instead(api: &str) -> Option<String> {
    api.strip_prefix("http://")
        .map(|rest| format!("https://{rest}"))
}

/// A final answer that is not a success, as the error an operator acts on.
pub(super) fn failure(what: &str, reply: &Reply, api: &str) -> Error {
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

/// Worth trying again: prefixd (or the way to it) may answer otherwise in a moment.
pub(super) fn transient(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}
