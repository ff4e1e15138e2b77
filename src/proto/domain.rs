//! The one canonical form of a domain. Every request's domain is put in
//! this form before any decision ([`super::Request::canonical`]), and the
//! `domains` rows are keyed by it, so `EXAMPLE.ORG`, `Example.org` and
//! `example.org.` are one tenant, and a name with invisible characters is
//! none.
//!
//! The form: Unicode lower case, no trailing dot, labels of letters,
//! digits and inner hyphens. Internationalised names are kept in their
//! Unicode form; an ASCII-compatible label (`xn--…`) is decoded to it, so
//! both spellings of one name are one domain. Anything that is not a host
//! name is refused rather than repaired: a request for it is invalid and
//! reaches no back end.

use unicode_general_category::{get_general_category, GeneralCategory};

/// The longest domain, in bytes of the canonical form (RFC 1035 §2.3.4,
/// without the trailing dot).
pub const MAX_DOMAIN: usize = 253;

/// The longest label, in bytes (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;

/// `domain` in its canonical form, or why it is not a host name. The
/// reason never quotes the input (callers show it escaped).
///
/// Refused: empty names and labels, names over [`MAX_DOMAIN`] and labels
/// over [`MAX_LABEL`] bytes; any character other than a letter, a digit or
/// a hyphen, which covers spaces, `@ : / % _`, control characters,
/// invisible ones (U+200B, U+200C/D, U+2060, U+FEFF, the soft hyphen) and
/// bidi controls (U+202E); a hyphen at the start or end of a label; a
/// label that starts with a combining mark; an `xn--` label that does not
/// decode, or a Unicode name that IDNA (UTS #46) does not accept or would
/// spell differently; and names whose last label is all digits: IPv4
/// literals (`192.0.2.1`) are not served, since `192.0.2.01` would be
/// another key for the same address.
pub fn canonical_domain(domain: &str) -> Result<String, &'static str> {
    // One trailing dot names the root: `example.org.` is `example.org`.
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if name.is_empty() {
        return Err("empty domain");
    }
    let lower = name.to_lowercase();
    check_labels(&lower)?;
    let canonical = if lower.is_ascii() && !lower.split('.').any(is_ace_label) {
        lower
    } else {
        unicode_form(&lower)?
    };
    if canonical.len() > MAX_DOMAIN {
        return Err("domain longer than 253 bytes");
    }
    if canonical
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("domain is an IPv4 address or ends in a numeric label");
    }
    Ok(canonical)
}

/// Checks every label of a lower-cased name for length and characters.
fn check_labels(name: &str) -> Result<(), &'static str> {
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label in domain");
        }
        if label.len() > MAX_LABEL {
            return Err("domain label longer than 63 bytes");
        }
        if !label.chars().all(allowed) {
            return Err("domain has a character that is not a letter, digit or hyphen");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("domain label starts or ends with a hyphen");
        }
        if label.chars().next().is_some_and(is_mark) {
            return Err("domain label starts with a combining mark");
        }
    }
    Ok(())
}

/// ASCII letters, digits and the hyphen; beyond ASCII, letters, the
/// combining marks that scripts need for their letters (Mn, Mc) and
/// decimal digits. Format characters (Cf: invisible and bidi controls),
/// separators, symbols, punctuation and controls are not allowed.
fn allowed(c: char) -> bool {
    use GeneralCategory as G;
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '-';
    }
    is_mark(c)
        || matches!(
            get_general_category(c),
            G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
                | G::DecimalNumber
        )
}

fn is_mark(c: char) -> bool {
    use GeneralCategory as G;
    matches!(get_general_category(c), G::NonspacingMark | G::SpacingMark)
}

/// An ASCII-compatible encoding of an internationalised label.
fn is_ace_label(label: &str) -> bool {
    label.starts_with("xn--")
}

/// The Unicode form of an internationalised name, which must already be
/// what UTS #46 makes of it, apart from `xn--` labels, which are decoded.
fn unicode_form(name: &str) -> Result<String, &'static str> {
    use idna::uts46::{AsciiDenyList, Hyphens, Uts46};
    let (unicode, result) = Uts46::new().to_unicode(
        name.as_bytes(),
        AsciiDenyList::STD3,
        Hyphens::CheckFirstLast,
    );
    if result.is_err() {
        return Err("domain is not a valid internationalised domain name");
    }
    // Labels that were not `xn--` must come out as they went in: a name
    // that IDNA maps (another normalisation form, compatibility
    // characters) is refused rather than guessed at.
    let same_outside_ace = name
        .split('.')
        .zip(unicode.split('.'))
        .all(|(before, after)| is_ace_label(before) || before == after);
    if !same_outside_ace || name.split('.').count() != unicode.split('.').count() {
        return Err("domain is not in the normalised form of an internationalised domain name");
    }
    check_labels(&unicode)?;
    Ok(unicode.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_the_trailing_dot_are_one_domain() {
        for variant in [
            "example.org",
            "EXAMPLE.ORG",
            "Example.org",
            "example.org.",
            "eXaMpLe.OrG.",
        ] {
            assert_eq!(
                canonical_domain(variant),
                Ok("example.org".into()),
                "{variant}"
            );
        }
        assert_eq!(canonical_domain("localhost"), Ok("localhost".into()));
        assert_eq!(canonical_domain("a-1.b2.c"), Ok("a-1.b2.c".into()));
        // Labels with hyphens in the third and fourth place are names.
        assert_eq!(
            canonical_domain("ab--cd.example"),
            Ok("ab--cd.example".into())
        );
    }

    #[test]
    fn internationalised_names_are_kept_in_unicode_lower_case() {
        assert_eq!(canonical_domain("ZOË.example"), Ok("zoë.example".into()));
        assert_eq!(
            canonical_domain("Bücher.Example"),
            Ok("bücher.example".into())
        );
        assert_eq!(
            canonical_domain("xn--bcher-kva.example"),
            Ok("bücher.example".into())
        );
        assert_eq!(
            canonical_domain("XN--BCHER-KVA.example."),
            Ok("bücher.example".into())
        );
        assert_eq!(canonical_domain("例え.テスト"), Ok("例え.テスト".into()));
        // Marks that Indic scripts need for their vowels.
        assert_eq!(
            canonical_domain("हिन्दी.example"),
            Ok("हिन्दी.example".into())
        );
    }

    #[test]
    fn names_that_are_not_host_names_are_refused() {
        for bad in [
            "",
            ".",
            "example.org..",
            ".example.org",
            "example..org",
            "example.org\u{200B}",
            "exa\u{200C}mple.org",
            "exa\u{200D}mple.org",
            "exa\u{2060}mple.org",
            "\u{FEFF}example.org",
            "exam\u{00AD}ple.org",
            "\u{202E}gro.elpmaxe",
            "example.org\n",
            "example.org\0",
            "exa mple.org",
            "example.org ",
            "alice@example.org",
            "example.org:5222",
            "example.org/x",
            "exa%41mple.org",
            "under_score.example",
            "-lead.example",
            "trail-.example",
            "\u{0301}mark.example",
            "ｅｘａｍｐｌｅ.org",
            "xn--zz.example",
            "xn--.example",
            "192.0.2.1",
            "192.0.2.01",
            "example.123",
            "[2001:db8::1]",
        ] {
            assert!(canonical_domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lengths_are_limited() {
        let label = "a".repeat(MAX_LABEL);
        assert!(canonical_domain(&format!("{label}.example")).is_ok());
        assert!(canonical_domain(&format!("{label}a.example")).is_err());
        let long = [label.as_str(); 4].join(".");
        assert_eq!(long.len(), 255);
        assert!(canonical_domain(&long).is_err());
        let fits = format!("{}.{}", [label.as_str(); 3].join("."), "a".repeat(61));
        assert_eq!(fits.len(), MAX_DOMAIN);
        assert!(canonical_domain(&fits).is_ok());
        assert!(canonical_domain(&format!("{fits}.")).is_ok());
        // Multi-byte letters count in bytes.
        assert!(canonical_domain(&format!("{}.example", "ë".repeat(32))).is_err());
    }

    #[test]
    fn reasons_do_not_quote_the_input() {
        let secretish = "hunter2\u{200B}.example";
        let reason = canonical_domain(secretish).unwrap_err();
        assert!(!reason.contains("hunter2"));
    }
}
