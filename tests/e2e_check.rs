//! End to end: `xcauth check` (and `--configtest`), the real binary against
//! the stand-in Nextcloud (its JSXC API and its stock OCS APIs), a real
//! SQLite file, a real log directory, the fake ejabberdctl and, for TLS, a
//! loopback HTTPS server with its own CA. Every test also asserts that the
//! secrets it configured never appear in the output.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::*;

/// The stand-in's API account and its app password.
const API_USER: &str = "xcauth-api";
const API_PASSWORD: &str = "xcauth-api-app";

/// What one run of `xcauth check` gave.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The test line `STATUS [scope] name: …`, if printed.
    fn line(&self, status: &str, scope: &str, name: &str) -> Option<&str> {
        let start = format!("{status} [{scope}] {name}: ");
        self.stdout.lines().find(|l| l.starts_with(&start))
    }

    /// Asserts that line is there and returns it.
    fn has(&self, status: &str, scope: &str, name: &str) -> &str {
        self.line(status, scope, name).unwrap_or_else(|| {
            panic!(
                "no `{status} [{scope}] {name}` line in:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    fn fails(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("FAIL "))
            .collect()
    }

    /// None of the secrets in the output, in whole or as a prefix of all
    /// but its last two characters (shorter ones would match names: the
    /// API password starts with the API user's name).
    fn keeps_secret(&self, secrets: &[&str]) {
        for secret in secrets {
            let prefix = &secret[..secret.len() - 2];
            for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
                assert!(
                    !text.contains(prefix),
                    "{name} shows (a prefix of) the secret {secret:?}:\n{text}"
                );
            }
        }
    }
}

/// A scratch directory with a log directory, an API password file and
/// (after [`Setup::with_row`]) a database with one JSXC domain row.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("log")).expect("log dir");
        write_private(&dir.path().join("api-password"), API_PASSWORD);
        write_private(&dir.path().join("secret"), SECRET);
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn db(&self) -> PathBuf {
        self.path("xcauth.sqlite3")
    }

    /// The config file for the stand-in's stock APIs, with the API account,
    /// the secret, the database and the log directory; `extra` lines after.
    fn config(&self, nc: &StandIn, extra: &str) -> PathBuf {
        let text = format!(
            "url=http://{}\nbackend=nextcloud\napi-user={API_USER}\n\
             api-password-file={}\nsecret-file={}\ndb={}\nlog={}\ntimeout=2,5\n{extra}",
            nc.addr,
            self.path("api-password").display(),
            self.path("secret").display(),
            self.db().display(),
            self.path("log").display(),
        );
        let path = self.path("xcauth.conf");
        write_private(&path, &text);
        path
    }

    /// Adds the domain row `example.net` for the stand-in's JSXC API, with
    /// `secret` (creating the database).
    fn with_row(&self, nc: &StandIn, secret: &str) {
        let file = self.path("row-secret");
        write_private(&file, secret);
        let status = Command::new(xcauth_bin())
            .args(["domain", "add", "example.net", "--url", &nc.url])
            .arg("--secret-file")
            .arg(&file)
            .arg("--db")
            .arg(self.db())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("xcauth domain add");
        assert!(status.success());
        set_mode(&self.db(), 0o600);
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, format!("{text}\n")).expect("write");
    set_mode(path, 0o600);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs `xcauth -c CONFIG OPTIONS… check CHECK-OPTIONS…` with `stdin` as
/// standard input: the service's options in `args` go before the command
/// (as for every command), the check's own (`--quick`, `--user U`,
/// `--password-stdin`) after it.
fn check(config: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Outcome {
    let (mut service, mut own) = (Vec::new(), Vec::new());
    let mut args = args.iter();
    while let Some(&arg) = args.next() {
        match arg {
            "--quick" | "--password-stdin" => own.push(arg),
            "--user" => own.extend([arg, args.next().expect("--user takes a value")]),
            _ => service.push(arg),
        }
    }
    let mut cmd = Command::new(xcauth_bin());
    cmd.arg("-c")
        .arg(config)
        .args(service)
        .arg("check")
        .args(own);
    run(cmd, env, stdin)
}

fn run(mut cmd: Command, env: &[(&str, &str)], stdin: &str) -> Outcome {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("XCAUTH_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start xcauth check");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let output = child.wait_with_output().expect("xcauth check");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn fake_ejabberdctl() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fake-ejabberdctl")
        .to_string_lossy()
        .into_owned()
}

fn standin() -> StandIn {
    StandIn::start_with(&["--throttle-scale", "0.001"])
}

#[test]
fn a_good_configuration_passes_every_test_and_masks_the_secrets() {
    let nc = standin();
    let setup = Setup::new();
    setup.with_row(&nc, SECRET);
    let config = setup.config(
        &nc,
        &format!("cache-storage=db\nejabberdctl={}\n", fake_ejabberdctl()),
    );
    let calls = setup.path("ctl-calls");
    let calls_env = calls.to_string_lossy().into_owned();
    let out = check(
        &config,
        &["--user", "alice@example.org", "--password-stdin"],
        &[("FAKE_EJABBERDCTL_LOG", &calls_env)],
        "alice-pw\n",
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.fails().is_empty(), "{:?}", out.fails());
    // The settings, per domain, secrets masked.
    assert!(out.stdout.contains("Settings (secrets masked):"));
    assert!(out.stdout.contains("domain example.net (database row"));
    // From files for the global settings, from the database for the row.
    let from_file = |name: &str, file: &str, len: usize| {
        format!(
            "{name:<14} set ({len} chars), from file {}\n",
            setup.path(file).display()
        )
    };
    let api_password = from_file("api-password", "api-password", API_PASSWORD.len());
    let secret = from_file("secret", "secret", SECRET.len());
    assert!(out.stdout.contains(&api_password), "{}", out.stdout);
    assert!(out.stdout.contains(&secret), "{}", out.stdout);
    let row = out.stdout.split("domain example.net (").nth(1).unwrap();
    assert!(
        row.contains(&format!("secret         set ({} chars)\n", SECRET.len())),
        "{row}"
    );
    // One line per test, for each domain where it applies.
    out.has("PASS", "config", "parse");
    out.has("PASS", "database", "mode");
    assert!(out
        .has("PASS", "database", "read-write")
        .contains("domain rows: 1"));
    out.has("PASS", "log", "directory");
    out.has("PASS", "ejabberdctl", "run");
    for scope in ["global", "domain example.net"] {
        out.has("PASS", scope, "reachable");
        out.has("PASS", scope, "tls");
    }
    assert!(out
        .has("PASS", "global", "api-account")
        .contains("an admin"));
    out.has("PASS", "global", "throttle");
    out.has("PASS", "domain example.net", "secret");
    out.has("PASS", "user alice@example.org", "isuser");
    out.has("PASS", "user alice@example.org", "roster");
    out.has("PASS", "user alice@example.org", "auth");
    out.keeps_secret(&[SECRET, API_PASSWORD, "alice-pw"]);
    // ejabberdctl was run with one of the roster sync's harmless commands.
    let ran = std::fs::read_to_string(&calls).expect("ejabberdctl ran");
    assert_eq!(
        ran.trim(),
        r#"["srg_get_members", "xcauth-check-probe", "example.org"]"#
    );
    // The rolled-back write left nothing behind, and nothing was logged.
    let again = check(&config, &[], &[], "");
    assert_eq!(again.code, Some(0), "{}", again.stdout);
    assert!(std::fs::read_dir(setup.path("log"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn configtest_is_the_same_check() {
    let nc = standin();
    let setup = Setup::new();
    let config = setup.config(&nc, "");
    let mut cmd = Command::new(xcauth_bin());
    cmd.arg("-c").arg(&config).arg("--configtest");
    let out = run(cmd, &[], "");
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    out.has("PASS", "global", "api-account");
    // No database, none needed: nothing is created.
    out.has("PASS", "database", "open");
    assert!(!setup.db().exists());
}

#[test]
fn check_follows_global_options_like_any_command() {
    let nc = standin();
    let setup = Setup::new();
    let config = setup.config(&nc, "");
    let mut cmd = Command::new(xcauth_bin());
    cmd.arg("-c").arg(&config).arg("check").arg("--quick");
    let out = run(cmd, &[], "");
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(out.stdout.contains("OK:"), "{}", out.stdout);
    // The check's options belong to it: before it they are refused.
    let mut cmd = Command::new(xcauth_bin());
    cmd.arg("--quick").arg("-c").arg(&config).arg("check");
    assert_eq!(run(cmd, &[], "").code, Some(2));
}

#[test]
fn a_wrong_jsxc_secret_fails_and_stays_secret() {
    let nc = standin();
    let setup = Setup::new();
    let wrong = "wrong-row-secret-Kx7";
    setup.with_row(&nc, wrong);
    let out = check(&setup.config(&nc, ""), &[], &[], "");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let line = out.has("FAIL", "domain example.net", "secret");
    assert!(line.contains("signature mismatch"), "{line}");
    assert!(line.contains("JSXC admin page"), "{line}");
    out.has("PASS", "global", "api-account");
    out.keeps_secret(&[wrong, SECRET, API_PASSWORD]);
}

#[test]
fn a_wrong_api_password_fails_with_the_hint() {
    let nc = standin();
    let setup = Setup::new();
    let wrong = "not-the-app-password";
    let config = setup.config(&nc, "");
    write_private(&setup.path("api-password"), wrong);
    let out = check(&config, &[], &[], "");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let line = out.has("FAIL", "global", "api-account");
    assert!(
        line.contains("HTTP 401") && line.contains("app password"),
        "{line}"
    );
    out.keeps_secret(&[wrong, SECRET]);
}

/// A failed OCS login from this address, as a client with a stale password
/// would cause.
fn failed_login(nc: &StandIn, n: usize) {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("guess{n}:wrong"));
    let mut s = TcpStream::connect(&nc.addr).expect("connect");
    write!(
        s,
        "GET /ocs/v2.php/cloud/user?format=json HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Basic {auth}\r\nOCS-APIRequest: true\r\nConnection: close\r\n\r\n",
        nc.addr
    )
    .expect("request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reply");
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
}

#[test]
fn a_throttled_address_fails_with_the_allowlist_hint() {
    let nc = standin();
    let setup = Setup::new();
    for n in 0..11 {
        failed_login(&nc, n);
    }
    let out = check(&setup.config(&nc, ""), &[], &[], "");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let line = out.has("FAIL", "global", "throttle");
    assert!(line.contains("HTTP 429"), "{line}");
    assert!(
        line.contains("whitelist_1") && line.contains("allowlist"),
        "{line}"
    );
}

#[test]
fn slow_answers_warn_of_a_brute_force_delay() {
    // 1.2 s before each answer, as after four failed logins.
    let nc = StandIn::start_with(&["--latency-ms", "1200"]);
    let setup = Setup::new();
    let out = check(&setup.config(&nc, ""), &[], &[], "");
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    out.has("PASS", "global", "api-account");
    let line = out.has("WARN", "global", "throttle");
    assert!(
        line.contains("brute-force") && line.contains("allowlist"),
        "{line}"
    );
}

#[test]
fn an_unreachable_url_fails() {
    let refusing = RefusingPort::new();
    let setup = Setup::new();
    let config = setup.path("xcauth.conf");
    write_private(
        &config,
        &format!(
            "url={}\nsecret-file={}\ndb={}\nlog={}\n",
            refusing.url(),
            setup.path("secret").display(),
            setup.db().display(),
            setup.path("log").display()
        ),
    );
    let out = check(&config, &[], &[], "");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let line = out.has("FAIL", "global", "reachable");
    assert!(line.contains("connection refused"), "{line}");
    // Nothing more is asked of a back end that does not answer.
    assert!(out.line("FAIL", "global", "secret").is_none());
    let quick = check(&config, &["--quick"], &[], "");
    assert_eq!(quick.code, Some(1), "{}", quick.stdout);
    assert!(quick.stdout.lines().last().unwrap().starts_with("FAIL: "));
}

#[test]
fn a_world_readable_database_warns() {
    let nc = standin();
    let setup = Setup::new();
    setup.with_row(&nc, SECRET);
    set_mode(&setup.db(), 0o644);
    let out = check(&setup.config(&nc, ""), &[], &[], "");
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let line = out.has("WARN", "database", "mode");
    assert!(line.contains("0644") && line.contains("secrets"), "{line}");
    set_mode(&setup.db(), 0o666);
    let out = check(&setup.config(&nc, ""), &[], &[], "");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    out.has("FAIL", "database", "mode");
}

#[test]
fn an_unusable_log_directory_fails() {
    let nc = standin();
    let setup = Setup::new();
    // A file where the directory should be: no one can log there, root
    // included.
    let not_a_dir = setup.path("log-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let config = setup.config(&nc, "");
    let out = check(&config, &["--log", not_a_dir.to_str().unwrap()], &[], "");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(out
        .has("FAIL", "log", "directory")
        .contains("not a directory"));
    let missing = setup.path("no-such-dir");
    let out = check(&config, &["--log", missing.to_str().unwrap()], &[], "");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    out.has("FAIL", "log", "directory");
    // Interactive logging needs no directory.
    let out = check(
        &config,
        &["--log", missing.to_str().unwrap(), "-i"],
        &[],
        "",
    );
    assert_eq!(out.code, Some(0), "{}", out.stdout);
}

#[test]
fn an_ejabberdctl_that_fails_is_a_failure() {
    let nc = standin();
    let setup = Setup::new();
    setup.with_row(&nc, SECRET);
    let config = setup.config(&nc, &format!("ejabberdctl={}\n", fake_ejabberdctl()));
    let out = check(
        &config,
        &[],
        &[("FAKE_EJABBERDCTL_FAIL", "srg_get_members")],
        "",
    );
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let line = out.has("FAIL", "ejabberdctl", "run");
    assert!(
        line.contains("exit status 1") && line.contains("failed as asked"),
        "{line}"
    );
    // A program that does not exist.
    let out = check(
        &config,
        &["--ejabberdctl", "/nonexistent/ejabberdctl"],
        &[],
        "",
    );
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(out.has("FAIL", "ejabberdctl", "run").contains("cannot run"));
}

#[test]
fn user_tests_use_the_real_user_and_never_show_the_password() {
    let nc = standin();
    let setup = Setup::new();
    let config = setup.config(&nc, "");
    let out = check(
        &config,
        &["--user", "bob@example.org", "--password-stdin"],
        &[],
        "wrong-password-for-bob\n",
    );
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    out.has("PASS", "user bob@example.org", "isuser");
    assert!(out
        .has("PASS", "user bob@example.org", "roster")
        .contains("members"));
    assert!(out
        .has("FAIL", "user bob@example.org", "auth")
        .contains("refused"));
    out.keeps_secret(&["wrong-password-for-bob", API_PASSWORD, SECRET]);
    // A user Nextcloud does not know; without --password-stdin (and no
    // terminal) no auth test.
    let out = check(&config, &["--user", "nobody@example.org"], &[], "");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    out.has("FAIL", "user nobody@example.org", "isuser");
    assert!(out
        .line("PASS", "user nobody@example.org", "auth")
        .is_none());
    assert!(out
        .line("FAIL", "user nobody@example.org", "auth")
        .is_none());
}

#[test]
fn quick_is_terse_and_only_asks_whether_back_ends_answer() {
    let nc = standin();
    let setup = Setup::new();
    // A wrong API password is not noticed by the quick probe: it makes no
    // login (which would count as a brute-force failure every minute).
    write_private(&setup.path("api-password"), "not-the-app-password");
    let config = setup.config(&nc, "");
    let before = http(&nc.addr, "GET", "/_standin/stats", "");
    let out = check(&config, &["--quick"], &[], "");
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stdout.starts_with("OK: "), "{}", out.stdout);
    assert!(!out.stdout.contains("Settings"));
    let after: serde_json::Value =
        serde_json::from_str(&http(&nc.addr, "GET", "/_standin/stats", "")).unwrap();
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    assert!(before["ocs"]["by_endpoint"].is_object(), "{before}");
    assert_eq!(after["ocs"]["by_endpoint"], before["ocs"]["by_endpoint"]);
}

#[test]
fn a_configuration_that_does_not_parse_is_status_2() {
    let setup = Setup::new();
    let config = setup.path("bad.conf");
    write_private(&config, "url=http://127.0.0.1:9/\nno-such-option=1\n");
    let out = check(&config, &[], &[], "");
    assert_eq!(out.code, Some(2), "{}", out.stdout);
    assert!(out.stderr.contains("no-such-option"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

/// A CA of our own and a server config for `localhost` signed by it.
fn own_ca() -> (String, rustls::ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "xcauth check test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![server_cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    )
    .expect("server config");
    (ca_cert.pem(), config)
}

/// HTTPS on a loopback port answering every request as the JSXC API
/// answers isuser for an unknown user; returns the port.
async fn https_server(config: rustls::ServerConfig) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut got = Vec::new();
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let body = r#"{"result":"success","data":{"isUser":false}}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_an_own_ca_fails_without_ca_file_and_passes_with_it() {
    let (ca_pem, server) = own_ca();
    let port = https_server(server).await;
    let setup = Setup::new();
    let ca_file = setup.path("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write CA");
    let config = setup.path("xcauth.conf");
    write_private(
        &config,
        &format!(
            "url=https://localhost:{port}/index.php/apps/ojsxc/ajax/externalApi.php\n\
             secret-file={}\ndb={}\nlog={}\ntimeout=2,5\n",
            setup.path("secret").display(),
            setup.db().display(),
            setup.path("log").display()
        ),
    );
    let ca_arg = ca_file.to_string_lossy().into_owned();
    let (without, with) = tokio::task::spawn_blocking(move || {
        (
            check(&config, &[], &[], ""),
            check(&config, &["--ca-file", &ca_arg], &[], ""),
        )
    })
    .await
    .expect("checks");
    assert_eq!(without.code, Some(1), "{}", without.stdout);
    let line = without.has("FAIL", "global", "tls");
    assert!(
        line.contains("TLS error") && line.contains("--ca-file"),
        "{line}"
    );
    assert_eq!(with.code, Some(0), "{}", with.stdout);
    assert!(with.has("PASS", "global", "tls").contains("ca.pem"));
    with.has("PASS", "global", "secret");
    with.has("PASS", "config", "ca-file");
}

/// Rows that are one domain in canonical form (`example.net` and
/// `EXAMPLE.NET`, written by hand) and a row that is no host name are
/// failures: the service serves one of the first and never the second.
#[test]
fn rows_that_collide_or_are_not_host_names_fail() {
    let nc = standin();
    let setup = Setup::new();
    setup.with_row(&nc, SECRET);
    let conn = rusqlite::Connection::open(setup.db()).expect("db");
    for domain in ["EXAMPLE.NET", "bad\u{200B}.example"] {
        conn.execute(
            "INSERT INTO domains (xmppdomain, authsecret, authurl, authdomain) \
             VALUES (?1, 'other', 'http://127.0.0.1:9/x', '')",
            [domain],
        )
        .expect("insert");
    }
    drop(conn);
    let out = check(&setup.config(&nc, ""), &[], &[], "");
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let fails = out.fails().join("\n");
    assert!(
        fails.contains(r#"domain rows "EXAMPLE.NET" and "example.net" are all the domain example.net; "example.net" is used"#),
        "{}",
        out.stdout
    );
    assert!(
        fails.contains(r#"domain row "bad\u{200b}.example" is never used"#),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains('\u{200B}'), "{}", out.stdout);
    out.keeps_secret(&[SECRET, API_PASSWORD]);
}
