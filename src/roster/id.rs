//! The ejabberd group id of a Nextcloud group: valid and unchanged under
//! nodeprep, the same for the same name in every process and version, and
//! never shared by two names.
//!
//! ejabberd 24.12 nodepreps the group id in `srg_create` and in no other
//! `srg_*` command, so an id nodeprep changes splits the group in two
//! (`Board` is created as `board`, its members go to `Board`), and one
//! nodeprep rejects (space, `&`, `'`, `"`, `/`, `:`, `<`, `>`, `@`,
//! controls...) cannot be created at all. The id is therefore made of
//! characters nodeprep leaves alone, and the readable (clean) name is the
//! group's label and description.
//!
//! ## The formula (keep it: stored state and ejabberd's groups depend on it)
//! Let CLEAN be the clean group name ([`clean_group_name`](super::clean_group_name)).
//!
//! - **Plain names keep their name:** if CLEAN matches
//!   `^[a-z0-9][a-z0-9_.]*$` and is at most 64 bytes long, the id is CLEAN
//!   (so `staff` stays `staff`).
//! - **Every other name** gets `SLUG-HASH`:
//!   - HASH is the first 16 hex digits (lower case; the first 8 bytes) of
//!     the SHA-256 of CLEAN's UTF-8 bytes;
//!   - SLUG is CLEAN's ASCII letters and digits, lower-cased, in order,
//!     with one `_` wherever one or more other characters stood between two
//!     of them; cut to its first 24 characters, then any `_` at its end
//!     removed; `group` if that leaves nothing.
//!
//! For example `Board` → `board-4816cbfd74aa8297` and `Ops & Co.` →
//! `ops_co-2e674c4fe232b0a7` (the vectors in the tests pin more).
//!
//! ## Why two names never share an id
//! A plain id has no `-`; every other id has one. So a plain name and any
//! other name never meet, and two plain names differ in their ids because
//! the ids are the names. Two other names share an id only if their
//! SHA-256 agree in the first 64 bits *and* their slugs agree: a chance of
//! about 2⁻⁶⁴ for a pair, about 10⁻⁹ even among 190 000 groups of one
//! domain. Names that clean to the same CLEAN are one group, as before.
//! Every id is at most 64 bytes (plain) or 24 + 1 + 16 = 41 bytes, well
//! below nodeprep's limit of 1023 bytes and the 191 characters of
//! ejabberd's MySQL schema.
//!
//! ## Telling our ids from the old scheme's
//! Before this scheme CLEAN itself was the id. A stored group whose name is
//! a plain id or has the exact shape of an id of the second kind
//! ([`is_group_id`]) is taken as ours; any other stored name is one the old
//! scheme created and is migrated. (An old group whose clean name itself
//! looked like `x-` plus 16 hex digits would be taken as ours and keep its
//! old id; such a group already worked on every ejabberd.)

use sha2::{Digest, Sha256};

/// Longest plain name (in bytes) kept as its own id.
pub const PLAIN_MAX: usize = 64;
/// Longest slug of an id of the second kind.
pub const SLUG_MAX: usize = 24;
/// Hex digits of SHA-256 in an id of the second kind.
pub const HASH_DIGITS: usize = 16;
/// The slug of a name without ASCII letters or digits.
const EMPTY_SLUG: &str = "group";

/// Whether `clean` is kept as its own id: `^[a-z0-9][a-z0-9_.]*$`, at most
/// [`PLAIN_MAX`] bytes.
pub fn is_plain(clean: &str) -> bool {
    let bytes = clean.as_bytes();
    match bytes.first() {
        Some(first) if bytes.len() <= PLAIN_MAX => {
            (first.is_ascii_lowercase() || first.is_ascii_digit())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.".contains(b))
        }
        _ => false,
    }
}

/// The ejabberd group id of the clean group name `clean` (see the module
/// documentation for the formula).
pub fn group_id(clean: &str) -> String {
    if is_plain(clean) {
        return clean.to_owned();
    }
    let digest = Sha256::digest(clean.as_bytes());
    let hash = hex::encode(&digest[..HASH_DIGITS / 2]);
    format!("{}-{hash}", slug(clean))
}

/// The short lowercase ASCII rendering of `clean` in an id.
fn slug(clean: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in clean.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
        if out.len() >= SLUG_MAX {
            break;
        }
    }
    out.truncate(SLUG_MAX);
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        EMPTY_SLUG.to_owned()
    } else {
        out
    }
}

/// Whether `id` is one [`group_id`] can give: a plain name, or a slug of
/// `a-z`, `0-9` and `_` (not starting or ending with `_`, at most
/// [`SLUG_MAX`] characters), `-` and [`HASH_DIGITS`] lowercase hex digits.
pub fn is_group_id(id: &str) -> bool {
    if is_plain(id) {
        return true;
    }
    let Some((slug, hash)) = id.rsplit_once('-') else {
        return false;
    };
    hash.len() == HASH_DIGITS
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && !slug.is_empty()
        && slug.len() <= SLUG_MAX
        && !slug.starts_with('_')
        && !slug.ends_with('_')
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::clean_group_name;

    /// What nodeprep (RFC 3491 profile of stringprep, RFC 3920 appendix A)
    /// does to an ASCII string, as far as this test needs: upper case is
    /// mapped to lower case; controls, DEL, space and `"&'/:<>@` are
    /// prohibited; the rest of ASCII is left alone. Non-ASCII input, and a
    /// result of 1024 bytes or more (ejabberd's limit), give `None`
    /// ("not known to be left alone").
    fn nodeprep_ascii(s: &str) -> Option<String> {
        if !s.is_ascii() || s.is_empty() || s.len() >= 1024 {
            return None;
        }
        s.chars()
            .map(|c| match c {
                '\0'..=' ' | '\x7f' | '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@' => None,
                'A'..='Z' => Some(c.to_ascii_lowercase()),
                _ => Some(c),
            })
            .collect()
    }

    fn assert_nodeprep_stable(id: &str) {
        assert_eq!(
            nodeprep_ascii(id).as_deref(),
            Some(id),
            "{id:?} is not left alone by nodeprep"
        );
    }

    #[test]
    fn the_nodeprep_model_rejects_and_maps_what_it_should() {
        assert_eq!(nodeprep_ascii("Board").as_deref(), Some("board"));
        for bad in [
            "a b", "a&b", "it's", "\"q\"", "a/b", "a:b", "<a>", "a@b", "a\tb", "", "Zoë",
        ] {
            assert_eq!(nodeprep_ascii(bad), None, "{bad:?}");
        }
        assert_eq!(
            nodeprep_ascii("ops_co-0a.9").as_deref(),
            Some("ops_co-0a.9")
        );
    }

    /// Pinned: these ids are stored and live in ejabberd, so they must
    /// never change.
    #[test]
    fn test_vectors() {
        let vectors = [
            ("staff", "staff"),
            ("team.2024_a", "team.2024_a"),
            ("0day", "0day"),
            ("Board", "board-4816cbfd74aa8297"),
            ("Ops & Co.", "ops_co-2e674c4fe232b0a7"),
            ("it's \"quoted\"", "it_s_quoted-0405a293396b3c6f"),
            ("R&D/Paris: <1>", "r_d_paris_1-e0ee8e253ef2e109"),
            ("a b", "a_b-c8687a08aa5d6ed2"),
            ("Ärzte-Team (Süd)", "rzte_team_s_d-e66e8a9c4fe51c59"),
            ("团队", "group-acdf17f4e9c43ea0"),
            ("🎉 Party 🎉", "party-770f8ea4bde8940b"),
            ("_hidden", "hidden-7a1f9c0915c0cffa"),
            (
                "ops-0123456789abcdef",
                "ops_0123456789abcdef-fcf13faded0e9df6",
            ),
            (
                "A very long group name that goes on and on",
                "a_very_long_group_name_t-752b4648828181fd",
            ),
        ];
        let got: Vec<(&str, String)> = vectors.iter().map(|(n, _)| (*n, group_id(n))).collect();
        let want: Vec<(&str, String)> =
            vectors.iter().map(|(n, i)| (*n, (*i).to_owned())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn ids_are_nodeprep_stable_and_recognised() {
        let names = [
            "staff",
            "Board",
            "BOARD",
            "Ops & Co.",
            "it's",
            "\"quoted\"",
            "a/b",
            "a:b",
            "<tag>",
            "Team @ Home ☃!",
            "Ärzte-Team (Süd)",
            "团队",
            "🎉",
            "🎉 Party 🎉",
            "x\u{A0}y",
            "a,b",
            "a\\nb",
            " padded ",
            "-",
            "_",
            ".",
            "a-b",
            &"x".repeat(PLAIN_MAX + 1),
            &"Ü".repeat(500),
        ];
        for raw in names {
            let clean = clean_group_name(raw);
            let id = group_id(&clean);
            assert_nodeprep_stable(&id);
            assert!(is_group_id(&id), "{id:?} from {raw:?}");
            assert!(id.len() <= PLAIN_MAX, "{id:?}");
            assert_eq!(group_id(&clean), id, "same name, same id");
        }
        // `@` is gone already in the clean name: "Team @ Home" → "Team  Home".
        assert_eq!(
            group_id(&clean_group_name("a@b")),
            group_id("ab"),
            "clean names are the groups"
        );
    }

    #[test]
    fn plain_and_other_ids_never_meet() {
        assert!(is_plain("staff"));
        assert!(is_plain(&"x".repeat(PLAIN_MAX)));
        for not_plain in [
            "",
            "Staff",
            "a-b",
            "_a",
            ".a",
            "a b",
            "zoë",
            &"x".repeat(PLAIN_MAX + 1),
        ] {
            assert!(!is_plain(not_plain), "{not_plain:?}");
            assert!(group_id(not_plain).contains('-'));
        }
        // Names that slug alike still get different ids.
        let alike = ["Ops & Co.", "ops co", "OPS-CO", "Ops/Co", "ops_co"];
        let ids: std::collections::BTreeSet<String> = alike.iter().map(|n| group_id(n)).collect();
        assert_eq!(ids.len(), alike.len(), "{ids:?}");
    }

    #[test]
    fn old_scheme_names_are_told_from_ours() {
        for old in [
            "Board",
            "Ops & Co.",
            "a b",
            "团队",
            "ops_co-2E674C4FE232B0A7",
            "x-123",
        ] {
            assert!(!is_group_id(old), "{old:?}");
        }
        for ours in ["staff", "ops_co-2e674c4fe232b0a7", "group-acdf17f4e9c43ea0"] {
            assert!(is_group_id(ours), "{ours:?}");
        }
    }
}
