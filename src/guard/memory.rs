//! The guard's state in process memory: every process keeps one, as its only state without a database and as the fallback when the database cannot be used. One lock makes weighing and reserving an attempt one step.

use std::collections::HashMap;
use std::sync::Mutex;

use super::count::{assess, Assessment, Attempt, Mark};
use super::{GuardSettings, GuardStore, Scope};
use crate::store::StoreError;
use crate::sync::lock;

/// Keys kept in memory at most; past it the least recently marked eighth
/// is dropped, never a key that is blocked or has an attempt in flight.
pub const MAX_MEMORY_KEYS: usize = 100_000;
/// Marks kept per key at most (the counts never need more).
pub const MAX_FAILURES_PER_KEY: usize = 256;

/// One mark in memory; a pending one has its reservation number and the
/// time it stops counting if never settled.
#[derive(Debug, Clone)]
struct Entry {
    mark: Mark,
    reservation: Option<(i64, i64)>,
}

#[derive(Debug, Default)]
struct State {
    keys: HashMap<(Scope, String), Vec<Entry>>,
    notices: HashMap<(Scope, String), i64>,
    /// The key of each reservation in flight.
    reservations: HashMap<i64, (Scope, String)>,
    next_reservation: i64,
}

/// Guard state in process memory, bounded.
#[derive(Debug)]
pub struct MemoryGuard {
    settings: GuardSettings,
    max_keys: usize,
    inner: Mutex<State>,
}

impl MemoryGuard {
    /// Empty state weighing attempts with `settings` (which also say which
    /// keys are blocked and so are never dropped).
    pub fn new(settings: GuardSettings) -> MemoryGuard {
        MemoryGuard::with_capacity(settings, MAX_MEMORY_KEYS)
    }

    /// [`MemoryGuard::new`] with another key bound (tests use small ones).
    pub fn with_capacity(settings: GuardSettings, max_keys: usize) -> MemoryGuard {
        MemoryGuard {
            settings,
            max_keys: max_keys.max(8),
            inner: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.inner)
    }

    /// Keys held now.
    pub fn keys(&self) -> usize {
        self.state().keys.len()
    }

    /// Records a failure directly (no reservation before it).
    pub fn record(&self, scope: Scope, key: &str, digest: &str, at: i64) {
        let mut state = self.state();
        self.make_room(&mut state, at);
        push(
            &mut state,
            scope,
            key,
            Entry {
                mark: Mark {
                    digest: digest.to_owned(),
                    at,
                    pending: false,
                },
                reservation: None,
            },
        );
    }

    /// Drops the least recently marked eighth of the keys that are neither
    /// blocked nor in flight, once the bound is reached.
    fn make_room(&self, state: &mut State, now: i64) {
        if state.keys.len() < self.max_keys {
            return;
        }
        let mut idle: Vec<(i64, (Scope, String))> = state
            .keys
            .iter()
            .filter(|(k, entries)| !self.protected(k.0, entries, now))
            .map(|(k, entries)| {
                (
                    entries.iter().map(|e| e.mark.at).max().unwrap_or(0),
                    k.clone(),
                )
            })
            .collect();
        idle.sort_by_key(|(newest, _)| *newest);
        for (_, key) in idle.into_iter().take(self.max_keys / 8) {
            state.keys.remove(&key);
            state.notices.remove(&key);
        }
    }

    /// Blocked now, or with an attempt in flight.
    fn protected(&self, scope: Scope, entries: &[Entry], now: i64) -> bool {
        if entries.iter().any(|e| e.mark.pending) {
            return true;
        }
        let marks: Vec<Mark> = entries.iter().map(|e| e.mark.clone()).collect();
        let probe = Attempt {
            digest: String::new(),
            account: String::new(),
            address: Some(String::new()),
            now,
        };
        let settings = GuardSettings {
            negative_ttl: 0,
            ..self.settings.clone()
        };
        let (jid, address): (&[Mark], &[Mark]) = match scope {
            Scope::Jid => (&marks, &[]),
            Scope::Address => (&[], &marks),
        };
        assess(&settings, &probe, jid, address) != Assessment::Ask
    }
}

fn push(state: &mut State, scope: Scope, key: &str, entry: Entry) {
    let list = state.keys.entry((scope, key.to_owned())).or_default();
    list.push(entry);
    if list.len() > MAX_FAILURES_PER_KEY {
        // The oldest settled mark goes; attempts in flight stay counted.
        if let Some(i) = list.iter().position(|e| e.reservation.is_none()) {
            list.remove(i);
        }
    }
}

fn marks(state: &State, scope: Scope, key: &str, since: i64, now: i64) -> Vec<Mark> {
    state
        .keys
        .get(&(scope, key.to_owned()))
        .map(|list| {
            list.iter()
                .filter(|e| match e.reservation {
                    Some((_, hold_until)) => hold_until >= now,
                    None => e.mark.at >= since,
                })
                .map(|e| e.mark.clone())
                .collect()
        })
        .unwrap_or_default()
}

impl MemoryGuard {
    /// What [`GuardStore::reserve`] would say, without reserving.
    pub fn peek(&self, settings: &GuardSettings, attempt: &Attempt) -> Assessment {
        let state = self.state();
        let since = attempt.since(settings);
        let jid = marks(&state, Scope::Jid, &attempt.account, since, attempt.now);
        let address = match &attempt.address {
            Some(a) => marks(&state, Scope::Address, a, since, attempt.now),
            None => Vec::new(),
        };
        assess(settings, attempt, &jid, &address)
    }
}

impl GuardStore for MemoryGuard {
    fn reserve(
        &self,
        settings: &GuardSettings,
        attempt: &Attempt,
    ) -> Result<(Assessment, Vec<i64>), StoreError> {
        let mut state = self.state();
        let since = attempt.since(settings);
        let jid = marks(&state, Scope::Jid, &attempt.account, since, attempt.now);
        let address = match &attempt.address {
            Some(a) => marks(&state, Scope::Address, a, since, attempt.now),
            None => Vec::new(),
        };
        let verdict = assess(settings, attempt, &jid, &address);
        if verdict != Assessment::Ask {
            return Ok((verdict, Vec::new()));
        }
        self.make_room(&mut state, attempt.now);
        let mut tickets = Vec::new();
        let keys = [
            (Scope::Jid, Some(&attempt.account)),
            (Scope::Address, attempt.address.as_ref()),
        ];
        for (scope, key) in keys {
            let Some(key) = key else { continue };
            state.next_reservation += 1;
            let id = state.next_reservation;
            let mark = Mark {
                digest: attempt.digest.clone(),
                at: attempt.now,
                pending: true,
            };
            push(
                &mut state,
                scope,
                key,
                Entry {
                    mark,
                    reservation: Some((id, attempt.hold_until())),
                },
            );
            state.reservations.insert(id, (scope, key.to_owned()));
            tickets.push(id);
        }
        Ok((Assessment::Ask, tickets))
    }

    fn settle(&self, tickets: &[i64], failed: bool, now: i64) -> Result<(), StoreError> {
        if tickets.is_empty() {
            return Ok(());
        }
        let mut state = self.state();
        for id in tickets {
            let Some(key) = state.reservations.remove(id) else {
                continue;
            };
            let Some(list) = state.keys.get_mut(&key) else {
                continue;
            };
            list.retain_mut(|e| match e.reservation {
                Some((r, _)) if r == *id => {
                    e.reservation = None;
                    e.mark.pending = false;
                    e.mark.at = now;
                    failed
                }
                _ => true,
            });
            if list.is_empty() {
                state.keys.remove(&key);
            }
        }
        Ok(())
    }

    fn notice(&self, scope: Scope, key: &str, until: i64) -> Result<bool, StoreError> {
        let mut state = self.state();
        let slot = state
            .notices
            .entry((scope, key.to_owned()))
            .or_insert(i64::MIN);
        if *slot >= until {
            return Ok(false);
        }
        *slot = until;
        Ok(true)
    }

    fn expire(&self, before: i64, now: i64) -> Result<(), StoreError> {
        let mut state = self.state();
        state.keys.retain(|_, list| {
            list.retain(|e| match e.reservation {
                Some((_, hold_until)) => hold_until >= now,
                None => e.mark.at >= before,
            });
            !list.is_empty()
        });
        let State {
            keys, reservations, ..
        } = &mut *state;
        reservations.retain(|_, key| keys.contains_key(key));
        state.notices.retain(|_, until| *until >= before);
        Ok(())
    }
}
