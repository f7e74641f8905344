//! One error type for the whole run. Each variant is one of the documented exit codes
//! (sysexits, see README "Exit codes"); its text is the one line an operator reads in the log.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// 64: bad arguments; nothing was sent.
    Usage(String),
    /// 65: prefixd refused the data for good (400/422 and other final 4xx in its own shape).
    Refused(String),
    /// 70: a bug or an impossible state on our side.
    Internal(String),
    /// 73: not delivered, and it could not be kept anywhere (the log line holds the notice).
    Lost(String),
    /// 75: not delivered yet (unreachable, 5xx, timeout, deadline).
    NotDelivered(String),
    /// 77: prefixd refused the token (401/403).
    Unauthorized(String),
    /// 78: configuration error.
    Config(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 64,
            Error::Refused(_) => 65,
            Error::Internal(_) => 70,
            Error::Lost(_) => 73,
            Error::NotDelivered(_) => 75,
            Error::Unauthorized(_) => 77,
            Error::Config(_) => 78,
        }
    }
}

impl Error {
    /// What happened, without the word for its kind (`not delivered: `, …): for a line that
    /// says the kind its own way.
    pub fn message(&self) -> &str {
        match self {
            Error::Usage(m)
            | Error::Refused(m)
            | Error::Internal(m)
            | Error::Lost(m)
            | Error::NotDelivered(m)
            | Error::Unauthorized(m)
            | Error::Config(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, msg) = match self {
            Error::Usage(m) => ("usage", m),
            Error::Refused(m) => ("refused by prefixd", m),
            Error::Internal(m) => ("internal error", m),
            Error::Lost(m) => ("LOST", m),
            Error::NotDelivered(m) => ("not delivered", m),
            Error::Unauthorized(m) => ("token refused", m),
            Error::Config(m) => ("configuration error", m),
        };
        write!(f, "{what}: {msg}")
    }
}
