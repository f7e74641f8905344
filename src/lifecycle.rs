//! The process around a run: the watchdog that ends it by its deadline (FastNetMon waits for
//! us with no timeout of its own), the keeper that saves the notice if a bug panics (release
//! builds abort on panic), and the detached `--flush` a successful run leaves behind so that
//! the spool is delivered without keeping FastNetMon waiting.

use crate::config::{Config, Flags};
use crate::error::Error;
use crate::log::Log;
use crate::spool::outbox::{Pending, keep, open_spool};
use crate::spool::queue::Spool;
use std::sync::Arc;
use std::time::Duration;

/// After this run's own notice went through, the rest of the spool is delivered by a detached
/// `--flush` of our own, so that FastNetMon has its answer at once. It holds none of our
/// standard streams (FastNetMon reads stdout until EOF on unban).
pub fn flush_in_background(spool: &Spool, flags: &Flags, log: &Log) {
    let waiting = spool.list().is_ok_and(|l| !l.is_empty());
    // Only if no flush is under way; the child tries the lock again itself.
    if !waiting || !spool.lock_flush(None).is_ok_and(|l| l.is_some()) {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return log.debug(&format!("no background flush: {e}")),
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--flush");
    if let Some(f) = &flags.env_file {
        cmd.arg("--env-file").arg(f);
    }
    if flags.verbose {
        cmd.arg("-v");
    }
    let started = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match started {
        Ok(child) => log.debug(&format!("background flush started (pid {})", child.id())),
        Err(e) => log.debug(&format!("no background flush: {e}")),
    }
}

/// FastNetMon waits for us with no timeout of its own: whatever happens, this process ends by
/// the deadline (plus a moment for a request that is timing out to say so itself), keeping
/// the notice in the spool if it was still on its way.
/// Returns the slot the run puts its notice in while it is on its way.
pub fn start_watchdog(cfg: &Config, log: &Log, subject: String) -> Arc<Pending> {
    let pending = Arc::new(Pending::default());
    let slot = pending.clone();
    let panic_subject = subject.clone();
    let (deadline, log_spec, token, spool) = (
        cfg.deadline,
        cfg.log.clone(),
        cfg.token.clone(),
        cfg.spool.clone(),
    );
    // A small stack: it only sleeps, logs and keeps; a carpet runs a thousand of us at once.
    let watchdog = std::thread::Builder::new().stack_size(64 * 1024);
    let started = watchdog.spawn(move || {
        std::thread::sleep(deadline + Duration::from_millis(500));
        let log = Log::open(&log_spec, false, token).about(subject);
        let e = Error::NotDelivered(format!(
            "PREFIXD_DEADLINE of {:.1}s reached; stopped",
            deadline.as_secs_f64()
        ));
        log.error(&e.to_string());
        let e = slot.with(|slot| match slot.take() {
            Some(entry) => keep(&log, &open_spool(spool.as_deref()), &entry, e),
            None => e,
        });
        std::process::exit(i32::from(e.exit_code()));
    });
    if let Err(e) = started {
        // The run still ends: every request is bounded by the deadline too.
        log.warn(&format!(
            "no watchdog thread ({e}); the run is bounded by its requests' timeouts alone"
        ));
    }
    keep_on_panic(cfg, panic_subject, pending.clone());
    pending
}

/// A panic is a bug; `panic = "abort"` would end the run with no word and lose the notice. So
/// the panic hook says what happened in the log, keeps the notice on its way (if its slot is
/// free: a keep already under way holds it), and exits 70 (EX_SOFTWARE).
fn keep_on_panic(cfg: &Config, subject: String, pending: Arc<Pending>) {
    let (log_spec, token, spool) = (cfg.log.clone(), cfg.token.clone(), cfg.spool.clone());
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let log = Log::open(&log_spec, false, token.clone()).about(subject.clone());
        let e = Error::Internal(format!("a bug stopped this run: {what}"));
        log.error(&e.to_string());
        let code = match pending.try_take() {
            Some(entry) => {
                let _ = keep(&log, &open_spool(spool.as_deref()), &entry, e.clone());
                e.exit_code()
            }
            None => e.exit_code(),
        };
        std::process::exit(i32::from(code));
    }));
}
