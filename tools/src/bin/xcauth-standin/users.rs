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
//!
//! Further columns and `group:` lines (e-mail, disabled, 2FA, app passwords,
//! admin rights, group display names) are described in [`crate::accounts`];
//! the groups column then lists gids, and the JSXC roster shows each group's
//! display name (the gid unless a `group:` line gives another).

use std::fmt;

use xcauth::secret::Secret;

use crate::accounts::{self, Extra};

/// One account of the stand-in Nextcloud.
#[derive(Debug, Clone)]
pub struct User {
    /// The Nextcloud UID, e.g. `alice` or `carol@example.org`.
    pub uid: String,
    password: Secret,
    /// The display name (the uid when the file gave none).
    pub name: String,
    /// Group ids, in file order, without duplicates.
    pub groups: Vec<String>,
    /// The optional columns.
    pub extra: Extra,
}

impl User {
    /// Whether this is the main password (never an empty one).
    pub fn main_password_is(&self, password: &str) -> bool {
        !password.is_empty() && self.password.expose() == password
    }
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
    /// `(gid, display name)` from the `group:` lines, in file order.
    group_names: Vec<(String, String)>,
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
        let mut group_names: Vec<(String, String)> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let error = |reason| TableError {
                line: index + 1,
                reason,
            };
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            if let Some(group) = accounts::parse_group_line(line) {
                let (gid, name) = group.map_err(error)?;
                if group_names.iter().any(|(g, _)| *g == gid) {
                    return Err(error("this group appears more than once"));
                }
                group_names.push((gid, name));
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let (uid, password, name, groups, options) = match fields.as_slice() {
                [uid, password] => (*uid, *password, "", "", &[][..]),
                [uid, password, name] => (*uid, *password, *name, "", &[][..]),
                [uid, password, name, groups, options @ ..] => {
                    (*uid, *password, *name, *groups, options)
                }
                [_] => {
                    return Err(error(
                        "expected uid<TAB>password[<TAB>name[<TAB>groups]] (fields are separated by TAB, not spaces)",
                    ))
                }
                [] => continue,
            };
            let extra = accounts::parse_options(options).map_err(error)?;
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
            if extra.admin && !group_list.iter().any(|g| g == accounts::ADMIN_GROUP) {
                group_list.push(accounts::ADMIN_GROUP.to_owned());
            }
            users.push(User {
                uid: uid.to_owned(),
                password: Secret::new(password),
                name: if name.is_empty() { uid } else { name }.to_owned(),
                groups: group_list,
                extra,
            });
        }
        Ok(UserTable { users, group_names })
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// All accounts, in file order.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// The groups given a display name by a `group:` line, in file order.
    pub fn declared_groups(&self) -> &[(String, String)] {
        &self.group_names
    }

    /// A group's display name: from its `group:` line, else the gid.
    pub fn group_name<'a>(&'a self, gid: &'a str) -> &'a str {
        self.group_names
            .iter()
            .find(|(g, _)| g == gid)
            .map_or(gid, |(_, name)| name.as_str())
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

    /// The account whose password (or one of whose app passwords) this is,
    /// trying the candidates in turn as the JSXC app does (a wrong password
    /// for `user@domain` still lets the bare `user` try).
    pub fn login(&self, username: &str, domain: &str, password: &str) -> Option<&User> {
        if php_empty(password) {
            return None;
        }
        Self::candidates(username, domain)
            .iter()
            .filter_map(|uid| self.get(uid))
            .find(|user| user.password.expose() == password || user.extra.is_app_password(password))
    }

    /// Everyone sharing at least one group with `user` (including `user`
    /// itself when it has a group), built the way the JSXC app builds it:
    /// for each of the user's groups, each member in table order; groups
    /// appear by display name.
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
                    entry.groups.push(self.group_name(group));
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
        assert_eq!(UserTable::parse("group:\tg\n").unwrap_err().line, 1);
        assert_eq!(
            UserTable::parse("group:\tg\tG\ngroup:\tg\tH\n")
                .unwrap_err()
                .line,
            2
        );
        assert_eq!(UserTable::parse("a\tx\na\ty\n").unwrap_err().line, 2);
        assert_eq!(UserTable::parse("\tx\n").unwrap_err().line, 1);
    }

    #[test]
    fn option_columns_and_group_names() {
        let t = UserTable::parse(
            "group:\tg1\tGroup One\n\
             a\tpw\tA\tg1,g2\temail=a@x.org\tapp-password=app1\tapp-password=app2\n\
             b\tpw\t\t\tadmin\tdisabled\n",
        )
        .unwrap();
        let a = t.find("a", "").unwrap();
        assert_eq!(a.extra.email.as_deref(), Some("a@x.org"));
        assert_eq!(t.login("a", "", "app2").unwrap().uid, "a");
        assert!(a.main_password_is("pw") && !a.main_password_is("app1"));
        let b = t.find("b", "").unwrap();
        assert_eq!(b.groups, ["admin"]);
        assert!(b.extra.disabled);
        let roster = t.roster(a);
        assert_eq!(roster[0].groups, ["Group One", "g2"]);
        assert_eq!(t.group_name("g2"), "g2");
        assert_eq!(t.declared_groups().len(), 1);
    }
}
