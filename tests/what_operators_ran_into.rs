//! Issue "What operators ran into": each kind of failure an operator met in production, with
//! the example they reported and other inputs of the same kind. A ban must not be lost to a
//! bad tuning value, to the size of its details, or to an answer that is not prefixd's.

mod common;

use common::Sandbox;
use common::server::Server;

const UDP: &[u8] = b"Attack type: udp_flood\nAttack protocol: udp\n";

// --- A bad tuning value stops every ban -----------------------------------------------------

#[test]
fn the_bash_scripts_tuning_values_no_longer_stop_a_ban() {
    // Both were taken by the bash script; both made every ban exit 78 and wait in the spool
    // during the attack.
    for line in ["UNBAN_QUERY_DELAY_SECONDS=0,5", "UNBAN_QUERY_RETRIES=0"] {
        let srv = Server::start();
        let sb = Sandbox::new(&srv.url);
        sb.write("env", &format!("{line}\n"));
        let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
        assert_eq!(r.code, 0, "{line}: {}", sb.log());
        assert_eq!(srv.banned_ips(), ["192.0.2.10"], "{line}");
        assert!(sb.spooled().is_empty(), "{line}");
        // Read as meant: no warning either.
        assert!(!sb.log().contains("WARN"), "{line}: {}", sb.log());
    }
}

#[test]
fn a_decimal_comma_delay_and_no_retry_shape_the_unban_as_meant() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    sb.write(
        "env",
        "UNBAN_QUERY_RETRIES=0\nUNBAN_QUERY_DELAY_SECONDS=0,5\n",
    );
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    // 0 retries: one lookup, no pause, no retry.
    assert_eq!(srv.lines().len(), 1, "{:?}", srv.lines());
    assert!(
        sb.log().contains("nothing to withdraw after 1 lookup(s)"),
        "{}",
        sb.log()
    );
    assert!(r.took.as_secs_f64() < 0.5, "{:?}", r.took);

    let sb = Sandbox::new(&srv.url);
    srv.clear();
    sb.write(
        "env",
        "UNBAN_QUERY_RETRIES=3\nUNBAN_QUERY_DELAY_SECONDS=0,25\n",
    );
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!((r.code, srv.lines().len()), (0, 3), "{}", sb.log());
    // Two pauses of 0.25 s (not 1 s, the default, nor 25 s).
    assert!((0.5..1.5).contains(&r.took.as_secs_f64()), "{:?}", r.took);
}

#[test]
fn a_bad_tuning_value_falls_back_to_its_default_with_a_warning_and_the_ban_goes_out() {
    let srv = Server::start();
    let sb = Sandbox::new(&srv.url);
    let env = sb.write(
        "env",
        "# tuned by hand\nPREFIXD_TIMEOUT=5s\nPREFIXD_RETRIES=0\nPREFIXD_SPOOL_MAX_AGE=1h\n",
    );
    let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
    assert_eq!(r.code, 0, "{}", sb.log());
    assert_eq!(srv.banned_ips(), ["192.0.2.10"]);
    assert!(sb.spooled().is_empty());
    let log = sb.log();
    for want in [
        format!(
            " WARN ban 192.0.2.10: PREFIXD_TIMEOUT=5s (from {env}:2): expected a number of seconds; using the default 5"
        ),
        format!(
            " WARN ban 192.0.2.10: PREFIXD_RETRIES=0 (from {env}:3): expected a whole number from 1 to 20; using the default 3"
        ),
        format!(
            " WARN ban 192.0.2.10: PREFIXD_SPOOL_MAX_AGE=1h (from {env}:4): expected a number of seconds; using the default 3600"
        ),
    ] {
        assert!(log.contains(&want), "{want}\n{log}");
    }
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn a_bad_rule_line_is_skipped_and_the_other_rules_still_apply() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    let rules = sb.write(
        "rules",
        "syn_flood colour=blue\nicmp_flood contains=\"magic\"\nudp_flood sport=99999\n",
    );
    sb.set("PREFIXD_VECTOR_RULES", &rules);
    let r = sb.run(
        &["192.0.2.10", "incoming", "90000", "ban"],
        Some(b"Attack type: unknown\nmagic words\n"),
    );
    assert_eq!(r.code, 0, "{}", sb.log());
    let ban = &srv.requests()[0];
    assert_eq!(common::s(ban.json().get("vector")), "icmp_flood");
    let log = sb.log();
    assert!(log.contains(&format!("rule={rules}:2")), "{log}");
    for line in [1, 3] {
        let want = format!("WARN ban 192.0.2.10: PREFIXD_VECTOR_RULES {rules}:{line}: ");
        assert!(log.contains(&want), "{want}\n{log}");
    }
    assert!(
        log.contains("; rule skipped, the other 1 rule(s) apply"),
        "{log}"
    );
}

#[test]
fn what_has_no_safe_default_still_stops_the_call_and_keeps_the_ban() {
    let srv = Server::start();
    for (var, value, says) in [
        (
            "PREFIXD_API",
            "prefixd:8080",
            "configuration error: PREFIXD_API=prefixd:8080 (from environment): must start with http:// or https://",
        ),
        (
            "PREFIXD_TOKEN_FILE",
            "/nonexistent/token",
            "configuration error: PREFIXD_TOKEN_FILE /nonexistent/token: No such file",
        ),
        (
            "PREFIXD_CA_FILE",
            "/nonexistent/ca.pem",
            "configuration error: PREFIXD_CA_FILE /nonexistent/ca.pem: No such file",
        ),
        (
            "PREFIXD_ENV_FILE",
            "/nonexistent/prefixd",
            "configuration error: env file /nonexistent/prefixd: no such file",
        ),
    ] {
        srv.clear();
        let mut sb = Sandbox::new(&srv.url);
        sb.set(var, value);
        let r = sb.run(&["192.0.2.10", "incoming", "90000", "ban"], Some(UDP));
        assert_eq!(r.code, 78, "{var}: {}", sb.log());
        assert!(srv.requests().is_empty(), "{var}");
        assert_eq!(sb.spooled().len(), 1, "{var}");
        assert!(sb.log().contains(says), "{var}: {}", sb.log());
    }
}

#[test]
fn check_still_fails_on_every_bad_value_and_dry_run_shows_the_warnings() {
    let srv = Server::start();
    let mut sb = Sandbox::new(&srv.url);
    sb.set("UNBAN_QUERY_RETRIES", "-1")
        .set("PREFIXD_CONFIDENCE", "90%")
        .set("PREFIXD_DEADLINE", "3,600");
    let r = sb.run(&["--check"], None);
    assert_eq!(r.code, 78, "{}", r.stdout);
    for want in [
        "✘ configuration: UNBAN_QUERY_RETRIES=-1 (from environment): expected a whole number from 0 to 100; using the default 5\n",
        "✘ configuration: PREFIXD_CONFIDENCE=90% (from environment): expected a number from 0 to 1; ignored, as if unset\n",
        "✘ configuration: PREFIXD_DEADLINE=3,600 (from environment): \"3,600\" could be 3.600 (decimal comma) or 3600 (thousands): write 3.600 or 3600; using the default 20\n",
    ] {
        assert!(r.stdout.contains(want), "{want}\n{}", r.stdout);
    }

    // --dry-run: the warnings on stderr (the log) and above the request it shaped.
    let r = sb.run(
        &["--dry-run", "192.0.2.10", "incoming", "90000", "ban"],
        Some(UDP),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with(
            "# WARN UNBAN_QUERY_RETRIES=-1 (from environment): expected a whole number from 0 to 100; using the default 5\n"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\nPOST "), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("WARN ban 192.0.2.10: PREFIXD_CONFIDENCE=90% (from environment)"),
        "{}",
        r.stderr
    );
    // The table's confidence, since the bad value is ignored.
    assert!(r.stdout.contains("\"confidence\": 0.9,"), "{}", r.stdout);

    // A value with no safe default: the dry run says the real run would send nothing.
    sb.set("PREFIXD_API", "prefixd:8080");
    let r = sb.run(
        &["--dry-run", "192.0.2.10", "incoming", "90000", "ban"],
        Some(UDP),
    );
    assert_eq!(r.code, 78, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr
            .contains("configuration error: PREFIXD_API=prefixd:8080 (from environment)")
            && r.stderr.contains("a real run sends nothing"),
        "{}",
        r.stderr
    );
    assert!(
        srv.requests()
            .iter()
            .all(|q| q.target == "/v1/health" || q.target.starts_with("/v1/mitigations?limit=1"))
    );
}

#[test]
fn an_operator_id_prefixd_would_refuse_is_replaced_by_the_default() {
    let srv = Server::start();
    let id = srv.add_mitigation("192.0.2.10", "udp_flood", "active");
    let mut sb = Sandbox::new(&srv.url);
    sb.set("PREFIXD_OPERATOR", &"noc-".repeat(20));
    let r = sb.run(&["192.0.2.10", "incoming", "0", "unban"], None);
    assert_eq!(r.code, 0, "{}", sb.log());
    let withdraw = srv
        .requests()
        .into_iter()
        .find(|q| q.target == format!("/v1/mitigations/{id}/withdraw"))
        .expect("a withdrawal");
    assert_eq!(common::s(withdraw.json().get("operator_id")), "fastnetmon");
    assert!(
        sb.log()
            .contains("longer than 64 bytes (prefixd refuses it); using the default fastnetmon"),
        "{}",
        sb.log()
    );
}
