//! `xcauth domain add|change|list|remove`: the per-domain back ends in the `domains` table, and their kind, API account and login form in our `domainbackend` table.

use super::report::{counted, optional, shown, shown_url, table, Report, ABSENT, HIDDEN};
use super::Context;
use crate::backend::BackendKind;
use crate::config::plain_http_warning;
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
    if cx.store.domain(domain)?.is_some() {
        r.missing(format!(
            "domain {} already exists; use `xcauth domain change`",
            shown(domain)
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
        shown_url(url),
        if inferred { " from the URL" } else { "" }
    ));
    if let Some(warning) = plain_http_warning(url) {
        r.note(format!("warning: {}", shown(&warning)));
    }
    note_password_without_user(r, backend, None);
    Ok(())
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
        r.note(shown(&warning));
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
                match d.authurl.as_deref() {
                    Some(url) if !url.is_empty() && !show_secrets => shown_url(url),
                    url => optional(url),
                },
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

/// Removes a domain's row.
pub(super) fn remove(cx: &Context<'_>, r: &mut Report, domain: &str) -> Result<(), StoreError> {
    if cx.store.delete_domain(domain)? {
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
    use crate::admin::tests::{Fixture, ODD};
    use crate::admin::{cli::Action, EXIT_DONE, EXIT_MISSING};

    #[test]
    fn domain_lifecycle_with_odd_names() {
        for odd in ODD {
            let f = Fixture::new(Vec::new());
            let domain = format!("{odd}.example");
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

    #[test]
    fn plain_http_is_warned_about_except_on_loopback() {
        assert!(plain_http_warning("http://cloud.example/").is_some());
        assert!(plain_http_warning("http://127.0.0.1:8080/").is_none());
        assert!(plain_http_warning("https://cloud.example/").is_none());
    }
}
