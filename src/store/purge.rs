//! Deletions that span the tables: everything stored about one user or one virtual host.

use super::roster::{join_list, split_list};
use super::{text, Store, StoreError};

/// "The key ends with `?1`", where `?1` is `@domain`. Plain `LIKE '%@' ||
/// domain` would treat `_` and `%` in the domain as wildcards; `length` and
/// `substr` both count characters, so this compares exactly.
const KEY_ENDS_WITH: &str = "length({col}) >= length(?1) \
     AND substr({col}, length({col}) - length(?1) + 1) = ?1";

/// What [`Store::delete_user`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDeletion {
    /// `authcache` rows deleted (0 or 1).
    pub authcache: usize,
    /// `rosterinfo` rows deleted (0 or 1).
    pub rosterinfo: usize,
    /// Keys of the `rostergroups` whose member list lost the user, sorted
    /// (the caller may mirror this with `srg_user_del`).
    pub groups: Vec<String>,
}

/// What [`Store::delete_host`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostDeletion {
    /// `authcache` rows of the domain deleted.
    pub authcache: usize,
    /// `rosterinfo` rows of the domain deleted.
    pub rosterinfo: usize,
    /// Keys of the deleted `rostergroups` rows, sorted.
    pub groups: Vec<String>,
    /// Whether the `domains` row existed.
    pub domain: bool,
}

impl Store {
    /// Forgets everything cached about `jid`: its `authcache` row and other
    /// credentials (`authcredential`), its `rosterinfo` row, and its membership in every stored group.
    pub fn delete_user(&self, jid: &str) -> Result<UserDeletion, StoreError> {
        self.write(|c| {
            c.execute("DELETE FROM authcredential WHERE jid = ?1", [jid])?;
            let authcache = c.execute("DELETE FROM authcache WHERE jid = ?1", [jid])?;
            let rosterinfo = c.execute("DELETE FROM rosterinfo WHERE jid = ?1", [jid])?;
            // instr() narrows the scan; membership is decided on the split list.
            let candidates: Vec<(String, String)> = c
                .prepare(
                    "SELECT groupname, userlist FROM rostergroups \
                     WHERE instr(userlist, ?1) > 0 ORDER BY groupname",
                )?
                .query_map([jid], |r| {
                    Ok((
                        text(r, 0)?.unwrap_or_default(),
                        text(r, 1)?.unwrap_or_default(),
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut groups = Vec::new();
            for (group, list) in candidates {
                let members = split_list(&list);
                if !members.iter().any(|m| m == jid) {
                    continue;
                }
                let rest: Vec<String> = members.into_iter().filter(|m| m != jid).collect();
                c.execute(
                    "UPDATE rostergroups SET userlist = ?2 WHERE groupname = ?1",
                    [group.as_str(), &join_list(&rest)],
                )?;
                groups.push(group);
            }
            Ok(UserDeletion {
                authcache,
                rosterinfo,
                groups,
            })
        })
    }

    /// Forgets a whole virtual host: the `authcache`, `authcredential` and
    /// `rosterinfo` rows of JIDs ending in `@domain`, the groups whose key ends in `@domain`,
    /// and the `domains` row. `x@sub.domain` and `x@otherdomain` stay.
    pub fn delete_host(&self, domain: &str) -> Result<HostDeletion, StoreError> {
        let suffix = format!("@{domain}");
        let jid_match = KEY_ENDS_WITH.replace("{col}", "jid");
        let group_match = KEY_ENDS_WITH.replace("{col}", "groupname");
        self.write(|c| {
            c.execute(
                &format!("DELETE FROM authcredential WHERE {jid_match}"),
                [&suffix],
            )?;
            let authcache = c.execute(
                &format!("DELETE FROM authcache WHERE {jid_match}"),
                [&suffix],
            )?;
            let rosterinfo = c.execute(
                &format!("DELETE FROM rosterinfo WHERE {jid_match}"),
                [&suffix],
            )?;
            let groups: Vec<String> = c
                .prepare(&format!(
                    "SELECT groupname FROM rostergroups WHERE {group_match} ORDER BY groupname"
                ))?
                .query_map([&suffix], |r| Ok(text(r, 0)?.unwrap_or_default()))?
                .collect::<rusqlite::Result<_>>()?;
            c.execute(
                &format!("DELETE FROM rostergroups WHERE {group_match}"),
                [&suffix],
            )?;
            c.execute("DELETE FROM domainbackend WHERE xmppdomain = ?1", [domain])?;
            let domain = c.execute("DELETE FROM domains WHERE xmppdomain = ?1", [domain])? > 0;
            Ok(HostDeletion {
                authcache,
                rosterinfo,
                groups,
                domain,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{mem, strings};

    const ODD_DOMAINS: [&str; 6] = [
        "ex_ample.org",
        "ex%ample.org",
        "o'neil.example",
        "quote\".example",
        "spa ce.example",
        "zoë.example",
    ];

    #[test]
    fn odd_names_in_every_delete_function() {
        for domain in ODD_DOMAINS {
            let store = mem();
            let jid = format!("o'b_r%i \"ë\"@{domain}");
            let group = format!("g'_%ë@{domain}");
            store.put_domain(domain, "s", "u", domain, None, 1).unwrap();
            store.cache_store(&jid, "h", 1).unwrap();
            store.set_fullname(&jid, "O'Brïen").unwrap();
            store
                .set_roster_group(&group, std::slice::from_ref(&jid))
                .unwrap();

            assert_eq!(
                store.cache_get(&jid).unwrap().map(|e| e.jid),
                Some(jid.clone())
            );
            assert!(store.cache_delete_if_hash(&jid, "h").unwrap(), "{domain}");
            store.cache_store(&jid, "h", 1).unwrap();
            assert!(store.cache_delete(&jid).unwrap(), "{domain}");
            assert!(store.delete_roster_group(&group).unwrap(), "{domain}");
            assert!(store.delete_domain(domain).unwrap(), "{domain}");

            store.cache_store(&jid, "h", 1).unwrap();
            store
                .set_roster_group(&group, &[jid.clone(), format!("x@{domain}")])
                .unwrap();
            let d = store.delete_user(&jid).unwrap();
            assert_eq!((d.authcache, d.rosterinfo), (1, 1), "{domain}");
            assert_eq!(d.groups, vec![group.clone()]);
            assert_eq!(
                store.roster_group(&group).unwrap(),
                Some(vec![format!("x@{domain}")])
            );

            store.put_domain(domain, "s", "u", domain, None, 1).unwrap();
            store.cache_store(&jid, "h", 1).unwrap();
            store.set_roster_hash(&jid, "r", 1).unwrap();
            let h = store.delete_host(domain).unwrap();
            assert_eq!(
                h,
                HostDeletion {
                    authcache: 1,
                    rosterinfo: 1,
                    groups: vec![group.clone()],
                    domain: true
                },
                "{domain}"
            );
            assert_eq!(store.cache_count().unwrap(), 0);
        }
    }

    #[test]
    fn delete_host_keeps_lookalike_domains() {
        let store = mem();
        // `_` and `%` must not act as LIKE wildcards: "exXample.org" and
        // "ex_ample.org" are different hosts.
        let keep = [
            "alice@xexample.org",
            "alice@sub.example.org",
            "alice@example.org.evil",
            "alice@example.orgx",
            "alice@other-domain",
            "alice@exXample.org",
            "alice@ex_ample.org",
            "alice@ex%ample.org",
            "example.org",
            "alice@EXAMPLE.ORG",
        ];
        let gone = ["alice@example.org", "b@example.org", "x@y@example.org"];
        for jid in keep.iter().chain(&gone) {
            store.cache_store(jid, "h", 1).unwrap();
            store.set_roster_hash(jid, "r", 1).unwrap();
            store
                .set_roster_group(&format!("g-{jid}"), &[jid.to_string()])
                .unwrap();
        }
        store
            .put_domain("example.org", "s", "u", "a", None, 1)
            .unwrap();
        store
            .put_domain("xexample.org", "s", "u", "a", None, 1)
            .unwrap();

        let h = store.delete_host("example.org").unwrap();
        assert_eq!((h.authcache, h.rosterinfo, h.domain), (3, 3, true));
        assert_eq!(
            h.groups,
            strings(&[
                "g-alice@example.org",
                "g-b@example.org",
                "g-x@y@example.org"
            ])
        );
        let mut left: Vec<String> = store
            .cache_list()
            .unwrap()
            .into_iter()
            .map(|e| e.jid)
            .collect();
        let mut want = strings(&keep);
        want.sort();
        left.sort();
        assert_eq!(left, want);
        for jid in keep {
            assert!(store.roster_info(jid).unwrap().is_some(), "{jid}");
            assert!(
                store.roster_group(&format!("g-{jid}")).unwrap().is_some(),
                "{jid}"
            );
        }
        assert!(store.domain("xexample.org").unwrap().is_some());

        // Same with a domain that contains the wildcards itself.
        let h = store.delete_host("ex_ample.org").unwrap();
        assert_eq!((h.authcache, h.rosterinfo, h.domain), (1, 1, false));
        assert!(store.cache_get("alice@exXample.org").unwrap().is_some());
        let h = store.delete_host("ex%ample.org").unwrap();
        assert_eq!(h.authcache, 1);
        assert!(store.cache_get("alice@exXample.org").unwrap().is_some());
    }

    #[test]
    fn delete_user_matches_whole_members_only() {
        let store = mem();
        store
            .set_roster_group(
                "g@example.org",
                &strings(&[
                    "alice@example.org",
                    "alice@example.org.evil",
                    "xalice@example.org",
                ]),
            )
            .unwrap();
        store
            .set_roster_group("h@example.org", &strings(&["alice@example.orgx"]))
            .unwrap();
        store.cache_store("alice@example.org.evil", "h", 1).unwrap();
        let d = store.delete_user("alice@example.org").unwrap();
        assert_eq!(
            d,
            UserDeletion {
                authcache: 0,
                rosterinfo: 0,
                groups: strings(&["g@example.org"])
            }
        );
        assert_eq!(
            store.roster_group("g@example.org").unwrap(),
            Some(strings(&["alice@example.org.evil", "xalice@example.org"]))
        );
        assert_eq!(
            store.roster_group("h@example.org").unwrap(),
            Some(strings(&["alice@example.orgx"]))
        );
        assert_eq!(store.cache_count().unwrap(), 1);
    }
}
