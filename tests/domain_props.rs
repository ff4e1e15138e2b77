//! Property tests for the canonical form of a domain: it is a fixed point,
//! every case and trailing-dot spelling of a name has the same one, and no
//! invisible, bidi or control character, space or separator survives.

use proptest::prelude::*;
use xcauth::proto::domain::{canonical_domain, MAX_DOMAIN, MAX_LABEL};
use xcauth::proto::Request;
use xcauth::secret::Secret;

/// Characters that must never be part of a domain, wherever they are put.
const FORBIDDEN: &[char] = &[
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}', '\u{202E}', '\u{202A}',
    '\u{2066}', '\u{2028}', '\u{0000}', '\n', '\r', '\t', '\u{7F}', ' ', '\u{00A0}', '\u{3000}',
    '@', ':', '/', '%', '_', '\\', '+', '*', '\u{FF0E}', '\u{3002}',
];

/// Host names in mixed case: ASCII labels, some with inner hyphens, and
/// some labels of non-ASCII letters.
fn host_name() -> impl Strategy<Value = String> {
    let ascii = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?";
    let unicode = "[a-zA-Zäöüéçñøåæłżžšœ]{1,8}";
    let label = prop_oneof![3 => ascii, 1 => unicode];
    (prop::collection::vec(label, 1..4), "[a-zA-Z]{2,6}")
        .prop_map(|(labels, tld)| format!("{}.{tld}", labels.join(".")))
}

/// Flips the case of the characters where `flips` says so.
fn recase(name: &str, flips: &[bool]) -> String {
    name.chars()
        .zip(flips.iter().cycle())
        .map(|(c, flip)| {
            if *flip {
                c.to_uppercase().collect::<String>()
            } else {
                c.to_string()
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_canonical_form_is_a_fixed_point(input in "\\PC{0,40}") {
        if let Ok(canonical) = canonical_domain(&input) {
            prop_assert_eq!(canonical_domain(&canonical), Ok(canonical.clone()));
            prop_assert!(!canonical.ends_with('.'));
            prop_assert!(canonical.len() <= MAX_DOMAIN);
            prop_assert!(canonical.split('.').all(|l| !l.is_empty() && l.len() <= MAX_LABEL));
            prop_assert_eq!(canonical.to_lowercase(), canonical.clone());
            prop_assert!(!canonical.chars().any(|c| FORBIDDEN.contains(&c) || c.is_control()));
        }
    }

    #[test]
    fn every_case_and_a_trailing_dot_are_one_domain(
        name in host_name(),
        flips in prop::collection::vec(any::<bool>(), 1..16),
        dot in any::<bool>(),
    ) {
        let canonical = canonical_domain(&name);
        prop_assume!(canonical.is_ok());
        let mut variant = recase(&name, &flips);
        if dot {
            variant.push('.');
        }
        prop_assert_eq!(canonical_domain(&variant), canonical);
    }

    #[test]
    fn a_forbidden_character_anywhere_is_refused(
        name in host_name(),
        at in any::<prop::sample::Index>(),
        which in any::<prop::sample::Index>(),
    ) {
        let mut chars: Vec<char> = name.chars().collect();
        chars.insert(at.index(chars.len() + 1), *which.get(FORBIDDEN));
        let bad: String = chars.into_iter().collect();
        prop_assert!(canonical_domain(&bad).is_err(), "{:?} accepted", bad);
        // As a request, it is refused, and the reason never holds the
        // password.
        let request = Request::Auth {
            user: "alice".into(),
            domain: bad,
            password: Secret::new("pw-Xy7"),
            service: None,
            client: None,
        };
        match request.canonical() {
            Request::Invalid { reason } => prop_assert!(!reason.contains("pw-Xy7")),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
