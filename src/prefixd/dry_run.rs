//! `--dry-run`'s text: the requests a real run would send for a notice, and why its vector,
//! confidence and ports are what they are. Nothing is sent.

use super::event::{MAX_REQUEST_BODY, ban_event};
use super::unban::{lookup_path, unban_reason, withdraw_body};
use crate::config::Config;
use crate::error::Error;
use crate::fastnetmon::notice::Notice;
use crate::fastnetmon::vector::choose_vector;

/// `--dry-run`: what a real run would send (request lines, headers, indented JSON, and which
/// rule chose the vector); nothing is sent.
pub fn requests(cfg: &Config, n: &Notice) -> Result<String, Error> {
    use std::fmt::Write;
    let mut out = String::new();
    let auth = if cfg.token.is_some() {
        "Authorization: Bearer <redacted>\n"
    } else {
        ""
    };
    if n.action == crate::action::Action::Ban {
        let choice = choose_vector(&cfg.rules, n, cfg.confidence);
        let _ = match &choice.rule {
            Some(rule) => writeln!(
                out,
                "# vector {} from rule {rule} (built-in detection says {})",
                choice.vector, choice.builtin
            ),
            None => writeln!(
                out,
                "# vector {} from built-in detection (no custom rule matched)",
                choice.vector
            ),
        };
        let _ = writeln!(
            out,
            "# confidence {} ({})",
            choice.confidence, choice.confidence_basis
        );
        let _ = writeln!(out, "# top_dst_ports {}", choice.ports.why);
        let (event, cut) = ban_event(n, false, &choice, MAX_REQUEST_BODY)?;
        if let Some(cut) = cut {
            let _ = writeln!(out, "# {cut}");
        }
        let body = miniserde::json::to_string(&event);
        let _ = writeln!(
            out,
            "POST {}/v1/events\n{auth}Content-Type: application/json\n\n{}",
            cfg.api,
            crate::pretty::json(&body)
        );
    } else {
        let _ = writeln!(
            out,
            "GET {}{}\n{auth}",
            cfg.api,
            lookup_path(&n.victim_ip.to_string())
        );
        let _ = writeln!(
            out,
            "then, for each mitigation_id listed:\nPOST {}/v1/mitigations/{{mitigation_id}}/withdraw\n{auth}Content-Type: application/json\n\n{}",
            cfg.api,
            crate::pretty::json(&withdraw_body(
                cfg,
                &unban_reason(n),
                &n.victim_ip.to_string()
            ))
        );
    }
    Ok(out)
}
