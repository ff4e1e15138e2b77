//! Per-domain back ends (SPEC §7): rows of the `domains` table give an XMPP
//! domain its own API URL, secret and auth domain; without a row, the
//! global `--url`/`--secret` apply and the auth domain is the XMPP domain.
//!
//! The table is read into memory and re-read when it is older than
//! [`RELOAD_AFTER`], so `xcauth domain add` in another process takes effect
//! within seconds without a database query per request; after
//! [`request_reload`] (SIGHUP) the next request re-reads it at once. Back ends are
//! built once per row (and per domain for the global settings), so a
//! request costs a map look-up, not a set-up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::backend::{
    self, ApiAccount, Backend, BackendKind, BackendSpec, HttpClient, LoginForm, DEFAULT_ROSTER_TTL,
};
use crate::secret::Secret;
use crate::store::{DomainRow, Store};
use crate::token::TokenKey;

/// How old the in-memory copy of the table may get.
pub const RELOAD_AFTER: Duration = Duration::from_secs(5);

/// Counts reload requests (SIGHUP); a table loaded before the latest one is
/// re-read at its next look-up, however young it is.
static RELOAD_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Makes every [`DbDomains`] re-read its rows at its next look-up (called
/// from the SIGHUP handler).
pub fn request_reload() {
    RELOAD_GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Domains without a row whose global back end is kept built; more (a
/// client inventing domains) are built per request instead of filling
/// memory.
pub const MAX_GLOBAL_DOMAINS: usize = 1024;

/// The settings one XMPP domain is served with: its back end and, where a
/// secret is known, the key its tokens are checked with.
#[derive(Clone)]
pub struct DomainSettings {
    /// Where back-end questions for this domain go.
    pub backend: Arc<dyn Backend>,
    /// Token key derived from the domain's secret; `None`: no token logins.
    pub token_key: Option<Arc<TokenKey>>,
}

impl DomainSettings {
    /// Settings for `spec`, built on `client`.
    pub fn build(spec: &BackendSpec, client: &Arc<HttpClient>) -> Self {
        DomainSettings {
            backend: backend::build(spec, client),
            token_key: token_key(&spec.secret),
        }
    }
}

fn token_key(secret: &Secret) -> Option<Arc<TokenKey>> {
    (!secret.is_empty()).then(|| Arc::new(TokenKey::new(secret.expose().as_bytes())))
}

/// Finds the settings for a domain (SPEC §7): a per-domain row, else the
/// global URL and secret.
pub trait Domains: Send + Sync {
    /// Settings for `domain`, or `None` when nothing is configured for it.
    fn lookup(&self, domain: &str) -> Option<DomainSettings>;
}

/// The global back-end settings (command line and config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// The kind of back end; `None`: decided by the URL
    /// ([`BackendKind::for_url`]).
    pub kind: Option<BackendKind>,
    /// The URL; `None`: only domains with a row are served.
    pub url: Option<String>,
    /// The secret (JSXC signature; tokens).
    pub secret: Secret,
    /// nextcloud: how login names are made.
    pub login_form: LoginForm,
    /// nextcloud: the API account.
    pub api: Option<ApiAccount>,
    /// nextcloud: how long a built roster is reused.
    pub roster_ttl: Duration,
}

impl Global {
    /// The global back-end settings of a resolved configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Global {
            kind: config.backend,
            url: config.url.clone(),
            secret: config.secret.clone(),
            login_form: config.login_form,
            api: config.api.clone(),
            roster_ttl: config.roster_ttl,
        }
    }

    /// JSXC settings from the original's `url` and `secret`.
    pub fn jsxc(url: Option<String>, secret: Secret) -> Self {
        Global {
            kind: Some(BackendKind::Jsxc),
            url,
            secret,
            login_form: LoginForm::default(),
            api: None,
            roster_ttl: DEFAULT_ROSTER_TTL,
        }
    }

    /// The kind for `url`: the configured one, else what the URL says.
    pub fn kind_for(&self, url: &str) -> BackendKind {
        self.kind.unwrap_or_else(|| BackendKind::for_url(url))
    }

    /// The spec of a domain without a row.
    pub fn spec(&self, domain: &str) -> Option<BackendSpec> {
        let url = self.url.clone()?;
        Some(BackendSpec {
            kind: self.kind_for(&url),
            url,
            secret: self.secret.clone(),
            auth_domain: domain.to_owned(),
            login_form: self.login_form,
            api: self.api.clone(),
            roster_ttl: self.roster_ttl,
        })
    }
}

/// The `domains` table in front of the global settings.
pub struct DbDomains {
    store: Arc<Store>,
    global: GlobalOnly,
    table: Mutex<Loaded>,
}

struct Loaded {
    at: Option<Instant>,
    /// [`RELOAD_GENERATION`] when the rows were read.
    generation: u64,
    /// Each row's spec beside what was built from it: a reload keeps the
    /// built back end (its state, e.g. a cached roster) while the row is
    /// unchanged.
    rows: HashMap<String, (BackendSpec, DomainSettings)>,
}

impl DbDomains {
    /// Domains from `store`, falling back to `global`; back ends on
    /// `client`.
    pub fn new(store: Arc<Store>, global: Global, client: Arc<HttpClient>) -> DbDomains {
        DbDomains {
            store,
            global: GlobalOnly::new(global, client),
            table: Mutex::new(Loaded {
                at: None,
                generation: 0,
                rows: HashMap::new(),
            }),
        }
    }

    /// The spec of one row; a column left empty takes the global value.
    /// A row with its own URL and no `backend` gets the kind that URL
    /// means; `None` (with a warning) for a row that cannot be served.
    pub fn row_spec(row: &DomainRow, global: &Global) -> Option<BackendSpec> {
        let own_url = row.authurl.clone().filter(|u| !u.is_empty());
        let url = own_url.clone().or_else(|| global.url.clone())?;
        let secret = row
            .authsecret
            .clone()
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .unwrap_or_else(|| global.secret.clone());
        let auth_domain = row
            .authdomain
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| row.xmppdomain.clone());
        let extra = &row.backend;
        let kind = match extra.kind.as_deref().filter(|k| !k.is_empty()) {
            Some(text) => match BackendKind::parse(text) {
                Ok(kind) => kind,
                Err(e) => {
                    warn!(
                        "domain {:?}: backend {e}; domain not served",
                        row.xmppdomain
                    );
                    return None;
                }
            },
            None if own_url.is_some() => BackendKind::for_url(&url),
            None => global.kind_for(&url),
        };
        let login_form = match extra.loginform.as_deref().filter(|f| !f.is_empty()) {
            Some(text) => match LoginForm::parse(text) {
                Ok(form) => form,
                Err(e) => {
                    warn!(
                        "domain {:?}: login form {e}; domain not served",
                        row.xmppdomain
                    );
                    return None;
                }
            },
            None => global.login_form,
        };
        let api = match (&extra.apiuser, &extra.apipassword) {
            (Some(user), password) if !user.is_empty() => Some(ApiAccount {
                user: user.clone(),
                password: password
                    .clone()
                    .map(Secret::new)
                    .or_else(|| global.api.as_ref().map(|a| a.password.clone()))
                    .unwrap_or_default(),
            }),
            _ => global.api.clone(),
        };
        Some(BackendSpec {
            kind,
            url,
            secret,
            auth_domain,
            login_form,
            api,
            roster_ttl: global.roster_ttl,
        })
    }

    fn reload(&self, loaded: &mut Loaded) {
        match self.store.domains() {
            Ok(rows) => {
                let mut old = std::mem::take(&mut loaded.rows);
                loaded.rows = rows
                    .into_iter()
                    .filter_map(|row| {
                        let spec = Self::row_spec(&row, &self.global.global)?;
                        let settings = match old.remove(&row.xmppdomain) {
                            Some((was, settings)) if was == spec => settings,
                            _ => DomainSettings::build(&spec, &self.global.client),
                        };
                        Some((row.xmppdomain, (spec, settings)))
                    })
                    .collect();
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
        let generation = RELOAD_GENERATION.load(Ordering::SeqCst);
        if loaded.generation != generation
            || loaded.at.is_none_or(|at| at.elapsed() >= RELOAD_AFTER)
        {
            loaded.generation = generation;
            self.reload(&mut loaded);
        }
        match loaded.rows.get(domain) {
            Some((_, settings)) => Some(settings.clone()),
            None => {
                drop(loaded);
                self.global.lookup(domain)
            }
        }
    }
}

/// Only the global settings; the auth domain is the XMPP domain.
pub struct GlobalOnly {
    global: Global,
    client: Arc<HttpClient>,
    token_key: Option<Arc<TokenKey>>,
    built: Mutex<HashMap<String, Arc<dyn Backend>>>,
}

impl GlobalOnly {
    /// Settings from the global URL (if any) and secret.
    pub fn new(global: Global, client: Arc<HttpClient>) -> Self {
        GlobalOnly {
            token_key: token_key(&global.secret),
            global,
            client,
            built: Mutex::new(HashMap::new()),
        }
    }
}

impl Domains for GlobalOnly {
    fn lookup(&self, domain: &str) -> Option<DomainSettings> {
        self.global.url.as_ref()?;
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        let backend = match built.get(domain) {
            Some(backend) => Arc::clone(backend),
            None => {
                let spec = self.global.spec(domain)?;
                let backend = backend::build(&spec, &self.client);
                if built.len() < MAX_GLOBAL_DOMAINS {
                    built.insert(domain.to_owned(), Arc::clone(&backend));
                }
                backend
            }
        };
        Some(DomainSettings {
            backend,
            token_key: self.token_key.clone(),
        })
    }
}

/// One back end for every domain (tests, and tools that ask one Nextcloud).
pub struct Fixed(pub DomainSettings);

impl Domains for Fixed {
    fn lookup(&self, _domain: &str) -> Option<DomainSettings> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendOptions;

    fn global() -> Global {
        Global::jsxc(Some("http://global/api".into()), Secret::new("g"))
    }

    fn row(domain: &str, secret: &str, url: &str, authdomain: &str) -> DomainRow {
        DomainRow {
            xmppdomain: domain.into(),
            authsecret: Some(secret.into()),
            authurl: Some(url.into()),
            authdomain: Some(authdomain.into()),
            regcontact: None,
            regfirst: None,
            reglatest: None,
            backend: Default::default(),
        }
    }

    #[test]
    fn rows_override_globals_column_by_column() {
        let net = DbDomains::row_spec(
            &row(
                "chat.example.net",
                "net-secret",
                "http://127.0.0.1:9/other",
                "example.net",
            ),
            &global(),
        )
        .expect("row");
        assert_eq!(net.url, "http://127.0.0.1:9/other");
        assert_eq!(net.secret.expose(), "net-secret");
        assert_eq!(net.auth_domain, "example.net");
        let partial =
            DbDomains::row_spec(&row("partial.example", "", "", ""), &global()).expect("row");
        assert_eq!(partial.url, "http://global/api");
        assert_eq!(partial.secret.expose(), "g");
        assert_eq!(partial.auth_domain, "partial.example");
        let no_url = Global::jsxc(None, Secret::new("g"));
        assert_eq!(
            DbDomains::row_spec(&row("x.example", "s", "", ""), &no_url),
            None
        );
    }

    #[test]
    fn the_kind_follows_the_row_then_its_url_then_the_global_setting() {
        let jsxc_url = "https://c.example/index.php/apps/ojsxc/ajax/externalApi.php";
        let mut r = row("a.example", "s", jsxc_url, "");
        let mut global = global();
        global.kind = Some(BackendKind::Nextcloud);
        // A row's own JSXC URL means JSXC, whatever the global kind.
        assert_eq!(
            DbDomains::row_spec(&r, &global).unwrap().kind,
            BackendKind::Jsxc
        );
        r.authurl = Some("https://c.example".into());
        assert_eq!(
            DbDomains::row_spec(&r, &global).unwrap().kind,
            BackendKind::Nextcloud
        );
        r.backend.kind = Some("jsxc".into());
        assert_eq!(
            DbDomains::row_spec(&r, &global).unwrap().kind,
            BackendKind::Jsxc
        );
        r.backend.kind = Some("ldap".into());
        assert_eq!(DbDomains::row_spec(&r, &global), None);
        // Without its own URL a row takes the global kind.
        let bare = row("b.example", "", "", "");
        assert_eq!(
            DbDomains::row_spec(&bare, &global).unwrap().kind,
            BackendKind::Nextcloud
        );
        global.kind = None;
        assert_eq!(
            DbDomains::row_spec(&bare, &global).unwrap().kind,
            BackendKind::for_url("http://global/api")
        );
    }

    #[test]
    fn a_row_api_account_and_login_form_override_the_global_ones() {
        let mut global = global();
        global.api = Some(ApiAccount {
            user: "g-api".into(),
            password: Secret::new("g-pw"),
        });
        let mut r = row("a.example", "", "https://c.example", "");
        let spec = DbDomains::row_spec(&r, &global).unwrap();
        assert_eq!(spec.api, global.api);
        assert_eq!(spec.login_form, LoginForm::User);
        r.backend.apiuser = Some("own".into());
        r.backend.apipassword = Some("own-pw".into());
        r.backend.loginform = Some("user@domain".into());
        let spec = DbDomains::row_spec(&r, &global).unwrap();
        let api = spec.api.unwrap();
        assert_eq!(
            (api.user.as_str(), api.password.expose()),
            ("own", "own-pw")
        );
        assert_eq!(spec.login_form, LoginForm::UserAtDomain);
    }

    #[test]
    fn tokens_of_a_domain_with_its_own_secret_use_that_secret() {
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
        let client = HttpClient::new(&BackendOptions::default()).expect("client");
        let d = DbDomains::new(store, global(), client);
        let check = |domain: &str, secret: &[u8]| {
            let token = crate::token::make(secret, "u", domain, u32::MAX);
            let settings = d.lookup(domain).expect("settings");
            settings
                .token_key
                .expect("key")
                .check("u", domain, &token, 0)
        };
        use crate::token::TokenCheck::{BadMac, Valid};
        assert_eq!(check("chat.example.net", b"net-secret"), Valid);
        assert_eq!(check("chat.example.net", b"g"), BadMac);
        assert_eq!(check("other.example", b"g"), Valid);
    }

    /// Rows are kept for up to RELOAD_AFTER; a reload request (SIGHUP)
    /// makes the next look-up read them at once.
    #[test]
    fn a_reload_request_rereads_the_rows_at_the_next_lookup() {
        let store = Arc::new(Store::open(std::path::Path::new(":memory:")).expect("store"));
        let put = |secret: &str| {
            store
                .put_domain("d.example", secret, "http://127.0.0.1:9/x", "", None, 0)
                .expect("row");
        };
        put("one");
        let client = HttpClient::new(&BackendOptions::default()).expect("client");
        let d = DbDomains::new(Arc::clone(&store), global(), client);
        let valid_with = |secret: &[u8]| {
            let token = crate::token::make(secret, "u", "d.example", u32::MAX);
            let key = d.lookup("d.example").expect("settings").token_key;
            key.expect("key").check("u", "d.example", &token, 0) == crate::token::TokenCheck::Valid
        };
        let loaded = Instant::now();
        assert!(valid_with(b"one"));
        put("two");
        let still_old = valid_with(b"one");
        if loaded.elapsed() < RELOAD_AFTER {
            assert!(still_old, "the rows are kept for RELOAD_AFTER");
        }
        request_reload();
        assert!(valid_with(b"two"), "re-read after the request");
        assert!(!valid_with(b"one"));
    }

    #[test]
    fn no_secret_means_no_token_key() {
        let client = HttpClient::new(&BackendOptions::default()).expect("client");
        let d = GlobalOnly::new(
            Global::jsxc(Some("http://x/".into()), Secret::default()),
            client,
        );
        assert!(d
            .lookup("example.org")
            .expect("settings")
            .token_key
            .is_none());
    }

    #[test]
    fn invented_domains_do_not_fill_memory() {
        let client = HttpClient::new(&BackendOptions::default()).expect("client");
        let d = GlobalOnly::new(global(), client);
        for i in 0..MAX_GLOBAL_DOMAINS + 50 {
            assert!(d.lookup(&format!("d{i}.example")).is_some());
        }
        assert_eq!(d.built.lock().unwrap().len(), MAX_GLOBAL_DOMAINS);
    }
}
