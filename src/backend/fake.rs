//! A scripted back end for the library's own tests: answers from a list,
//! records what it was asked.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Backend, BackendError, BackendKind, Cause, Roster, Verdict};
use crate::secret::Secret;

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `auth`: right password.
    Accepted,
    /// `auth`: wrong password.
    Rejected,
    /// `isuser`.
    IsUser(bool),
    /// `roster`.
    Roster(Roster),
}

/// One question the fake was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// `auth` for the user with the password.
    Auth(String, Secret),
    /// `isuser` for the user.
    IsUser(String),
    /// `roster` for the user.
    Roster(String),
}

/// Answers each question with the next scripted reply; panics when asked
/// more often than scripted or answered with the wrong kind of reply.
#[derive(Debug, Default)]
pub struct Scripted {
    replies: Mutex<VecDeque<Result<Reply, BackendError>>>,
    asked: Mutex<Vec<Asked>>,
    down: bool,
    /// Times each answer yields to the scheduler first, so concurrent
    /// callers overlap (a real request awaits the network).
    yields: usize,
}

/// The timeout error, the outage most tests script.
pub fn timeout() -> BackendError {
    BackendError::Unavailable(Cause::Timeout)
}

impl Scripted {
    /// A fake that answers `replies` in order.
    pub fn new(replies: Vec<Result<Reply, BackendError>>) -> Self {
        Scripted {
            replies: Mutex::new(replies.into()),
            asked: Mutex::new(Vec::new()),
            down: false,
            yields: 0,
        }
    }

    /// Like [`new`](Self::new), but each answer first yields a few times.
    pub fn slow(replies: Vec<Result<Reply, BackendError>>) -> Self {
        Scripted {
            yields: 8,
            ..Scripted::new(replies)
        }
    }

    async fn pause(&self) {
        for _ in 0..self.yields {
            tokio::task::yield_now().await;
        }
    }

    /// A fake whose every answer is a refused connection.
    pub fn down() -> Self {
        Scripted {
            down: true,
            ..Scripted::default()
        }
    }

    /// How many questions it was asked.
    pub fn calls(&self) -> usize {
        self.asked.lock().unwrap().len()
    }

    /// The questions, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }

    fn next(&self, asked: Asked) -> Result<Reply, BackendError> {
        self.asked.lock().unwrap().push(asked);
        if self.down {
            return Err(BackendError::Unavailable(Cause::ConnectionRefused));
        }
        let next = self.replies.lock().unwrap().pop_front();
        next.expect("back end asked more often than scripted")
    }
}

#[async_trait]
impl Backend for Scripted {
    fn kind(&self) -> BackendKind {
        BackendKind::Jsxc
    }

    async fn auth(&self, user: &str, password: &Secret) -> Result<Verdict, BackendError> {
        self.pause().await;
        match self.next(Asked::Auth(user.to_owned(), password.clone()))? {
            Reply::Accepted => Ok(Verdict::Accepted),
            Reply::Rejected => Ok(Verdict::Rejected),
            other => panic!("auth answered with {other:?}"),
        }
    }

    async fn is_user(&self, user: &str) -> Result<bool, BackendError> {
        match self.next(Asked::IsUser(user.to_owned()))? {
            Reply::IsUser(known) => Ok(known),
            other => panic!("isuser answered with {other:?}"),
        }
    }

    async fn roster(&self, user: &str) -> Result<Roster, BackendError> {
        match self.next(Asked::Roster(user.to_owned()))? {
            Reply::Roster(roster) => Ok(roster),
            other => panic!("roster answered with {other:?}"),
        }
    }
}
