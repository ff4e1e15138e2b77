//! Roster names: cleaning a Nextcloud group name never panics, is
//! idempotent and leaves no `@` and no control character; a member id
//! becomes a JID with a non-empty local part and domain (for a
//! non-empty login domain), and without
//! control characters when the login's domain has none.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use xcauth::roster::{clean_group_name, member_jid};

#[derive(Debug, Arbitrary)]
struct Names<'a> {
    group: &'a str,
    uid: &'a str,
    login_domain: &'a str,
}

fuzz_target!(|names: Names<'_>| {
    let clean = clean_group_name(names.group);
    assert_eq!(clean_group_name(&clean), clean, "not idempotent");
    assert!(!clean.contains('@'), "{clean:?}");
    assert!(!clean.chars().any(char::is_control), "{clean:?}");
    assert!(clean.chars().all(|c| names.group.contains(c)), "{clean:?}");

    // The login's domain comes from a decoded request: never empty.
    if names.login_domain.is_empty() {
        return;
    }
    if let Some(jid) = member_jid(names.uid, names.login_domain) {
        let (local, domain) = jid.split_once('@').expect("a JID without @");
        assert!(!local.is_empty() && !domain.is_empty(), "{jid:?}");
        if !names.login_domain.chars().any(char::is_control) {
            assert!(!jid.chars().any(char::is_control), "{jid:?}");
        }
    }
});
