//! `xcauth domain add|change|list|remove`: the per-domain back ends in the `domains` table, and their kind, API account and login form in our `domainbackend` table.

use super::report::{counted, optional, shown, table, Report, ABSENT, HIDDEN};
use super::Context;
use crate::backend::BackendKind;
use crate::config::plain_http_warning;
use crate::proto::domain::canonical_domain;
use crate::secret::Secret;
use crate::store::{format_timestamp, DomainBackend, DomainRow, DomainUpdate, StoreError};

/// Gives `domain` its own back end, unless it has one already.
#[allow(clippy::too_many_arguments)]
pub(super) fn add(
    cx: &Context<'_>,
    r: &mut Report,
    domain: &str,
    url: &str,
    secret: &Secret,
    auth_domain: Option<String>,
    contact: Option<&str>,
    backend: &DomainBackend,
) -> Result<(), StoreError> {
    if let Some(stored) = stored_spellings(cx, domain)?.first() {
        r.missing(format!(
            "domain {} already exists (as {}); use `xcauth domain change`",
            shown(domain),
            shown(stored)
        ));
        return Ok(());
    }
    let auth_domain = auth_domain.unwrap_or_else(|| domain.to_owned());
    cx.store
        .put_domain(domain, secret.expose(), url, &auth_domain, contact, cx.now)?;
    if !backend.is_empty() {
        cx.store.set_domain_backend(domain, backend)?;
    }
    let (kind, inferred) = effective_kind(backend.kind.as_deref(), Some(url));
    r.line(format!(
        "added domain {} (auth domain {}, URL {}, back end {kind}{})",
        shown(domain),
        shown(&auth_domain),
        shown(url),
        if inferred { " from the URL" } else { "" }
    ));
    if let Some(warning) = plain_http_warning(url) {
        r.note(format!("warning: {}", shown(&warning)));
    }
    note_password_without_user(r, backend, None);
    Ok(())
}

/// The stored domains of the rows that serve `domain` (canonical): rows
/// written by hand or by the original may spell it differently
/// (`Example.org`), and the service finds them by the canonical form.
fn stored_spellings(cx: &Context<'_>, domain: &str) -> Result<Vec<String>, StoreError> {
    Ok(cx
        .store
        .domains()?
        .into_iter()
        .map(|row| row.xmppdomain)
        .filter(|stored| canonical_domain(stored).is_ok_and(|c| c == domain))
        .collect())
}

/// The kind a row gets at run time: its own, else what its URL says
/// (`None` without a URL of its own: the global setting decides). The flag
/// says it was inferred.
fn effective_kind(kind: Option<&str>, url: Option<&str>) -> (String, bool) {
    match (
        kind.filter(|k| !k.is_empty()),
        url.filter(|u| !u.is_empty()),
    ) {
        (Some(kind), _) => (shown(kind), false),
        (None, Some(url)) => (BackendKind::for_url(url).name().to_owned(), true),
        (None, None) => ("global".to_owned(), true),
    }
}

/// An API password is used only together with an API user of the same
/// row; says so when one is stored without the other.
fn note_password_without_user(r: &mut Report, backend: &DomainBackend, row: Option<&DomainRow>) {
    let stored_user = row.and_then(|d| d.backend.apiuser.as_deref());
    if backend.apipassword.is_some() && backend.apiuser.is_none() && stored_user.is_none() {
        r.note(
            "note: the API password is used only with an API user of the same domain \
             (--api-user); until then the global API account is used",
        );
    }
}

/// Changes some settings of an existing domain.
pub(super) fn change(
    cx: &Context<'_>,
    r: &mut Report,
    domain: &str,
    update: DomainUpdate,
    backend: &DomainBackend,
) -> Result<(), StoreError> {
    let url = update.url.clone();
    let stored = match stored_spellings(cx, domain)?.as_slice() {
        [] => {
            r.missing(format!(
                "no domain {}; use `xcauth domain add`",
                shown(domain)
            ));
            return Ok(());
        }
        [one] => one.clone(),
        several => {
            r.missing(format!(
                "domain {} has {} rows ({}); remove them with `xcauth domain remove` \
                 and add one",
                shown(domain),
                several.len(),
                several
                    .iter()
                    .map(|d| shown(d))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            return Ok(());
        }
    };
    let domain = stored.as_str();
    // Also with only back-end settings: marks the row as changed, and says
    // whether it exists.
    if !cx.store.update_domain(domain, update, cx.now)? {
        r.missing(format!(
            "no domain {}; use `xcauth domain add`",
            shown(domain)
        ));
        return Ok(());
    }
    if !backend.is_empty() {
        cx.store.set_domain_backend(domain, backend)?;
    }
    r.line(format!("changed domain {}", shown(domain)));
    let row = cx.store.domain(domain)?;
    note_password_without_user(r, backend, row.as_ref());
    if let Some(warning) = url.as_deref().and_then(plain_http_warning) {
        r.note(warning);
    }
    Ok(())
}

/// Lists the domains, secrets hidden unless `show_secrets`.
pub(super) fn list(cx: &Context<'_>, r: &mut Report, show_secrets: bool) -> Result<(), StoreError> {
    let rows = cx.store.domains()?;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            let secret = match &d.authsecret {
                Some(s) if s.is_empty() => ABSENT.to_owned(),
                Some(s) if show_secrets => shown(s),
                Some(_) => HIDDEN.to_owned(),
                None => ABSENT.to_owned(),
            };
            let api_password = match &d.backend.apipassword {
                Some(p) if p.is_empty() => ABSENT.to_owned(),
                Some(p) if show_secrets => shown(p),
                Some(_) => HIDDEN.to_owned(),
                None => ABSENT.to_owned(),
            };
            let (kind, inferred) = effective_kind(d.backend.kind.as_deref(), d.authurl.as_deref());
            vec![
                shown(&d.xmppdomain),
                optional(d.authdomain.as_deref()),
                optional(d.authurl.as_deref()),
                secret,
                optional(d.regcontact.as_deref()),
                d.reglatest
                    .map_or_else(|| ABSENT.to_owned(), format_timestamp),
                if inferred { format!("{kind}*") } else { kind },
                optional(d.backend.apiuser.as_deref()),
                api_password,
                optional(d.backend.loginform.as_deref()),
            ]
        })
        .collect();
    let header = [
        "DOMAIN",
        "AUTH DOMAIN",
        "URL",
        "SECRET",
        "CONTACT",
        "CHANGED (UTC)",
        "BACKEND",
        "API USER",
        "API PASSWORD",
        "LOGIN FORM",
    ];
    r.out.extend(table(&header, &cells));
    r.line(counted(rows.len(), "domain", "domains"));
    if rows
        .iter()
        .any(|d| d.backend.kind.as_deref().is_none_or(str::is_empty))
    {
        r.note(
            "note: BACKEND with * is not stored: the kind the URL means (jsxc for …/apps/ojsxc/ajax/externalApi.php, \
             else nextcloud); \"global*\": the global setting decides",
        );
    }
    Ok(())
}

/// Removes a domain's row: every row that serves `domain` (canonical),
/// however it is spelled.
pub(super) fn remove(cx: &Context<'_>, r: &mut Report, domain: &str) -> Result<(), StoreError> {
    let mut removed = 0;
    for stored in stored_spellings(cx, domain)? {
        if cx.store.delete_domain(&stored)? {
            removed += 1;
            if stored != domain {
                r.line(format!("removed the row stored as {}", shown(&stored)));
            }
        }
    }
    if removed > 0 {
        r.line(format!(
            "removed domain {}; its users now use the global back end",
            shown(domain)
        ));
    } else {
        r.missing(format!("no domain {}", shown(domain)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::tests::Fixture;
    use crate::admin::{cli::Action, EXIT_DONE, EXIT_MISSING};

    /// Names that are valid domains but not plain ASCII; odd names that
    /// are not host names never get here (`cli` refuses them).
    #[test]
    fn domain_lifecycle_with_unusual_names() {
        for odd in ["zoë", "xn--bcher-kva", "b-1"] {
            let f = Fixture::new(Vec::new());
            let domain = canonical_domain(&format!("{odd}.example")).expect("domain");
            let add = Action::DomainAdd {
                domain: domain.clone(),
                url: "https://cloud.example/api".into(),
                secret: Secret::new("hunter2-secret"),
                auth_domain: None,
                contact: Some("admin@x".into()),
                backend: DomainBackend::default(),
            };
            let r = f.run(add.clone(), false);
            assert_eq!(r.status, EXIT_DONE, "{r:?}");
            let row = f.store.domain(&domain).unwrap().unwrap();
            assert_eq!(row.authdomain.as_deref(), Some(domain.as_str()));
            assert_eq!(row.authsecret.as_deref(), Some("hunter2-secret"));
            assert_eq!(row.regfirst, Some(1_000_000_000));
            assert_eq!(f.run(add, false).status, EXIT_MISSING);

            let list = f.run(
                Action::DomainList {
                    show_secrets: false,
                },
                false,
            );
            let text = list.out.join("\n");
            assert!(text.contains(&domain) && text.contains(HIDDEN), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
            assert_eq!(list.out.last().map(String::as_str), Some("1 domain"));
            let list = f.run(Action::DomainList { show_secrets: true }, false);
            assert!(list.out.join("\n").contains("hunter2-secret"));

            let change = Action::DomainChange {
                domain: domain.clone(),
                update: DomainUpdate {
                    regcontact: Some(None),
                    authdomain: Some(format!("auth-{odd}")),
                    ..DomainUpdate::default()
                },
                backend: DomainBackend::default(),
            };
            assert_eq!(f.run(change, false).status, EXIT_DONE);
            let row = f.store.domain(&domain).unwrap().unwrap();
            assert_eq!(row.regcontact, None);
            assert_eq!(row.authdomain, Some(format!("auth-{odd}")));
            assert_eq!(row.authsecret.as_deref(), Some("hunter2-secret"));

            let remove = Action::DomainRemove {
                domain: domain.clone(),
            };
            assert_eq!(f.run(remove.clone(), false).status, EXIT_DONE);
            let again = f.run(remove, false);
            assert_eq!(again.status, EXIT_MISSING);
            assert!(again.err[0].contains(&domain), "{again:?}");
            let change = Action::DomainChange {
                domain,
                update: DomainUpdate {
                    url: Some("https://b/".into()),
                    ..DomainUpdate::default()
                },
                backend: DomainBackend::default(),
            };
            assert_eq!(f.run(change, false).status, EXIT_MISSING);
        }
    }

    /// A row written by hand or by the original as `Example.org` is the
    /// domain `example.org`: `add` does not make a second row for it,
    /// `change` and `remove` find it; `list` shows it as stored.
    #[test]
    fn rows_stored_in_another_spelling_are_found_by_the_canonical_domain() {
        let f = Fixture::new(Vec::new());
        f.store
            .put_domain("Example.org", "s", "https://a.example/", "", None, 0)
            .expect("row");
        let add = Action::DomainAdd {
            domain: "example.org".into(),
            url: "https://b.example/".into(),
            secret: Secret::new("t"),
            auth_domain: None,
            contact: None,
            backend: DomainBackend::default(),
        };
        let r = f.run(add, false);
        assert_eq!(r.status, EXIT_MISSING, "{r:?}");
        assert!(r.err[0].contains("Example.org"), "{r:?}");
        let list = f.run(
            Action::DomainList {
                show_secrets: false,
            },
            false,
        );
        assert!(list.out.join("\n").contains("Example.org"), "{list:?}");

        let change = |domain: &str| Action::DomainChange {
            domain: domain.into(),
            update: DomainUpdate {
                url: Some("https://c.example/".into()),
                ..DomainUpdate::default()
            },
            backend: DomainBackend::default(),
        };
        assert_eq!(f.run(change("example.org"), false).status, EXIT_DONE);
        let row = f.store.domain("Example.org").unwrap().expect("row");
        assert_eq!(row.authurl.as_deref(), Some("https://c.example/"));

        // Two spellings of one domain: change refuses to pick, remove
        // removes both.
        f.store
            .put_domain("EXAMPLE.ORG", "s", "https://d.example/", "", None, 0)
            .expect("row");
        let r = f.run(change("example.org"), false);
        assert_eq!(r.status, EXIT_MISSING, "{r:?}");
        assert!(r.err[0].contains("2 rows"), "{r:?}");
        let remove = Action::DomainRemove {
            domain: "example.org".into(),
        };
        assert_eq!(f.run(remove.clone(), false).status, EXIT_DONE);
        assert!(f.store.domains().unwrap().is_empty());
        assert_eq!(f.run(remove, false).status, EXIT_MISSING);
    }

    #[test]
    fn plain_http_is_warned_about_except_on_loopback() {
        assert!(plain_http_warning("http://cloud.example/").is_some());
        assert!(plain_http_warning("http://127.0.0.1:8080/").is_none());
        assert!(plain_http_warning("https://cloud.example/").is_none());
    }
}
