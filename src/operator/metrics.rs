//! Numbers for Prometheus, through node_exporter's textfile collector: what became of the
//! notices, what waits in the spool, when prefixd last took one, how long its requests took.
//! A run tallies in memory (`crate::tally`, one process-wide tally, like the log: every room
//! may add to it); at its end the running totals in a small state file are updated under a
//! lock and the `PREFIXD_METRICS` file is rewritten atomically (tmp in the same directory →
//! rename).

use crate::spool::queue::{self, Name, Spool};
use crate::tally::{self, Totals};
use crate::time::unix_now;
use std::path::{Path, PathBuf};
use std::time::Instant;

const STATE: &str = ".metrics.state";

/// What the spool holds now: notices, and the age of the oldest.
pub fn spool_gauges(spool: Option<&Spool>) -> (usize, f64) {
    let names: Vec<Name> = spool
        .and_then(|s| s.list().ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| Name::of(p))
        .collect();
    let oldest = names
        .iter()
        .map(|n| n.received_ms)
        .min()
        .map_or(0.0, |ms| (unix_now() - ms as f64 / 1000.0).max(0.0));
    (names.len(), oldest)
}

/// Where the running totals live: the spool directory, or beside the metrics file when the
/// spool is off.
pub fn state_path(spool_dir: Option<&Path>, metrics: &Path) -> PathBuf {
    match spool_dir {
        Some(d) => d.join(STATE),
        None => {
            let mut name = metrics.file_name().unwrap_or_default().to_os_string();
            name.push(".state");
            metrics.with_file_name(format!(".{}", name.to_string_lossy()))
        }
    }
}

/// The running totals as stored (empty when there are none yet). Read without a lock: the
/// file is only ever replaced whole.
pub fn stored(state: &Path) -> Totals {
    std::fs::read_to_string(state)
        .map(|t| Totals::parse(&t))
        .unwrap_or_default()
}

/// Adds this run's tally to the running totals and rewrites the metrics file. Errors are for
/// a warning: metrics never fail a notice.
pub fn publish(
    metrics: &Path,
    spool_dir: Option<&Path>,
    spool: Option<&Spool>,
    until: Instant,
) -> Result<(), String> {
    let state = state_path(spool_dir, metrics);
    let lock_path = state.with_extension("lock");
    let what = |e: std::io::Error, p: &Path| format!("{}: {e}", p.display());
    let _lock = queue::lock_file(&lock_path, Some(until))
        .map_err(|e| what(e, &lock_path))?
        .ok_or_else(|| format!("{}: busy until our deadline", lock_path.display()))?;
    let mut totals = stored(&state);
    totals.add(&tally::this_run());
    replace(&state, &totals.to_text()).map_err(|e| what(e, &state))?;
    let (spooled, oldest) = spool_gauges(spool);
    let held = spool_dir
        .and_then(|d| crate::spool::lease::all(d).ok())
        .map_or(0, |l| l.len());
    replace(metrics, &tally::render(&totals, spooled, oldest, held))
        .map_err(|e| what(e, metrics))?;
    // Counted once: a second publish in this run adds nothing again.
    tally::clear();
    Ok(())
}

/// Replaces `path` whole: a temporary file beside it (not named `*.prom`, so the collector
/// never reads it half-written), then a rename.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
        })
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}
