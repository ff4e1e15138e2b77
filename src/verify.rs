//! The decision: one place that answers `auth`, `isuser` and `roster` for
//! every protocol (SPEC §6). Token first, then the back end. No sockets
//! here; the back end and the clock are passed in.

use std::sync::Arc;

use tracing::{debug, info, warn};

use crate::backend::{Answer, Backend, BackendError, Endpoint, Query};
use crate::clock::Clock;
use crate::proto::{Reply, Request};
use crate::secret::Secret;
use crate::token::{TokenCheck, TokenKey};

/// The settings one XMPP domain is served with: its back end and the key
/// its tokens are checked with.
#[derive(Clone)]
pub struct DomainSettings {
    /// Where back-end questions for this domain go.
    pub endpoint: Endpoint,
    /// Token key derived from the endpoint's secret.
    pub token_key: Arc<TokenKey>,
}

/// Finds the settings for a domain (SPEC §7): a per-domain row, else the
/// global URL and secret.
pub trait Domains: Send + Sync {
    /// Settings for `domain`, or `None` when nothing is configured for it.
    fn lookup(&self, domain: &str) -> Option<DomainSettings>;
}

/// Only the global `--url`/`--secret`; the auth domain is the XMPP domain.
pub struct GlobalOnly {
    url: Option<String>,
    secret: Secret,
    token_key: Arc<TokenKey>,
}

impl GlobalOnly {
    /// Settings from the global URL (if any) and secret.
    pub fn new(url: Option<String>, secret: Secret) -> Self {
        let token_key = Arc::new(TokenKey::new(secret.expose().as_bytes()));
        GlobalOnly {
            url,
            secret,
            token_key,
        }
    }
}

impl Domains for GlobalOnly {
    fn lookup(&self, domain: &str) -> Option<DomainSettings> {
        let url = self.url.clone()?;
        Some(DomainSettings {
            endpoint: Endpoint {
                url,
                secret: self.secret.clone(),
                auth_domain: domain.to_owned(),
            },
            token_key: Arc::clone(&self.token_key),
        })
    }
}

/// How an `auth` was decided; drives the log line and the roster update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// A valid JSXC token.
    Token,
    /// The back end said yes.
    Backend,
    /// The back end said no.
    Rejected,
    /// The back end could not be asked and nothing else allowed the login.
    Unreachable(BackendError),
    /// No URL or secret is configured for the domain.
    NoBackend,
}

impl AuthOutcome {
    /// True for the outcomes that let the user in.
    pub fn is_success(&self) -> bool {
        matches!(self, AuthOutcome::Token | AuthOutcome::Backend)
    }
}

/// Answers requests; shared by every stream of a process.
pub struct Verifier {
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    domains: Arc<dyn Domains>,
}

impl Verifier {
    /// A verifier asking `backend`, with "now" from `clock`.
    pub fn new(
        backend: Arc<dyn Backend>,
        clock: Arc<dyn Clock>,
        domains: Arc<dyn Domains>,
    ) -> Self {
        Verifier {
            backend,
            clock,
            domains,
        }
    }

    /// Answers one decoded request. `Quit` and `Invalid` never reach the
    /// back end.
    pub async fn handle(self: Arc<Self>, request: Request) -> Reply {
        match request {
            Request::Auth {
                user,
                domain,
                password,
            } => {
                if self.auth(&user, &domain, &password).await.is_success() {
                    Reply::Yes
                } else {
                    Reply::No
                }
            }
            Request::IsUser { user, domain } => self.isuser(&user, &domain).await,
            Request::Roster { user, domain } => match self.roster(&user, &domain).await {
                Some(json) => Reply::Roster(json),
                None => Reply::No,
            },
            Request::Invalid { reason } => {
                info!("refused request: {reason}");
                Reply::Invalid(reason)
            }
            Request::Quit => Reply::No,
        }
    }

    /// Is `password` right for `user@domain`? Token, then back end.
    pub async fn auth(&self, user: &str, domain: &str, password: &Secret) -> AuthOutcome {
        let now = self.clock.now();
        let Some(settings) = self.domains.lookup(domain) else {
            warn!("auth {user}@{domain}: no API URL configured for this domain");
            return AuthOutcome::NoBackend;
        };
        match settings
            .token_key
            .check(user, domain, password.expose(), now)
        {
            TokenCheck::Valid => {
                debug!("auth {user}@{domain}: valid token");
                return AuthOutcome::Token;
            }
            TokenCheck::Expired => debug!("auth {user}@{domain}: expired token"),
            TokenCheck::BadMac => {
                warn!(
                    "auth {user}@{domain}: token with a bad signature (forged, or another secret?)"
                )
            }
            TokenCheck::NotAToken => {}
        }
        let query = Query::Auth(password.clone());
        let outcome = match self.backend.query(&settings.endpoint, user, &query).await {
            Ok(Answer::Authenticated) => AuthOutcome::Backend,
            Ok(Answer::Rejected) => AuthOutcome::Rejected,
            Ok(other) => AuthOutcome::Unreachable(BackendError::Malformed(format!(
                "unexpected answer to auth: {}",
                answer_kind(&other)
            ))),
            Err(e) => AuthOutcome::Unreachable(e),
        };
        match &outcome {
            AuthOutcome::Backend => debug!("auth {user}@{domain}: accepted by back end"),
            AuthOutcome::Rejected => {
                info!("auth {user}@{domain}: wrong password (back end said noauth)")
            }
            AuthOutcome::Unreachable(e) => {
                warn!("auth {user}@{domain}: failed, back end unreachable: {e}")
            }
            AuthOutcome::Token | AuthOutcome::NoBackend => {}
        }
        outcome
    }

    /// Does `user@domain` exist? `TryLater` when the back end cannot say.
    pub async fn isuser(&self, user: &str, domain: &str) -> Reply {
        let Some(settings) = self.domains.lookup(domain) else {
            warn!("isuser {user}@{domain}: no API URL configured for this domain");
            return Reply::TryLater;
        };
        match self
            .backend
            .query(&settings.endpoint, user, &Query::IsUser)
            .await
        {
            Ok(Answer::IsUser(true)) => {
                debug!("isuser {user}@{domain}: yes");
                Reply::Yes
            }
            Ok(Answer::IsUser(false)) => {
                info!("isuser {user}@{domain}: no such user");
                Reply::No
            }
            Ok(other) => {
                warn!(
                    "isuser {user}@{domain}: unexpected answer {}",
                    answer_kind(&other)
                );
                Reply::TryLater
            }
            Err(e) => {
                warn!("isuser {user}@{domain}: back end unreachable: {e}");
                Reply::TryLater
            }
        }
    }

    /// The shared roster JSON of `user@domain`, or `None` on failure.
    pub async fn roster(&self, user: &str, domain: &str) -> Option<String> {
        let Some(settings) = self.domains.lookup(domain) else {
            warn!("roster {user}@{domain}: no API URL configured for this domain");
            return None;
        };
        match self
            .backend
            .query(&settings.endpoint, user, &Query::SharedRoster)
            .await
        {
            Ok(Answer::Roster { roster_json, .. }) => Some(roster_json),
            Ok(other) => {
                warn!(
                    "roster {user}@{domain}: unexpected answer {}",
                    answer_kind(&other)
                );
                None
            }
            Err(e) => {
                warn!("roster {user}@{domain}: back end unreachable: {e}");
                None
            }
        }
    }
}

fn answer_kind(answer: &Answer) -> &'static str {
    match answer {
        Answer::Authenticated => "authenticated",
        Answer::Rejected => "rejected",
        Answer::IsUser(_) => "isuser",
        Answer::Roster { .. } => "roster",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// A back end that answers from a script and records what it was asked.
    struct Scripted {
        answers: Mutex<Vec<Result<Answer, BackendError>>>,
        seen: Mutex<Vec<(String, String, Query)>>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<Answer, BackendError>>) -> Arc<Self> {
            Arc::new(Scripted {
                answers: Mutex::new(answers),
                seen: Mutex::new(Vec::new()),
            })
        }
        fn calls(&self) -> usize {
            self.seen.lock().unwrap().len()
        }
    }

    #[async_trait]
    impl Backend for Scripted {
        async fn query(
            &self,
            endpoint: &Endpoint,
            user: &str,
            query: &Query,
        ) -> Result<Answer, BackendError> {
            self.seen.lock().unwrap().push((
                user.to_owned(),
                endpoint.auth_domain.clone(),
                query.clone(),
            ));
            let mut answers = self.answers.lock().unwrap();
            assert!(
                !answers.is_empty(),
                "back end asked more often than scripted"
            );
            answers.remove(0)
        }
    }

    fn verifier(backend: Arc<Scripted>, now: i64) -> (Arc<Verifier>, Arc<FixedClock>) {
        let clock = Arc::new(FixedClock::new(now));
        let domains = Arc::new(GlobalOnly::new(
            Some("http://127.0.0.1:1/api".into()),
            Secret::new("01234"),
        ));
        (
            Arc::new(Verifier::new(backend, clock.clone(), domains)),
            clock,
        )
    }

    fn auth(user: &str, domain: &str, password: &str) -> Request {
        Request::Auth {
            user: user.into(),
            domain: domain.into(),
            password: Secret::new(password),
        }
    }

    #[tokio::test]
    async fn valid_token_never_asks_the_back_end() {
        let backend = Scripted::new(vec![]);
        let (v, _) = verifier(backend.clone(), 2000);
        let reply = v
            .handle(auth("tuser", "tdomain", "AMydsCzkh8-8vjcb9U2gqV/FZQAAEfg"))
            .await;
        assert_eq!(reply, Reply::Yes);
        assert_eq!(backend.calls(), 0);
    }

    #[tokio::test]
    async fn expiry_uses_the_time_of_each_request() {
        let backend = Scripted::new(vec![Ok(Answer::Rejected)]);
        let (v, clock) = verifier(backend.clone(), 2000);
        let token = "AMydsCzkh8-8vjcb9U2gqV/FZQAAEfg";
        assert_eq!(
            v.clone().handle(auth("tuser", "tdomain", token)).await,
            Reply::Yes
        );
        clock.set(5000);
        // Expired now: falls through to the back end, which says no.
        assert_eq!(v.handle(auth("tuser", "tdomain", token)).await, Reply::No);
        assert_eq!(backend.calls(), 1);
    }

    #[tokio::test]
    async fn back_end_answers_map_to_replies() {
        let backend = Scripted::new(vec![
            Ok(Answer::Authenticated),
            Ok(Answer::Rejected),
            Err(BackendError::Timeout),
            Ok(Answer::IsUser(true)),
            Ok(Answer::IsUser(false)),
            Err(BackendError::ConnectionRefused),
        ]);
        let (v, _) = verifier(backend.clone(), 2000);
        assert_eq!(
            v.clone().handle(auth("a", "d", "pw:with:colons")).await,
            Reply::Yes
        );
        assert_eq!(v.clone().handle(auth("a", "d", "wrong")).await, Reply::No);
        assert_eq!(v.clone().handle(auth("a", "d", "pw")).await, Reply::No);
        let isuser = || Request::IsUser {
            user: "a".into(),
            domain: "d".into(),
        };
        assert_eq!(v.clone().handle(isuser()).await, Reply::Yes);
        assert_eq!(v.clone().handle(isuser()).await, Reply::No);
        assert_eq!(v.clone().handle(isuser()).await, Reply::TryLater);
        let seen = backend.seen.lock().unwrap();
        assert_eq!(seen[0].2, Query::Auth(Secret::new("pw:with:colons")));
        assert_eq!(seen[0].1, "d", "auth domain defaults to the XMPP domain");
        assert_eq!(seen[3].2, Query::IsUser);
    }

    #[tokio::test]
    async fn a_wrong_answer_kind_is_not_a_success() {
        let backend = Scripted::new(vec![Ok(Answer::IsUser(true))]);
        let (v, _) = verifier(backend, 2000);
        assert_eq!(v.handle(auth("a", "d", "pw")).await, Reply::No);
    }

    #[tokio::test]
    async fn invalid_requests_get_the_failure_reply_without_back_end() {
        let backend = Scripted::new(vec![]);
        let (v, _) = verifier(backend.clone(), 2000);
        let reply = v
            .handle(Request::Invalid {
                reason: "setpass".into(),
            })
            .await;
        assert_eq!(reply, Reply::Invalid("setpass".into()));
        assert_eq!(backend.calls(), 0);
    }

    #[tokio::test]
    async fn no_url_means_failure_not_success() {
        let backend = Scripted::new(vec![]);
        let clock = Arc::new(FixedClock::new(2000));
        let v = Arc::new(Verifier::new(
            backend.clone(),
            clock,
            Arc::new(GlobalOnly::new(None, Secret::new("01234"))),
        ));
        assert_eq!(v.clone().handle(auth("a", "d", "pw")).await, Reply::No);
        let isuser = Request::IsUser {
            user: "a".into(),
            domain: "d".into(),
        };
        assert_eq!(v.handle(isuser).await, Reply::TryLater);
        assert_eq!(backend.calls(), 0);
    }
}
