//! What the running stand-in holds: users, secret, the injected fault, the latency and request counters.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use xcauth::secret::Secret;

use crate::api::{self, Fields, Reply};
use crate::ocs::Ocs;
use crate::users::UserTable;

/// A misbehaviour to inject into API answers (control endpoints and other
/// paths are never affected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Behave like Nextcloud.
    None,
    /// HTTP 500 with the app's error JSON.
    Http500,
    /// HTTP 404 with Nextcloud's "Page not found" page.
    Http404,
    /// Read the request, then never answer: the connection stays open
    /// until the client gives up or the fault is switched to another mode.
    Hang,
    /// Read the request, then close the connection without an answer.
    Close,
    /// HTTP 200 with an HTML page.
    Nonjson,
    /// HTTP 302 to the login page.
    Redirect,
    /// HTTP 200 with JSON of an unexpected shape.
    Badshape,
    /// Answer as if the signature did not match.
    Wrongsig,
}

impl Fault {
    /// The mode's name on the command line and the control endpoint.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Http500 => "http500",
            Fault::Http404 => "http404",
            Fault::Hang => "hang",
            Fault::Close => "close",
            Fault::Nonjson => "nonjson",
            Fault::Redirect => "redirect",
            Fault::Badshape => "badshape",
            Fault::Wrongsig => "wrongsig",
        }
    }

    /// Reads a mode name (as `--fault` accepts it).
    pub fn parse(name: &str) -> Option<Fault> {
        <Fault as clap::ValueEnum>::from_str(name.trim(), true).ok()
    }
}

/// What to do with one API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send this.
    Reply(Reply),
    /// Never answer.
    Hang,
    /// Drop the connection without an answer.
    Close,
}

#[derive(Debug, Default)]
struct Stats {
    requests: u64,
    /// API requests being answered now, and the most there ever were.
    in_flight: u64,
    max_in_flight: u64,
    by_operation: BTreeMap<String, u64>,
    last: Option<(String, String, String)>,
}

/// The shared state of a running stand-in.
#[derive(Debug)]
pub struct State {
    /// Swapped whole by a reload. A table is leaked when it is swapped in:
    /// reloads are rare (a test changing Nextcloud's users), and a
    /// `'static` table lets every request keep its borrowed view unlocked.
    users: RwLock<&'static UserTable>,
    /// Where `--users` came from, for `POST /_standin/users/reload`.
    users_file: Option<PathBuf>,
    secret: Secret,
    /// A watch channel rather than a plain value so hanging requests learn
    /// when the mode changes.
    fault: watch::Sender<Fault>,
    latency: Mutex<Duration>,
    stats: Mutex<Stats>,
    /// Nextcloud's stock OCS APIs (the same fault and latency apply).
    ocs: Ocs,
}

/// One API request being answered (see [`State::answering`]).
pub struct InFlight<'a>(&'a State);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut stats = lock(&self.0.stats);
        stats.in_flight = stats.in_flight.saturating_sub(1);
    }
}

/// The counters stay meaningful after a panic elsewhere, so a poisoned lock
/// is simply taken over.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// A stand-in serving `users`, checking signatures against `secret`.
    pub fn new(users: UserTable, secret: Secret, fault: Fault, latency: Duration) -> State {
        State {
            users: RwLock::new(Box::leak(Box::new(users))),
            users_file: None,
            secret,
            fault: watch::Sender::new(fault),
            latency: Mutex::new(latency),
            stats: Mutex::new(Stats::default()),
            ocs: Ocs::default(),
        }
    }

    /// The same stand-in with these OCS APIs.
    pub fn with_ocs(self, ocs: Ocs) -> State {
        State { ocs, ..self }
    }

    /// The same stand-in, reloading its users from `path` on request.
    pub fn with_users_file(self, path: Option<PathBuf>) -> State {
        State {
            users_file: path,
            ..self
        }
    }

    /// Reads the users file again and serves its users from now on, on the
    /// JSXC API and the OCS APIs alike: the number of users, or why the
    /// file was refused (the old users stay).
    pub fn reload_users(&self) -> Result<usize, String> {
        let Some(path) = &self.users_file else {
            return Err("started without --users".to_owned());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let users = UserTable::parse(&text).map_err(|e| format!("in {}: {e}", path.display()))?;
        let count = users.len();
        let users: &'static UserTable = Box::leak(Box::new(users));
        *self.users.write().unwrap_or_else(PoisonError::into_inner) = users;
        self.ocs.replace_users(users);
        Ok(count)
    }

    /// The OCS APIs.
    pub fn ocs(&self) -> &Ocs {
        &self.ocs
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Switches the fault for the following requests.
    pub fn set_fault(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Returns once the fault is no longer [`Fault::Hang`] (at once if it
    /// is not now).
    pub async fn hang_over(&self) {
        let mut changes = self.fault.subscribe();
        // Err only if the sender is gone, i.e. never while `self` lives.
        let _ = changes.wait_for(|fault| *fault != Fault::Hang).await;
    }

    /// The delay before each API answer.
    pub fn latency(&self) -> Duration {
        *lock(&self.latency)
    }

    /// Sets the delay before each API answer.
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.latency) = latency;
    }

    /// Counts one API request (whatever its fate) and remembers its fields.
    pub fn record(&self, fields: &Fields) {
        let mut stats = lock(&self.stats);
        stats.requests += 1;
        let key = if fields.operation.is_empty() {
            "(none)".to_owned()
        } else {
            fields.operation.clone()
        };
        *stats.by_operation.entry(key).or_insert(0) += 1;
        stats.last = Some((
            fields.operation.clone(),
            fields.username.clone(),
            fields.domain.clone(),
        ));
    }

    /// Zeroes the counters.
    pub fn reset(&self) {
        *lock(&self.stats) = Stats::default();
    }

    /// Counts an API request as being answered until the returned value is
    /// dropped (`max_in_flight` in the stats: how many at once at most).
    pub fn answering(&self) -> InFlight<'_> {
        let mut stats = lock(&self.stats);
        stats.in_flight += 1;
        stats.max_in_flight = stats.max_in_flight.max(stats.in_flight);
        InFlight(self)
    }

    /// `{"requests":N,"by_operation":{...},"last":{...}|null}` (the last
    /// request's operation, username and domain; never its password).
    pub fn stats_json(&self) -> String {
        let stats = lock(&self.stats);
        let last = match &stats.last {
            Some((operation, username, domain)) => serde_json::json!({
                "operation": operation,
                "username": username,
                "domain": domain,
            }),
            None => serde_json::Value::Null,
        };
        serde_json::json!({
            "requests": stats.requests,
            "max_in_flight": stats.max_in_flight,
            "by_operation": stats.by_operation,
            "last": last,
        })
        .to_string()
    }

    /// The answer to one API request under the current fault.
    pub fn outcome(&self, signature: Option<&str>, body: &[u8], fields: &Fields) -> Outcome {
        let reply = match self.fault() {
            Fault::None => {
                let users: &UserTable = *self.users.read().unwrap_or_else(PoisonError::into_inner);
                api::respond(users, &self.secret, signature, body, fields)
            }
            Fault::Http500 => Reply::error("Internal Server Error"),
            Fault::Http404 => Reply::not_found(),
            Fault::Hang => return Outcome::Hang,
            Fault::Close => return Outcome::Close,
            Fault::Nonjson => Reply::html_page(),
            Fault::Redirect => Reply::login_redirect(),
            Fault::Badshape => Reply::bad_shape(),
            Fault::Wrongsig => Reply::error(&api::SignatureError::Mismatch.message()),
        };
        Outcome::Reply(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let users = UserTable::parse("alice\tpw\n").unwrap();
        State::new(users, Secret::new("k"), Fault::None, Duration::ZERO)
    }

    #[test]
    fn every_fault_name_parses_back() {
        use clap::ValueEnum;
        for fault in Fault::value_variants() {
            assert_eq!(Fault::parse(fault.name()), Some(*fault));
        }
        assert_eq!(Fault::parse(" HTTP500\n"), Some(Fault::Http500));
        assert_eq!(Fault::parse("explode"), None);
    }

    #[test]
    fn faults_replace_the_answer() {
        let s = state();
        let fields = Fields::parse_form(b"operation=isuser&username=alice");
        // unsigned, so without a fault the signature check answers
        let Outcome::Reply(normal) = s.outcome(None, b"", &fields) else {
            panic!("expected a reply");
        };
        assert_eq!(normal.status, 500);
        assert!(normal.body.contains("is missing"));

        let expect = [
            (Fault::Http500, 500, "\"result\":\"error\""),
            (Fault::Http404, 404, "Page not found"),
            (Fault::Nonjson, 200, "<!DOCTYPE html>"),
            (Fault::Redirect, 302, ""),
            (Fault::Badshape, 200, "\"ocs\""),
            (Fault::Wrongsig, 500, "Signature does not match."),
        ];
        for (fault, status, needle) in expect {
            s.set_fault(fault);
            match s.outcome(None, b"", &fields) {
                Outcome::Reply(reply) => {
                    assert_eq!(reply.status, status, "{fault:?}");
                    assert!(reply.body.contains(needle), "{fault:?}: {}", reply.body);
                }
                other => panic!("{fault:?} gave {other:?}"),
            }
        }
        s.set_fault(Fault::Hang);
        assert_eq!(s.outcome(None, b"", &fields), Outcome::Hang);
        s.set_fault(Fault::Close);
        assert_eq!(s.outcome(None, b"", &fields), Outcome::Close);
    }

    #[tokio::test]
    async fn hanging_ends_when_the_fault_changes() {
        let s = std::sync::Arc::new(state());
        s.hang_over().await; // not hanging: returns at once
        s.set_fault(Fault::Hang);
        let waiter = tokio::spawn({
            let s = std::sync::Arc::clone(&s);
            async move { s.hang_over().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.set_fault(Fault::None);
        waiter.await.unwrap();
    }

    #[test]
    fn counters_count_and_reset() {
        let s = state();
        s.record(&Fields::parse_form(
            b"operation=auth&username=a&domain=d&password=secret-pw",
        ));
        s.record(&Fields::parse_form(b"operation=auth&username=b"));
        s.record(&Fields::parse_form(b""));
        let stats: serde_json::Value = serde_json::from_str(&s.stats_json()).unwrap();
        assert_eq!(stats["requests"], 3);
        assert_eq!(stats["by_operation"]["auth"], 2);
        assert_eq!(stats["by_operation"]["(none)"], 1);
        assert_eq!(stats["last"]["operation"], "");
        s.record(&Fields::parse_form(
            b"operation=auth&username=a&domain=d&password=secret-pw",
        ));
        let text = s.stats_json();
        assert!(!text.contains("secret-pw"));
        let stats: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(stats["last"]["domain"], "d");
        s.reset();
        let stats: serde_json::Value = serde_json::from_str(&s.stats_json()).unwrap();
        assert_eq!(
            stats,
            serde_json::json!({"requests": 0, "max_in_flight": 0, "by_operation": {}, "last": null})
        );
    }
}
