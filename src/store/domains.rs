//! Queries of the `domains` table: the per-domain back ends (SPEC §7).

use std::fmt;

use rusqlite::{OptionalExtension, Row};

use super::{format_timestamp, text, timestamp, Store, StoreError};

/// One row of `domains`: the per-domain back end (SPEC §7).
#[derive(Clone, PartialEq, Eq)]
pub struct DomainRow {
    /// The XMPP domain (the key).
    pub xmppdomain: String,
    /// Shared secret for this domain's back end; never printed by `Debug`.
    pub authsecret: Option<String>,
    /// URL of this domain's back end.
    pub authurl: Option<String>,
    /// Domain sent to Nextcloud in place of the XMPP domain.
    pub authdomain: Option<String>,
    /// Registration contact, free text for administrators.
    pub regcontact: Option<String>,
    /// First registration, seconds since the epoch (0 if unreadable).
    pub regfirst: Option<i64>,
    /// Latest registration change, seconds since the epoch (0 if unreadable).
    pub reglatest: Option<i64>,
    /// The back-end settings beyond the original's columns (table
    /// `domainbackend`, which the original does not know).
    pub backend: DomainBackend,
}

/// A domain's back-end settings that the original's `domains` table has no
/// columns for; kept in our own table `domainbackend`, keyed by
/// `xmppdomain`, so the original reads and writes `domains` as before.
/// Every field `None`: inherit the global setting.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DomainBackend {
    /// `jsxc` or `nextcloud`; `None`: decided by the URL.
    pub kind: Option<String>,
    /// The API account's login name.
    pub apiuser: Option<String>,
    /// The API account's password; never printed by `Debug`.
    pub apipassword: Option<String>,
    /// `user` or `user@domain`.
    pub loginform: Option<String>,
}

impl DomainBackend {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == DomainBackend::default()
    }
}

impl fmt::Debug for DomainBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainBackend")
            .field("kind", &self.kind)
            .field("apiuser", &self.apiuser)
            .field("apipassword", &self.apipassword.as_ref().map(|_| "***"))
            .field("loginform", &self.loginform)
            .finish()
    }
}

impl fmt::Debug for DomainRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainRow")
            .field("xmppdomain", &self.xmppdomain)
            .field("authsecret", &self.authsecret.as_ref().map(|_| "***"))
            .field("authurl", &self.authurl)
            .field("authdomain", &self.authdomain)
            .field("regcontact", &self.regcontact)
            .field("regfirst", &self.regfirst)
            .field("reglatest", &self.reglatest)
            .field("backend", &self.backend)
            .finish()
    }
}

/// Columns to change in an existing `domains` row; `None` keeps a column.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DomainUpdate {
    /// New shared secret; never printed by `Debug`.
    pub secret: Option<String>,
    /// New back-end URL.
    pub url: Option<String>,
    /// New auth domain.
    pub authdomain: Option<String>,
    /// New registration contact; `Some(None)` clears it.
    pub regcontact: Option<Option<String>>,
}

impl fmt::Debug for DomainUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainUpdate")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("url", &self.url)
            .field("authdomain", &self.authdomain)
            .field("regcontact", &self.regcontact)
            .finish()
    }
}

impl Store {
    /// The `domains` row of `xmppdomain`, if any.
    pub fn domain(&self, xmppdomain: &str) -> Result<Option<DomainRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("{SELECT_DOMAINS} WHERE d.xmppdomain = ?1"))?
                .query_row([xmppdomain], domain_row)
                .optional()
        })
    }

    /// All `domains` rows, sorted by domain.
    pub fn domains(&self) -> Result<Vec<DomainRow>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("{SELECT_DOMAINS} ORDER BY d.xmppdomain"))?
                .query_map([], domain_row)?
                .collect()
        })
    }

    /// Sets secret, URL, auth domain and contact of `xmppdomain`, creating
    /// the row if needed (`regfirst = now`); `reglatest = now` either way.
    /// Returns true when the row was created.
    pub fn put_domain(
        &self,
        xmppdomain: &str,
        secret: &str,
        url: &str,
        authdomain: &str,
        regcontact: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let ts = format_timestamp(now);
        self.write(|c| {
            let updated = c
                .prepare_cached(
                    "UPDATE domains SET authsecret = ?2, authurl = ?3, authdomain = ?4, \
                     regcontact = ?5, reglatest = ?6 WHERE xmppdomain = ?1",
                )?
                .execute(rusqlite::params![
                    xmppdomain, secret, url, authdomain, regcontact, ts
                ])?;
            if updated > 0 {
                return Ok(false);
            }
            c.prepare_cached(
                "INSERT INTO domains (xmppdomain, authsecret, authurl, authdomain, \
                 regcontact, regfirst, reglatest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            )?
            .execute(rusqlite::params![
                xmppdomain, secret, url, authdomain, regcontact, ts
            ])?;
            Ok(true)
        })
    }

    /// Changes the given columns of an existing `domains` row and sets
    /// `reglatest = now`. Returns false (and changes nothing) if there is no
    /// such row.
    pub fn update_domain(
        &self,
        xmppdomain: &str,
        update: DomainUpdate,
        now: i64,
    ) -> Result<bool, StoreError> {
        // Only fixed column names go into the SQL text; values are bound.
        let mut sql = String::from("UPDATE domains SET reglatest = ?2");
        let mut values: Vec<Option<String>> = vec![Some(format_timestamp(now))];
        let columns = [
            ("authsecret", update.secret.map(Some)),
            ("authurl", update.url.map(Some)),
            ("authdomain", update.authdomain.map(Some)),
            ("regcontact", update.regcontact),
        ];
        for (column, value) in columns {
            if let Some(value) = value {
                values.push(value);
                sql.push_str(&format!(", {column} = ?{}", values.len() + 1));
            }
        }
        sql.push_str(" WHERE xmppdomain = ?1");
        self.write(|c| {
            let mut stmt = c.prepare(&sql)?;
            stmt.raw_bind_parameter(1, xmppdomain)?;
            for (i, value) in values.iter().enumerate() {
                stmt.raw_bind_parameter(i + 2, value)?;
            }
            Ok(stmt.raw_execute()? > 0)
        })
    }

    /// Sets the back-end settings of `xmppdomain` beyond the original's
    /// columns; a field `None` keeps what is stored. The `domains` row
    /// itself is not touched (see [`put_domain`](Self::put_domain)).
    pub fn set_domain_backend(
        &self,
        xmppdomain: &str,
        backend: &DomainBackend,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            c.prepare_cached(
                "INSERT INTO domainbackend (xmppdomain, backend, apiuser, apipassword, loginform) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (xmppdomain) DO UPDATE SET \
                 backend = coalesce(?2, backend), apiuser = coalesce(?3, apiuser), \
                 apipassword = coalesce(?4, apipassword), loginform = coalesce(?5, loginform)",
            )?
            .execute(rusqlite::params![
                xmppdomain,
                backend.kind,
                backend.apiuser,
                backend.apipassword,
                backend.loginform
            ])?;
            Ok(())
        })
    }

    /// Deletes the `domains` row of `xmppdomain` (and its back-end
    /// settings); true if the row existed.
    pub fn delete_domain(&self, xmppdomain: &str) -> Result<bool, StoreError> {
        self.write(|c| {
            c.prepare_cached("DELETE FROM domainbackend WHERE xmppdomain = ?1")?
                .execute([xmppdomain])?;
            Ok(
                c.prepare_cached("DELETE FROM domains WHERE xmppdomain = ?1")?
                    .execute([xmppdomain])?
                    > 0,
            )
        })
    }
}

/// The `domains` columns in declaration order, then our `domainbackend`
/// columns (NULL where the domain has no such row).
const SELECT_DOMAINS: &str = "SELECT d.xmppdomain, d.authsecret, d.authurl, d.authdomain, \
     d.regcontact, d.regfirst, d.reglatest, b.backend, b.apiuser, b.apipassword, b.loginform \
     FROM domains d LEFT JOIN domainbackend b ON b.xmppdomain = d.xmppdomain";

/// Reads a row of [`SELECT_DOMAINS`].
fn domain_row(r: &Row<'_>) -> rusqlite::Result<DomainRow> {
    Ok(DomainRow {
        xmppdomain: text(r, 0)?.unwrap_or_default(),
        authsecret: text(r, 1)?,
        authurl: text(r, 2)?,
        authdomain: text(r, 3)?,
        regcontact: text(r, 4)?,
        regfirst: timestamp(r, 5)?,
        reglatest: timestamp(r, 6)?,
        backend: DomainBackend {
            kind: text(r, 7)?,
            apiuser: text(r, 8)?,
            apipassword: text(r, 9)?,
            loginform: text(r, 10)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{mem, strings};

    #[test]
    fn domain_lifecycle() {
        let store = mem();
        assert_eq!(store.domain("d.example").unwrap(), None);
        assert!(store
            .put_domain("d.example", "s1", "https://a/", "a.example", None, 100)
            .unwrap());
        assert!(!store
            .put_domain(
                "d.example",
                "s2",
                "https://b/",
                "b.example",
                Some("admin@b"),
                200
            )
            .unwrap());
        let row = store.domain("d.example").unwrap().unwrap();
        assert_eq!(row.authsecret.as_deref(), Some("s2"));
        assert_eq!(row.authurl.as_deref(), Some("https://b/"));
        assert_eq!(row.authdomain.as_deref(), Some("b.example"));
        assert_eq!(row.regcontact.as_deref(), Some("admin@b"));
        assert_eq!((row.regfirst, row.reglatest), (Some(100), Some(200)));

        let changed = store
            .update_domain(
                "d.example",
                DomainUpdate {
                    url: Some("https://c/".into()),
                    regcontact: Some(None),
                    ..DomainUpdate::default()
                },
                300,
            )
            .unwrap();
        assert!(changed);
        let row = store.domain("d.example").unwrap().unwrap();
        assert_eq!(row.authsecret.as_deref(), Some("s2"));
        assert_eq!(row.authurl.as_deref(), Some("https://c/"));
        assert_eq!(row.authdomain.as_deref(), Some("b.example"));
        assert_eq!(row.regcontact, None);
        assert_eq!((row.regfirst, row.reglatest), (Some(100), Some(300)));

        let secret_only = DomainUpdate {
            secret: Some("s3".into()),
            ..DomainUpdate::default()
        };
        assert!(!store
            .update_domain("other", secret_only.clone(), 400)
            .unwrap());
        assert_eq!(store.domain("other").unwrap(), None);
        assert!(store.update_domain("d.example", secret_only, 400).unwrap());
        assert_eq!(
            store
                .domain("d.example")
                .unwrap()
                .unwrap()
                .authsecret
                .as_deref(),
            Some("s3")
        );

        store
            .put_domain("a.example", "s", "u", "a", None, 1)
            .unwrap();
        let names: Vec<String> = store
            .domains()
            .unwrap()
            .into_iter()
            .map(|d| d.xmppdomain)
            .collect();
        assert_eq!(names, strings(&["a.example", "d.example"]));

        assert!(store.delete_domain("d.example").unwrap());
        assert!(!store.delete_domain("d.example").unwrap());
        assert_eq!(store.domains().unwrap().len(), 1);
    }

    #[test]
    fn debug_hides_domain_secrets() {
        let store = mem();
        store
            .put_domain("d.example", "hunter2-secret", "u", "a", None, 1)
            .unwrap();
        let row = store.domain("d.example").unwrap().unwrap();
        let update = DomainUpdate {
            secret: Some("hunter2-secret".into()),
            ..DomainUpdate::default()
        };
        let printed = format!("{row:?} {update:?} {store:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("d.example"));
    }
}
