//! End to end: `backend=nextcloud` against the stand-in's stock OCS APIs,
//! through the real binary and every protocol: passwords with Nextcloud's
//! login policy, existence from the provisioning API, the shared roster
//! from the group APIs, and each failure with its cause and hint.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);
const API: [&str; 2] = ["--api-user", "xcauth-api"];

/// The stand-in with its delays scaled down (throttling stays real).
fn standin() -> StandIn {
    StandIn::start_with(&["--throttle-scale", "0.001"])
}

fn base(nc: &StandIn) -> String {
    format!("http://{}", nc.addr)
}

fn stats(nc: &StandIn) -> Value {
    serde_json::from_str(&http(&nc.addr, "GET", "/_standin/stats", "")).expect("stats")
}

/// OCS requests to `endpoint` so far (`cloud/user`, `cloud/users/{uid}`…).
fn ocs(nc: &StandIn, endpoint: &str) -> u64 {
    stats(nc)["ocs"]["by_endpoint"][endpoint]
        .as_u64()
        .unwrap_or(0)
}

fn api_password_file(dir: &tempfile::TempDir, password: &str) -> String {
    let path = dir.path().join("api-password");
    std::fs::write(&path, format!("{password}\n")).expect("write");
    path.to_string_lossy().into_owned()
}

/// xcauth -t PROTO with the nextcloud kind and the stand-in's API account.
fn start(nc: &StandIn, proto: &str, dir: &tempfile::TempDir, extra: &[&str]) -> Xcauth {
    let file = api_password_file(dir, "xcauth-api-app");
    let mut args = vec!["--backend", "nextcloud", API[0], API[1]];
    args.extend(["--api-password-file", file.as_str()]);
    args.extend(extra);
    Xcauth::start(proto, &base(nc), &args)
}

fn generic(x: &mut Xcauth, line: &str) -> String {
    x.send(format!("{line}\n").as_bytes());
    x.read_line(T).trim_end().to_owned()
}

#[test]
fn passwords_follow_nextcloud_login_policy_over_every_protocol() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    let mut x = start(&nc, "generic", &dir, &[]);
    for (line, want) in [
        ("auth:alice:example.org:alice-pw", "1"),
        ("auth:alice:example.org:wrong", "0"),
        ("auth:nobody:example.org:x", "0"),
        // Second factor: the main password is refused, app passwords work
        // (one per device).
        ("auth:tom:example.org:tom-main-pw", "0"),
        ("auth:tom:example.org:tom-phone-app", "1"),
        ("auth:tom:example.org:tom-laptop-app", "1"),
        // A disabled account cannot log in.
        ("auth:dora:example.org:dora-pw", "0"),
        // `@` in the user part is not an XMPP login (and an e-mail address
        // Nextcloud resolves to another account is refused by the back end,
        // see backend::nextcloud's tests).
        ("auth:erin@example.org:example.org:erin-pw", "0"),
        ("auth:colette:example.org:pa:ss:w0rd", "1"),
    ] {
        assert_eq!(generic(&mut x, line), want, "{line}");
    }
    let (_, ok) = x.finish();
    assert!(ok);
    let logs = x.logs();
    assert!(
        logs.contains("need an app password"),
        "the 401 hint: {logs}"
    );
    assert!(!logs.contains("tom-main-pw"));
    let s = stats(&nc);
    assert_eq!(s["ocs"]["cookies_returned"], 0, "no cookie ever sent back");
    assert_eq!(s["requests"], 0, "no JSXC request");

    // ejabberd and saslauthd, the same decision.
    let mut x = start(&nc, "ejabberd", &dir, &[]);
    x.send(&ejabberd_frame("auth:zoë:example.org:zoë-pw"));
    assert_eq!(x.read_exact(4, T), YES);
    x.send(&ejabberd_frame("auth:tom:example.org:tom-main-pw"));
    assert_eq!(x.read_exact(4, T), NO);
    x.finish();
    let mut x = start(&nc, "saslauthd", &dir, &[]);
    x.send(&sasl_request(&[b"bob", b"bob-pw", b"smtp", b"example.org"]));
    assert_eq!(sasl_answer(&mut x), "OK success");
    x.send(&sasl_request(&[b"bob@example.org", b"nope", b"smtp", b""]));
    assert!(sasl_answer(&mut x).starts_with("NO"));
    x.finish();
}

#[test]
fn existence_comes_from_the_provisioning_api() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    let mut x = start(&nc, "generic", &dir, &[]);
    for (line, want) in [
        ("isuser:alice:example.org", "1"),
        ("isuser:nobody:example.org", "0"),
        // Disabled: does not exist for XMPP or mail.
        ("isuser:dora:example.org", "0"),
        ("isuser:zoë:example.org", "1"),
    ] {
        assert_eq!(generic(&mut x, line), want, "{line}");
    }
    x.finish();
    assert_eq!(ocs(&nc, "cloud/users/{uid}"), 4);

    let mut x = start(&nc, "postfix", &dir, &[]);
    x.send(b"get alice@example.org\n");
    assert!(x.read_line(T).starts_with("200 "));
    x.send(b"get dora@example.org\n");
    assert!(x.read_line(T).starts_with("500 "));
    x.send(b"get zo%C3%AB@example.org\n");
    assert!(x.read_line(T).starts_with("200 "));
    nc.fault("http500");
    x.send(b"get alice@example.org\n");
    assert!(x.read_line(T).starts_with("400 "), "an outage defers mail");
    nc.fault("none");
    x.finish();
}

#[test]
fn login_form_user_at_domain() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    let mut x = start(&nc, "generic", &dir, &["--login-form", "user@domain"]);
    assert_eq!(generic(&mut x, "auth:carol:example.org:carol-pw"), "1");
    assert_eq!(generic(&mut x, "isuser:carol:example.org"), "1");
    assert_eq!(generic(&mut x, "auth:alice:example.org:alice-pw"), "0");
    x.finish();
    assert_eq!(stats(&nc)["ocs"]["last"]["login"], "alice@example.org");
}

#[test]
fn without_an_api_account_isuser_answers_from_the_cache() {
    let nc = standin();
    let mut x = Xcauth::start(
        "generic",
        &base(&nc),
        &["--backend", "nextcloud", "--cache-storage", "memory"],
    );
    assert_eq!(generic(&mut x, "isuser:alice:example.org"), "0");
    assert_eq!(generic(&mut x, "auth:alice:example.org:alice-pw"), "1");
    // The cache entry is written after the answer, off the answer path.
    let known = poll(T, || {
        (generic(&mut x, "isuser:alice:example.org") == "1").then_some(())
    });
    assert!(known.is_some(), "a user the cache saw log in exists");
    x.finish();
    assert_eq!(ocs(&nc, "cloud/users/{uid}"), 0);
    let logs = x.logs();
    assert!(logs.contains("without api-user"), "{logs}");
    assert!(logs.contains("bounces"), "{logs}");
}

#[test]
fn a_wrong_api_password_is_not_retried_at_full_rate() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    let file = api_password_file(&dir, "wrong-app-password");
    let mut x = Xcauth::start(
        "generic",
        &base(&nc),
        &[
            "--backend",
            "nextcloud",
            API[0],
            API[1],
            "--api-password-file",
            &file,
        ],
    );
    for _ in 0..20 {
        assert_eq!(generic(&mut x, "isuser:alice:example.org"), "0");
    }
    x.finish();
    let s = stats(&nc);
    assert_eq!(s["ocs"]["by_endpoint"]["cloud/users/{uid}"], 1, "{s}");
    assert_eq!(
        s["ocs"]["login_failures"], 1,
        "one brute-force failure, not 20"
    );
    let logs = x.logs();
    assert!(logs.contains("API account refused (HTTP 401)"), "{logs}");
    assert!(logs.contains("app password"), "{logs}");
    assert!(
        !logs.contains("wrong-app-password"),
        "the password stays out"
    );
}

#[test]
fn throttling_counts_as_unavailable_and_names_the_allowlist() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    let mut x = start(&nc, "generic", &dir, &["--cache-storage", "memory"]);
    assert_eq!(generic(&mut x, "auth:alice:example.org:alice-pw"), "1");
    // Eleven failures from our address make Nextcloud refuse everything.
    for i in 0..11 {
        assert_eq!(
            generic(&mut x, &format!("auth:guess{i}:example.org:x")),
            "0"
        );
    }
    assert_eq!(generic(&mut x, "auth:bob:example.org:bob-pw"), "0");
    // A login the cache knows still works: a throttled Nextcloud is
    // "unavailable" for the cache rules.
    let answer = generic(&mut x, "auth:alice:example.org:alice-pw");
    x.finish();
    assert_eq!(answer, "1");
    assert!(stats(&nc)["ocs"]["throttled"].as_u64().unwrap() >= 1);
    let logs = x.logs();
    assert!(logs.contains("HTTP 429"), "{logs}");
    assert!(logs.contains("allowlist"), "{logs}");
}

#[test]
fn failures_have_a_cause_and_a_hint() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    for (fault, hint) in [
        ("redirect", "final URL"),
        ("http404", "base URL"),
        ("http500", "HTTP 500"),
        ("hang", "timeout"),
    ] {
        nc.fault(fault);
        let mut x = start(&nc, "generic", &dir, &[]);
        assert_eq!(
            generic(&mut x, "auth:alice:example.org:alice-pw"),
            "0",
            "{fault}"
        );
        x.finish();
        let logs = x.logs();
        assert!(logs.contains(hint), "{fault}: {logs}");
    }
    nc.fault("none");
    // A URL that is not the Nextcloud root.
    let mut x = start(&nc, "generic", &dir, &[]);
    x.finish();
    let wrong = format!("{}/nextcloud", base(&nc));
    let file = api_password_file(&dir, "xcauth-api-app");
    let mut x = Xcauth::start(
        "generic",
        &wrong,
        &[
            "--backend",
            "nextcloud",
            "--api-password-file",
            &file,
            API[0],
            API[1],
        ],
    );
    assert_eq!(generic(&mut x, "auth:alice:example.org:alice-pw"), "0");
    x.finish();
    assert!(x.logs().contains("base URL"), "{}", x.logs());
}

#[test]
fn the_shared_roster_is_built_from_the_group_apis() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    let mut x = start(&nc, "generic", &dir, &[]);
    let roster: Value =
        serde_json::from_str(&generic(&mut x, "roster:tom:example.org")).expect("roster JSON");
    // Display names of members and of the shared groups, as JSXC had them.
    assert_eq!(roster["tom"]["name"], "Tom Twofactor");
    assert_eq!(roster["erin"]["groups"], serde_json::json!(["OCS Team ☕"]));
    assert_eq!(
        roster["pia"]["groups"],
        serde_json::json!(["Ünïcode \"Quoted\" Team"])
    );
    assert_eq!(
        roster["tom"]["groups"],
        serde_json::json!(["OCS Team ☕", "Ünïcode \"Quoted\" Team"])
    );
    // Disabled members are included, like JSXC's roster.
    assert_eq!(roster["dora"]["name"], "Dora Disabled");
    assert!(roster.get("alice").is_none());

    // `x%41` is a group of its own: encoded once, Nextcloud would read `xA`
    // (erin's group).
    let roster: Value =
        serde_json::from_str(&generic(&mut x, "roster:pia:example.org")).expect("roster JSON");
    assert_eq!(
        roster["pia"]["groups"],
        serde_json::json!(["Literal x%41", "Ünïcode \"Quoted\" Team"])
    );
    assert!(roster.get("erin").is_none(), "{roster}");

    // Cached for roster-ttl: asking again costs Nextcloud nothing.
    let before = stats(&nc)["nextcloud_requests"].as_u64().unwrap();
    let again = generic(&mut x, "roster:tom:example.org");
    assert!(again.contains("Tom Twofactor"));
    assert_eq!(stats(&nc)["nextcloud_requests"].as_u64().unwrap(), before);
    x.finish();
}

/// xcauth -t PROTO with the nextcloud kind and `user` as the API account.
fn start_as(nc: &StandIn, proto: &str, dir: &tempfile::TempDir, user: &str, pw: &str) -> Xcauth {
    let file = api_password_file(dir, pw);
    let args = ["--backend", "nextcloud", "--api-user", user];
    let mut args = args.to_vec();
    args.extend(["--api-password-file", file.as_str()]);
    Xcauth::start(proto, &base(nc), &args)
}

/// One Postfix lookup: the answer's code.
fn postfix_get(x: &mut Xcauth, address: &str) -> String {
    x.send(format!("get {address}\n").as_bytes());
    let line = x.read_line(T);
    line.get(..3).unwrap_or(&line).to_owned()
}

/// The back-off's log lines: the refusal and the pause.
fn assert_no_back_off(logs: &str) {
    assert!(!logs.contains("API account refused"), "{logs}");
    assert!(!logs.contains("not retried"), "{logs}");
}

#[test]
fn hostile_names_do_not_switch_off_lookups() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    let mut x = start(&nc, "postfix", &dir, &[]);
    // Any SMTP sender can ask for these (RCPT TO:<.@example.org>). No
    // request can name them (an HTTP client drops `%2E` segments), and
    // Nextcloud has no such users: unknown, without asking.
    for address in [
        ".@example.org",
        "..@example.org",
        "%2E@example.org",
        "%2E%2E@example.org",
        "a/b@example.org",
        "../alice@example.org",
    ] {
        assert_eq!(postfix_get(&mut x, address), "500", "{address}");
    }
    assert_eq!(ocs(&nc, "cloud/users/{uid}"), 0);
    // Right after, everyone else still gets answers.
    assert_eq!(postfix_get(&mut x, "alice@example.org"), "200");
    assert_eq!(postfix_get(&mut x, "nobody@example.org"), "500");
    assert_eq!(postfix_get(&mut x, "erin@example.org"), "200");
    // A dot inside a uid goes on the wire encoded.
    assert_eq!(postfix_get(&mut x, "no.body@example.org"), "500");
    assert_eq!(
        stats(&nc)["ocs"]["last_path"],
        "/ocs/v2.php/cloud/users/no%2Ebody?format=json"
    );
    x.finish();
    assert_no_back_off(&x.logs());
}

#[test]
fn a_user_out_of_a_subadmins_reach_defers_only_that_lookup() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    // sam is a subadmin of ocs-team (and x%41); bob is in none of them, so
    // Nextcloud answers 998 about bob.
    let mut x = start_as(&nc, "postfix", &dir, "sam", "sam-pw");
    assert_eq!(postfix_get(&mut x, "bob@example.org"), "400");
    assert_eq!(postfix_get(&mut x, "erin@example.org"), "200");
    assert_eq!(postfix_get(&mut x, "nobody@example.org"), "500");
    assert_eq!(postfix_get(&mut x, "bob@example.org"), "400");
    assert_eq!(postfix_get(&mut x, "erin@example.org"), "200");
    x.finish();
    // bob twice, erin twice, nobody, and sam's own record once: the second
    // 998 about bob is weighed without asking again.
    assert_eq!(ocs(&nc, "cloud/users/{uid}"), 6);
    let logs = x.logs();
    assert_no_back_off(&logs);
    assert!(logs.contains("the account is not paused"), "{logs}");
}

#[test]
fn refusals_at_once_share_one_look_at_the_account_and_groups_pause_nothing() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    let mut x = start_as(&nc, "postfix", &dir, "sam", "sam-pw");
    // Eight lookups of bob, pipelined: eight refusals about bob, one look
    // at sam's own record.
    x.send("get bob@example.org\n".repeat(8).as_bytes());
    for _ in 0..8 {
        assert!(x.read_line(T).starts_with("400 "));
    }
    assert_eq!(ocs(&nc, "cloud/users/{uid}"), 9);
    x.finish();
    assert_no_back_off(&x.logs());

    // erin is in xA, a group sam does not manage: its members are refused
    // (998) while her roster is built. Lookups carry on.
    let mut x = start_as(&nc, "generic", &dir, "sam", "sam-pw");
    generic(&mut x, "roster:erin:example.org");
    assert!(ocs(&nc, "cloud/groups/{gid}/users/details") >= 1);
    assert_eq!(generic(&mut x, "isuser:erin:example.org"), "1");
    assert_eq!(generic(&mut x, "isuser:nobody:example.org"), "0");
    x.finish();
    assert_no_back_off(&x.logs());
}

#[test]
fn an_api_account_without_rights_still_backs_off() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    // erin can log in but is neither an admin nor a subadmin.
    let mut x = start_as(&nc, "postfix", &dir, "erin", "erin-pw");
    assert_eq!(postfix_get(&mut x, "bob@example.org"), "400");
    assert_eq!(postfix_get(&mut x, "alice@example.org"), "400");
    assert_eq!(postfix_get(&mut x, "nobody@example.org"), "400");
    x.finish();
    // bob, then erin's own record; then nothing while backing off.
    assert_eq!(ocs(&nc, "cloud/users/{uid}"), 2);
    let logs = x.logs();
    assert!(logs.contains("neither an admin nor a subadmin"), "{logs}");
    assert!(logs.contains("not retried"), "{logs}");
}

#[test]
fn a_wrong_api_password_still_backs_off_postfix_lookups() {
    let nc = standin();
    let dir = tempfile::tempdir().unwrap();
    let mut x = start_as(&nc, "postfix", &dir, "xcauth-api", "wrong-app-password");
    // One refusal (401), then paused: no request, "try later".
    for address in ["alice@example.org", "bob@example.org", "nobody@example.org"] {
        assert_eq!(postfix_get(&mut x, address), "400", "{address}");
    }
    x.finish();
    let s = stats(&nc);
    assert_eq!(s["ocs"]["by_endpoint"]["cloud/users/{uid}"], 1, "{s}");
    assert_eq!(s["ocs"]["login_failures"], 1, "one brute-force failure");
    let logs = x.logs();
    assert!(logs.contains("API account refused (HTTP 401)"), "{logs}");
    assert!(logs.contains("not retried"), "{logs}");
}
