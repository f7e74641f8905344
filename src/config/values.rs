//! The value parsers of the configuration table: each variable's text → its value, or why
//! not (the caller names the variable and its source).

use std::time::Duration;

/// A base URL, parsed as ureq will (its `http::Uri`): http or https (any case), a host, a
/// port that is one, no credentials, query or fragment. Returned without a trailing slash,
/// the scheme in lower case.
pub fn parse_url(s: &str) -> Result<String, String> {
    if s.contains(['?', '#']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be a plain base URL (no query, fragment or spaces)".into());
    }
    let uri: ureq::http::Uri = s.parse().map_err(|e| format!("is not a URL ({e})"))?;
    let scheme = uri
        .scheme_str()
        .map(str::to_ascii_lowercase)
        .filter(|s| s == "http" || s == "https")
        .ok_or("must start with http:// or https://")?;
    let authority = uri.authority().ok_or("has no host")?;
    if authority.as_str().contains('@') {
        return Err("must not carry credentials (use PREFIXD_TOKEN)".into());
    }
    if authority.host().trim_matches(['[', ']']).is_empty() {
        return Err("has no host".into());
    }
    // A port that does not parse as one is dropped by the parser: say so instead.
    let after_host = &authority.as_str()[authority.host().len()..];
    if let Some(port) = after_host.strip_prefix(':')
        && !matches!(port.parse::<u16>(), Ok(1..))
    {
        return Err(format!("port {port:?} is not a port number (1-65535)"));
    }
    Ok(format!(
        "{scheme}://{authority}{}",
        uri.path().trim_end_matches('/')
    ))
}

/// A bearer token: printable ASCII without spaces, at most 2 KiB (it must fit the request
/// head with a v0.19 cursor).
pub fn parse_token(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err("holds characters that cannot go in an HTTP header".into());
    }
    if t.len() > 2048 {
        return Err("longer than 2048 characters: not a bearer token we can send".into());
    }
    Ok(t.to_string())
}

pub fn parse_operator(s: &str) -> Result<String, String> {
    if s.len() > 64 {
        return Err("longer than 64 bytes (prefixd refuses it)".into());
    }
    Ok(s.to_string())
}

pub fn parse_count(s: &str, min: u32, max: u32) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// A decimal number as written: with a dot (`0.5`), or with a decimal comma (`0,5`, as
/// locales write it and the bash script's `sleep` took it) where the comma cannot mean
/// anything else: exactly one comma, no dot, and not a thousands group (`3,600` could be
/// 3.6 or 3600: refused).
fn decimal(s: &str) -> Result<String, String> {
    let t = s.trim();
    let (Some((int, frac)), false) = (t.split_once(','), t.contains('.')) else {
        return Ok(t.to_string());
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let whole = int.strip_prefix(['+', '-']).unwrap_or(int);
    if frac.contains(',') || !digits(frac) || !digits(whole) {
        return Ok(t.to_string()); // not a number either way; the caller says so
    }
    if frac.len() == 3 && whole.len() <= 3 && !whole.starts_with('0') {
        return Err(format!(
            "{t:?} could be {int}.{frac} (decimal comma) or {int}{frac} (thousands): write {int}.{frac} or {int}{frac}"
        ));
    }
    Ok(format!("{int}.{frac}"))
}

/// Seconds as a decimal number ("1", "0.5", "0,5"); zero only where `zero_ok`.
pub fn parse_seconds(s: &str, zero_ok: bool) -> Result<Duration, String> {
    let n: f64 = decimal(s)?
        .parse()
        .map_err(|_| "expected a number of seconds".to_string())?;
    if !n.is_finite() || !(0.0..=86_400.0).contains(&n) || (n == 0.0 && !zero_ok) {
        let lo = if zero_ok { "0" } else { "more than 0" };
        return Err(format!("expected seconds, {lo} up to 86400"));
    }
    Ok(Duration::from_secs_f64(n))
}

/// A fraction from 0 to 1 ("0.8", "0,8").
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    match decimal(s)?.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err("expected a number from 0 to 1".into()),
    }
}

pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected 1 or 0".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_seconds() {
        assert_eq!(
            parse_url("https://p.example:8443/prefixd/").unwrap(),
            "https://p.example:8443/prefixd"
        );
        assert_eq!(parse_url("http://[::1]:8080").unwrap(), "http://[::1]:8080");
        assert_eq!(
            parse_url("HTTPS://Prefixd.example:8443").unwrap(),
            "https://Prefixd.example:8443"
        );
        assert_eq!(parse_url("http://10.0.0.5/").unwrap(), "http://10.0.0.5");
        for bad in [
            "http://prefixd:abc",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:0",
            "http://[::1",
            "http://[::1]:",
            "gopher://x",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        for bad in [
            "localhost:8080",
            "ftp://x",
            "http://",
            "http:///x",
            "http://u:p@h",
            "http://h/?q=1",
            "http://h x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_seconds("0.5", false).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_seconds("0", true).unwrap(), Duration::ZERO);
        for bad in ["0", "-1", "soon", "NaN", "inf", "1e9", ""] {
            assert!(parse_seconds(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_decimal_comma_is_read_where_it_cannot_mean_anything_else() {
        let secs = |s: &str| parse_seconds(s, true).map(|d| d.as_secs_f64());
        assert_eq!(secs("0,5"), Ok(0.5));
        assert_eq!(secs(" 1,25 "), Ok(1.25));
        assert_eq!(secs("0,500"), Ok(0.5), "a leading 0 is no thousands group");
        assert_eq!(secs("12,5"), Ok(12.5));
        assert_eq!(parse_fraction("0,8"), Ok(0.8));
        // A thousands group, two commas, a comma beside a dot: refused, never guessed.
        for bad in [
            "3,600",
            "1,000",
            "1,000,000",
            "1.000,5",
            "0,5,",
            ",5",
            "5,",
            "0;5",
            "0,5s",
        ] {
            assert!(secs(bad).is_err(), "{bad}");
        }
        assert!(secs("3,600").unwrap_err().contains("could be 3.600"));
    }
}
