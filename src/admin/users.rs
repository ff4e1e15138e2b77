//! `xcauth user|group|host|roster|cache ...`: what is stored about users, shared roster groups, virtual hosts and cached logins.

use super::report::{counted, listed, shown, split_at_sign, table, Report};
use super::{Context, EXIT_PARTIAL};
use crate::config::CacheStorage;
use crate::store::{format_timestamp, StoreError};

/// Forgets a user, and mirrors the group memberships into ejabberd.
pub(super) fn delete_user(cx: &Context<'_>, r: &mut Report, jid: &str) -> Result<(), StoreError> {
    let gone = cx.store.delete_user(jid)?;
    if gone.authcache == 0 && gone.rosterinfo == 0 && gone.groups.is_empty() {
        r.missing(format!("nothing stored for {}", shown(jid)));
        return Ok(());
    }
    r.line(format!(
        "deleted {}: {}, {}, removed from {}",
        shown(jid),
        counted(gone.authcache, "cache entry", "cache entries"),
        counted(gone.rosterinfo, "roster state row", "roster state rows"),
        listed(&gone.groups, "group", "groups"),
    ));
    if let Some(ctl) = cx.ctl {
        let (local, user_domain) = split_at_sign(jid);
        let mut ok = true;
        for key in &gone.groups {
            let (group, group_domain) = split_at_sign(key);
            let args = ["srg_user_del", local, user_domain, group, group_domain];
            ok &= ctl.call(r, &args);
        }
        if !ok {
            r.status = EXIT_PARTIAL;
        }
    }
    Ok(())
}

/// Forgets a shared roster group, and deletes it in ejabberd.
pub(super) fn delete_group(cx: &Context<'_>, r: &mut Report, key: &str) -> Result<(), StoreError> {
    let known = cx.store.delete_roster_group(key)?;
    if known {
        r.line(format!("deleted group {}", shown(key)));
    } else {
        r.missing(format!("no stored group {}", shown(key)));
    }
    // Also when the database did not know it: ejabberd may still
    // have it (the original called srg_delete either way).
    if let Some(ctl) = cx.ctl {
        let (group, domain) = split_at_sign(key);
        if !ctl.call(r, &["srg_delete", group, domain]) && known {
            r.status = EXIT_PARTIAL;
        }
    }
    Ok(())
}

/// Forgets a virtual host.
pub(super) fn delete_host(
    cx: &Context<'_>,
    r: &mut Report,
    domain: &str,
) -> Result<(), StoreError> {
    let gone = cx.store.delete_host(domain)?;
    if gone.authcache == 0 && gone.rosterinfo == 0 && gone.groups.is_empty() && !gone.domain {
        r.missing(format!("nothing stored for host {}", shown(domain)));
        return Ok(());
    }
    r.line(format!(
        "deleted host {}: {}, {}, {}, {}",
        shown(domain),
        counted(gone.authcache, "cache entry", "cache entries"),
        counted(gone.rosterinfo, "roster state row", "roster state rows"),
        listed(&gone.groups, "group", "groups"),
        if gone.domain {
            "its domain row"
        } else {
            "no domain row"
        },
    ));
    if !gone.groups.is_empty() {
        r.note(
            "ejabberd keeps its own shared roster groups; remove them there \
                     (`xcauth group delete GROUP@DOMAIN --ejabberdctl PATH` runs srg_delete)",
        );
    }
    Ok(())
}

/// Has the roster of `jid` (of everybody) rebuilt at the next login.
pub(super) fn refresh_roster(
    cx: &Context<'_>,
    r: &mut Report,
    jid: Option<&str>,
) -> Result<(), StoreError> {
    match jid {
        Some(jid) => match cx.store.roster_info(jid)? {
            None => r.missing(format!("no roster state for {}", shown(jid))),
            Some(_) => {
                let cleared = cx.store.clear_roster_hashes(Some(jid))?;
                if cleared == 0 {
                    r.line(format!(
                        "{}: the roster is already rebuilt at the next login",
                        shown(jid)
                    ));
                } else {
                    r.line(format!(
                        "{}: the roster is rebuilt at the next login",
                        shown(jid)
                    ));
                }
            }
        },
        None => {
            let cleared = cx.store.clear_roster_hashes(None)?;
            r.line(format!(
                "cleared {}; each roster is rebuilt at its user's next login",
                counted(cleared, "roster hash", "roster hashes")
            ));
        }
    }
    Ok(())
}

/// Lists the cached logins, one line per credential (a JID has one per
/// device with its own app password), never the hashes.
pub(super) fn list_cache(cx: &Context<'_>, r: &mut Report) -> Result<(), StoreError> {
    note_cache_storage(r, cx.cache_storage);
    let entries = cx.store.credential_list()?;
    let cells: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                shown(&e.jid),
                format_timestamp(e.firstauth),
                format_timestamp(e.remoteauth),
                format_timestamp(e.anyauth),
            ]
        })
        .collect();
    let header = [
        "JID",
        "FIRST LOGIN (UTC)",
        "LAST BACK-END CHECK (UTC)",
        "LAST LOGIN (UTC)",
    ];
    r.out.extend(table(&header, &cells));
    let mut jids: Vec<&str> = entries.iter().map(|e| e.jid.as_str()).collect();
    jids.dedup();
    let summary = counted(jids.len(), "cache entry", "cache entries");
    if entries.len() > jids.len() {
        r.line(format!(
            "{summary}, {}",
            counted(entries.len(), "credential", "credentials")
        ));
    } else {
        r.line(summary);
    }
    Ok(())
}

/// Deletes the cache entry of `jid`, with all its credentials (all
/// entries).
pub(super) fn flush_cache(
    cx: &Context<'_>,
    r: &mut Report,
    jid: Option<&str>,
) -> Result<(), StoreError> {
    match jid {
        Some(jid) => {
            note_cache_storage(r, cx.cache_storage);
            if cx.store.cache_delete(jid)? {
                r.line(format!("flushed 1 cache entry ({})", shown(jid)));
            } else {
                r.line("flushed 0 cache entries");
                r.missing(format!("no cache entry for {}", shown(jid)));
            }
        }
        None => {
            note_cache_storage(r, cx.cache_storage);
            let flushed = cx.store.cache_flush()?;
            r.line(format!(
                "flushed {}",
                counted(flushed, "cache entry", "cache entries")
            ));
        }
    }
    Ok(())
}

/// Says so when the server does not use the database cache.
fn note_cache_storage(r: &mut Report, storage: CacheStorage) {
    let name = match storage {
        CacheStorage::Db => return,
        CacheStorage::None => "none",
        CacheStorage::Memory => "memory",
    };
    r.note(format!(
        "note: the configuration says cache-storage={name}, so the server does not use \
         these rows"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::tests::{strings, Fixture, ODD};
    use crate::admin::{cli::Action, perform, EXIT_DONE, EXIT_MISSING};
    use crate::store::Store;
    use std::path::Path;

    #[test]
    fn user_delete_mirrors_group_membership_into_ejabberd() {
        for odd in ODD {
            let f = Fixture::new(Vec::new());
            let jid = format!("{odd}@dom {odd}");
            let other = format!("other@dom {odd}");
            let group = format!("g {odd}@dom {odd}");
            f.store.cache_store(&jid, "h", 1).unwrap();
            f.store.cache_store(&other, "h", 1).unwrap();
            f.store.set_roster_hash(&jid, "r", 1).unwrap();
            f.store
                .set_roster_group(&group, &[jid.clone(), other.clone()])
                .unwrap();

            let r = f.run(Action::UserDelete { jid: jid.clone() }, true);
            assert_eq!(r.status, EXIT_DONE, "{r:?}");
            assert_eq!(
                f.calls(),
                vec![strings(&[
                    "srg_user_del",
                    odd,
                    &format!("dom {odd}"),
                    &format!("g {odd}"),
                    &format!("dom {odd}")
                ])]
            );
            assert_eq!(f.store.cache_get(&jid).unwrap(), None);
            assert!(f.store.cache_get(&other).unwrap().is_some());
            assert_eq!(f.store.roster_info(&jid).unwrap(), None);
            assert_eq!(f.store.roster_group(&group).unwrap(), Some(vec![other]));

            let again = f.run(Action::UserDelete { jid }, true);
            assert_eq!(again.status, EXIT_MISSING);
            assert_eq!(f.calls().len(), 1, "no ejabberdctl call for nothing");
        }
    }

    #[test]
    fn failed_ejabberdctl_is_partial_and_says_what_to_run() {
        let f = Fixture::new(vec!["srg_user_del", "srg_delete"]);
        f.store
            .set_roster_group("it's@example.org", &strings(&["a b@example.org"]))
            .unwrap();
        let r = f.run(
            Action::UserDelete {
                jid: "a b@example.org".into(),
            },
            true,
        );
        assert_eq!(r.status, EXIT_PARTIAL);
        assert!(
            r.err[0].contains(r"srg_user_del 'a b' example.org 'it'\''s' example.org failed"),
            "{r:?}"
        );
        // The database side is done anyway.
        assert_eq!(
            f.store.roster_group("it's@example.org").unwrap(),
            Some(Vec::new())
        );

        let r = f.run(
            Action::GroupDelete {
                key: "it's@example.org".into(),
            },
            true,
        );
        assert_eq!(r.status, EXIT_PARTIAL);
        let r = f.run(
            Action::GroupDelete {
                key: "it's@example.org".into(),
            },
            true,
        );
        assert_eq!(r.status, EXIT_MISSING, "missing wins over partial");
    }

    #[test]
    fn group_delete_runs_srg_delete_even_when_unknown() {
        let f = Fixture::new(Vec::new());
        f.store
            .set_roster_group("staff_%;ë@example.org", &strings(&["a@example.org"]))
            .unwrap();
        let r = f.run(
            Action::GroupDelete {
                key: "staff_%;ë@example.org".into(),
            },
            true,
        );
        assert_eq!(r.status, EXIT_DONE, "{r:?}");
        assert_eq!(f.store.roster_group("staff_%;ë@example.org").unwrap(), None);
        let r = f.run(
            Action::GroupDelete {
                key: "gone@example.org".into(),
            },
            true,
        );
        assert_eq!(r.status, EXIT_MISSING);
        assert_eq!(
            f.calls(),
            vec![
                strings(&["srg_delete", "staff_%;ë", "example.org"]),
                strings(&["srg_delete", "gone", "example.org"]),
            ]
        );
        // Without ejabberdctl, nothing is run.
        f.store.set_roster_group("x@example.org", &[]).unwrap();
        let r = f.run(
            Action::GroupDelete {
                key: "x@example.org".into(),
            },
            false,
        );
        assert_eq!(r.status, EXIT_DONE);
        assert_eq!(f.calls().len(), 2);
    }

    #[test]
    fn host_roster_and_cache() {
        let f = Fixture::new(Vec::new());
        for jid in ["a@ex_am%ple.org", "b@ex_am%ple.org", "a@exXamYple.org"] {
            f.store.cache_store(jid, "$2b$04$secret-hash", 1).unwrap();
            f.store.set_roster_hash(jid, "r", 1).unwrap();
        }
        let list = f.run(Action::CacheList, false);
        assert_eq!(list.out.len(), 5, "{list:?}");
        // Sorted by JID: `X` sorts before `_`.
        assert_eq!(
            list.out[2],
            "a@ex_am%ple.org  1970-01-01 00:00:01  1970-01-01 00:00:01        1970-01-01 00:00:01"
        );
        assert_eq!(list.out[4], "3 cache entries");
        assert!(!list.out.join("\n").contains("secret-hash"));

        let r = f.run(
            Action::RosterRefresh {
                jid: Some("a@ex_am%ple.org".into()),
            },
            false,
        );
        assert_eq!(r.status, EXIT_DONE);
        assert_eq!(
            f.store
                .roster_info("a@ex_am%ple.org")
                .unwrap()
                .unwrap()
                .responsehash,
            None
        );
        let r = f.run(
            Action::RosterRefresh {
                jid: Some("nobody@x".into()),
            },
            false,
        );
        assert_eq!(r.status, EXIT_MISSING);
        let r = f.run(Action::RosterRefresh { jid: None }, false);
        assert_eq!(
            r.out,
            strings(&["cleared 2 roster hashes; each roster is rebuilt at its user's next login"])
        );

        let r = f.run(
            Action::HostDelete {
                domain: "ex_am%ple.org".into(),
            },
            false,
        );
        assert_eq!(r.status, EXIT_DONE, "{r:?}");
        assert_eq!(f.store.cache_count().unwrap(), 1);
        assert!(f.store.cache_get("a@exXamYple.org").unwrap().is_some());
        let r = f.run(
            Action::HostDelete {
                domain: "ex_am%ple.org".into(),
            },
            false,
        );
        assert_eq!(r.status, EXIT_MISSING);

        let r = f.run(
            Action::CacheFlush {
                jid: Some("zz@x".into()),
            },
            false,
        );
        assert_eq!(
            (r.status, r.out.clone()),
            (EXIT_MISSING, strings(&["flushed 0 cache entries"]))
        );
        let r = f.run(Action::CacheFlush { jid: None }, false);
        assert_eq!(r.out, strings(&["flushed 1 cache entry"]));
        assert_eq!(f.store.cache_count().unwrap(), 0);
    }

    #[test]
    fn cache_commands_say_when_the_server_does_not_use_the_table() {
        let store = Store::open(Path::new(":memory:")).unwrap();
        for (storage, noted) in [
            (CacheStorage::None, true),
            (CacheStorage::Memory, true),
            (CacheStorage::Db, false),
        ] {
            let cx = Context {
                store: &store,
                ctl: None,
                now: 0,
                cache_storage: storage,
                guard: crate::guard::GuardSettings::default(),
            };
            let r = perform(Action::CacheList, &cx).unwrap();
            assert_eq!(!r.err.is_empty(), noted, "{storage:?}");
        }
    }
}
