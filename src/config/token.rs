//! The token policy: from PREFIXD_TOKEN or PREFIXD_TOKEN_FILE (never both), warned about when
//! a file holding it is readable by everyone (a group is FastNetMon's way in: `--check` judges it), and never echoed — not even a token put where its
//! file's path belongs.

use crate::config::files::read_bounded;
use crate::config::values::parse_token;
use std::path::{Path, PathBuf};

/// Where the token's variables were set: each one's source for messages (`file:line`,
/// `environment`), and whether PREFIXD_TOKEN came from the env file.
pub struct Given {
    pub token_from: String,
    pub token_file_from: String,
    pub token_in_env_file: bool,
}

/// The token, from PREFIXD_TOKEN or PREFIXD_TOKEN_FILE (not both), with a warning when the
/// file holding it is readable by everyone.
pub fn resolve_token(
    inline: Option<String>,
    file: Option<PathBuf>,
    given: Given,
    (env_file, env_file_mode): (&str, Option<u32>),
    warnings: &mut Vec<String>,
    errors: &mut Vec<String>,
) -> Option<String> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            errors.push(format!(
                "PREFIXD_TOKEN ({}) and PREFIXD_TOKEN_FILE ({}) are both set; keep one",
                given.token_from, given.token_file_from
            ));
            None
        }
        (Some(t), None) => {
            if given.token_in_env_file && env_file_mode.is_some_and(|m| m & 0o004 != 0) {
                warnings.push(format!(
                    "{env_file} holds PREFIXD_TOKEN and is readable by everyone (chmod o-rwx it; --check says who else may read it)"
                ));
            }
            Some(t)
        }
        (None, Some(path)) if looks_like_a_token("PREFIXD_TOKEN_FILE", &path.to_string_lossy()) => {
            errors.push(
                "PREFIXD_TOKEN_FILE holds what looks like a token, not a path (not shown); put the token in a file and name the file, or set PREFIXD_TOKEN".into(),
            );
            None
        }
        (None, Some(path)) => match read_token_file(&path) {
            Ok((t, mode)) => {
                if mode & 0o004 != 0 {
                    warnings.push(format!(
                        "token file {} is readable by everyone (chmod o-rwx it; --check says who else may read it)",
                        path.display()
                    ));
                }
                Some(t)
            }
            Err(e) => {
                errors.push(format!("PREFIXD_TOKEN_FILE {}: {e}", path.display()));
                None
            }
        },
        (None, None) => None,
    }
}

/// PREFIXD_TOKEN_FILE set to the token itself: no slash, and no such file here.
pub fn looks_like_a_token(name: &str, value: &str) -> bool {
    name == "PREFIXD_TOKEN_FILE" && !value.contains('/') && !Path::new(value).exists()
}

/// The token is the first line; anything past 64 KiB is not read.
fn read_token_file(path: &Path) -> Result<(String, u32), String> {
    let (bytes, _, mode) = read_bounded(path, 64 * 1024).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes);
    let token = parse_token(text.lines().next().unwrap_or(""))?;
    if token.is_empty() {
        return Err("first line is empty".into());
    }
    Ok((token, mode))
}
