//! `xcauth guard list|clear`: the failure guard's state in the database (our `guardfailure` and `guardnotice` tables), shown and lifted.
//!
//! What is counted follows the server's settings from the config file
//! (`negative-ttl`, `guard-jid-*`, `guard-address-*`, `guard-allowlist`),
//! so the list says what the server decides now. Digests are never shown.

use super::report::{counted, shown, table, Report};
use super::Context;
use crate::guard::{blocked_until, client_ip, distinct_times, Failure, GuardSettings, Scope};
use crate::store::{format_timestamp, GuardEntry, StoreError};

/// What the server makes of one key's failures at `now`.
#[derive(Debug, PartialEq, Eq)]
struct State {
    /// Distinct failures in the current window.
    in_window: usize,
    /// The limit, `None` when the rule is off (0) or the key exempt.
    limit: Option<u32>,
    /// The end of the block, if refused now.
    refused_until: Option<i64>,
}

/// The rule of `scope`: (limit, window), `None` when switched off.
fn rule(settings: &GuardSettings, scope: Scope) -> Option<(u32, i64)> {
    let (limit, window) = match scope {
        Scope::Jid => (settings.jid_failures, settings.jid_window),
        Scope::Address => (settings.address_failures, settings.address_window),
    };
    (limit > 0 && window > 0).then_some((limit, window))
}

/// An address key on the allowlist (its failures are not counted).
fn allowlisted(settings: &GuardSettings, entry: &GuardEntry) -> bool {
    entry.scope == Scope::Address
        && client_ip(&entry.key).is_some_and(|ip| settings.allowlist.iter().any(|n| n.contains(ip)))
}

/// The guard's count, as `Guard::check` makes it: distinct digests in the
/// window before `now` (the first failure of each); refused until the
/// limit-th newest of them leaves the window.
fn state(settings: &GuardSettings, entry: &GuardEntry, now: i64) -> State {
    let window = match entry.scope {
        Scope::Jid => settings.jid_window,
        Scope::Address => settings.address_window,
    };
    let since = now - window + 1;
    let recent: Vec<Failure> = entry
        .failures
        .iter()
        .filter(|f| f.at >= since)
        .cloned()
        .collect();
    let times = distinct_times(recent.iter().map(|f| (f.digest.as_str(), f.at)));
    let rule = rule(settings, entry.scope).filter(|_| !allowlisted(settings, entry));
    let refused_until = rule.and_then(|(limit, window)| blocked_until(&times, limit, window));
    State {
        in_window: times.len(),
        limit: rule.map(|(limit, _)| limit),
        refused_until,
    }
}

/// Lists every JID and address with stored failures.
pub(super) fn list(cx: &Context<'_>, r: &mut Report) -> Result<(), StoreError> {
    let entries = cx.store.guard_entries()?;
    let mut refused = 0;
    let cells: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let s = state(&cx.guard, e, cx.now);
            let count = match s.limit {
                Some(limit) => format!("{}/{limit}", s.in_window),
                None if allowlisted(&cx.guard, e) => format!("{} (allowlisted)", s.in_window),
                None => format!("{} (limit off)", s.in_window),
            };
            let status = match s.refused_until {
                Some(until) => {
                    refused += 1;
                    format!("refused until {}", format_timestamp(until))
                }
                None => "no".to_owned(),
            };
            let last = e.failures.iter().map(|f| f.at).max().unwrap_or(0);
            vec![
                e.scope.name().to_owned(),
                shown(&e.key),
                count,
                format_timestamp(last),
                status,
            ]
        })
        .collect();
    let header = [
        "SCOPE",
        "JID/ADDRESS",
        "FAILURES IN WINDOW",
        "LAST FAILURE (UTC)",
        "REFUSED (UTC)",
    ];
    r.out.extend(table(&header, &cells));
    let jids = entries.iter().filter(|e| e.scope == Scope::Jid).count();
    r.line(format!(
        "{} and {} with failures; {} now",
        counted(jids, "JID", "JIDs"),
        counted(entries.len() - jids, "address", "addresses"),
        counted(refused, "refused", "refused"),
    ));
    Ok(())
}

/// Forgets the failures of `key` (a JID or an address), or of all.
pub(super) fn clear(cx: &Context<'_>, r: &mut Report, key: Option<&str>) -> Result<(), StoreError> {
    let cleared = cx.store.guard_clear(key)?;
    let failures = counted(cleared, "failure", "failures");
    match key {
        Some(key) if cleared == 0 => {
            r.line("cleared 0 failures");
            r.missing(format!("no failures of {}", shown(key)));
        }
        Some(key) => r.line(format!(
            "cleared {failures} of {}; it is no longer refused",
            shown(key)
        )),
        None => r.line(format!("cleared {failures}; nothing is refused")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::cli::Action;
    use crate::admin::tests::Fixture;
    use crate::guard::Network;

    fn entry(scope: Scope, key: &str, failures: &[(&str, i64)]) -> GuardEntry {
        GuardEntry {
            scope,
            key: key.to_owned(),
            failures: failures
                .iter()
                .map(|(d, at)| Failure {
                    digest: (*d).to_owned(),
                    at: *at,
                })
                .collect(),
            noticed_until: None,
        }
    }

    #[test]
    fn the_state_counts_as_the_guard_does() {
        let settings = GuardSettings {
            jid_failures: 3,
            jid_window: 100,
            address_failures: 2,
            address_window: 50,
            allowlist: vec![Network::parse("127.0.0.0/8").unwrap()],
            ..GuardSettings::default()
        };
        // A repeated digest counts once; the third distinct closes.
        let e = entry(
            Scope::Jid,
            "a@d",
            &[("x", 10), ("x", 20), ("y", 30), ("z", 40)],
        );
        assert_eq!(
            state(&settings, &e, 50),
            State {
                in_window: 3,
                limit: Some(3),
                refused_until: Some(110)
            }
        );
        // The repeat of x within the window keeps x counted.
        assert_eq!(state(&settings, &e, 110).refused_until, Some(120));
        // Once both x have left the window, open again.
        assert_eq!(state(&settings, &e, 120).refused_until, None);
        assert_eq!(state(&settings, &e, 120).in_window, 2);
        let far = entry(Scope::Address, "192.0.2.1", &[("x", 10), ("y", 20)]);
        assert_eq!(state(&settings, &far, 30).refused_until, Some(60));
        let near = entry(Scope::Address, "127.0.0.1", &[("x", 10), ("y", 20)]);
        assert_eq!(state(&settings, &near, 30).refused_until, None);
        assert_eq!(state(&settings, &near, 30).limit, None);
        let off = GuardSettings {
            jid_failures: 0,
            ..settings
        };
        assert_eq!(state(&off, &e, 50).refused_until, None);
    }

    #[test]
    fn list_and_clear_odd_keys() {
        let f = Fixture::new(vec![]);
        let now = 1_000_000_000;
        for (i, key) in ["o'neil \"x\"@d", "zoë@d"].iter().enumerate() {
            for n in 0..(10 + i) {
                let failure = Failure {
                    digest: format!("d{n}"),
                    at: now - 10,
                };
                f.store.guard_record(Scope::Jid, key, &failure).unwrap();
            }
        }
        f.store
            .guard_record(
                Scope::Address,
                "2001:db8::1",
                &Failure {
                    digest: "d".into(),
                    at: now - 5,
                },
            )
            .unwrap();
        let out = f.run(Action::GuardList, false);
        assert_eq!(out.status, 0);
        let text = out.out.join("\n");
        assert!(text.contains("o'neil \"x\"@d  10/10"), "{text}");
        assert!(text.contains("zoë@d"), "{text}");
        assert!(text.contains("2001:db8::1"), "{text}");
        assert!(text.contains("refused until 2001-09-09 02:01:30"), "{text}");
        assert!(!text.contains("d0"), "no digests: {text}");
        assert!(
            text.ends_with("2 JIDs and 1 address with failures; 2 refused now"),
            "{text}"
        );

        let out = f.run(
            Action::GuardClear {
                key: Some("zoë@d".into()),
            },
            false,
        );
        assert_eq!(
            (out.status, out.out.clone()),
            (
                0,
                vec!["cleared 11 failures of zoë@d; it is no longer refused".to_owned()]
            )
        );
        let out = f.run(
            Action::GuardClear {
                key: Some("zoë@d".into()),
            },
            false,
        );
        assert_eq!(out.status, 1);
        let out = f.run(Action::GuardClear { key: None }, false);
        assert_eq!(out.out, vec!["cleared 11 failures; nothing is refused"]);
        assert_eq!(out.status, 0);
    }
}
