//! The operator's files, read bounded: the env file, the custom vector rules, the CA file.
//! Each comes from an operator's hand and is read at most a few MiB, regular files only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// An env file larger than this is not an env file.
const MAX_ENV_FILE: u64 = 4 * 1024 * 1024;

/// A regular file's first `max` bytes, whether there was more, and its mode. Every file we
/// read (env file, token file, rules) comes from an operator and is read bounded.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool, u32)> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    let more = bytes.len() as u64 > max;
    bytes.truncate(max as usize);
    Ok((bytes, more, meta.permissions().mode()))
}

/// `Ok(None)` when the file does not exist.
pub fn read_env_file(path: &str) -> Result<Option<(String, u32)>, String> {
    let (bytes, more, mode) = match read_bounded(Path::new(path), MAX_ENV_FILE) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if more {
        return Err("larger than 4 MiB; not an env file".into());
    }
    if bytes.contains(&0) {
        return Err("holds NUL bytes; not a text file".into());
    }
    Ok(Some((String::from_utf8_lossy(&bytes).into_owned(), mode)))
}

/// The rules file, at most 1 MiB.
fn read_rules_file(path: &Path) -> Result<String, String> {
    const MAX: u64 = 1024 * 1024;
    match read_bounded(path, MAX).map_err(|e| e.to_string())? {
        (_, true, _) => Err(format!("larger than {MAX} bytes")),
        (bytes, false, _) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// The custom vector rules (PREFIXD_VECTOR_RULES), first match wins. A malformed line is
/// skipped and a file that cannot be read gives no rules (built-in detection): each said in
/// `bad`, for the caller to treat as the table's `IfBad` for PREFIXD_VECTOR_RULES says.
pub fn load_rules(
    path: Option<&Path>,
    warnings: &mut Vec<String>,
    bad: &mut Vec<String>,
) -> Vec<crate::fastnetmon::rules::Rule> {
    let Some(path) = path else {
        return Vec::new();
    };
    match read_rules_file(path) {
        Ok(text) => {
            let p = crate::fastnetmon::rules::parse_skipping(&path.display().to_string(), &text);
            warnings.extend(p.warnings);
            let left = p.rules.len();
            bad.extend(p.skipped.into_iter().map(|why| {
                format!("PREFIXD_VECTOR_RULES {why}; rule skipped, the other {left} rule(s) apply")
            }));
            p.rules
        }
        Err(e) => {
            bad.push(format!(
                "PREFIXD_VECTOR_RULES {}: {e}; no custom rules, built-in detection",
                path.display()
            ));
            Vec::new()
        }
    }
}

/// The certificates of PREFIXD_CA_FILE (PEM), at least one.
pub fn load_ca_file(
    path: &std::path::Path,
) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    use ureq::tls::PemItem;
    let what = format!("PREFIXD_CA_FILE {}", path.display());
    // A CA bundle is a few hundred KiB at most.
    let (pem, more, _) = read_bounded(path, 4 * 1024 * 1024).map_err(|e| format!("{what}: {e}"))?;
    if more {
        return Err(format!("{what}: larger than 4 MiB; not a PEM file of CAs"));
    }
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate in it"));
    }
    Ok(certs)
}
