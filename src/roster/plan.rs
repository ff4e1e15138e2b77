//! What one roster means for ejabberd: member JIDs with full names, and
//! clean group names with their members.

use std::collections::{BTreeMap, BTreeSet};

use super::names::{clean_group_name, member_jid, EXCLUDED_GROUP_MARK};
use crate::backend::Roster;

/// The members and groups of one roster, as full JIDs and clean group
/// names, sorted.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Member JID → full name, if the roster gives one.
    pub members: BTreeMap<String, Option<String>>,
    /// Clean group name → member JIDs.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Group names left out because nothing remained after cleaning.
    pub skipped_groups: Vec<String>,
}

impl Plan {
    pub fn from_roster(roster: &Roster, domain: &str) -> Plan {
        let mut plan = Plan::default();
        for (uid, member) in &roster.members {
            let Some(jid) = member_jid(uid, domain) else {
                tracing::warn!("shared roster: member {uid:?} is not a usable user name; skipped");
                continue;
            };
            let known = plan.members.entry(jid.clone()).or_default();
            if known.is_none() {
                known.clone_from(&member.name);
            }
            for group in &member.groups {
                if group.ends_with(EXCLUDED_GROUP_MARK) {
                    continue;
                }
                let clean = clean_group_name(group);
                if clean.is_empty() {
                    if !plan.skipped_groups.contains(group) {
                        tracing::warn!(
                            "shared roster: group {group:?} has no usable characters; skipped"
                        );
                        plan.skipped_groups.push(group.clone());
                    }
                    continue;
                }
                plan.groups.entry(clean).or_default().insert(jid.clone());
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::jsxc::parse_roster;
    use serde_json::json;

    #[test]
    fn plan_skips_marked_and_empty_groups_and_merges_same_clean_names() {
        let roster = json!({
            "alice": {"name": "Alice", "groups": ["staff", "Everyone\u{200B}", "@@"]},
            "bob@other.net": {"groups": ["staff\u{7}", "x"]},
            "": {"name": "nobody"},
            "carol": {"groups": {"0": "x", "3": "y"}},
            "dave": "not an object"
        });
        let plan = Plan::from_roster(&parse_roster(&roster).unwrap(), "example.org");
        assert_eq!(
            plan.members.keys().collect::<Vec<_>>(),
            [
                "alice@example.org",
                "bob@other.net",
                "carol@example.org",
                "dave@example.org"
            ]
        );
        assert_eq!(plan.members["alice@example.org"].as_deref(), Some("Alice"));
        assert_eq!(plan.members["bob@other.net"], None);
        assert_eq!(plan.groups.keys().collect::<Vec<_>>(), ["staff", "x", "y"]);
        assert_eq!(
            plan.groups["staff"].iter().collect::<Vec<_>>(),
            ["alice@example.org", "bob@other.net"]
        );
        assert_eq!(plan.skipped_groups, ["@@"]);
        assert!(Plan::from_roster(&Roster::default(), "d").groups.is_empty());
    }
}
