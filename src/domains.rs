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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::backend::{
    self, ApiAccount, Backend, BackendKind, BackendSpec, HttpClient, LoginForm, DEFAULT_ROSTER_TTL,
};
use crate::proto::domain::canonical_domain;
use crate::secret::Secret;
use crate::store::{DomainRow, Store};
use crate::sync::lock;
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
    /// Row problems already warned about.
    warned: HashSet<String>,
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
                warned: HashSet::new(),
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
                let (rows, problems) = canonical_rows(rows);
                for problem in problems {
                    let text = problem.to_string();
                    // Once per process: the table is re-read every few seconds.
                    if loaded.warned.insert(text.clone()) {
                        warn!("{text}");
                    }
                }
                let mut old = std::mem::take(&mut loaded.rows);
                loaded.rows = rows
                    .into_iter()
                    .filter_map(|(domain, row)| {
                        let spec = Self::row_spec(&row, &self.global.global)?;
                        let settings = match old.remove(&domain) {
                            Some((was, settings)) if was == spec => settings,
                            _ => DomainSettings::build(&spec, &self.global.client),
                        };
                        Some((domain, (spec, settings)))
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

/// What keeps a `domains` row from being served under its domain: found
/// when the rows are loaded, warned about by the service and reported by
/// `xcauth check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowProblem {
    /// The stored domain is not a host name: no request can match it.
    NotADomain {
        /// The domain as stored.
        stored: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Several rows are one domain in canonical form: one is served, the
    /// others never are.
    Collision {
        /// The canonical form.
        domain: String,
        /// The stored domain of the row that is served.
        used: String,
        /// The stored domains of the rows that are not.
        ignored: Vec<String>,
    },
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::logging::Escaped;
        match self {
            RowProblem::NotADomain { stored, why } => {
                write!(f, "domain row \"{}\" is never used: {why}", Escaped(stored))
            }
            RowProblem::Collision {
                domain,
                used,
                ignored,
            } => {
                let ignored: Vec<String> = ignored
                    .iter()
                    .map(|d| format!("\"{}\"", Escaped(d)))
                    .collect();
                write!(
                    f,
                    "domain rows {} and \"{}\" are all the domain {}; \"{}\" is used, \
                     the others are ignored: remove them (xcauth domain remove)",
                    ignored.join(", "),
                    Escaped(used),
                    Escaped(domain),
                    Escaped(used),
                )
            }
        }
    }
}

/// The rows keyed by the canonical form of their domain
/// ([`canonical_domain`]): a row written by hand or by the original as
/// `Example.org` serves `example.org`. Of rows that are one domain, the one
/// stored in the canonical form is used, else the first in byte order; a
/// row whose domain is not a host name is left out. Both are reported.
pub fn canonical_rows(rows: Vec<DomainRow>) -> (Vec<(String, DomainRow)>, Vec<RowProblem>) {
    let mut problems = Vec::new();
    let mut groups: BTreeMap<String, Vec<DomainRow>> = BTreeMap::new();
    for row in rows {
        match canonical_domain(&row.xmppdomain) {
            Ok(domain) => groups.entry(domain).or_default().push(row),
            Err(why) => problems.push(RowProblem::NotADomain {
                stored: row.xmppdomain,
                why,
            }),
        }
    }
    let mut served = Vec::with_capacity(groups.len());
    for (domain, mut group) in groups {
        group.sort_by(|a, b| {
            let canonical_first = |r: &DomainRow| r.xmppdomain != domain;
            (canonical_first(a), &a.xmppdomain).cmp(&(canonical_first(b), &b.xmppdomain))
        });
        let mut group = group.into_iter();
        let Some(used) = group.next() else { continue };
        let ignored: Vec<String> = group.map(|r| r.xmppdomain).collect();
        if !ignored.is_empty() {
            problems.push(RowProblem::Collision {
                domain: domain.clone(),
                used: used.xmppdomain.clone(),
                ignored,
            });
        }
        served.push((domain, used));
    }
    (served, problems)
}

impl Domains for DbDomains {
    /// `domain` must be in the canonical form ([`Request::canonical`]
    /// puts every request's domain in it); another spelling would miss its
    /// row, so it gets no settings at all.
    ///
    /// [`Request::canonical`]: crate::proto::Request::canonical
    fn lookup(&self, domain: &str) -> Option<DomainSettings> {
        if canonical_domain(domain).ok().as_deref() != Some(domain) {
            warn!(
                "domain \"{}\" is not in canonical form; not served",
                crate::logging::Escaped(domain)
            );
            return None;
        }
        let mut loaded = lock(&self.table);
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
        let mut built = lock(&self.built);
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

    /// Rows written in any case are found by the canonical domain; of two
    /// rows that are one domain, the one stored canonically is used, else
    /// the first in byte order; rows that are not host names are left out.
    #[test]
    fn rows_are_keyed_by_the_canonical_domain() {
        let rows = |names: &[&str]| -> Vec<DomainRow> {
            names.iter().map(|n| row(n, "s", "http://a/", "")).collect()
        };
        let (served, problems) = canonical_rows(rows(&["Example.org", "other.example"]));
        let keys: Vec<(&str, &str)> = served
            .iter()
            .map(|(k, r)| (k.as_str(), r.xmppdomain.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("example.org", "Example.org"),
                ("other.example", "other.example")
            ]
        );
        assert!(problems.is_empty());

        for names in [
            ["EXAMPLE.ORG", "example.org", "Example.org"],
            ["example.org", "Example.org", "EXAMPLE.ORG"],
        ] {
            let (served, problems) = canonical_rows(rows(&names));
            assert_eq!(served.len(), 1);
            assert_eq!(served[0].1.xmppdomain, "example.org");
            assert_eq!(
                problems,
                [RowProblem::Collision {
                    domain: "example.org".into(),
                    used: "example.org".into(),
                    ignored: vec!["EXAMPLE.ORG".into(), "Example.org".into()],
                }]
            );
        }
        let (served, problems) = canonical_rows(rows(&["Example.org", "EXAMPLE.ORG."]));
        assert_eq!(served[0].1.xmppdomain, "EXAMPLE.ORG.");
        assert_eq!(problems.len(), 1);
        let text = problems[0].to_string();
        assert!(text.contains("\"EXAMPLE.ORG.\" is used"), "{text}");

        let (served, problems) = canonical_rows(rows(&["bad\u{200B}.example"]));
        assert!(served.is_empty());
        let text = problems[0].to_string();
        assert!(text.contains("bad\\u{200b}.example"), "{text}");
    }

    /// `domain add example.org` is found for every spelling a request may
    /// use once it is canonical, and a row written as `Example.org` too.
    #[test]
    fn a_row_in_another_case_serves_its_canonical_domain() {
        let store = Arc::new(Store::open(std::path::Path::new(":memory:")).expect("store"));
        store
            .put_domain(
                "Example.ORG",
                "row-secret",
                "http://127.0.0.1:9/a",
                "",
                None,
                0,
            )
            .expect("row");
        let client = HttpClient::new(&BackendOptions::default()).expect("client");
        let d = DbDomains::new(store, global(), client);
        let token = crate::token::make(b"row-secret", "u", "example.org", u32::MAX);
        let key = d.lookup("example.org").expect("settings").token_key;
        assert_eq!(
            key.expect("key").check("u", "example.org", &token, 0),
            crate::token::TokenCheck::Valid
        );
        // Not canonical: no settings at all, rather than the global ones.
        assert!(d.lookup("Example.ORG").is_none());
        assert!(d.lookup("example.org.").is_none());
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
