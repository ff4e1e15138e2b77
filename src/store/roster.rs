//! Queries of the shared-roster tables: `rosterinfo` (one row a JID) and `rostergroups` (one row a group), with their tab-separated lists (SPEC §9).

use rusqlite::OptionalExtension;

use super::{format_timestamp, text, timestamp, Store, StoreError};

/// Separator of the member lists in `rostergroups.userlist` and
/// `rosterinfo.grouplist`.
const LIST_SEPARATOR: char = '\t';

/// One row of `rosterinfo`: shared-roster state of one JID (SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterInfo {
    /// `user@domain`.
    pub jid: String,
    /// Full name last sent to ejabberd's vCard.
    pub fullname: Option<String>,
    /// Tab-separated groups the user was last put in (see [`split_list`]).
    pub grouplist: Option<String>,
    /// SHA-256 (hex) of the last `sharedroster` reply.
    pub responsehash: Option<String>,
    /// When `responsehash` was stored, seconds since the epoch.
    pub last_update: Option<i64>,
}

/// Splits a stored tab-separated list; an empty string is an empty list.
pub fn split_list(list: &str) -> Vec<String> {
    if list.is_empty() {
        Vec::new()
    } else {
        list.split(LIST_SEPARATOR).map(str::to_owned).collect()
    }
}

/// Joins a list for storage: sorted, without duplicates, tab-separated (the
/// original stored its sets this way).
pub(super) fn join_list(items: &[String]) -> String {
    let mut sorted: Vec<&str> = items.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join("\t")
}

impl Store {
    /// The `rosterinfo` row of `jid`, if any.
    pub fn roster_info(&self, jid: &str) -> Result<Option<RosterInfo>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT jid, fullname, grouplist, responsehash, last_update \
                 FROM rosterinfo WHERE jid = ?1",
            )?
            .query_row([jid], |r| {
                Ok(RosterInfo {
                    jid: text(r, 0)?.unwrap_or_default(),
                    fullname: text(r, 1)?,
                    grouplist: text(r, 2)?,
                    responsehash: text(r, 3)?,
                    last_update: timestamp(r, 4)?,
                })
            })
            .optional()
        })
    }

    /// Stores the hash of the latest `sharedroster` reply of `jid` and
    /// `last_update = now`.
    pub fn set_roster_hash(&self, jid: &str, hash: &str, now: i64) -> Result<(), StoreError> {
        let ts = format_timestamp(now);
        self.upsert_rosterinfo(
            jid,
            "UPDATE rosterinfo SET responsehash = ?2, last_update = ?3 WHERE jid = ?1",
            "INSERT INTO rosterinfo (jid, responsehash, last_update) VALUES (?1, ?2, ?3)",
            &[hash, &ts],
        )
    }

    /// Stores the full name last sent to ejabberd for `jid`.
    pub fn set_fullname(&self, jid: &str, name: &str) -> Result<(), StoreError> {
        self.upsert_rosterinfo(
            jid,
            "UPDATE rosterinfo SET fullname = ?2 WHERE jid = ?1",
            "INSERT INTO rosterinfo (jid, fullname) VALUES (?1, ?2)",
            &[name],
        )
    }

    /// Stores the groups `jid` is in (sorted, tab-separated).
    pub fn set_grouplist(&self, jid: &str, groups: &[String]) -> Result<(), StoreError> {
        let list = join_list(groups);
        self.upsert_rosterinfo(
            jid,
            "UPDATE rosterinfo SET grouplist = ?2 WHERE jid = ?1",
            "INSERT INTO rosterinfo (jid, grouplist) VALUES (?1, ?2)",
            &[&list],
        )
    }

    /// UPDATE-then-INSERT of some `rosterinfo` columns; `?1` is the JID,
    /// `?2...` the `values`.
    fn upsert_rosterinfo(
        &self,
        jid: &str,
        update: &str,
        insert: &str,
        values: &[&str],
    ) -> Result<(), StoreError> {
        let params: Vec<&str> = std::iter::once(jid).chain(values.iter().copied()).collect();
        let params = rusqlite::params_from_iter(params);
        self.write(|c| {
            if c.prepare_cached(update)?.execute(params.clone())? == 0 {
                c.prepare_cached(insert)?.execute(params)?;
            }
            Ok(())
        })
    }

    /// Members of the shared-roster group `groupname` (`group@domain`) as
    /// last stored, or `None` if the group is unknown.
    pub fn roster_group(&self, groupname: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT userlist FROM rostergroups WHERE groupname = ?1")?
                .query_row([groupname], |r| text(r, 0))
                .optional()
        })
        .map(|found| found.map(|list| split_list(&list.unwrap_or_default())))
    }

    /// Stores the members of `groupname` (sorted, tab-separated).
    pub fn set_roster_group(&self, groupname: &str, members: &[String]) -> Result<(), StoreError> {
        let list = join_list(members);
        self.write(|c| {
            if c.prepare_cached("UPDATE rostergroups SET userlist = ?2 WHERE groupname = ?1")?
                .execute([groupname, &list])?
                == 0
            {
                c.prepare_cached("INSERT INTO rostergroups (groupname, userlist) VALUES (?1, ?2)")?
                    .execute([groupname, &list])?;
            }
            Ok(())
        })
    }

    /// Forgets the group `groupname`; true if it was known.
    pub fn delete_roster_group(&self, groupname: &str) -> Result<bool, StoreError> {
        self.write(|c| {
            Ok(
                c.prepare_cached("DELETE FROM rostergroups WHERE groupname = ?1")?
                    .execute([groupname])?
                    > 0,
            )
        })
    }

    /// The keys (`group@domain`) of every stored shared-roster group, sorted.
    pub fn roster_group_names(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT groupname FROM rostergroups ORDER BY groupname")?
                .query_map([], |r| Ok(text(r, 0)?.unwrap_or_default()))?
                .collect()
        })
    }

    /// Retires the group stored as `key` (`old@domain`) in favour of the
    /// id `new`, in one transaction: the row goes, every `rosterinfo.grouplist`
    /// of a user of `domain` naming `old` names `new` instead, and the
    /// stored hashes of those users and of the group's members are cleared
    /// (so their next login synchronises again). Returns the JIDs whose
    /// state changed, sorted; `None` if there was no such row.
    pub fn retire_roster_group(
        &self,
        key: &str,
        new: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let Some((old, domain)) = key.rsplit_once('@') else {
            return Ok(None);
        };
        self.write(|c| {
            let members: Option<Option<String>> = c
                .prepare_cached("SELECT userlist FROM rostergroups WHERE groupname = ?1")?
                .query_row([key], |r| text(r, 0))
                .optional()?;
            let Some(members) = members else {
                return Ok(None);
            };
            c.prepare_cached("DELETE FROM rostergroups WHERE groupname = ?1")?
                .execute([key])?;
            let mut touched: Vec<String> = split_list(&members.unwrap_or_default());
            let rows: Vec<(String, String)> = c
                .prepare_cached(
                    "SELECT jid, grouplist FROM rosterinfo \
                     WHERE grouplist IS NOT NULL AND grouplist <> ''",
                )?
                .query_map([], |r| {
                    Ok((
                        text(r, 0)?.unwrap_or_default(),
                        text(r, 1)?.unwrap_or_default(),
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            for (jid, list) in rows {
                // A grouplist names groups of its user's login domain.
                if jid.split_once('@').map(|(_, d)| d) != Some(domain) {
                    continue;
                }
                let groups = split_list(&list);
                if !groups.iter().any(|g| g == old) {
                    continue;
                }
                let renamed: Vec<String> = groups
                    .into_iter()
                    .map(|g| if g == old { new.to_owned() } else { g })
                    .collect();
                c.prepare_cached("UPDATE rosterinfo SET grouplist = ?2 WHERE jid = ?1")?
                    .execute([jid.as_str(), &join_list(&renamed)])?;
                touched.push(jid);
            }
            touched.sort_unstable();
            touched.dedup();
            for jid in &touched {
                c.prepare_cached("UPDATE rosterinfo SET responsehash = NULL WHERE jid = ?1")?
                    .execute([jid])?;
            }
            Ok(Some(touched))
        })
    }

    /// Clears the stored `sharedroster` hash of `jid` (or of everybody), so
    /// the next login synchronises the roster again. Returns how many hashes
    /// were cleared.
    pub fn clear_roster_hashes(&self, jid: Option<&str>) -> Result<usize, StoreError> {
        self.write(|c| match jid {
            Some(jid) => c.execute(
                "UPDATE rosterinfo SET responsehash = NULL \
                 WHERE jid = ?1 AND responsehash IS NOT NULL",
                [jid],
            ),
            None => c.execute(
                "UPDATE rosterinfo SET responsehash = NULL WHERE responsehash IS NOT NULL",
                [],
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{mem, strings};

    #[test]
    fn roster_state() {
        let store = mem();
        store.set_fullname("a@d", "Ann").unwrap();
        store.set_roster_hash("a@d", "h1", 50).unwrap();
        store
            .set_grouplist("a@d", &strings(&["staff@d", "all@d", "staff@d"]))
            .unwrap();
        let info = store.roster_info("a@d").unwrap().unwrap();
        assert_eq!(info.fullname.as_deref(), Some("Ann"));
        assert_eq!(info.responsehash.as_deref(), Some("h1"));
        assert_eq!(info.last_update, Some(50));
        assert_eq!(info.grouplist.as_deref(), Some("all@d\tstaff@d"));
        store.set_grouplist("a@d", &[]).unwrap();
        let info = store.roster_info("a@d").unwrap().unwrap();
        assert_eq!(info.grouplist.as_deref(), Some(""));
        assert_eq!(split_list(""), Vec::<String>::new());

        store.set_roster_hash("b@d", "h2", 60).unwrap();
        assert_eq!(store.clear_roster_hashes(Some("a@d")).unwrap(), 1);
        assert_eq!(store.clear_roster_hashes(Some("a@d")).unwrap(), 0);
        assert_eq!(
            store.roster_info("a@d").unwrap().unwrap().responsehash,
            None
        );
        assert_eq!(
            store
                .roster_info("b@d")
                .unwrap()
                .unwrap()
                .responsehash
                .as_deref(),
            Some("h2")
        );
        store.set_roster_hash("a@d", "h3", 70).unwrap();
        assert_eq!(store.clear_roster_hashes(None).unwrap(), 2);
        // Full name survives a hash change.
        assert_eq!(
            store
                .roster_info("a@d")
                .unwrap()
                .unwrap()
                .fullname
                .as_deref(),
            Some("Ann")
        );

        assert_eq!(store.roster_group("g@d").unwrap(), None);
        store
            .set_roster_group("g@d", &strings(&["c@d", "a@d", "b@d"]))
            .unwrap();
        assert_eq!(
            store.roster_group("g@d").unwrap(),
            Some(strings(&["a@d", "b@d", "c@d"]))
        );
        store.set_roster_group("g@d", &[]).unwrap();
        assert_eq!(store.roster_group("g@d").unwrap(), Some(Vec::new()));
        assert_eq!(store.roster_group_names().unwrap(), strings(&["g@d"]));
        assert!(store.delete_roster_group("g@d").unwrap());
        assert!(!store.delete_roster_group("g@d").unwrap());
        assert_eq!(store.roster_group("g@d").unwrap(), None);
    }

    #[test]
    fn retiring_a_group_renames_it_in_grouplists_and_clears_hashes() {
        let store = mem();
        store
            .set_roster_group("Ops & Co.@d", &strings(&["a@d", "x@other"]))
            .unwrap();
        store
            .set_roster_group("staff@d", &strings(&["a@d"]))
            .unwrap();
        for (jid, groups) in [
            ("a@d", &["Ops & Co.", "staff"][..]),
            ("b@d", &["Ops & Co."][..]),
            ("c@d", &["staff"][..]),
            ("e@elsewhere", &["Ops & Co."][..]),
        ] {
            store.set_roster_hash(jid, "h", 1).unwrap();
            store.set_grouplist(jid, &strings(groups)).unwrap();
        }
        store.set_roster_hash("x@other", "h", 1).unwrap();
        let touched = store
            .retire_roster_group("Ops & Co.@d", "ops_co-0123456789abcdef")
            .unwrap();
        assert_eq!(touched, Some(strings(&["a@d", "b@d", "x@other"])));
        assert_eq!(store.roster_group("Ops & Co.@d").unwrap(), None);
        assert_eq!(store.roster_group_names().unwrap(), strings(&["staff@d"]));
        let info = |jid: &str| store.roster_info(jid).unwrap().unwrap();
        assert_eq!(
            info("a@d").grouplist.as_deref(),
            Some("ops_co-0123456789abcdef\tstaff")
        );
        assert_eq!(info("a@d").responsehash, None);
        assert_eq!(
            info("b@d").grouplist.as_deref(),
            Some("ops_co-0123456789abcdef")
        );
        assert_eq!(info("x@other").responsehash, None);
        // Other users and other domains' lists are left alone.
        assert_eq!(info("c@d").responsehash.as_deref(), Some("h"));
        assert_eq!(info("e@elsewhere").grouplist.as_deref(), Some("Ops & Co."));
        assert_eq!(info("e@elsewhere").responsehash.as_deref(), Some("h"));
        assert_eq!(store.retire_roster_group("Ops & Co.@d", "x").unwrap(), None);
    }
}
