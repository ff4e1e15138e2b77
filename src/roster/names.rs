//! Nextcloud names in ejabberd: group names cleaned to the characters SPEC
//! §9 allows, member ids completed to JIDs, `srg_get_members` output read.

use unicode_general_category::{get_general_category, GeneralCategory};

/// A group name ending in this (ZERO WIDTH SPACE) is left out: the
/// administrator's way to keep big groups out of the shared roster.
pub const EXCLUDED_GROUP_MARK: char = '\u{200B}';

/// Whether a character may stay in a group name: general category one of
/// Lu Ll Lm Lo Nd Nl No Pc Pd Ps Pe Pi Pf Po Sm Sc Sk So Zs (so no controls,
/// format characters, marks, titlecase letters or line separators).
fn kept_in_group_name(c: char) -> bool {
    use GeneralCategory as G;
    c != '@'
        && matches!(
            get_general_category(c),
            G::UppercaseLetter // Lu
                | G::LowercaseLetter // Ll
                | G::ModifierLetter // Lm
                | G::OtherLetter // Lo
                | G::DecimalNumber // Nd
                | G::LetterNumber // Nl
                | G::OtherNumber // No
                | G::ConnectorPunctuation // Pc
                | G::DashPunctuation // Pd
                | G::OpenPunctuation // Ps
                | G::ClosePunctuation // Pe
                | G::InitialPunctuation // Pi
                | G::FinalPunctuation // Pf
                | G::OtherPunctuation // Po
                | G::MathSymbol // Sm
                | G::CurrencySymbol // Sc
                | G::ModifierSymbol // Sk
                | G::OtherSymbol // So
                | G::SpaceSeparator // Zs
        )
}

/// The ejabberd group identifier for a Nextcloud group name (SPEC §9): only
/// the characters of the allowed general categories, without `@`.
pub fn clean_group_name(name: &str) -> String {
    name.chars().filter(|&c| kept_in_group_name(c)).collect()
}

/// The full JID of a roster member: `name@domain` is kept, a bare `name`
/// gets the login's domain. `None` for an empty UID or an empty half, and
/// for a UID with a control character (no Nextcloud user name has one).
pub fn member_jid(uid: &str, login_domain: &str) -> Option<String> {
    if uid.contains(char::is_control) {
        return None;
    }
    match uid.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Some(uid.to_owned()),
        Some(_) => None,
        None if uid.is_empty() => None,
        None => Some(format!("{uid}@{login_domain}")),
    }
}

/// Splits a JID at its first `@` into local part and domain; without `@`
/// the domain is `default_domain` (as the original did).
pub(super) fn split_jid<'a>(jid: &'a str, default_domain: &'a str) -> (&'a str, &'a str) {
    jid.split_once('@').unwrap_or((jid, default_domain))
}

/// The JIDs in `srg_get_members` output: one a line, blank lines skipped.
pub fn parse_members(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_name_keeps_allowed_categories_and_drops_at() {
        assert_eq!(clean_group_name("Team @ Home ☃!"), "Team  Home ☃!");
        assert_eq!(clean_group_name("staff"), "staff");
        // Control, format (U+200B, U+200E), line separator, combining mark:
        assert_eq!(
            clean_group_name("a\tb\u{200B}c\u{200E}d\u{2028}e\u{301}"),
            "abcde"
        );
        // Titlecase letters (Lt) are not in the list; No-break space (Zs) is.
        assert_eq!(clean_group_name("ǅx\u{A0}y"), "x\u{A0}y");
        assert_eq!(
            clean_group_name("Ärzte-Team (Süd) €½ „x“ «y» ·_·"),
            "Ärzte-Team (Süd) €½ „x“ «y» ·_·"
        );
        assert_eq!(
            clean_group_name("a;b $(touch /x) `id`"),
            "a;b $(touch /x) `id`"
        );
        assert_eq!(clean_group_name("@@\u{7}"), "");
    }

    #[test]
    fn kept_categories_are_exactly_the_listed_ones() {
        const KEPT: [&str; 19] = [
            "Lu", "Ll", "Lm", "Lo", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po",
            "Sm", "Sc", "Sk", "So", "Zs",
        ];
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32) {
            let by_name = c != '@' && KEPT.contains(&get_general_category(c).abbreviation());
            assert_eq!(kept_in_group_name(c), by_name, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn member_jids_are_completed_with_the_login_domain() {
        assert_eq!(
            member_jid("bob", "example.org").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(
            member_jid("bob@other.net", "example.org").as_deref(),
            Some("bob@other.net")
        );
        assert_eq!(
            member_jid("Zoë Smith", "example.org").as_deref(),
            Some("Zoë Smith@example.org")
        );
        assert_eq!(member_jid("", "example.org"), None);
        assert_eq!(member_jid("@example.org", "example.org"), None);
        assert_eq!(member_jid("bob@", "example.org"), None);
        // Found by fuzzing (roster_names): control characters went through.
        assert_eq!(member_jid("\u{7f}\0", "example.org"), None);
        assert_eq!(member_jid("bob\n@other.net", "example.org"), None);
        assert_eq!(member_jid("bob\r", "example.org"), None);
        assert_eq!(
            split_jid("bob@other.net", "example.org"),
            ("bob", "other.net")
        );
        assert_eq!(split_jid("bob", "example.org"), ("bob", "example.org"));
    }

    #[test]
    fn members_output_is_one_jid_a_line() {
        assert_eq!(
            parse_members("a@x\r\n\n b@x \n"),
            vec!["a@x".to_owned(), "b@x".to_owned()]
        );
        assert!(parse_members("").is_empty());
    }
}
