//! What the users file says beyond uid, password, name and groups: the
//! optional per-user columns and the group lines, for Nextcloud's stock APIs.
//!
//! Columns after the fourth, one option each (TAB-separated, any order):
//!
//! ```text
//! email=ADDRESS        the account's e-mail address (login by e-mail)
//! disabled             the account is disabled
//! 2fa                  a second factor is set up: the main password is refused
//! app-password=SECRET  an app password (repeat the column for several)
//! admin                member of the group `admin`, i.e. a Nextcloud admin
//! subadmin=GID,GID     group admin of these groups
//! ```
//!
//! A line `group:<TAB>gid<TAB>display name` gives a group a display name
//! that differs from its gid (and makes it exist even without members).

use xcauth::secret::Secret;

/// The gid of Nextcloud's administrators' group.
pub const ADMIN_GROUP: &str = "admin";

/// The prefix of a group line (`:` is never part of a Nextcloud uid).
pub const GROUP_LINE: &str = "group:";

/// The optional facts about one account.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// The e-mail address, if any.
    pub email: Option<String>,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Whether a second factor is set up (the main password is refused on
    /// Nextcloud's stock APIs; the JSXC API still accepts it).
    pub two_factor: bool,
    /// App passwords, one per device.
    pub app_passwords: Vec<Secret>,
    /// Whether the `admin` column was given (the user is then in group `admin`).
    pub admin: bool,
    /// Groups this user is group admin (subadmin) of.
    pub subadmin_of: Vec<String>,
}

impl Extra {
    /// Whether `password` is one of the app passwords (never an empty one).
    pub fn is_app_password(&self, password: &str) -> bool {
        !password.is_empty() && self.app_passwords.iter().any(|p| p.expose() == password)
    }
}

/// Reads the option columns (fields 5 and later) of a user line.
pub fn parse_options(columns: &[&str]) -> Result<Extra, &'static str> {
    let mut extra = Extra::default();
    for column in columns {
        let (key, value) = match column.split_once('=') {
            Some((key, value)) => (key.trim_ascii(), Some(value)),
            None => (column.trim_ascii(), None),
        };
        match (key, value) {
            ("", None) => {}
            ("email", Some(address)) => {
                let address = address.trim_ascii();
                if address.is_empty() {
                    return Err("email= needs an address");
                }
                extra.email = Some(address.to_owned());
            }
            ("disabled", None) => extra.disabled = true,
            ("2fa", None) => extra.two_factor = true,
            ("app-password", Some(secret)) => {
                if secret.is_empty() {
                    return Err("app-password= needs a value");
                }
                extra.app_passwords.push(Secret::new(secret));
            }
            ("admin", None) => extra.admin = true,
            ("subadmin", Some(gids)) => {
                for gid in gids.split(',').map(str::trim_ascii) {
                    if !gid.is_empty() && !extra.subadmin_of.iter().any(|g| g == gid) {
                        extra.subadmin_of.push(gid.to_owned());
                    }
                }
            }
            _ => {
                return Err("unknown option column (known: email=, disabled, 2fa, app-password=, admin, subadmin=)")
            }
        }
    }
    Ok(extra)
}

/// Reads a group line (`group:<TAB>gid<TAB>display name`); `None` if the
/// line is not one.
pub fn parse_group_line(line: &str) -> Option<Result<(String, String), &'static str>> {
    let rest = line.strip_prefix(GROUP_LINE)?;
    let fields: Vec<&str> = rest.split('\t').collect();
    Some(match fields.as_slice() {
        ["", gid, name] if !gid.trim_ascii().is_empty() => {
            let gid = gid.trim_ascii();
            let name = name.trim_ascii();
            Ok((
                gid.to_owned(),
                if name.is_empty() { gid } else { name }.to_owned(),
            ))
        }
        _ => Err("expected group:<TAB>gid<TAB>display name"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let extra = parse_options(&[
            "email=a@example.org",
            "2fa",
            "app-password=one=1",
            "app-password=two",
            "subadmin=g1, g2,g1",
            "",
        ])
        .unwrap();
        assert_eq!(extra.email.as_deref(), Some("a@example.org"));
        assert!(extra.two_factor && !extra.disabled && !extra.admin);
        assert!(extra.is_app_password("one=1"));
        assert!(extra.is_app_password("two"));
        assert!(!extra.is_app_password(""));
        assert_eq!(extra.subadmin_of, ["g1", "g2"]);
        assert!(parse_options(&["disabled", "admin"]).unwrap().admin);
        assert!(parse_options(&["bogus"]).is_err());
        assert!(parse_options(&["disabled=yes"]).is_err());
        assert!(parse_options(&["app-password="]).is_err());
    }

    #[test]
    fn group_lines() {
        assert!(parse_group_line("alice\tpw").is_none());
        assert_eq!(
            parse_group_line("group:\tx%41\tLiteral x%41").unwrap(),
            Ok(("x%41".to_owned(), "Literal x%41".to_owned()))
        );
        assert_eq!(
            parse_group_line("group:\tg\t").unwrap(),
            Ok(("g".to_owned(), "g".to_owned()))
        );
        assert!(parse_group_line("group:\tg").unwrap().is_err());
        assert!(parse_group_line("group:x\tg\tG").unwrap().is_err());
    }
}
