//! `xcauth check` (also `--configtest`): reads the configuration as the
//! service does, prints the resolved settings with secrets masked, then one
//! line per test, `PASS`, `WARN` or `FAIL`.
//!
//! The command line is the service's (`run::main_with_args` turns `check`
//! into `--configtest`), the settings come from [`crate::config::load`], and
//! the domain rows are turned into back ends by the same
//! [`DbDomains::row_spec`] the service uses, so what is tested is what the
//! service would run with.
//!
//! Layout: this file runs the tests in order and keeps the [`Findings`];
//! `settings` prints the resolved settings; `local` tests the database, the
//! log directory and ejabberdctl; `remote` tests each back end (URL, TLS,
//! JSXC secret, API account, throttling) and a real user's answers.
//!
//! Exit status: 0 when no test failed (warnings are fine), 1 otherwise; a
//! configuration that does not parse is 2 before any test runs, as for the
//! service.

mod local;
mod remote;
mod settings;

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use crate::backend::{BackendOptions, BackendSpec, HttpClient};
use crate::config::{CheckRequest, Config};
use crate::domains::{canonical_rows, DbDomains, Global};
use crate::proto::domain::canonical_domain;
use crate::secret::Secret;
use crate::store::DomainRow;

/// Exit status: no test failed.
const EXIT_PASSED: u8 = 0;
/// Exit status: at least one test failed.
const EXIT_FAILED: u8 = 1;

/// The auth domain the global back end is tested with when no `--user`
/// names one (the JSXC API needs a domain; `.invalid` can never be real).
pub(crate) const PROBE_DOMAIN: &str = "xcauth-check.invalid";

/// The result of one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// The test lines, printed as they come (the slow ones wait for timeouts,
/// so the administrator sees the earlier ones meanwhile). With `--quick`
/// only warnings and failures are printed, and a summary at the end.
pub(crate) struct Findings {
    quick: bool,
    counts: [usize; 3],
    /// Lines kept back until the settings are printed (they need the
    /// database's rows, so the first tests run before).
    held: Option<Vec<String>>,
}

impl Findings {
    fn new(quick: bool) -> Findings {
        Findings {
            quick,
            counts: [0; 3],
            held: Some(Vec::new()),
        }
    }

    /// Prints the lines kept back; later ones are printed at once.
    fn release(&mut self) {
        for line in self.held.take().unwrap_or_default() {
            out(&line);
        }
    }

    /// Records and prints one test: `STATUS [scope] name: detail`.
    pub(crate) fn add(&mut self, status: Status, scope: &str, name: &str, detail: &str) {
        self.counts[status as usize] += 1;
        if self.quick && status == Status::Pass {
            return;
        }
        // The detail may quote a server; one line, no control characters.
        let detail: String = detail
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let (scope, detail) = (
            crate::admin::report::shown(scope),
            crate::admin::report::shown_within(&detail, 4 * crate::admin::report::MAX_SHOWN_CHARS),
        );
        let line = format!("{} [{scope}] {name}: {detail}", status.word());
        match &mut self.held {
            Some(held) => held.push(line),
            None => out(&line),
        }
    }

    pub(crate) fn pass(&mut self, scope: &str, name: &str, detail: &str) {
        self.add(Status::Pass, scope, name, detail);
    }

    pub(crate) fn warn(&mut self, scope: &str, name: &str, detail: &str) {
        self.add(Status::Warn, scope, name, detail);
    }

    pub(crate) fn fail(&mut self, scope: &str, name: &str, detail: &str) {
        self.add(Status::Fail, scope, name, detail);
    }

    fn failed(&self) -> bool {
        self.counts[Status::Fail as usize] > 0
    }
}

/// One line on standard output; a closed pipe (`xcauth check | head`) is
/// not worth a panic.
pub(crate) fn out(line: &str) {
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Runs the check on its own small runtime and returns the exit status.
pub(crate) fn main(config: &Config, request: &CheckRequest) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(config, request)),
        Err(e) => {
            eprintln!("xcauth: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// A back end to test: where it comes from and its settings.
pub(crate) struct Target {
    /// `global` or `domain NAME` (a database row, as stored).
    pub(crate) scope: String,
    /// The domain a row serves, in canonical form; `None`: the global
    /// settings.
    pub(crate) domain: Option<String>,
    /// The settings, as the service would build the back end from them.
    pub(crate) spec: BackendSpec,
}

/// Runs every test that applies and returns the exit status.
pub(crate) async fn run(config: &Config, request: &CheckRequest) -> ExitCode {
    let mut findings = Findings::new(request.quick);
    let password = match request.user.as_deref() {
        Some(user) => match read_password(user, request.password_stdin) {
            Ok(password) => password,
            Err(e) => {
                findings.fail("user", "password", &e);
                None
            }
        },
        _ => None,
    };

    let global = Global::from_config(config);
    let config_name = config.config_file.as_ref().map_or_else(
        || "no config file (command line, environment and defaults)".to_owned(),
        |p| p.display().to_string(),
    );
    findings.pass("config", "parse", &format!("read {config_name}"));
    for warning in &config.warnings {
        findings.warn("config", "warning", warning);
    }

    let database = local::database(config, &mut findings).await;
    let rows: Vec<DomainRow> = database.rows.clone();
    let mut targets = Vec::new();
    let probe = user_domain(request)
        .and_then(|domain| canonical_domain(domain).ok())
        .unwrap_or_else(|| PROBE_DOMAIN.to_owned());
    if let Some(spec) = global.spec(&probe) {
        targets.push(Target {
            scope: "global".into(),
            domain: None,
            spec,
        });
    }
    // The rows as the service keys them: by the canonical domain.
    let (served, problems) = canonical_rows(rows.clone());
    for problem in &problems {
        findings.fail("domains", "row", &problem.to_string());
    }
    for (domain, row) in &served {
        let scope = format!("domain {}", row.xmppdomain);
        match DbDomains::row_spec(row, &global) {
            Some(spec) => targets.push(Target {
                scope,
                domain: Some(domain.clone()),
                spec,
            }),
            None => findings.fail(
                &scope,
                "row",
                "the domain is not served: its backend or login form is not valid, \
                 or it has no URL and there is no global url (see xcauth domain list)",
            ),
        }
    }

    if !request.quick {
        settings::print(config, &targets, &rows);
    }
    findings.release();
    if !request.quick {
        local::log_dir(config, &mut findings);
        local::ejabberdctl(config, request, &rows, &mut findings).await;
    }

    if let Some(client) = http_client(config, &mut findings) {
        for target in &targets {
            remote::target(&client, target, request.quick, &mut findings).await;
        }
        if let Some(jid) = request.user.as_deref() {
            let user = remote::UserTest {
                jid,
                password: password.as_ref(),
            };
            remote::user(&client, &global, &targets, &user, &mut findings).await;
        }
    }

    if request.quick {
        let [pass, warn, fail] = findings.counts;
        let verdict = if findings.failed() { "FAIL" } else { "OK" };
        out(&format!(
            "{verdict}: {pass} passed, {warn} warnings, {fail} failed ({} back ends)",
            targets.len()
        ));
    }
    ExitCode::from(if findings.failed() {
        EXIT_FAILED
    } else {
        EXIT_PASSED
    })
}

/// The domain of `--user`, if given.
fn user_domain(request: &CheckRequest) -> Option<&str> {
    request
        .user
        .as_deref()
        .and_then(|jid| jid.rsplit_once('@'))
        .map(|(_, domain)| domain)
        .filter(|d| !d.is_empty())
}

/// The service's HTTP client. A CA file it cannot use is a failure (the
/// service would not start); the tests then go on without it, and fail
/// where it was needed.
fn http_client(config: &Config, findings: &mut Findings) -> Option<Arc<HttpClient>> {
    let options = BackendOptions {
        connect_timeout: config.connect_timeout,
        request_timeout: config.request_timeout,
        ca_file: config.ca_file.clone(),
    };
    match HttpClient::new(&options) {
        Ok(client) => {
            if let Some(path) = &config.ca_file {
                findings.pass("config", "ca-file", &format!("{} read", path.display()));
            }
            Some(client)
        }
        Err(e) => {
            findings.fail(
                "config",
                "ca-file",
                &format!("{e}; the service would not start"),
            );
            HttpClient::new(&BackendOptions {
                ca_file: None,
                ..options
            })
            .ok()
        }
    }
}

/// The password for the auth test of `--user`: a line from standard input
/// with `--password-stdin`, else a prompt when standard input is a
/// terminal (an empty answer skips the test); `None`: no auth test. Never
/// printed.
fn read_password(user: &str, from_stdin: bool) -> Result<Option<Secret>, String> {
    let stdin = io::stdin();
    let text = if from_stdin && !stdin.is_terminal() {
        let mut bytes = Vec::new();
        stdin
            .lock()
            .take(MAX_PASSWORD_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("standard input: {e}"))?;
        if bytes.len() > MAX_PASSWORD_BYTES {
            return Err(format!(
                "standard input: longer than {MAX_PASSWORD_BYTES} bytes"
            ));
        }
        String::from_utf8(bytes).map_err(|_| "standard input: not UTF-8".to_owned())?
    } else if stdin.is_terminal() {
        eprint!("Password of {user} for an auth test (shown as typed; empty: none): ");
        let _ = io::stderr().flush();
        let mut line = String::new();
        stdin
            .lock()
            .take(MAX_PASSWORD_BYTES as u64 + 1)
            .read_line(&mut line)
            .map_err(|e| format!("standard input: {e}"))?;
        line
    } else {
        return Ok(None);
    };
    let password = text.trim_end_matches(['\r', '\n']);
    Ok((!password.is_empty()).then(|| Secret::new(password)))
}

/// Longest password read for the auth test.
const MAX_PASSWORD_BYTES: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_fails_the_check_and_warnings_do_not() {
        let mut findings = Findings::new(true);
        findings.pass("a", "b", "fine");
        findings.warn("a", "b", "hmm");
        assert!(!findings.failed());
        findings.fail("a", "b", "broken");
        assert!(findings.failed());
        assert_eq!(findings.counts, [1, 1, 1]);
        // Held until the settings are out, then printed in order (taken
        // here rather than printed, so that no FAIL line lands in the
        // output of the test run).
        let held = findings.held.take().expect("held lines");
        assert_eq!(held, ["WARN [a] b: hmm", "FAIL [a] b: broken"]);
    }

    #[test]
    fn the_user_domain_is_after_the_last_at() {
        let request = |user: &str| CheckRequest {
            user: Some(user.to_owned()),
            ..CheckRequest::default()
        };
        assert_eq!(
            user_domain(&request("alice@example.org")),
            Some("example.org")
        );
        assert_eq!(user_domain(&request("alice@")), None);
        assert_eq!(user_domain(&request("alice")), None);
        assert_eq!(user_domain(&CheckRequest::default()), None);
    }
}
