//! End to end: one-shot tests and their exit codes, config errors, and the
//! promise that no password or secret ever reaches a log.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);

fn oneshot(nc: &StandIn, args: &[&str]) -> (String, String, i32) {
    let out = Command::new(xcauth_bin())
        .args(["--url", &nc.url])
        .args(args)
        .env("XCAUTH_SECRET", SECRET)
        .stdin(Stdio::null())
        .output()
        .expect("run xcauth");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn one_shot_tests_print_and_exit_like_the_original() {
    let nc = StandIn::start();
    assert_eq!(
        oneshot(&nc, &["-A", "alice", "example.org", "alice-pw"]).0,
        "True\n"
    );
    let (out, err, code) = oneshot(&nc, &["-A", "alice", "example.org", "wrong"]);
    assert_eq!((out.as_str(), code), ("False\n", 1));
    assert!(
        err.contains("DEBUG"),
        "-A implies debug logging to stderr: {err}"
    );
    assert_eq!(oneshot(&nc, &["-I", "bob", "example.org"]).2, 0);
    let (out, _, code) = oneshot(&nc, &["-I", "nobody", "example.org"]);
    assert_eq!((out.as_str(), code), ("False\n", 1));
    let (out, _, code) = oneshot(&nc, &["-R", "dave", "example.org"]);
    assert_eq!((out.as_str(), code), ("[]\n", 0), "empty roster is []");
    let (out, _, code) = oneshot(&nc, &["-R", "alice", "example.org"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("roster JSON");
    assert_eq!(v["alice"]["groups"][0], "staff");
    // -A takes precedence over -t.
    assert_eq!(
        oneshot(
            &nc,
            &["-t", "ejabberd", "-A", "alice", "example.org", "alice-pw"]
        )
        .0,
        "True\n"
    );
}

#[test]
fn usage_and_configuration_errors_exit_2() {
    let nc = StandIn::start();
    assert_eq!(oneshot(&nc, &[]).2, 2, "no mode");
    assert_eq!(oneshot(&nc, &["-t", "nosuch"]).2, 2);
    assert_eq!(
        oneshot(&nc, &["--cache-query-ttl", "soon", "-I", "a", "b"]).2,
        2
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("xcauth.conf");
    std::fs::write(&conf, "type=generic\nno-such-key=1\n").expect("write conf");
    let (_, err, code) = oneshot(&nc, &["-c", conf.to_str().expect("path"), "-I", "a", "b"]);
    assert_eq!(code, 2);
    assert!(err.contains("xcauth.conf:2"), "{err}");
    let help = Command::new(xcauth_bin())
        .arg("--help")
        .env("XCAUTH_SECRET", SECRET)
        .output()
        .expect("help");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--auth-test") && !text.contains(SECRET));
    let version = Command::new(xcauth_bin())
        .arg("--version")
        .output()
        .expect("version");
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// An idle limit of 0 would close every connection at once: refused at
/// start, naming the option.
#[test]
fn zero_idle_timeout_exits_2_naming_the_option() {
    let out = Command::new(xcauth_bin())
        .args(["--idle-timeout", "0", "-t", "generic"])
        .args(["-u", "http://127.0.0.1:9/x", "-s", "S"])
        .env_remove("XCAUTH_SECRET")
        .stdin(Stdio::null())
        .output()
        .expect("run xcauth");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("idle-timeout"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn config_file_supplies_url_and_secret_file() {
    let nc = StandIn::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("secret");
    let conf = dir.path().join("xcauth.conf");
    std::fs::write(
        &conf,
        format!(
            "# like the original\nurl={}\nsecret-file={}\ndebug\n",
            nc.url,
            secret.display()
        ),
    )
    .expect("conf");
    let out = Command::new(xcauth_bin())
        .args([
            "-c",
            conf.to_str().expect("path"),
            "-A",
            "alice",
            "example.org",
            "alice-pw",
        ])
        .env_remove("XCAUTH_SECRET")
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "True\n");
}

#[test]
fn legacy_database_options_are_accepted_with_a_clear_notice() {
    let nc = StandIn::start();
    let (out, err, code) = oneshot(
        &nc,
        &[
            "--domain-db",
            "/var/lib/xcauth/domains.db",
            "-I",
            "bob",
            "example.org",
        ],
    );
    assert_eq!((out.as_str(), code), ("True\n", 0));
    assert!(err.contains("Berkeley-DB") && err.contains("2.0"), "{err}");
}

/// The shipped sample configuration is valid as it stands.
#[test]
fn sample_config_file_parses() {
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/xcauth.conf");
    let nc = StandIn::start();
    let out = Command::new(xcauth_bin())
        .arg("-c")
        .arg(&sample)
        .args(["--url", &nc.url, "-I", "bob", "example.org"])
        .env("XCAUTH_SECRET", SECRET)
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "True\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every protocol at debug level with known passwords: none of them, and
/// not the secret, may appear in standard error, the log files or on
/// standard output.
#[test]
fn passwords_and_secret_never_logged() {
    let nc = StandIn::start();
    let right = "Right-Pa55-word:x";
    let wrong = "Wr0ng-Pa55-word";
    let rejected = ["alice-pw", right, wrong, "pa:ss:w0rd"];
    let mut leaks = Vec::new();
    let mut check = |what: &str, text: &str| {
        for p in rejected.iter().chain([&SECRET]) {
            if text.contains(p) {
                leaks.push(format!("{what} contains {p:?}"));
            }
        }
    };
    for proto in ["generic", "ejabberd", "saslauthd", "postfix"] {
        let mut x = Xcauth::start(proto, &nc.url, &[]);
        for pw in [right, wrong, "alice-pw"] {
            match proto {
                "generic" => {
                    x.send(
                        format!("auth:alice:example.org:{pw}\nsetpass:alice:example.org:{pw}\n")
                            .as_bytes(),
                    );
                    x.read_line(T);
                    x.read_line(T);
                }
                "ejabberd" => {
                    x.send(&ejabberd_frame(&format!("auth:alice:example.org:{pw}")));
                    x.send(&ejabberd_frame(&format!("setpass:alice:example.org:{pw}")));
                    x.read_exact(8, T);
                }
                "saslauthd" => {
                    x.send(&sasl_request(&[
                        b"alice",
                        pw.as_bytes(),
                        b"imap",
                        b"example.org",
                    ]));
                    sasl_answer(&mut x);
                }
                _ => {
                    x.send(format!("get alice@example.org\nget {pw}\n").as_bytes());
                    x.read_line(T);
                    x.read_line(T);
                }
            }
        }
        // A back-end failure and a bad line must not leak either.
        nc.fault("http500");
        if proto == "generic" {
            x.send(
                format!("auth:alice:example.org:{right}\nauth:alice:ex\u{ff}:{right}\n").as_bytes(),
            );
            x.read_line(T);
            x.read_line(T);
        }
        nc.fault("none");
        let mut stderr = String::new();
        let mut child_stderr = x.child.0.stderr.take().expect("stderr");
        let (rest, _) = x.finish();
        let logs = x.logs();
        std::io::Read::read_to_string(&mut child_stderr, &mut stderr).ok();
        check(&format!("{proto} logs"), &logs);
        check(&format!("{proto} stderr"), &stderr);
        check(&format!("{proto} stdout"), &String::from_utf8_lossy(&rest));
        assert!(logs.contains("DEBUG"), "{proto}: debug logging was on");
    }
    // One-shot mode logs to stderr at debug level.
    let out = Command::new(xcauth_bin())
        .args(["--url", &nc.url, "-A", "alice", "example.org", right])
        .env("XCAUTH_SECRET", SECRET)
        .output()
        .expect("run");
    check("-A stderr", &String::from_utf8_lossy(&out.stderr));
    assert!(leaks.is_empty(), "{leaks:#?}");
}
