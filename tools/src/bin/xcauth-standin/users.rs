//! The stand-in's user table: who exists, with which password, display name and groups.
//!
//! File format: one user a line, fields separated by a TAB character:
//!
//! ```text
//! uid<TAB>password[<TAB>display name[<TAB>group1,group2]]
//! ```
//!
//! TAB is the separator so that passwords and names may contain `:`, `,`
//! and spaces; a password runs to the next TAB (or the end of the line) and
//! is taken byte for byte. Blank lines and lines starting with `#` are
//! ignored. An empty display name means "same as the uid" (what Nextcloud
//! shows for a user without one). A uid of the form `name@domain` is a user
//! that only a request for that domain finds, like a Nextcloud account whose
//! UID contains the domain.

use std::fmt;

use xcauth::secret::Secret;

/// One account of the stand-in Nextcloud.
#[derive(Debug, Clone)]
pub struct User {
    /// The Nextcloud UID, e.g. `alice` or `carol@example.org`.
    pub uid: String,
    password: Secret,
    /// The display name (the uid when the file gave none).
    pub name: String,
    /// Group display names, in file order, without duplicates.
    pub groups: Vec<String>,
}

/// A line of the users file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for TableError {}

/// One member of a shared roster: a user and the groups it shares with the
/// asking user.
#[derive(Debug, PartialEq, Eq)]
pub struct RosterEntry<'a> {
    /// The member's UID.
    pub uid: &'a str,
    /// The member's display name.
    pub name: &'a str,
    /// The shared groups, in the asking user's group order.
    pub groups: Vec<&'a str>,
}

/// All accounts, in file order (which is also the roster order).
#[derive(Debug, Clone, Default)]
pub struct UserTable {
    users: Vec<User>,
}

/// PHP's `empty()` on a request parameter: `""` and `"0"` both count as
/// "not given", which is how the JSXC app tests its parameters.
pub fn php_empty(value: &str) -> bool {
    value.is_empty() || value == "0"
}

impl UserTable {
    /// Reads the TAB-separated format described in the module doc.
    pub fn parse(text: &str) -> Result<Self, TableError> {
        let mut users: Vec<User> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let error = |reason| TableError {
                line: index + 1,
                reason,
            };
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let (uid, password, name, groups) = match fields.as_slice() {
                [uid, password] => (*uid, *password, "", ""),
                [uid, password, name] => (*uid, *password, *name, ""),
                [uid, password, name, groups] => (*uid, *password, *name, *groups),
                [_] => {
                    return Err(error(
                        "expected uid<TAB>password[<TAB>name[<TAB>groups]] (fields are separated by TAB, not spaces)",
                    ))
                }
                _ => return Err(error("more than 4 TAB-separated fields")),
            };
            if uid.is_empty() || uid.chars().any(char::is_whitespace) {
                return Err(error("the uid must be non-empty and contain no spaces"));
            }
            if users.iter().any(|u| u.uid == uid) {
                return Err(error("this uid appears more than once"));
            }
            let name = name.trim();
            let mut group_list: Vec<String> = Vec::new();
            // Only ASCII blanks are trimmed: a trailing U+200B is part of a
            // group name (ejabberd roster sync skips such groups).
            for group in groups.split(',').map(str::trim_ascii) {
                if !group.is_empty() && !group_list.iter().any(|g| g == group) {
                    group_list.push(group.to_owned());
                }
            }
            users.push(User {
                uid: uid.to_owned(),
                password: Secret::new(password),
                name: if name.is_empty() { uid } else { name }.to_owned(),
                groups: group_list,
            });
        }
        Ok(UserTable { users })
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// The account with exactly this UID.
    fn get(&self, uid: &str) -> Option<&User> {
        self.users.iter().find(|u| u.uid == uid)
    }

    /// The UIDs a request names, most specific first: like the JSXC app,
    /// `username@domain` (when a domain is given), then `username`.
    fn candidates(username: &str, domain: &str) -> Vec<String> {
        let mut list = Vec::with_capacity(2);
        if php_empty(username) {
            return list;
        }
        if !php_empty(domain) {
            list.push(format!("{username}@{domain}"));
        }
        list.push(username.to_owned());
        list
    }

    /// The account a request for `username` at `domain` refers to.
    pub fn find(&self, username: &str, domain: &str) -> Option<&User> {
        Self::candidates(username, domain)
            .iter()
            .find_map(|uid| self.get(uid))
    }

    /// The account whose password this is, trying the candidates in turn as
    /// the JSXC app does (a wrong password for `user@domain` still lets the
    /// bare `user` try).
    pub fn login(&self, username: &str, domain: &str, password: &str) -> Option<&User> {
        if php_empty(password) {
            return None;
        }
        Self::candidates(username, domain)
            .iter()
            .filter_map(|uid| self.get(uid))
            .find(|user| user.password.expose() == password)
    }

    /// Everyone sharing at least one group with `user` (including `user`
    /// itself when it has a group), built the way the JSXC app builds it:
    /// for each of the user's groups, each member in table order.
    pub fn roster<'a>(&'a self, user: &'a User) -> Vec<RosterEntry<'a>> {
        let mut roster: Vec<RosterEntry<'a>> = Vec::new();
        for group in &user.groups {
            for member in self.users.iter().filter(|m| m.groups.contains(group)) {
                let position = match roster.iter().position(|e| e.uid == member.uid) {
                    Some(position) => position,
                    None => {
                        roster.push(RosterEntry {
                            uid: &member.uid,
                            name: &member.name,
                            groups: Vec::new(),
                        });
                        roster.len() - 1
                    }
                };
                if let Some(entry) = roster.get_mut(position) {
                    entry.groups.push(group);
                }
            }
        }
        roster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "# uid\tpassword\tname\tgroups\n\
        alice\talice-pw\tAlice Liddell\tstaff, chess\n\
        \n\
        bob\tb:o:b\t\tstaff\r\n\
        carol@example.org\tcarol-pw\tCarol\tchess,chess\n\
        carol\tbare-pw\n\
        dave\tdave-pw\tDave\n";

    fn table() -> UserTable {
        UserTable::parse(TABLE).unwrap()
    }

    #[test]
    fn parses_fields_names_and_groups() {
        let t = table();
        assert_eq!(t.len(), 5);
        let bob = t.find("bob", "").unwrap();
        assert_eq!(bob.name, "bob", "empty name falls back to the uid");
        assert_eq!(bob.groups, ["staff"]);
        let alice = t.find("alice", "x").unwrap();
        assert_eq!(alice.groups, ["staff", "chess"]);
        assert_eq!(t.find("carol", "example.org").unwrap().groups, ["chess"]);
    }

    #[test]
    fn colon_in_password_and_crlf() {
        let t = table();
        assert_eq!(t.login("bob", "d", "b:o:b").unwrap().uid, "bob");
        assert!(t.login("bob", "d", "b:o:b\r").is_none());
    }

    #[test]
    fn domain_entries_match_only_their_domain() {
        let t = table();
        assert_eq!(
            t.find("carol", "example.org").unwrap().uid,
            "carol@example.org"
        );
        assert_eq!(t.find("carol", "other.org").unwrap().uid, "carol");
        assert_eq!(
            t.login("carol", "example.org", "carol-pw").unwrap().uid,
            "carol@example.org"
        );
        // the domain account's password is wrong here, the bare one's right
        assert_eq!(
            t.login("carol", "example.org", "bare-pw").unwrap().uid,
            "carol"
        );
        assert!(t.login("carol", "other.org", "carol-pw").is_none());
        assert!(t.find("nobody", "example.org").is_none());
    }

    #[test]
    fn php_empty_values_never_match() {
        let t = UserTable::parse("0\tpw\n").unwrap();
        assert!(t.find("0", "").is_none());
        let t = UserTable::parse("zero\t0\n").unwrap();
        assert!(t.login("zero", "", "0").is_none());
        assert!(table().login("alice", "", "").is_none());
    }

    #[test]
    fn roster_lists_group_mates_once_in_group_order() {
        let t = table();
        let alice = t.find("alice", "").unwrap();
        let roster = t.roster(alice);
        let summary: Vec<(&str, &str, Vec<&str>)> = roster
            .iter()
            .map(|e| (e.uid, e.name, e.groups.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                ("alice", "Alice Liddell", vec!["staff", "chess"]),
                ("bob", "bob", vec!["staff"]),
                ("carol@example.org", "Carol", vec!["chess"]),
            ]
        );
        assert!(t.roster(t.find("dave", "").unwrap()).is_empty());
    }

    #[test]
    fn zero_width_space_survives_in_group_names() {
        let t = UserTable::parse("u\tp\tU\tbig\u{200B}, small \n").unwrap();
        assert_eq!(t.find("u", "").unwrap().groups, ["big\u{200B}", "small"]);
    }

    #[test]
    fn bad_lines_name_their_number() {
        let err = UserTable::parse("# c\nalice alice-pw\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("TAB"));
        assert_eq!(UserTable::parse("a\tb\tc\td\te\n").unwrap_err().line, 1);
        assert_eq!(UserTable::parse("a\tx\na\ty\n").unwrap_err().line, 2);
        assert_eq!(UserTable::parse("\tx\n").unwrap_err().line, 1);
    }
}
