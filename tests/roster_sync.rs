//! Shared roster sync end to end: a real SQLite file, the real `CommandCtl` running a recording fake ejabberdctl.
//!
//! Each test writes its own small wrapper script that sets the fake's
//! environment (log file, members file, commands to fail or hang) and
//! `exec`s `tests/fixtures/fake-ejabberdctl`, so tests running in parallel
//! never share settings. What the fake logs is the argument vector it
//! really received.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;
use xcauth::backend::jsxc::parse_roster;
use xcauth::backend::Roster;
use xcauth::roster::{
    group_id, wait_at_most, CommandCtl, CtlError, Ejabberdctl, RosterSync, SyncReport,
};
use xcauth::store::Store;

const DOMAIN: &str = "example.org";

fn fake_program() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-ejabberdctl")
}

/// A shell word for `text` (single-quoted).
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A `data.sharedRoster` value as the JSXC back end hands it over.
fn parsed(roster: &Value) -> Roster {
    parse_roster(roster).expect("a roster")
}

struct Setup {
    dir: TempDir,
    log: PathBuf,
    store: Arc<Store>,
}

impl Setup {
    fn new() -> Setup {
        Setup::with_db(None)
    }

    /// A state file copied from `from`, or a new one.
    fn with_db(from: Option<&Path>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("xcauth.sqlite3");
        if let Some(from) = from {
            std::fs::copy(from, &db).unwrap();
        }
        let store = Arc::new(Store::open(&db).unwrap());
        let log = dir.path().join("calls.jsonl");
        Setup { dir, log, store }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` with `contents` into the test directory.
    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A wrapper script `name` running the fake with the log file and
    /// `settings` (FAKE_EJABBERDCTL_* suffix → value) in its environment.
    fn wrapper(&self, name: &str, settings: &[(&str, &str)]) -> PathBuf {
        let mut script = String::from("#!/bin/sh\n");
        script.push_str(&format!(
            "FAKE_EJABBERDCTL_LOG={}\nexport FAKE_EJABBERDCTL_LOG\n",
            sh_quote(&self.log.to_string_lossy())
        ));
        for (key, value) in settings {
            script.push_str(&format!(
                "FAKE_EJABBERDCTL_{key}={}\nexport FAKE_EJABBERDCTL_{key}\n",
                sh_quote(value)
            ));
        }
        script.push_str(&format!(
            "exec {} \"$@\"\n",
            sh_quote(&fake_program().to_string_lossy())
        ));
        let path = self.path(name);
        std::fs::write(&path, script).unwrap();
        make_executable(&path);
        path
    }

    fn sync_with(&self, ctl: CommandCtl) -> RosterSync {
        let ctl: Arc<dyn Ejabberdctl> = Arc::new(ctl);
        RosterSync::new(ctl, Arc::clone(&self.store))
    }

    /// A sync through a fake with `settings`, strict about group ids as
    /// ejabberd 24.12 is.
    fn sync(&self, settings: &[(&str, &str)]) -> RosterSync {
        let mut settings = settings.to_vec();
        settings.push(("STRICT", "1"));
        self.sync_with(CommandCtl::new(self.wrapper("ctl", &settings)))
    }

    /// The calls the fake logged since the last look, and forgets them.
    fn take_calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The stored members of the group with ejabberd id `id`.
    fn group(&self, id: &str) -> Option<Vec<String>> {
        self.store.roster_group(&format!("{id}@{DOMAIN}")).unwrap()
    }

    fn grouplist(&self, user: &str) -> Option<String> {
        self.store
            .roster_info(&format!("{user}@{DOMAIN}"))
            .unwrap()
            .and_then(|i| i.grouplist)
    }

    fn fullname(&self, user: &str) -> Option<String> {
        self.store
            .roster_info(&format!("{user}@{DOMAIN}"))
            .unwrap()
            .and_then(|i| i.fullname)
    }

    fn hash(&self, user: &str) -> Option<String> {
        self.store
            .roster_info(&format!("{user}@{DOMAIN}"))
            .unwrap()
            .and_then(|i| i.responsehash)
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `user` logs in with `roster`; the sync must not fail as a whole.
async fn login(sync: &RosterSync, user: &str, roster: &Value, now: i64) -> SyncReport {
    match sync.sync(user, DOMAIN, &parsed(roster), now).await {
        Ok(report) => report,
        Err(e) => panic!("sync failed: {e}"),
    }
}

fn staff_roster() -> Value {
    json!({
        "alice": {"name": "Alice", "groups": ["staff"]},
        "bob": {"name": "Bob", "groups": ["staff", "Everyone\u{200B}"]}
    })
}

/// The state after alice's first login with [`staff_roster`]; the log is
/// emptied.
async fn baseline(setup: &Setup, sync: &RosterSync) {
    login(sync, "alice", &staff_roster(), 100).await;
    setup.take_calls();
}

#[tokio::test]
async fn first_login_creates_the_group_and_fixes_its_members() {
    let setup = Setup::new();
    let members = setup.file("members", "carol@example.org\nalice@example.org\n");
    let sync = setup.sync(&[("MEMBERS", &members.to_string_lossy())]);
    let report = login(&sync, "alice", &staff_roster(), 100).await;

    let expected = vec![
        argv(&["set_vcard", "alice", DOMAIN, "FN", "Alice"]),
        argv(&["set_vcard", "bob", DOMAIN, "FN", "Bob"]),
        argv(&["srg_create", "staff", DOMAIN, "staff", "staff", "staff"]),
        argv(&["srg_get_members", "staff", DOMAIN]),
        argv(&["srg_user_add", "bob", DOMAIN, "staff", DOMAIN]),
        argv(&["srg_user_del", "carol", DOMAIN, "staff", DOMAIN]),
    ];
    assert_eq!(setup.take_calls(), expected);
    assert_eq!(report.calls, expected);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(!report.unchanged);
    assert_eq!(report.groups, ["staff"]);

    assert_eq!(
        setup.group("staff"),
        Some(argv(&["alice@example.org", "bob@example.org"]))
    );
    assert_eq!(setup.grouplist("alice").as_deref(), Some("staff"));
    assert_eq!(
        setup.hash("alice"),
        Some(parsed(&staff_roster()).fingerprint())
    );
    assert_eq!(setup.fullname("alice").as_deref(), Some("Alice"));
    assert_eq!(setup.fullname("bob").as_deref(), Some("Bob"));
    assert_eq!(setup.group("Everyone"), None, "U+200B group ignored");
}

#[tokio::test]
async fn the_same_reply_again_runs_nothing() {
    let setup = Setup::new();
    let sync = setup.sync(&[]);
    baseline(&setup, &sync).await;

    let report = login(&sync, "alice", &staff_roster(), 200).await;
    assert!(report.unchanged);
    assert!(report.calls.is_empty());
    assert!(setup.take_calls().is_empty());

    // Other bytes, same content (members in another order, other spacing):
    // the fingerprint is the same, so nothing runs.
    let text = staff_roster().to_string();
    let respelled: Value = serde_json::from_str(&format!(" {text}\n")).unwrap();
    let before = setup.hash("alice");
    let report = login(&sync, "alice", &respelled, 300).await;
    assert!(report.unchanged);
    assert!(setup.take_calls().is_empty());
    assert_eq!(setup.hash("alice"), before);
}

#[tokio::test]
async fn an_added_member_is_added_and_named() {
    let setup = Setup::new();
    let sync = setup.sync(&[]);
    baseline(&setup, &sync).await;

    let mut roster = staff_roster();
    roster["carol"] = json!({"name": "Carol", "groups": ["staff"]});
    login(&sync, "alice", &roster, 200).await;
    assert_eq!(
        setup.take_calls(),
        vec![
            argv(&["set_vcard", "carol", DOMAIN, "FN", "Carol"]),
            argv(&["srg_user_add", "carol", DOMAIN, "staff", DOMAIN]),
        ]
    );
    assert_eq!(
        setup.group("staff"),
        Some(argv(&[
            "alice@example.org",
            "bob@example.org",
            "carol@example.org"
        ]))
    );
}

#[tokio::test]
async fn a_removed_member_is_deleted() {
    let setup = Setup::new();
    let sync = setup.sync(&[]);
    baseline(&setup, &sync).await;

    let roster = json!({"alice": {"name": "Alice", "groups": ["staff"]}});
    login(&sync, "alice", &roster, 200).await;
    assert_eq!(
        setup.take_calls(),
        vec![argv(&["srg_user_del", "bob", DOMAIN, "staff", DOMAIN])]
    );
    assert_eq!(setup.group("staff"), Some(argv(&["alice@example.org"])));
}

#[tokio::test]
async fn a_renamed_user_gets_only_a_new_vcard_name() {
    let setup = Setup::new();
    let sync = setup.sync(&[]);
    baseline(&setup, &sync).await;

    let mut roster = staff_roster();
    roster["bob"]["name"] = json!("Robert \"Bob\" Brown");
    login(&sync, "alice", &roster, 200).await;
    assert_eq!(
        setup.take_calls(),
        vec![argv(&[
            "set_vcard",
            "bob",
            DOMAIN,
            "FN",
            "Robert \"Bob\" Brown"
        ])]
    );
    assert_eq!(
        setup.fullname("bob").as_deref(),
        Some("Robert \"Bob\" Brown")
    );
}

#[tokio::test]
async fn a_user_who_moved_to_another_group_leaves_the_old_one() {
    let setup = Setup::new();
    let sync = setup.sync(&[]);
    baseline(&setup, &sync).await;

    // alice is now only in devs; staff is not even in her reply any more.
    let roster = json!({
        "alice": {"name": "Alice", "groups": ["devs"]},
        "dave": {"name": "Dave", "groups": ["devs"]}
    });
    let report = login(&sync, "alice", &roster, 200).await;
    assert_eq!(
        setup.take_calls(),
        vec![
            argv(&["set_vcard", "dave", DOMAIN, "FN", "Dave"]),
            argv(&["srg_create", "devs", DOMAIN, "devs", "devs", "devs"]),
            argv(&["srg_get_members", "devs", DOMAIN]),
            argv(&["srg_user_add", "alice", DOMAIN, "devs", DOMAIN]),
            argv(&["srg_user_add", "dave", DOMAIN, "devs", DOMAIN]),
            argv(&["srg_user_del", "alice", DOMAIN, "staff", DOMAIN]),
        ]
    );
    assert_eq!(report.groups, ["devs"]);
    assert_eq!(setup.grouplist("alice").as_deref(), Some("devs"));
    assert_eq!(setup.group("staff"), Some(argv(&["bob@example.org"])));

    // Back in staff and out of devs: she is added to staff again (the
    // stored group forgot her) and leaves devs.
    login(&sync, "alice", &staff_roster(), 300).await;
    assert_eq!(
        setup.take_calls(),
        vec![
            argv(&["srg_user_add", "alice", DOMAIN, "staff", DOMAIN]),
            argv(&["srg_user_del", "alice", DOMAIN, "devs", DOMAIN]),
        ]
    );
    assert_eq!(setup.grouplist("alice").as_deref(), Some("staff"));
    assert_eq!(setup.group("devs"), Some(argv(&["dave@example.org"])));
}

#[tokio::test]
async fn an_empty_roster_removes_the_user_from_its_groups() {
    let setup = Setup::new();
    let sync = setup.sync(&[]);
    baseline(&setup, &sync).await;

    let report = login(&sync, "alice", &json!([]), 200).await;
    assert_eq!(
        setup.take_calls(),
        vec![argv(&["srg_user_del", "alice", DOMAIN, "staff", DOMAIN])]
    );
    assert!(report.groups.is_empty());
    assert_eq!(setup.grouplist("alice").as_deref(), Some(""));
    assert_eq!(setup.group("staff"), Some(argv(&["bob@example.org"])));

    // Nothing left to do the next time.
    let report = login(&sync, "bob", &json!([]), 300).await;
    assert!(report.calls.is_empty());
}

#[tokio::test]
async fn group_names_are_cleaned_and_get_nodeprep_stable_ids() {
    let setup = Setup::new();
    let sync = setup.sync(&[]);
    let roster = json!({
        "alice": {"groups": ["Team @ Home ☃!", "Tab\there", "Big\u{200B}"]}
    });
    let report = login(&sync, "alice", &roster, 100).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let clean = "Team  Home ☃!";
    // Pinned ids (see src/roster/id.rs): SLUG-HASH.
    let tab = "tabhere-91c40fdd45939d16";
    let team = "team_home-5ac486f4d56ce915";
    assert_eq!(
        setup.take_calls(),
        vec![
            argv(&["srg_create", tab, DOMAIN, "Tabhere", "Tabhere", tab]),
            argv(&["srg_get_members", tab, DOMAIN]),
            argv(&["srg_user_add", "alice", DOMAIN, tab, DOMAIN]),
            argv(&["srg_create", team, DOMAIN, clean, clean, team]),
            argv(&["srg_get_members", team, DOMAIN]),
            argv(&["srg_user_add", "alice", DOMAIN, team, DOMAIN]),
        ]
    );
    assert_eq!(setup.group(team), Some(argv(&["alice@example.org"])));
    assert_eq!(setup.group(clean), None, "keyed by id, not by name");
    assert_eq!(
        setup.grouplist("alice").as_deref(),
        Some(format!("{tab}\t{team}").as_str())
    );
}

#[tokio::test]
async fn odd_names_arrive_as_exact_arguments_and_nothing_runs() {
    let setup = Setup::new();
    let pwned = setup.path("pwned");
    let p = pwned.to_string_lossy();
    let uid = format!("Zoë \"Q\" O'Brien; $(touch {p})");
    let name = format!("Zoë `touch {p}` 'x' \"y\" $HOME\nsecond line");
    let group = format!("a;b $(touch {p}) | rm -rf / & 'q' \"团队\"");
    let roster = json!({
        "alice": {"groups": [group]},
        uid.clone(): {"name": name, "groups": [group]}
    });
    let sync = setup.sync(&[]);
    let report = login(&sync, "alice", &roster, 100).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let d = DOMAIN;
    let g = group.as_str();
    // The id depends on the temporary path; its formula is pinned in the
    // unit tests. The name itself is the label and description.
    let id = group_id(g);
    assert!(id.starts_with("a_b_touch_"), "{id}");
    let i = id.as_str();
    assert_eq!(
        setup.take_calls(),
        vec![
            argv(&["set_vcard", &uid, d, "FN", &name]),
            argv(&["srg_create", i, d, g, g, i]),
            argv(&["srg_get_members", i, d]),
            // Sorted by JID: "Z" comes before "a".
            argv(&["srg_user_add", &uid, d, i, d]),
            argv(&["srg_user_add", "alice", d, i, d]),
        ]
    );
    assert!(!pwned.exists(), "something was run through a shell");
    assert_eq!(setup.fullname(&uid).as_deref(), Some(name.as_str()));
}

#[tokio::test]
async fn member_names_with_a_domain_keep_it() {
    let setup = Setup::new();
    let sync = setup.sync(&[]);
    let roster = json!({
        "alice": {"groups": ["g"]},
        "eve@other.net": {"name": "Eve", "groups": ["g"]}
    });
    login(&sync, "alice", &roster, 100).await;
    let calls = setup.take_calls();
    assert!(calls.contains(&argv(&["set_vcard", "eve", "other.net", "FN", "Eve"])));
    assert!(calls.contains(&argv(&["srg_user_add", "eve", "other.net", "g", DOMAIN])));
    assert_eq!(
        setup.group("g"),
        Some(argv(&["alice@example.org", "eve@other.net"]))
    );
}

#[tokio::test]
async fn failing_ejabberdctl_is_reported_and_retried() {
    let setup = Setup::new();
    let failing = setup.sync_with(CommandCtl::new(
        setup.wrapper("failing", &[("FAIL", "set_vcard")]),
    ));
    let report = login(&failing, "alice", &staff_roster(), 100).await;
    assert_eq!(report.failures.len(), 2);
    for failure in &report.failures {
        assert_eq!(failure.args[0], "set_vcard");
        match &failure.error {
            CtlError::Failed { status, output } => {
                assert_eq!(*status, Some(1));
                assert!(output.contains("failed as asked"), "{output}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The rest went on.
    assert_eq!(
        setup.group("staff"),
        Some(argv(&["alice@example.org", "bob@example.org"]))
    );
    assert_eq!(setup.fullname("bob"), None);
    assert_eq!(setup.hash("alice"), None, "next login must try again");
    setup.take_calls();

    let working = setup.sync(&[]);
    let report = login(&working, "alice", &staff_roster(), 200).await;
    assert!(report.failures.is_empty());
    assert_eq!(
        setup.take_calls(),
        vec![
            argv(&["set_vcard", "alice", DOMAIN, "FN", "Alice"]),
            argv(&["set_vcard", "bob", DOMAIN, "FN", "Bob"]),
        ]
    );
    assert!(setup.hash("alice").is_some());
}

#[tokio::test]
async fn a_hanging_ejabberdctl_is_killed_and_reported() {
    let setup = Setup::new();
    // Long enough that the calls which do answer never hit it on a busy
    // machine; only the hanging one does.
    let limit = Duration::from_secs(2);
    let sync = setup.sync_with(
        CommandCtl::new(setup.wrapper("hanging", &[("HANG", "srg_get_members")]))
            .with_timeout(limit),
    );
    let started = Instant::now();
    let report = login(&sync, "alice", &staff_roster(), 100).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(report.failures.len(), 1);
    assert_eq!(
        report.failures[0].args,
        argv(&["srg_get_members", "staff", DOMAIN])
    );
    assert_eq!(report.failures[0].error, CtlError::Timeout(limit));
    // Unknown members count as none: both are added...
    let calls = setup.take_calls();
    for user in ["alice", "bob"] {
        let add = argv(&["srg_user_add", user, DOMAIN, "staff", DOMAIN]);
        assert!(calls.contains(&add), "{add:?} in {calls:?}");
    }
    // ...but the group stays unrecorded, so that the next login reads
    // ejabberd's members again (and removes any it should not have).
    assert_eq!(setup.group("staff"), None);
    assert_eq!(setup.hash("alice"), None);
    let members = setup.file("members", "alice@example.org\nmallory@example.org\n");
    let working = setup.sync(&[("MEMBERS", &members.to_string_lossy())]);
    let report = login(&working, "alice", &staff_roster(), 200).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let calls: Vec<Vec<String>> = setup
        .take_calls()
        .into_iter()
        .filter(|c| c[0] != "set_vcard")
        .collect();
    assert_eq!(
        calls,
        vec![
            argv(&["srg_create", "staff", DOMAIN, "staff", "staff", "staff"]),
            argv(&["srg_get_members", "staff", DOMAIN]),
            argv(&["srg_user_add", "bob", DOMAIN, "staff", DOMAIN]),
            argv(&["srg_user_del", "mallory", DOMAIN, "staff", DOMAIN]),
        ]
    );
    assert_eq!(
        setup.group("staff"),
        Some(argv(&["alice@example.org", "bob@example.org"]))
    );
}

#[tokio::test]
async fn a_missing_program_is_reported_not_fatal() {
    let setup = Setup::new();
    let sync = setup.sync_with(CommandCtl::new(setup.path("no-such-ejabberdctl")));
    let report = login(&sync, "alice", &staff_roster(), 100).await;
    assert!(!report.failures.is_empty());
    assert!(report
        .failures
        .iter()
        .all(|f| matches!(f.error, CtlError::Spawn(_))));
    assert_eq!(setup.grouplist("alice").as_deref(), Some("staff"));
    assert_eq!(setup.group("staff"), None, "creation failed: retried later");
}

#[tokio::test]
async fn the_secret_is_not_passed_on() {
    // std serialises environment changes with the spawning of children.
    std::env::set_var("XCAUTH_SECRET", "do-not-leak");
    let setup = Setup::new();
    let env_log = setup.path("env.log");
    let sync = setup.sync(&[("ENV_LOG", &env_log.to_string_lossy())]);
    login(&sync, "alice", &staff_roster(), 100).await;
    let seen = std::fs::read_to_string(&env_log).unwrap();
    assert_eq!(seen.lines().count(), setup.take_calls().len());
    assert!(seen.lines().all(str::is_empty), "{seen:?}");
}

#[tokio::test]
async fn the_sync_goes_on_when_the_login_stops_waiting() {
    let setup = Setup::new();
    // Long enough that the calls which do answer never hit it on a busy
    // machine; only the hanging set_vcard calls do.
    let limit = Duration::from_secs(2);
    let sync = Arc::new(setup.sync_with(
        CommandCtl::new(setup.wrapper("slow", &[("HANG", "set_vcard")])).with_timeout(limit),
    ));
    let roster = staff_roster();
    let mut handle = sync.spawn_after_login("alice".into(), DOMAIN.into(), parsed(&roster), 100);
    // The login answer gives up long before the first set_vcard times out.
    assert!(tokio::time::timeout(Duration::from_millis(50), &mut handle)
        .await
        .is_err());
    let report = handle.await.unwrap().unwrap();
    assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
    assert_eq!(
        setup.group("staff"),
        Some(argv(&["alice@example.org", "bob@example.org"]))
    );

    // A quick one is waited for.
    let quick = Arc::new(setup.sync(&[]));
    let first = quick.spawn_after_login("bob".into(), DOMAIN.into(), parsed(&roster), 200);
    let done = wait_at_most(first, Duration::from_secs(60)).await;
    assert!(matches!(done, Some(Ok(ref r)) if !r.unchanged), "{done:?}");
}

#[tokio::test]
async fn every_odd_name_is_created_on_a_strict_ejabberd_and_shown_to_its_members() {
    let setup = Setup::new();
    let sync = setup.sync(&[]);
    let names = [
        "Board",
        "Ops & Co.",
        "it's \"q\"",
        "a/b",
        "R&D@x",
        "Sales, EMEA",
        " padded ",
        "a\\nb",
        "Ärzte-Team (Süd)",
        "团队",
        "🎉 Party 🎉",
        "chess",
    ];
    let roster = json!({
        "alice": {"groups": names},
        "bob": {"groups": names}
    });
    let report = login(&sync, "alice", &roster, 100).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let calls = setup.take_calls();
    assert!(
        !calls
            .iter()
            .any(|c| c[0] == "help" || c[0] == "srg_add_displayed"),
        "{calls:?}"
    );
    let mut ids = Vec::new();
    for raw in names {
        let clean = xcauth::roster::clean_group_name(raw);
        let id = group_id(&clean);
        // Created under its id, labelled with its name, displayed to itself;
        // members go to the same id.
        let create = argv(&["srg_create", &id, DOMAIN, &clean, &clean, &id]);
        assert!(calls.contains(&create), "{create:?} in {calls:?}");
        for user in ["alice", "bob"] {
            let add = argv(&["srg_user_add", user, DOMAIN, &id, DOMAIN]);
            assert!(calls.contains(&add), "{add:?}");
        }
        assert_eq!(
            setup.group(&id),
            Some(argv(&["alice@example.org", "bob@example.org"]))
        );
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), names.len(), "no two names share an id");
    assert_eq!(report.groups, ids);
    for (raw, id) in [
        ("Board", "board-4816cbfd74aa8297"),
        ("Sales, EMEA", "sales_emea-f9c7743894be2341"),
        ("chess", "chess"),
    ] {
        assert_eq!(group_id(raw), id);
    }
}

#[tokio::test]
async fn groups_of_the_old_scheme_are_removed_once_and_rebuilt() {
    let setup = Setup::new();
    // As the old scheme left them: the clean name was the id.
    let store = &setup.store;
    store
        .set_roster_group(
            "Ops & Co.@example.org",
            &argv(&["alice@example.org", "bob@example.org"]),
        )
        .unwrap();
    store
        .set_roster_group("staff@example.org", &argv(&["alice@example.org"]))
        .unwrap();
    for user in ["alice@example.org", "bob@example.org"] {
        store.set_roster_hash(user, "old", 1).unwrap();
        store
            .set_grouplist(user, &argv(&["Ops & Co.", "staff"]))
            .unwrap();
    }
    let ops = "ops_co-2e674c4fe232b0a7";

    // ejabberd is down: nothing is forgotten.
    let down = setup.sync_with(CommandCtl::new(
        setup.wrapper("down", &[("FAIL", "srg_delete")]),
    ));
    let report = down.migrate_legacy_groups().await.unwrap();
    assert_eq!(report.pending.len(), 1);
    assert_eq!(
        setup.take_calls(),
        vec![argv(&["srg_delete", "Ops & Co.", DOMAIN])]
    );
    assert!(setup.group("Ops & Co.").is_some());
    assert_eq!(setup.hash("bob").as_deref(), Some("old"));

    // The first sync of a process migrates before anything else.
    let sync = setup.sync(&[]);
    let roster = json!({
        "alice": {"groups": ["Ops & Co.", "staff"]},
        "bob": {"groups": ["Ops & Co."]}
    });
    let report = login(&sync, "alice", &roster, 100).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        setup.take_calls(),
        vec![
            argv(&["srg_delete", "Ops & Co.", DOMAIN]),
            argv(&["srg_create", ops, DOMAIN, "Ops & Co.", "Ops & Co.", ops]),
            argv(&["srg_get_members", ops, DOMAIN]),
            argv(&["srg_user_add", "alice", DOMAIN, ops, DOMAIN]),
            argv(&["srg_user_add", "bob", DOMAIN, ops, DOMAIN]),
        ]
    );
    assert_eq!(setup.group("Ops & Co."), None, "no orphan row");
    assert_eq!(
        setup.group(ops),
        Some(argv(&["alice@example.org", "bob@example.org"]))
    );
    assert_eq!(setup.group("staff"), Some(argv(&["alice@example.org"])));
    assert_eq!(
        setup.grouplist("alice").as_deref(),
        Some(format!("{ops}\tstaff").as_str())
    );
    // bob's list was renamed and his hash cleared; his login then finds
    // everything in place and only records it.
    assert_eq!(
        setup.grouplist("bob").as_deref(),
        Some(format!("{ops}\tstaff").as_str())
    );
    assert_eq!(setup.hash("bob"), None);
    let report = login(&sync, "bob", &roster, 200).await;
    assert_eq!(
        report.calls,
        vec![argv(&["srg_user_del", "bob", DOMAIN, "staff", DOMAIN])],
        "bob is no longer in staff; nothing is deleted twice"
    );
    assert_eq!(setup.grouplist("bob").as_deref(), Some(ops));
    setup.take_calls();
    // And a fresh process has nothing left to migrate.
    let report = setup.sync(&[]).migrate_legacy_groups().await.unwrap();
    assert!(report.calls.is_empty(), "{:?}", report.calls);
}

/// The fixture written by the Python original: alice's last sync put
/// alice, bob, carol and dave into `staff` but never recorded her groups.
fn python_fixture() -> PathBuf {
    const NAME: &str = "python-2.0.4.sqlite3";
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("testdata").join(NAME),
        manifest.join("../shared/fixtures").join(NAME),
        Path::new("/work/shared/fixtures").join(NAME),
    ];
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => p.clone(),
        None => panic!("fixture {NAME} not found in {candidates:?}"),
    }
}

#[tokio::test]
async fn state_written_by_the_python_original_is_picked_up() {
    let setup = Setup::with_db(Some(&python_fixture()));
    let sync = setup.sync(&[]);
    let everyone = json!({
        "alice": {"name": "Alice", "groups": ["staff"]},
        "bob": {"name": "Bob", "groups": ["staff"]},
        "carol": {"name": "Carol", "groups": ["staff"]},
        "dave": {"name": "Dave", "groups": ["staff"]}
    });
    // The original stored the hash of its raw reply; ours is a fingerprint
    // of the content, so the first login after the upgrade looks again,
    // finds ejabberd already matching and runs nothing...
    let original_hash = setup.hash("alice");
    assert!(original_hash.is_some());
    let report = login(&sync, "alice", &everyone, 1_800_000_000).await;
    assert!(!report.unchanged);
    // `staff` is a plain name, so its id is unchanged: no migration either.
    assert!(setup.take_calls().is_empty(), "ejabberd already matches");
    assert_eq!(
        setup.store.roster_group_names().unwrap(),
        ["staff@example.org"]
    );
    assert_eq!(setup.grouplist("alice").as_deref(), Some("staff"));
    assert_ne!(setup.hash("alice"), original_hash);
    // ...and every later login with the same roster is a no-op.
    for t in 1..=3 {
        let again = login(&sync, "alice", &everyone, 1_800_000_000 + t).await;
        assert!(again.unchanged, "login {t} after the upgrade");
    }
    assert!(setup.take_calls().is_empty());

    let mut without_dave = everyone.clone();
    without_dave.as_object_mut().unwrap().remove("dave");
    login(&sync, "alice", &without_dave, 1_800_000_100).await;
    assert_eq!(
        setup.take_calls(),
        vec![argv(&["srg_user_del", "dave", DOMAIN, "staff", DOMAIN])]
    );
    assert_eq!(
        setup.group("staff"),
        Some(argv(&[
            "alice@example.org",
            "bob@example.org",
            "carol@example.org"
        ]))
    );
}
