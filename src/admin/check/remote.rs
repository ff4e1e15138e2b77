//! The tests against each back end: the URL answers, TLS works, the JSXC
//! secret is right, the stock-Nextcloud API account works, Nextcloud does
//! not throttle us; and, for `--user`, a real user's isuser, roster and
//! (with a password) auth.
//!
//! Every request goes through the service's own back-end code, so each
//! failure is classified, and hinted, as the service would log it; the
//! texts have the secrets scrubbed out by that code already.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Findings, Target};
use crate::backend::jsxc::JsxcBackend;
use crate::backend::nextcloud::{NextcloudBackend, NextcloudSettings};
use crate::backend::{self, BackendError, BackendKind, Cause, HttpClient, Verdict};
use crate::domains::Global;
use crate::proto::domain::canonical_domain;
use crate::secret::Secret;

/// A user no Nextcloud has: the JSXC secret is tested with an isuser
/// question about it, which any right signature gets an answer to.
pub(crate) const PROBE_USER: &str = "xcauth-check-no-such-user";

/// An answer slower than this suggests Nextcloud's brute-force delay (its
/// first steps are 0.2, 0.4, 0.8 and 1.6 s; a healthy answer takes well
/// under 0.5 s).
pub(crate) const SLOW_ANSWER: Duration = Duration::from_millis(1000);

/// What to do about throttling, from docs/nextcloud.md.
const ALLOWLIST_HINT: &str = "add xcauth's address to Nextcloud's brute-force allowlist \
     (occ config:app:set bruteForce whitelist_1 --value=127.0.0.1/32, or the Brute-force \
     settings app; docs/nextcloud.md), and clear the bucket: occ security:bruteforce:reset IP";

/// The tests of one back end; `quick`: only whether it answers.
pub(crate) async fn target(
    client: &Arc<HttpClient>,
    target: &Target,
    quick: bool,
    findings: &mut Findings,
) {
    let scope = target.scope.as_str();
    let spec = &target.spec;
    if !reachable(client, scope, &spec.url, findings).await || quick {
        return;
    }
    match spec.kind {
        BackendKind::Jsxc => jsxc_secret(client, target, findings).await,
        BackendKind::Nextcloud => api_account(client, target, findings).await,
    }
}

/// The URL answers with any HTTP status (an unauthenticated GET, which
/// Nextcloud does not count as a failed login), and TLS works for https.
async fn reachable(
    client: &Arc<HttpClient>,
    scope: &str,
    url: &str,
    findings: &mut Findings,
) -> bool {
    let https = url.to_ascii_lowercase().starts_with("https:");
    let started = Instant::now();
    let reply = client.send(|c| c.get(url)).await;
    let took = started.elapsed().as_millis();
    match reply {
        Ok(reply) => {
            findings.pass(
                scope,
                "reachable",
                &format!("{url} answered HTTP {} in {took} ms", reply.status),
            );
            if https {
                let roots = match &client.options().ca_file {
                    Some(path) => format!("the system's roots and {}", path.display()),
                    None => "the system's roots".to_owned(),
                };
                findings.pass(scope, "tls", &format!("certificate trusted by {roots}"));
            } else {
                match crate::config::plain_http_warning(url) {
                    Some(warning) => findings.warn(scope, "tls", &warning),
                    None => findings.pass(scope, "tls", "not used: plain http to this host"),
                }
            }
            true
        }
        Err(cause @ Cause::Tls(_)) => {
            findings.pass(scope, "reachable", &format!("{url}: connected"));
            findings.fail(scope, "tls", &cause.to_string());
            false
        }
        Err(cause) => {
            findings.fail(scope, "reachable", &format!("{url}: {cause}"));
            false
        }
    }
}

/// A signed isuser question: any answer but "signature mismatch" proves
/// the secret.
async fn jsxc_secret(client: &Arc<HttpClient>, target: &Target, findings: &mut Findings) {
    let scope = target.scope.as_str();
    let spec = &target.spec;
    let jsxc = JsxcBackend::new(
        Arc::clone(client),
        spec.url.clone(),
        spec.secret.clone(),
        spec.auth_domain.clone(),
    );
    match jsxc
        .ask(PROBE_USER, &backend::jsxc::Operation::IsUser)
        .await
    {
        Ok(_) => findings.pass(
            scope,
            "secret",
            "a signed isuser request was answered: the API secret is right",
        ),
        Err(BackendError::Throttled(cause)) => {
            findings.fail(scope, "throttle", &format!("{cause}: {ALLOWLIST_HINT}"))
        }
        Err(e) => findings.fail(scope, "secret", &e.cause().to_string()),
    }
}

/// Looks up the API account's own account: proves its password and that
/// the provisioning API answers; a 429 or a slow answer is throttling.
async fn api_account(client: &Arc<HttpClient>, target: &Target, findings: &mut Findings) {
    let scope = target.scope.as_str();
    let spec = &target.spec;
    let Some(api) = &spec.api else {
        findings.warn(
            scope,
            "api-account",
            "no api-user: isuser knows only users the cache saw log in, and the shared \
             roster is off; set api-user= and api-password-file= (an app password of an \
             admin, or of a subadmin of the groups to share)",
        );
        return;
    };
    if api.password.is_empty() {
        findings.fail(
            scope,
            "api-account",
            &format!(
                "api-user {:?} has no password: set api-password-file=",
                api.user
            ),
        );
        return;
    }
    let nextcloud = NextcloudBackend::new(
        Arc::clone(client),
        NextcloudSettings {
            base: spec.url.clone(),
            auth_domain: spec.auth_domain.clone(),
            login_form: spec.login_form,
            api: spec.api.clone(),
            roster_ttl: spec.roster_ttl,
        },
    );
    let started = Instant::now();
    let result = nextcloud.probe_api_account().await;
    let took = started.elapsed();
    match result {
        Ok(data) => {
            let admin = data["groups"]
                .as_array()
                .is_some_and(|groups| groups.iter().any(|g| g.as_str() == Some("admin")));
            let rights = if admin {
                "an admin"
            } else {
                "not an admin: it must be a subadmin of the groups to share"
            };
            findings.pass(
                scope,
                "api-account",
                &format!(
                    "{:?} can log in and use the provisioning API ({rights})",
                    api.user
                ),
            );
        }
        Err(BackendError::Throttled(cause)) => {
            findings.fail(scope, "throttle", &format!("{cause}: {ALLOWLIST_HINT}"));
            return;
        }
        Err(e) => {
            findings.fail(scope, "api-account", &e.cause().to_string());
            return;
        }
    }
    let ms = took.as_millis();
    if took >= SLOW_ANSWER {
        findings.warn(
            scope,
            "throttle",
            &format!(
                "the API account's lookup took {ms} ms: Nextcloud may be delaying this \
                 address after failed logins (brute-force protection); {ALLOWLIST_HINT}"
            ),
        );
    } else {
        findings.pass(
            scope,
            "throttle",
            &format!("answered in {ms} ms, no sign of a brute-force delay"),
        );
    }
}

/// `--user`: who is tested, and the password for the auth test.
pub(crate) struct UserTest<'a> {
    /// `USER@DOMAIN`.
    pub(crate) jid: &'a str,
    /// For the auth test; `None`: none.
    pub(crate) password: Option<&'a Secret>,
}

/// isuser, roster and (with a password) auth for a real user, through the
/// back end the service would ask for its domain.
pub(crate) async fn user(
    client: &Arc<HttpClient>,
    global: &Global,
    targets: &[Target],
    test: &UserTest<'_>,
    findings: &mut Findings,
) {
    let scope = format!("user {}", test.jid);
    let Some((user, domain)) = test
        .jid
        .rsplit_once('@')
        .filter(|(u, d)| !u.is_empty() && !d.is_empty())
    else {
        findings.fail(&scope, "user", "expected USER@DOMAIN");
        return;
    };
    // The domain as the service would see it.
    let domain = match canonical_domain(domain) {
        Ok(domain) => domain,
        Err(why) => {
            findings.fail(&scope, "user", &format!("not a valid domain: {why}"));
            return;
        }
    };
    let spec = match targets
        .iter()
        .find(|t| t.domain.as_deref() == Some(domain.as_str()))
    {
        Some(target) => target.spec.clone(),
        None => match global.spec(&domain) {
            Some(spec) => spec,
            None => {
                findings.fail(&scope, "isuser", "no back end for this domain");
                return;
            }
        },
    };
    let backend = backend::build(&spec, client);
    match backend.is_user(user).await {
        Ok(true) => findings.pass(&scope, "isuser", "exists"),
        Ok(false) => findings.fail(
            &scope,
            "isuser",
            "Nextcloud says no such user (or a disabled account)",
        ),
        Err(e) => findings.fail(&scope, "isuser", &e.cause().to_string()),
    }
    match backend.roster(user).await {
        Ok(roster) => {
            let mut groups: Vec<&str> = roster
                .members
                .values()
                .flat_map(|m| m.groups.iter().map(String::as_str))
                .collect();
            groups.sort_unstable();
            groups.dedup();
            findings.pass(
                &scope,
                "roster",
                &format!(
                    "{} members in {} shared groups",
                    roster.members.len(),
                    groups.len()
                ),
            );
        }
        Err(e) => findings.fail(&scope, "roster", &e.cause().to_string()),
    }
    let Some(password) = test.password else {
        return;
    };
    match backend.auth(user, password).await {
        Ok(Verdict::Accepted) => findings.pass(&scope, "auth", "the password is accepted"),
        Ok(Verdict::Rejected) => {
            let hint = backend
                .rejection_hint()
                .map_or_else(String::new, |h| format!(": a wrong password, {h}"));
            findings.fail(&scope, "auth", &format!("the password is refused{hint}"));
        }
        Err(e) => findings.fail(&scope, "auth", &e.cause().to_string()),
    }
}
