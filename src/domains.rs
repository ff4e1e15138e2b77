//! Per-domain back ends (SPEC §7): rows of the `domains` table give an XMPP
//! domain its own API URL, secret and auth domain; without a row, the
//! global `--url`/`--secret` apply and the auth domain is the XMPP domain.
//!
//! The table is read into memory and re-read when it is older than
//! [`RELOAD_AFTER`], so `xcauth domain add` in another process takes effect
//! within seconds without a database query per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::backend::Endpoint;
use crate::secret::Secret;
use crate::store::{DomainRow, Store};
use crate::token::TokenKey;
use crate::verify::{DomainSettings, Domains};

/// How old the in-memory copy of the table may get.
pub const RELOAD_AFTER: Duration = Duration::from_secs(5);

/// The `domains` table in front of the global settings.
pub struct DbDomains {
    store: Arc<Store>,
    global: GlobalOnly,
    global_url: Option<String>,
    global_secret: Secret,
    table: Mutex<Loaded>,
}

struct Loaded {
    at: Option<Instant>,
    rows: HashMap<String, DomainSettings>,
}

impl DbDomains {
    /// Domains from `store`, falling back to `url`/`secret`.
    pub fn new(store: Arc<Store>, url: Option<String>, secret: Secret) -> DbDomains {
        DbDomains {
            store,
            global: GlobalOnly::new(url.clone(), secret.clone()),
            global_url: url,
            global_secret: secret,
            table: Mutex::new(Loaded {
                at: None,
                rows: HashMap::new(),
            }),
        }
    }

    /// Settings for one row; a column left empty takes the global value.
    fn settings(&self, row: DomainRow) -> Option<(String, DomainSettings)> {
        let url = row
            .authurl
            .filter(|u| !u.is_empty())
            .or_else(|| self.global_url.clone())?;
        let secret = row
            .authsecret
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .unwrap_or_else(|| self.global_secret.clone());
        let auth_domain = row
            .authdomain
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| row.xmppdomain.clone());
        let token_key = Arc::new(TokenKey::new(secret.expose().as_bytes()));
        Some((
            row.xmppdomain,
            DomainSettings {
                endpoint: Endpoint {
                    url,
                    secret,
                    auth_domain,
                },
                token_key,
            },
        ))
    }

    fn reload(&self, loaded: &mut Loaded) {
        match self.store.domains() {
            Ok(rows) => {
                loaded.rows = rows.into_iter().filter_map(|r| self.settings(r)).collect();
                debug!("domain table loaded: {} rows", loaded.rows.len());
            }
            // Keep serving with what we had; the next request tries again.
            Err(e) => warn!("cannot read the domains table: {e}"),
        }
        loaded.at = Some(Instant::now());
    }
}

impl Domains for DbDomains {
    fn lookup(&self, domain: &str) -> Option<DomainSettings> {
        let mut loaded = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.at.is_none_or(|at| at.elapsed() >= RELOAD_AFTER) {
            self.reload(&mut loaded);
        }
        match loaded.rows.get(domain) {
            Some(settings) => Some(settings.clone()),
            None => {
                drop(loaded);
                self.global.lookup(domain)
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_override_globals_column_by_column() {
        let store = Arc::new(Store::open(std::path::Path::new(":memory:")).expect("store"));
        store
            .put_domain(
                "chat.example.net",
                "net-secret",
                "http://127.0.0.1:9/other",
                "example.net",
                None,
                0,
            )
            .expect("row");
        store
            .put_domain("partial.example", "", "", "", None, 0)
            .expect("row");
        let d = DbDomains::new(store, Some("http://global/api".into()), Secret::new("g"));
        let net = d.lookup("chat.example.net").expect("row");
        assert_eq!(net.endpoint.url, "http://127.0.0.1:9/other");
        assert_eq!(net.endpoint.secret.expose(), "net-secret");
        assert_eq!(net.endpoint.auth_domain, "example.net");
        let partial = d.lookup("partial.example").expect("row");
        assert_eq!(partial.endpoint.url, "http://global/api");
        assert_eq!(partial.endpoint.secret.expose(), "g");
        assert_eq!(partial.endpoint.auth_domain, "partial.example");
        let other = d.lookup("other.example").expect("global");
        assert_eq!(other.endpoint.url, "http://global/api");
        assert_eq!(other.endpoint.auth_domain, "other.example");
        // Tokens of a domain with its own secret use that secret.
        let token = crate::token::make(b"net-secret", "u", "chat.example.net", u32::MAX);
        assert_eq!(
            net.token_key.check("u", "chat.example.net", &token, 0),
            crate::token::TokenCheck::Valid
        );
    }
}
