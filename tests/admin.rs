//! Administration subcommands end to end: the real `xcauth` binary on a copy of the original's database, checked with SQL.
//!
//! Every test works in its own temporary directory with an empty config
//! file (`-c`), so nothing from the machine's `/etc/xcauth.conf` or the
//! environment leaks in. ejabberdctl is `tests/fixtures/fake-ejabberdctl`,
//! which logs the argument vector it really received.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rusqlite::Connection;
use serde_json::Value;
use tempfile::TempDir;

/// Names with everything the original's shell tools choked on: quotes,
/// spaces, LIKE wildcards, a statement separator, non-ASCII.
const ODD: [&str; 7] = [
    "o'neil",
    "quo\"te",
    "spa ce",
    "per%cent",
    "under_score",
    "semi;colon",
    "zoë",
];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/python-2.0.4.sqlite3")
}

fn fake_ejabberdctl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-ejabberdctl")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// What a run printed and how it ended.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// A table as sorted rows of text (NULL as `None`), for exact comparisons.
type Rows = Vec<Vec<Option<String>>>;

struct Setup {
    dir: TempDir,
    db: PathBuf,
    conf: PathBuf,
    log: PathBuf,
}

impl Setup {
    /// A copy of the fixture database and an empty config file.
    fn new() -> Setup {
        Setup::with_config("")
    }

    fn with_config(config: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("xcauth.sqlite3");
        std::fs::copy(fixture(), &db).unwrap();
        let conf = dir.path().join("xcauth.conf");
        std::fs::write(&conf, config).unwrap();
        let log = dir.path().join("ejabberdctl.jsonl");
        Setup { dir, db, conf, log }
    }

    /// Config with the fake ejabberdctl and the database cache.
    fn with_ejabberdctl() -> Setup {
        Setup::with_config(&format!(
            "ejabberdctl={}\ncache-storage=db\n",
            fake_ejabberdctl().display()
        ))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `xcauth ARGS --db DB -c CONF`, with a clean environment for xcauth's
    /// own settings and the fake ejabberdctl's log.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xcauth"));
        cmd.args(args)
            .arg("--db")
            .arg(&self.db)
            .arg("-c")
            .arg(&self.conf);
        clean_env(&mut cmd);
        cmd.env("FAKE_EJABBERDCTL_LOG", &self.log);
        cmd
    }

    fn run(&self, args: &[&str]) -> Out {
        run(self.command(args), None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Out {
        run(self.command(args), Some(stdin))
    }

    fn conn(&self) -> Connection {
        Connection::open(&self.db).unwrap()
    }

    /// All rows of `table`, every column as text, sorted.
    fn rows(&self, table: &str) -> Rows {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let width = stmt.column_count();
        let mut rows: Rows = stmt
            .query_map([], |r| {
                (0..width)
                    .map(|i| r.get::<_, Option<String>>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        rows.sort();
        rows
    }

    fn all_tables(&self) -> BTreeMap<&'static str, Rows> {
        ["domains", "authcache", "rosterinfo", "rostergroups"]
            .into_iter()
            .map(|t| (t, self.rows(t)))
            .collect()
    }

    fn exec(&self, sql: &str, params: &[&str]) {
        self.conn()
            .execute(sql, rusqlite::params_from_iter(params))
            .unwrap();
    }

    fn count(&self, sql: &str, params: &[&str]) -> i64 {
        self.conn()
            .query_row(sql, rusqlite::params_from_iter(params), |r| r.get(0))
            .unwrap()
    }

    /// The argument vectors the fake ejabberdctl received.
    fn calls(&self) -> Vec<Vec<String>> {
        let Ok(text) = std::fs::read_to_string(&self.log) else {
            return Vec::new();
        };
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect()
            })
            .collect()
    }
}

/// Removes xcauth's own settings from the child's environment.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("XCAUTH_") {
            cmd.env_remove(key);
        }
    }
}

fn run(mut cmd: Command, stdin: Option<&str>) -> Out {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // A usage error ends xcauth before it reads: a broken pipe is fine.
        let _ = pipe.write_all(text.as_bytes());
    }
    let output = child.wait_with_output().unwrap();
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn some(items: &[&str]) -> Vec<Option<String>> {
    items.iter().map(|s| Some((*s).to_owned())).collect()
}

// ----- domains ---------------------------------------------------------------

#[test]
fn domain_list_hides_secrets_unless_asked() {
    let s = Setup::new();
    let out = s.run(&["domain", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines = out.lines();
    assert_eq!(lines.len(), 4, "{out:?}");
    assert!(lines[0].starts_with("DOMAIN "), "{out:?}");
    assert!(lines[1].starts_with("chat.example.net "), "{out:?}");
    assert!(lines[2].starts_with("jabber.example.com "), "{out:?}");
    assert!(lines[2].contains("admin@example.com"), "{out:?}");
    assert!(lines[2].contains("2026-11-28 15:24:08"), "{out:?}");
    assert_eq!(lines[3], "2 domains");
    assert!(lines[1].contains(" *** ") && lines[2].contains(" *** "));
    assert!(!out.stdout.contains("net-secret") && !out.stdout.contains("com-secret"));
    assert!(!out.stderr.contains("secret"), "{out:?}");
    // Columns line up: every row has its URL where the header says URL.
    let url_at = lines[0].find("URL").unwrap();
    assert_eq!(&lines[1][url_at..url_at + 7], "http://");
    assert_eq!(&lines[2][url_at..url_at + 8], "https://");

    let out = s.run(&["domain", "list", "--show-secrets"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.lines()[1].contains(" net-secret "), "{out:?}");
    assert!(out.lines()[2].contains(" com-secret "), "{out:?}");
}

/// Odd names that are not host names are refused (exit 2, nothing
/// changes); the others are stored in the canonical form, however typed.
#[test]
fn domain_add_change_remove_with_odd_names_and_secrets_from_stdin() {
    let s = Setup::new();
    let original = s.rows("domains");
    for odd in ODD {
        let domain = format!("{odd}.example");
        let secret = format!("s3cret-{odd}'; DROP TABLE domains; --");
        if xcauth::proto::domain::canonical_domain(&domain).is_err() {
            let before = s.all_tables();
            for args in [
                &[
                    "domain",
                    "add",
                    &domain,
                    "--url",
                    "https://a/",
                    "--secret-stdin",
                ][..],
                &["domain", "change", &domain, "--url", "https://a/"],
                &["domain", "remove", &domain],
            ] {
                let out = s.run_with_stdin(args, &format!("{secret}\n"));
                assert_eq!(out.code, 2, "{args:?}: {out:?}");
                assert!(out.stderr.contains("not a valid domain"), "{out:?}");
            }
            assert_eq!(s.all_tables(), before, "{domain}");
            continue;
        }
        // Typed in upper case with the root's dot, stored canonically.
        let typed = format!("{}.", domain.to_uppercase());
        let out = s.run_with_stdin(
            &[
                "domain",
                "add",
                &typed,
                "--url",
                "https://cloud.example/index.php/apps/ojsxc/ajax/externalApi.php",
                "--secret-stdin",
                "--contact",
                &format!("admin@{odd}"),
            ],
            &format!("{secret}\n"),
        );
        assert_eq!(out.code, 0, "{domain}: {out:?}");
        assert!(out.stdout.contains(&domain), "{out:?}");
        assert!(!out.stdout.contains("s3cret") && !out.stderr.contains("s3cret"));
        let (stored, authdomain, contact, first, latest): (String, String, String, String, String) =
            s.conn()
                .query_row(
                    "SELECT authsecret, authdomain, regcontact, regfirst, reglatest \
                     FROM domains WHERE xmppdomain = ?1",
                    [&domain],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .unwrap();
        assert_eq!(stored, secret);
        assert_eq!(
            authdomain, domain,
            "the auth domain defaults to the XMPP domain"
        );
        assert_eq!(contact, format!("admin@{odd}"));
        // The original's timestamp text, readable by Python.
        assert_eq!(first.len(), 19, "{first}");
        assert!(xcauth::store::parse_timestamp(&first).is_some(), "{first}");
        assert_eq!(first, latest);

        // Adding it again is refused and changes nothing.
        let out = s.run_with_stdin(
            &[
                "domain",
                "add",
                &domain,
                "--url",
                "https://other/",
                "--secret-stdin",
            ],
            "other\n",
        );
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("already exists"), "{out:?}");
        assert_eq!(
            s.count(
                "SELECT COUNT(*) FROM domains WHERE xmppdomain = ?1 AND authsecret = ?2",
                &[&domain, &secret]
            ),
            1
        );

        // Change the URL and auth domain only: the secret stays.
        let out = s.run(&[
            "domain",
            "change",
            &domain,
            "--url",
            "https://new.example/api",
            "--auth-domain",
            &format!("auth {odd}"),
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        let row: (String, String, String) = s
            .conn()
            .query_row(
                "SELECT authsecret, authurl, authdomain FROM domains WHERE xmppdomain = ?1",
                [&domain],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            (
                secret.clone(),
                "https://new.example/api".to_owned(),
                format!("auth {odd}")
            )
        );

        // A new secret from a file; an empty contact clears it.
        let file = s.path("secret.txt");
        std::fs::write(&file, format!("file-{odd}\r\n")).unwrap();
        let out = s.run(&[
            "domain",
            "change",
            &domain,
            "--secret-file",
            file.to_str().unwrap(),
            "--contact",
            "",
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        let row: (String, Option<String>) = s
            .conn()
            .query_row(
                "SELECT authsecret, regcontact FROM domains WHERE xmppdomain = ?1",
                [&domain],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(row, (format!("file-{odd}"), None));

        let listed = s.run(&["domain", "list"]);
        assert!(listed.stdout.contains(&domain), "{listed:?}");
        assert!(!listed.stdout.contains("file-"), "{listed:?}");

        let out = s.run(&["domain", "remove", &domain]);
        assert_eq!(out.code, 0, "{out:?}");
        let out = s.run(&["domain", "remove", &domain]);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("no domain"), "{out:?}");
        let out = s.run(&["domain", "change", &domain, "--url", "https://x/"]);
        assert_eq!(out.code, 1, "{out:?}");
        // Only the rows of this domain ever changed.
        assert_eq!(s.rows("domains"), original, "{domain}");
    }
    assert_eq!(s.rows("authcache").len(), 4);
}

#[test]
fn domain_secrets_are_never_plain_arguments() {
    let s = Setup::new();
    let before = s.all_tables();
    for args in [
        &[
            "domain",
            "add",
            "d.example",
            "--url",
            "https://a/",
            "--secret",
            "x",
        ][..],
        &["domain", "add", "d.example", "--url", "https://a/"],
        &[
            "domain",
            "add",
            "d.example",
            "--url",
            "ftp://a/",
            "--secret-stdin",
        ],
        &["domain", "change", "chat.example.net"],
    ] {
        let out = s.run_with_stdin(args, "secret\n");
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
    let out = s.run_with_stdin(
        &[
            "domain",
            "add",
            "d.example",
            "--url",
            "https://a/",
            "--secret-stdin",
        ],
        "\n",
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("empty"), "{out:?}");
    assert_eq!(s.all_tables(), before);
}

/// Our `domainbackend` row of `domain`: kind, API user, API password,
/// login form.
type BackendRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn backend_row(s: &Setup, domain: &str) -> Option<BackendRow> {
    s.conn()
        .query_row(
            "SELECT backend, apiuser, apipassword, loginform FROM domainbackend \
             WHERE xmppdomain = ?1",
            [domain],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .ok()
}

/// The `domain list` line of `domain`.
fn listed_line(out: &Out, domain: &str) -> String {
    match out.lines().into_iter().find(|l| l.starts_with(domain)) {
        Some(l) => l.to_owned(),
        None => panic!("{domain} not listed: {out:?}"),
    }
}

#[test]
fn domain_add_and_change_set_the_kind_api_account_and_login_form() {
    let s = Setup::new();
    for (i, odd) in ODD.iter().enumerate() {
        // Odd names that are no host names are refused as domains (see
        // above); the API account and password may be anything.
        let domain = format!("d{i}.example");
        let api_user = format!("{odd} admin");
        let password = format!("api-pw-{odd}'; --");
        let out = s.run_with_stdin(
            &[
                "domain",
                "add",
                &domain,
                "--url",
                "https://cloud.example/",
                "--backend",
                "nextcloud",
                "--api-user",
                &api_user,
                "--api-password-stdin",
                "--login-form",
                "user@domain",
            ],
            &format!("{password}\n"),
        );
        assert_eq!(out.code, 0, "{domain}: {out:?}");
        assert!(out.stdout.contains("back end nextcloud"), "{out:?}");
        assert!(!out.stdout.contains("api-pw") && !out.stderr.contains("api-pw"));
        assert_eq!(
            backend_row(&s, &domain),
            Some((
                Some("nextcloud".into()),
                Some(api_user.clone()),
                Some(password.clone()),
                Some("user@domain".into())
            ))
        );
        // No JSXC secret is needed for stock Nextcloud.
        let secret: Option<String> = s
            .conn()
            .query_row(
                "SELECT authsecret FROM domains WHERE xmppdomain = ?1",
                [&domain],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(secret.as_deref(), Some(""));

        let out = s.run(&["domain", "list"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.lines()[0].contains("BACKEND") && out.lines()[0].contains("API PASSWORD"));
        let line = listed_line(&out, &domain);
        assert!(
            line.contains(" nextcloud ") && !line.contains("nextcloud*"),
            "{line}"
        );
        assert!(
            line.contains(&api_user) && line.contains("user@domain"),
            "{line}"
        );
        assert!(line.contains(" *** "), "password masked: {line}");
        assert!(!out.stdout.contains("api-pw") && !out.stderr.contains("api-pw"));
        let shown = s.run(&["domain", "list", "--show-secrets"]);
        assert!(
            listed_line(&shown, &domain).contains(&password),
            "{shown:?}"
        );

        // Change the kind and the password (from a file); the rest stays.
        let file = s.path("api-password.txt");
        std::fs::write(&file, format!("new-api-pw-{odd}\n")).unwrap();
        let out = s.run(&[
            "domain",
            "change",
            &domain,
            "--backend",
            "jsxc",
            "--api-password-file",
            file.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stderr.is_empty(), "the row has an API user: {out:?}");
        assert_eq!(
            backend_row(&s, &domain),
            Some((
                Some("jsxc".into()),
                Some(api_user.clone()),
                Some(format!("new-api-pw-{odd}")),
                Some("user@domain".into())
            ))
        );
        let out = s.run(&["domain", "change", &domain, "--login-form", "user"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(backend_row(&s, &domain).unwrap().3.as_deref(), Some("user"));

        let out = s.run(&["domain", "remove", &domain]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(backend_row(&s, &domain), None, "removed with the domain");
    }
}

#[test]
fn without_backend_the_kind_is_not_stored_and_listed_as_inferred() {
    let s = Setup::new();
    for (domain, url, kind) in [
        (
            "j.example",
            "https://c.example/index.php/apps/ojsxc/ajax/externalApi.php",
            "jsxc*",
        ),
        ("n.example", "https://c.example/", "nextcloud*"),
    ] {
        let out = s.run_with_stdin(
            &["domain", "add", domain, "--url", url, "--secret-stdin"],
            "sec\n",
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(backend_row(&s, domain), None, "{domain}: nothing stored");
        let out = s.run(&["domain", "list"]);
        let line = listed_line(&out, domain);
        assert!(line.contains(&format!(" {kind} ")), "{line}");
        assert!(out.stderr.contains("not stored"), "{out:?}");
    }
    // The fixture's rows: a JSXC URL and another one.
    let out = s.run(&["domain", "list"]);
    assert!(
        listed_line(&out, "jabber.example.com").contains(" jsxc* "),
        "{out:?}"
    );
    assert!(
        listed_line(&out, "chat.example.net").contains(" nextcloud* "),
        "{out:?}"
    );

    // Only an API user: the kind stays inferred.
    let out = s.run(&["domain", "change", "n.example", "--api-user", "svc"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        backend_row(&s, "n.example"),
        Some((None, Some("svc".into()), None, None))
    );
    // A password without any API user is stored, with a note.
    let out = s.run_with_stdin(
        &["domain", "change", "j.example", "--api-password-stdin"],
        "pw-without-user\n",
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("--api-user"), "{out:?}");
    assert!(!out.stderr.contains("pw-without-user"), "{out:?}");
}

#[test]
fn bad_backend_settings_are_refused_and_change_nothing() {
    let s = Setup::new();
    let before = s.all_tables();
    for args in [
        &[
            "domain",
            "add",
            "d.example",
            "--url",
            "https://a/",
            "--backend",
            "ldap",
        ][..],
        &[
            "domain",
            "add",
            "d.example",
            "--url",
            "https://a/",
            "--backend",
            "Nextcloud",
        ],
        &[
            "domain",
            "add",
            "d.example",
            "--url",
            "https://a/",
            "--backend",
            "",
        ],
        &[
            "domain",
            "add",
            "d.example",
            "--url",
            "https://a/",
            "--backend",
            "nextcloud",
            "--login-form",
            "email",
        ],
        &[
            "domain",
            "change",
            "chat.example.net",
            "--login-form",
            "user@",
        ],
        &["domain", "change", "chat.example.net", "--api-user", ""],
        // The API password never on the command line.
        &[
            "domain",
            "change",
            "chat.example.net",
            "--api-password",
            "hunter2",
        ],
        // One standard input for one secret.
        &[
            "domain",
            "change",
            "chat.example.net",
            "--secret-stdin",
            "--api-password-stdin",
        ],
        &[
            "domain",
            "change",
            "chat.example.net",
            "--api-password-stdin",
            "--api-password-file",
            "f",
        ],
        // JSXC signs with the secret: it is required.
        &[
            "domain",
            "add",
            "d.example",
            "--url",
            "https://a/",
            "--backend",
            "jsxc",
        ],
    ] {
        let out = s.run_with_stdin(args, "hunter2\n");
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(!out.stderr.contains("hunter2"), "{args:?}: {out:?}");
    }
    let out = s.run_with_stdin(
        &[
            "domain",
            "change",
            "chat.example.net",
            "--api-password-stdin",
        ],
        "\n",
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("empty"), "{out:?}");
    assert_eq!(s.all_tables(), before);
    let ours = s
        .conn()
        .query_row("SELECT COUNT(*) FROM domainbackend", [], |r| {
            r.get::<_, i64>(0)
        });
    assert!(matches!(ours, Ok(0) | Err(_)), "{ours:?}");
}

// ----- users, groups, hosts ----------------------------------------------------

#[test]
fn user_delete_removes_exactly_that_users_rows_and_tells_ejabberd() {
    let s = Setup::with_ejabberdctl();
    let mut want = s.all_tables();
    let out = s.run(&["user", "delete", "alice@example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(
            "1 cache entry, 1 roster state row, removed from 1 group (staff@example.org)"
        ),
        "{out:?}"
    );
    assert_eq!(
        s.calls(),
        vec![strings(&[
            "srg_user_del",
            "alice",
            "example.org",
            "staff",
            "example.org"
        ])]
    );

    let not_alice = |rows: &mut Rows| rows.retain(|r| r[0].as_deref() != Some("alice@example.org"));
    not_alice(want.get_mut("authcache").unwrap());
    not_alice(want.get_mut("rosterinfo").unwrap());
    *want.get_mut("rostergroups").unwrap() = vec![some(&[
        "staff@example.org",
        "bob@example.org\tcarol@example.org\tdave@example.org",
    ])];
    assert_eq!(s.all_tables(), want);

    let out = s.run(&["user", "delete", "alice@example.org"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("nothing stored for alice@example.org"),
        "{out:?}"
    );
    assert_eq!(s.calls().len(), 1);
    assert_eq!(s.all_tables(), want);
}

#[test]
fn user_delete_without_ejabberdctl_only_touches_the_database() {
    let s = Setup::new();
    let out = s.run(&["user", "delete", "zoë@example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(s.count("SELECT COUNT(*) FROM authcache", &[]), 3);
    assert_eq!(
        s.count(
            "SELECT COUNT(*) FROM authcache WHERE jid = ?1",
            &["zoë@example.org"]
        ),
        0
    );
    assert!(s.calls().is_empty());
}

#[test]
fn group_delete_runs_srg_delete_with_the_exact_arguments() {
    let s = Setup::with_ejabberdctl();
    let out = s.run(&["group", "delete", "staff@example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(s.rows("rostergroups").is_empty());
    assert_eq!(s.rows("rosterinfo").len(), 4, "users stay");
    assert_eq!(
        s.calls(),
        vec![strings(&["srg_delete", "staff", "example.org"])]
    );

    let out = s.run(&["group", "delete", "staff@example.org"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("no stored group staff@example.org"),
        "{out:?}"
    );

    for odd in ODD {
        let group = format!("g {odd}");
        let domain = format!("dom{odd}.example");
        let key = format!("{group}@{domain}");
        s.exec(
            "INSERT INTO rostergroups (groupname, userlist) VALUES (?1, 'a@b')",
            &[&key],
        );
        std::fs::remove_file(&s.log).unwrap();
        let out = s.run(&["group", "delete", &key]);
        assert_eq!(out.code, 0, "{key}: {out:?}");
        assert_eq!(s.calls(), vec![strings(&["srg_delete", &group, &domain])]);
        assert!(s.rows("rostergroups").is_empty(), "{key}");
    }
}

#[test]
fn failing_ejabberdctl_is_reported_with_the_command_to_run() {
    let s = Setup::with_ejabberdctl();
    let mut cmd = s.command(&["group", "delete", "staff@example.org"]);
    cmd.env("FAKE_EJABBERDCTL_FAIL", "srg_delete");
    let out = run(cmd, None);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr
            .contains("ejabberdctl srg_delete staff example.org failed"),
        "{out:?}"
    );
    assert!(out.stderr.contains("by hand"), "{out:?}");
    assert!(
        s.rows("rostergroups").is_empty(),
        "the database side is done"
    );
}

#[test]
fn host_delete_forgets_one_virtual_host_only() {
    let s = Setup::new();
    // Look-alikes that a LIKE '%@example.org' or a wildcard would hit.
    for jid in [
        "alice@example.org.evil",
        "alice@sub.example.org",
        "alice@exampleXorg",
        "alice@ex_ample.org",
        "alice@ex%ample.org",
    ] {
        s.exec(
            "INSERT INTO authcache (jid, pwhash) VALUES (?1, 'h')",
            &[jid],
        );
    }
    let domains = s.rows("domains");
    let out = s.run(&["host", "delete", "example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(
            "deleted host example.org: 4 cache entries, 4 roster state rows, \
             1 group (staff@example.org), no domain row"
        ),
        "{out:?}"
    );
    assert!(s.rows("rosterinfo").is_empty());
    assert!(s.rows("rostergroups").is_empty());
    let left: Vec<String> = s
        .rows("authcache")
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
    assert_eq!(
        left,
        strings(&[
            "alice@ex%ample.org",
            "alice@ex_ample.org",
            "alice@example.org.evil",
            "alice@exampleXorg",
            "alice@sub.example.org",
        ])
    );
    assert_eq!(s.rows("domains"), domains);

    let out = s.run(&["host", "delete", "example.org"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("nothing stored for host example.org"));

    // `_` is not a wildcard: ex_ample.org goes, exampleXorg stays.
    let out = s.run(&["host", "delete", "ex_ample.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(s.rows("authcache").len(), 4);

    let out = s.run(&["host", "delete", "jabber.example.com"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("its domain row"), "{out:?}");
    let names: Vec<Option<String>> = s
        .rows("domains")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(names, vec![Some("chat.example.net".to_owned())]);
}

// ----- roster and cache --------------------------------------------------------

#[test]
fn roster_refresh_clears_hashes() {
    let s = Setup::new();
    let hash = |jid: &str| -> Option<String> {
        s.conn()
            .query_row(
                "SELECT responsehash FROM rosterinfo WHERE jid = ?1",
                [jid],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert!(hash("alice@example.org").is_some());
    let out = s.run(&["roster", "refresh", "alice@example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(hash("alice@example.org"), None);
    // The rest of the row stays.
    assert_eq!(
        s.count(
            "SELECT COUNT(*) FROM rosterinfo WHERE jid = ?1 AND fullname = 'Alice'",
            &["alice@example.org"]
        ),
        1
    );
    let out = s.run(&["roster", "refresh", "nobody@example.org"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out
        .stderr
        .contains("no roster state for nobody@example.org"));

    s.exec(
        "UPDATE rosterinfo SET responsehash = 'x' WHERE jid IN ('bob@example.org', 'carol@example.org')",
        &[],
    );
    let out = s.run(&["roster", "refresh"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("cleared 2 roster hashes"), "{out:?}");
    assert_eq!(
        s.count(
            "SELECT COUNT(*) FROM rosterinfo WHERE responsehash IS NOT NULL",
            &[]
        ),
        0
    );
}

#[test]
fn cache_list_and_flush_with_counts() {
    let s = Setup::with_ejabberdctl();
    let out = s.run(&["cache", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.is_empty(), "cache-storage=db: no note: {out:?}");
    let lines = out.lines();
    assert_eq!(lines.len(), 6, "{out:?}");
    assert!(lines[0].starts_with("JID "), "{out:?}");
    assert_eq!(
        lines[1],
        "alice@example.org  2026-11-28 15:24:02  2026-11-28 15:24:02        2026-11-28 15:24:02"
    );
    assert!(
        lines[4].starts_with("zoë@example.org    2026-11-28 15:24:02"),
        "{out:?}"
    );
    assert_eq!(lines[5], "4 cache entries");
    assert!(!out.stdout.contains("$2b$"), "never the hash");

    let out = s.run(&["cache", "flush", "zoë@example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "flushed 1 cache entry (zoë@example.org)\n");
    let out = s.run(&["cache", "flush", "zoë@example.org"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stdout, "flushed 0 cache entries\n");
    assert!(out.stderr.contains("no cache entry for zoë@example.org"));

    let out = s.run(&["cache", "flush"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "flushed 3 cache entries\n");
    let out = s.run(&["cache", "list"]);
    assert_eq!(out.lines().last().copied(), Some("0 cache entries"));
    // Roster state is not part of the cache.
    assert_eq!(s.rows("rosterinfo").len(), 4);
}

/// Several credentials per JID (one per device) live in our table
/// `authcredential` beside the original's `authcache` row; every command
/// that lists or forgets cache entries covers them.
#[test]
fn cache_user_and_host_commands_cover_every_credential_of_a_jid() {
    let s = Setup::with_ejabberdctl();
    let ours = |s: &Setup, jid: &str| {
        s.count("SELECT COUNT(*) FROM authcredential WHERE jid = ?1", &[jid])
    };
    // Opening the original's file adds our tables.
    assert_eq!(s.run(&["cache", "list"]).code, 0);
    for (jid, n) in [
        ("alice@example.org", 2),
        ("bob@example.org", 1),
        ("zoë@example.org", 1),
    ] {
        for i in 0..n {
            s.exec(
                "INSERT INTO authcredential (jid, pwhash, firstauth, remoteauth, anyauth) \
                 SELECT jid, ?2, firstauth, ?3, ?3 FROM authcache WHERE jid = ?1",
                &[
                    jid,
                    &format!("$2b$04$device-{i}"),
                    &format!("2026-11-27 10:00:0{i}"),
                ],
            );
        }
    }
    // A row left after the original deleted its JID from authcache.
    s.exec(
        "INSERT INTO authcredential VALUES ('gone@example.org', '$2b$04$orphan', \
         '2026-11-01 00:00:00', '2026-11-01 00:00:00', '2026-11-01 00:00:00')",
        &[],
    );

    let out = s.run(&["cache", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines = out.lines();
    assert_eq!(lines.len(), 2 + 8, "{out:?}");
    assert_eq!(
        lines[1],
        "alice@example.org  2026-11-28 15:24:02  2026-11-28 15:24:02        2026-11-28 15:24:02"
    );
    assert_eq!(
        lines[2],
        "alice@example.org  2026-11-28 15:24:02  2026-11-27 10:00:01        2026-11-27 10:00:01",
        "most recently verified first, each with its own times"
    );
    assert!(lines[3].contains("2026-11-27 10:00:00"), "{out:?}");
    assert_eq!(
        lines.last().copied(),
        Some("4 cache entries, 8 credentials")
    );
    assert!(
        !out.stdout.contains("gone@"),
        "orphans do not count: {out:?}"
    );
    assert!(!out.stdout.contains("$2b$"), "never the hash");

    let out = s.run(&["cache", "flush", "alice@example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "flushed 1 cache entry (alice@example.org)\n");
    assert_eq!(ours(&s, "alice@example.org"), 0);

    let out = s.run(&["user", "delete", "bob@example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(ours(&s, "bob@example.org"), 0);
    assert_eq!(ours(&s, "zoë@example.org"), 1);

    let out = s.run(&["host", "delete", "example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(s.count("SELECT COUNT(*) FROM authcredential", &[]), 0);
    assert_eq!(s.count("SELECT COUNT(*) FROM authcache", &[]), 0);

    s.exec(
        "INSERT INTO authcredential VALUES ('x@example.org', 'h', NULL, NULL, NULL)",
        &[],
    );
    let out = s.run(&["cache", "flush"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(s.count("SELECT COUNT(*) FROM authcredential", &[]), 0);
}

#[test]
fn cache_commands_note_when_the_server_does_not_cache_in_the_database() {
    let s = Setup::new();
    let out = s.run(&["cache", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("cache-storage=none"), "{out:?}");
}

// ----- odd names in every command ---------------------------------------------

#[test]
fn odd_names_in_every_command() {
    let s = Setup::with_ejabberdctl();
    let fixture_rows = s.all_tables();
    for odd in ODD {
        let domain = format!("{odd}.example");
        let jid = format!("{odd} user@{domain}");
        let group = format!("{odd} group");
        let key = format!("{group}@{domain}");

        // A row as the original or a hand-written INSERT may have stored it
        // (`domain add` refuses names that are no host names).
        s.exec(
            "INSERT INTO domains (xmppdomain, authsecret, authurl, authdomain) \
             VALUES (?1, 'sec', 'https://a.example/', ?1)",
            &[&domain],
        );
        s.exec(
            "INSERT INTO authcache (jid, pwhash, firstauth, remoteauth, anyauth) \
             VALUES (?1, 'h', '2030-01-02 03:04:05', '2030-01-02 03:04:06', '2030-01-02 03:04:07')",
            &[&jid],
        );
        s.exec(
            "INSERT INTO rosterinfo (jid, fullname, responsehash) VALUES (?1, 'N', 'hash')",
            &[&jid],
        );
        s.exec(
            "INSERT INTO rostergroups (groupname, userlist) VALUES (?1, ?2)",
            &[&key, &format!("{jid}\tother@{domain}")],
        );

        let out = s.run(&["cache", "list"]);
        assert!(
            out.stdout
                .contains(&format!("{jid}  2030-01-02 03:04:05  2030-01-02 03:04:06")),
            "{odd}: {out:?}"
        );
        assert!(s.run(&["domain", "list"]).stdout.contains(&domain));

        let out = s.run(&["roster", "refresh", &jid]);
        assert_eq!(out.code, 0, "{odd}: {out:?}");
        assert_eq!(
            s.count(
                "SELECT COUNT(*) FROM rosterinfo WHERE jid = ?1 AND responsehash IS NULL",
                &[&jid]
            ),
            1
        );

        let out = s.run(&["cache", "flush", &jid]);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, &*format!("flushed 1 cache entry ({jid})\n"))
        );

        std::fs::remove_file(&s.log).ok();
        let out = s.run(&["user", "delete", &jid]);
        assert_eq!(out.code, 0, "{odd}: {out:?}");
        assert_eq!(
            s.calls(),
            vec![strings(&[
                "srg_user_del",
                &format!("{odd} user"),
                &domain,
                &group,
                &domain
            ])]
        );
        assert_eq!(
            s.count("SELECT COUNT(*) FROM rosterinfo WHERE jid = ?1", &[&jid]),
            0
        );
        assert_eq!(
            s.count(
                "SELECT COUNT(*) FROM rostergroups WHERE groupname = ?1 AND userlist = ?2",
                &[&key, &format!("other@{domain}")]
            ),
            1
        );

        std::fs::remove_file(&s.log).ok();
        let out = s.run(&["group", "delete", &key]);
        assert_eq!(out.code, 0, "{odd}: {out:?}");
        assert_eq!(s.calls(), vec![strings(&["srg_delete", &group, &domain])]);

        s.exec(
            "INSERT INTO authcache (jid, pwhash) VALUES (?1, 'h')",
            &[&jid],
        );
        let out = s.run(&["host", "delete", &domain]);
        assert_eq!(out.code, 0, "{odd}: {out:?}");
        assert!(out.stdout.contains("1 cache entry"), "{odd}: {out:?}");
        assert!(out.stdout.contains("its domain row"), "{odd}: {out:?}");

        // The original's rows are untouched after each round.
        assert_eq!(s.all_tables(), fixture_rows, "{odd}");
    }
}

// ----- configuration and the dispatch ------------------------------------------

#[test]
fn database_comes_from_the_config_file_and_environment_like_the_server() {
    let s = Setup::new();
    std::fs::write(&s.conf, format!("db={}\n", s.db.display())).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xcauth"));
    cmd.args(["cache", "flush", "bob@example.org", "-c"])
        .arg(&s.conf);
    clean_env(&mut cmd);
    let out = run(cmd, None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(s.rows("authcache").len(), 3);

    // XCAUTH_CONFIG_FILE names the file; XCAUTH_DB beats the file.
    let other = s.path("other.sqlite3");
    std::fs::copy(fixture(), &other).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xcauth"));
    cmd.args(["cache", "flush"]);
    clean_env(&mut cmd);
    cmd.env("XCAUTH_CONFIG_FILE", &s.conf)
        .env("XCAUTH_DB", &other);
    let out = run(cmd, None);
    assert_eq!(out.stdout, "flushed 4 cache entries\n", "{out:?}");
    assert_eq!(s.rows("authcache").len(), 3);

    // Resolution as a library call, too.
    let conf = s.path("lib.conf");
    std::fs::write(
        &conf,
        "db=/from/file.sqlite3\nejabberdctl=/usr/local/bin/xcejabberdctl\ncache-storage=db\n\
         url=https://cloud.example/x\n",
    )
    .unwrap();
    let env = |key: &str| (key == "XCAUTH_DB").then(|| "/from/env.sqlite3".to_owned());
    let settings = xcauth::config::admin_settings(Some(&conf), &env).unwrap();
    assert_eq!(settings.db, PathBuf::from("/from/env.sqlite3"));
    assert_eq!(
        settings.ejabberdctl,
        Some(PathBuf::from("/usr/local/bin/xcejabberdctl"))
    );
    assert_eq!(settings.cache_storage, xcauth::config::CacheStorage::Db);
    assert_eq!(settings.config_file.as_deref(), Some(conf.as_path()));
    let settings = xcauth::config::admin_settings(Some(&conf), &|_| None).unwrap();
    assert_eq!(settings.db, PathBuf::from("/from/file.sqlite3"));
    let named = conf.to_string_lossy().into_owned();
    let env = move |key: &str| (key == "XCAUTH_CONFIG_FILE").then(|| named.clone());
    let settings = xcauth::config::admin_settings(None, &env).unwrap();
    assert_eq!(settings.db, PathBuf::from("/from/file.sqlite3"));
    assert!(xcauth::config::admin_settings(Some(&s.path("missing.conf")), &|_| None).is_err());
}

#[test]
fn configuration_and_database_errors_exit_2_and_create_nothing() {
    let s = Setup::new();
    let missing = s.path("no-such.sqlite3");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xcauth"));
    cmd.args(["user", "delete", "alice@example.org", "--db"])
        .arg(&missing)
        .arg("-c")
        .arg(&s.conf);
    clean_env(&mut cmd);
    let out = run(cmd, None);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no such database"), "{out:?}");
    assert!(!missing.exists());

    std::fs::write(&s.conf, "no-such-option=1\n").unwrap();
    let out = s.run(&["cache", "list"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains(":1:"), "{out:?}");

    let junk = s.path("junk.sqlite3");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    std::fs::write(&s.conf, "").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xcauth"));
    cmd.args(["cache", "list", "--db"])
        .arg(&junk)
        .arg("-c")
        .arg(&s.conf);
    clean_env(&mut cmd);
    let out = run(cmd, None);
    assert_eq!(out.code, 2, "{out:?}");

    for bad in [
        &["user", "delete", "no-domain"][..],
        &["group", "delete", "nodomain"],
        &["host", "delete", "user@example.org"],
        &["cache", "frobnicate"],
        &["domain"],
    ] {
        let out = s.run(bad);
        assert_eq!(out.code, 2, "{bad:?}: {out:?}");
    }
}

#[test]
fn domain_add_may_create_a_new_database() {
    let s = Setup::new();
    let fresh = s.path("fresh.sqlite3");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xcauth"));
    cmd.args([
        "domain",
        "add",
        "new.example",
        "--url",
        "https://cloud.example/",
        "--secret-stdin",
        "--db",
    ])
    .arg(&fresh)
    .arg("-c")
    .arg(&s.conf);
    clean_env(&mut cmd);
    let out = run(cmd, Some("sec\n"));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("created the new database"), "{out:?}");
    let conn = Connection::open(&fresh).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM domains", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn the_server_command_line_is_not_taken_for_a_subcommand() {
    let s = Setup::new();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xcauth"));
    cmd.arg("-c").arg(&s.conf);
    clean_env(&mut cmd);
    let out = run(cmd, None);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("-t"), "the server's usage: {out:?}");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xcauth"));
    cmd.arg("help");
    clean_env(&mut cmd);
    let out = run(cmd, None);
    assert_eq!(out.code, 0, "{out:?}");
    for name in ["domain", "user", "group", "host", "roster", "cache"] {
        assert!(
            out.stdout.contains(&format!("  {name} ")),
            "{name}: {out:?}"
        );
    }
}

// ----- the wrappers --------------------------------------------------------------

#[test]
fn wrappers_find_xcauth_on_the_path_and_pass_names_unchanged() {
    let s = Setup::new();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_xcauth"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let wrapper = |name: &str, args: &[&str]| {
        let mut cmd = Command::new(script(name));
        cmd.args(args)
            .arg("--db")
            .arg(&s.db)
            .arg("-c")
            .arg(&s.conf)
            .env("PATH", &path);
        clean_env(&mut cmd);
        run(cmd, None)
    };
    s.exec(
        "INSERT INTO authcache (jid, pwhash) VALUES (?1, 'h')",
        &["it's a \"test\" %_;@zoë.example"],
    );
    let out = wrapper("xcdeluser", &["it's a \"test\" %_;@zoë.example"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(s.rows("authcache").len(), 4);

    let out = wrapper("xcrefreshroster", &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("cleared 1 roster hash;"), "{out:?}");

    let out = wrapper("xcdelgroup", &["staff@example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(s.rows("rostergroups").is_empty());

    let out = wrapper("xcdelhost", &["example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(s.rows("authcache").is_empty());

    let out = wrapper("xcdelhost", &["example.org"]);
    assert_eq!(out.code, 1, "exit status passed on: {out:?}");
}

#[test]
fn wrappers_prefer_the_xcauth_next_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let argv_log = dir.path().join("argv");
    // A stand-in xcauth that writes its arguments one per line.
    let fake = dir.path().join("xcauth");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}'\n",
            argv_log.display()
        ),
    )
    .unwrap();
    make_executable(&fake);
    for (name, sub) in [
        ("xcdeluser", ["user", "delete"]),
        ("xcdelgroup", ["group", "delete"]),
        ("xcdelhost", ["host", "delete"]),
        ("xcrefreshroster", ["roster", "refresh"]),
    ] {
        let copy = dir.path().join(name);
        std::fs::copy(script(name), &copy).unwrap();
        make_executable(&copy);
        let mut cmd = Command::new(&copy);
        cmd.args(["a b'c\"$(x)*@d", "--db", "/x y"])
            .env("PATH", "/nonexistent");
        let out = run(cmd, None);
        assert_eq!(out.code, 0, "{name}: {out:?}");
        let argv = std::fs::read_to_string(&argv_log).unwrap();
        assert_eq!(
            argv,
            format!("{}\n{}\na b'c\"$(x)*@d\n--db\n/x y\n", sub[0], sub[1]),
            "{name}"
        );
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

// ----- the failure guard ------------------------------------------------------

/// Seconds since the epoch now: the binary counts with the real clock.
fn epoch_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_secs()).unwrap()
}

/// Records `n` distinct failures of `key` at `at`, as the server does.
fn guard_failures(s: &Setup, scope: xcauth::guard::Scope, key: &str, n: usize, at: i64) {
    let store = xcauth::store::Store::open(&s.db).unwrap();
    for i in 0..n {
        let failure = xcauth::guard::Failure {
            digest: format!("{:032x}", i + 0xdead_beef),
            at,
        };
        store.guard_record(scope, key, &failure).unwrap();
    }
}

/// The listed line of `key`.
fn guard_line<'a>(out: &'a Out, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.contains(&format!(" {key} ")))
        .unwrap_or_else(|| panic!("{key} not listed: {out:?}"))
}

#[test]
fn guard_list_shows_counts_and_blocks_of_odd_jids_and_addresses_never_digests() {
    use xcauth::guard::Scope;
    let s = Setup::new();
    let now = epoch_now();
    let guessed = "o'neil \"quo\"te\"@example.org";
    guard_failures(&s, Scope::Jid, guessed, 10, now - 60);
    let mut others = Vec::new();
    for odd in ODD {
        let jid = format!("{odd}@example.org");
        guard_failures(&s, Scope::Jid, &jid, 2, now - 60);
        others.push(jid);
    }
    guard_failures(&s, Scope::Address, "2001:db8::1", 30, now - 60);
    guard_failures(&s, Scope::Address, "192.0.2.7", 1, now - 60);
    // An old failure, outside the window, is listed but not counted.
    guard_failures(&s, Scope::Jid, "old@example.org", 1, now - 3600);
    guard_failures(&s, Scope::Jid, "ev\nil@example.org", 1, now - 60);

    let out = s.run(&["guard", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    let until = xcauth::store::format_timestamp(now - 60 + 900);
    let line = guard_line(&out, guessed);
    assert!(line.starts_with("jid "), "{line}");
    assert!(line.contains(" 10/10 "), "{line}");
    assert!(line.ends_with(&format!("refused until {until}")), "{line}");
    for jid in &others {
        let line = guard_line(&out, jid);
        assert!(line.contains(" 2/10 ") && line.ends_with(" no"), "{line}");
    }
    let line = guard_line(&out, "2001:db8::1");
    assert!(line.starts_with("address "), "{line}");
    assert!(line.contains(" 30/30 "), "{line}");
    assert!(line.ends_with(&format!("refused until {until}")), "{line}");
    assert!(guard_line(&out, "192.0.2.7").contains(" 1/30 "));
    assert!(guard_line(&out, "old@example.org").contains(" 0/10 "));
    // A control character cannot split the table.
    assert!(guard_line(&out, "ev\\nil@example.org").contains(" 1/10 "));
    assert!(
        !out.stdout.contains("dead"),
        "digests are never shown: {out:?}"
    );
    assert_eq!(
        out.lines().last().copied(),
        Some("10 JIDs and 2 addresses with failures; 2 refused now")
    );
}

#[test]
fn guard_clear_lifts_one_key_or_all_and_says_when_nothing_matched() {
    use xcauth::guard::Scope;
    let s = Setup::new();
    let now = epoch_now();
    guard_failures(&s, Scope::Jid, "zoë@example.org", 10, now);
    guard_failures(&s, Scope::Jid, "spa ce@example.org", 3, now);
    guard_failures(&s, Scope::Address, "2001:db8::1", 30, now);

    // An address as the protocols or a person write it.
    let out = s.run(&["guard", "clear", "[2001:DB8::1]:5222"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.lines(),
        ["cleared 30 failures of 2001:db8::1; it is no longer refused"]
    );
    let out = s.run(&["guard", "clear", "zoë@example.org"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.run(&["guard", "list"]);
    assert!(!out.stdout.contains("zoë") && !out.stdout.contains("2001:db8"));
    assert!(out.stdout.contains("spa ce@example.org"), "{out:?}");

    let out = s.run(&["guard", "clear", "zoë@example.org"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("no failures of zoë@example.org"),
        "{out:?}"
    );
    // A look-alike key is not matched.
    let out = s.run(&["guard", "clear", "spa%@example.org"]);
    assert_eq!(out.code, 1, "{out:?}");

    let out = s.run(&["guard", "clear"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.lines(), ["cleared 3 failures; nothing is refused"]);
    let out = s.run(&["guard", "list"]);
    assert_eq!(
        out.lines().last().copied(),
        Some("0 JIDs and 0 addresses with failures; 0 refused now")
    );
}

#[test]
fn guard_commands_without_a_database_say_the_guard_is_in_memory() {
    let s = Setup::new();
    let missing = s.path("no-such.sqlite3");
    for args in [&["guard", "list"][..], &["guard", "clear"]] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xcauth"));
        cmd.args(args)
            .arg("--db")
            .arg(&missing)
            .arg("-c")
            .arg(&s.conf);
        clean_env(&mut cmd);
        let out = run(cmd, None);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("in the memory"), "{out:?}");
        assert!(!missing.exists());
    }
}

#[test]
fn guard_list_counts_with_the_servers_settings_from_the_config_file() {
    use xcauth::guard::Scope;
    let s = Setup::with_config(
        "guard-jid-failures=3\nguard-jid-window=1h\nguard-address-failures=0\n\
         guard-allowlist=127.0.0.0/8, ::1\n",
    );
    let now = epoch_now();
    guard_failures(&s, Scope::Jid, "spa ce@example.org", 3, now - 1800);
    guard_failures(&s, Scope::Address, "127.0.0.1", 40, now - 60);
    guard_failures(&s, Scope::Address, "192.0.2.9", 40, now - 60);
    let out = s.run(&["guard", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    // Outside the default 15 minutes, inside the configured hour.
    let line = guard_line(&out, "spa ce@example.org");
    assert!(line.contains(" 3/3 "), "{line}");
    let until = xcauth::store::format_timestamp(now - 1800 + 3600);
    assert!(line.ends_with(&format!("refused until {until}")), "{line}");
    let line = guard_line(&out, "127.0.0.1");
    assert!(
        line.contains(" 40 (allowlisted) ") && line.ends_with(" no"),
        "{line}"
    );
    let line = guard_line(&out, "192.0.2.9");
    assert!(
        line.contains(" 40 (limit off) ") && line.ends_with(" no"),
        "{line}"
    );
}
