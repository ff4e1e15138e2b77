//! The state file stays compatible both ways with the Python original (2.0.4): we read its file, it reads ours.
//!
//! The fixture is always copied into a temporary directory first. The
//! Python side runs through `python3`'s own sqlite3 module, reading the
//! rows the way the original did; it is skipped, with a notice, only when
//! `python3` is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use tempfile::TempDir;
use xcauth::store::{format_timestamp, DomainUpdate, Store, SCHEMA_VERSION};

const FIXTURE: &str = "python-2.0.4.sqlite3";
/// 2026-11-28 15:24:02 UTC, the whole second of the fixture's cache times.
const CACHE_TIME: i64 = 1_795_879_442;
/// 2026-11-28 15:24:08 UTC, the fixture's domain rows.
const DOMAIN_TIME: i64 = 1_795_879_448;
/// A later "now" for our writes: 2027-01-02 03:04:05 UTC.
const NOW: i64 = 1_798_772_645;

fn fixture() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("XCAUTH_PY_FIXTURE") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(FIXTURE),
    );
    candidates.push(Path::new("/work/shared/fixtures").join(FIXTURE));
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => p.clone(),
        None => panic!("fixture {FIXTURE} not found in {candidates:?}"),
    }
}

/// A private copy of the fixture.
fn fixture_copy() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xcauth.sqlite3");
    std::fs::copy(fixture(), &path).unwrap();
    (dir, path)
}

fn open(path: &Path) -> Store {
    match Store::open(path) {
        Ok(s) => s,
        Err(e) => panic!("open {}: {e}", path.display()),
    }
}

/// A read-only connection (also used on the pristine fixture).
fn read_only(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// `CREATE TABLE` text of every table, sorted by name.
/// The original's four tables.
const ORIGINAL_TABLES: [&str; 4] = ["authcache", "domains", "rostergroups", "rosterinfo"];
/// The tables xcauth adds beside them (the original ignores them).
const OUR_TABLES: [&str; 6] = [
    "authcredential",
    "domainbackend",
    "guardfailure",
    "guardnotice",
    "guardpending",
    "processtotals",
];

/// Name and `CREATE` text of every table.
fn all_tables(path: &Path) -> Vec<(String, String)> {
    let conn = read_only(path);
    let mut stmt = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// Name and `CREATE` text of the original's tables.
fn schema_text(path: &Path) -> Vec<(String, String)> {
    let mut tables = all_tables(path);
    tables.retain(|(name, _)| ORIGINAL_TABLES.contains(&name.as_str()));
    tables
}

fn pragma(path: &Path, name: &str) -> String {
    let conn = read_only(path);
    conn.pragma_query_value(None, name, |r| {
        let v: rusqlite::types::Value = r.get(0)?;
        Ok(match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
    })
    .unwrap()
}

/// Runs a Python snippet with the database path as `sys.argv[1]` and parses
/// the JSON it prints; `None` (after a notice) when python3 is missing.
fn python(script: &str, db: &Path) -> Option<Value> {
    let output = match Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(db)
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("NOTICE: python3 not found; skipping the Python side of this test");
            return None;
        }
        Err(e) => panic!("cannot run python3: {e}"),
    };
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

/// Reads every table the way the original did: plain connection, rows as
/// stored, timestamps through `datetime.strptime` (with `.%f` when there is
/// a fraction); also reads them once more through sqlite3's own TIMESTAMP
/// converter (`detect_types=PARSE_DECLTYPES`) and checks both agree.
/// Timestamps come back as whole Unix seconds.
const PY_READ: &str = r#"
import calendar, datetime, json, sqlite3, sys, warnings
warnings.simplefilter('ignore')
db = sys.argv[1]

def secs(dt):
    return calendar.timegm(dt.timetuple())

def ts(text):
    if text is None:
        return None
    fmt = '%Y-%m-%d %H:%M:%S.%f' if '.' in text else '%Y-%m-%d %H:%M:%S'
    return secs(datetime.datetime.strptime(text, fmt))

TS = {'domains': (5, 6), 'authcache': (2, 3, 4), 'rosterinfo': (4,), 'rostergroups': ()}
COLS = {
    'domains': 'xmppdomain, authsecret, authurl, authdomain, regcontact, regfirst, reglatest',
    'authcache': 'jid, pwhash, firstauth, remoteauth, anyauth',
    'rosterinfo': 'jid, fullname, grouplist, responsehash, last_update',
    'rostergroups': 'groupname, userlist',
}
out = {'raw': {}, 'parsed': {}}
conn = sqlite3.connect(db)
typed = sqlite3.connect(db, detect_types=sqlite3.PARSE_DECLTYPES)
for table, cols in COLS.items():
    sql = 'SELECT %s FROM %s ORDER BY 1' % (cols, table)
    raw = [list(r) for r in conn.execute(sql)]
    parsed = [[ts(v) if i in TS[table] else v for i, v in enumerate(r)] for r in raw]
    for row, trow in zip(parsed, typed.execute(sql)):
        for i in TS[table]:
            got = None if trow[i] is None else secs(trow[i])
            assert got == row[i], (table, row[0], i, got, row[i])
    out['raw'][table] = raw
    out['parsed'][table] = parsed
out['schema'] = [list(r) for r in conn.execute(
    "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")]
out['journal_mode'] = conn.execute('PRAGMA journal_mode').fetchone()[0]
out['integrity'] = conn.execute('PRAGMA integrity_check').fetchone()[0]
print(json.dumps(out))
"#;

/// The rows of `table` as Python parsed them.
fn rows<'a>(py: &'a Value, table: &str) -> &'a [Value] {
    match py["parsed"][table].as_array() {
        Some(rows) => rows,
        None => panic!("no {table} in {py}"),
    }
}

fn row<'a>(py: &'a Value, table: &str, key: &str) -> &'a Value {
    match rows(py, table).iter().find(|r| r[0] == key) {
        Some(r) => r,
        None => panic!("no {table} row {key}"),
    }
}

#[test]
fn fixture_reads_as_the_original_wrote_it() {
    let (_dir, path) = fixture_copy();
    let store = open(&path);

    let domains = store.domains().unwrap();
    assert_eq!(domains.len(), 2);
    let net = &domains[0];
    assert_eq!(net.xmppdomain, "chat.example.net");
    assert_eq!(net.authsecret.as_deref(), Some("net-secret"));
    assert_eq!(net.authurl.as_deref(), Some("http://127.0.0.1:9/other"));
    assert_eq!(net.authdomain.as_deref(), Some("example.net"));
    assert_eq!(net.regcontact, None);
    assert_eq!(
        (net.regfirst, net.reglatest),
        (Some(DOMAIN_TIME), Some(DOMAIN_TIME))
    );
    let com = store.domain("jabber.example.com").unwrap().unwrap();
    assert_eq!(com, domains[1]);
    assert_eq!(com.authsecret.as_deref(), Some("com-secret"));
    assert_eq!(
        com.authurl.as_deref(),
        Some("https://cloud.example.com/index.php/apps/ojsxc/ajax/externalApi.php")
    );
    assert_eq!(com.authdomain.as_deref(), Some("example.com"));
    assert_eq!(com.regcontact.as_deref(), Some("admin@example.com"));
    assert_eq!(store.domain("example.org").unwrap(), None);

    let cache = store.cache_list().unwrap();
    let jids: Vec<&str> = cache.iter().map(|e| e.jid.as_str()).collect();
    assert_eq!(
        jids,
        [
            "alice@example.org",
            "bob@example.org",
            "colon@example.org",
            "zoë@example.org"
        ]
    );
    assert_eq!(store.cache_count().unwrap(), 4);
    for entry in &cache {
        assert!(entry.pwhash.starts_with("$2b$06$"), "{}", entry.jid);
        assert_eq!(entry.pwhash.len(), 60, "{}", entry.jid);
        for t in [entry.firstauth, entry.remoteauth, entry.anyauth] {
            assert_eq!(t, CACHE_TIME, "{}", entry.jid);
        }
    }
    assert_eq!(
        store.cache_get("zoë@example.org").unwrap().as_ref(),
        cache.last()
    );

    let alice = store.roster_info("alice@example.org").unwrap().unwrap();
    assert_eq!(alice.fullname.as_deref(), Some("Alice"));
    assert_eq!(alice.grouplist.as_deref(), Some(""));
    assert_eq!(
        alice.responsehash.as_deref(),
        Some("e70165907bf971dae7f66d516bcc019ff0a0fbbe648282b8779840cbfa0e9af4")
    );
    assert_eq!(alice.last_update, Some(CACHE_TIME));
    for (jid, name) in [
        ("bob@example.org", "Bob"),
        ("carol@example.org", "Carol"),
        ("dave@example.org", "Dave"),
    ] {
        let info = store.roster_info(jid).unwrap().unwrap();
        assert_eq!(info.fullname.as_deref(), Some(name));
        assert_eq!((info.grouplist, info.responsehash), (None, None), "{jid}");
        assert_eq!(info.last_update, Some(CACHE_TIME), "{jid}");
    }
    assert_eq!(
        store.roster_group("staff@example.org").unwrap().unwrap(),
        [
            "alice@example.org",
            "bob@example.org",
            "carol@example.org",
            "dave@example.org"
        ]
    );
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

#[test]
fn python_reads_what_we_write_into_its_file() {
    let (_dir, path) = fixture_copy();
    let schema_before = schema_text(&path);
    {
        let store = open(&path);
        store
            .cache_store("new@example.org", "$2b$06$new", NOW)
            .unwrap();
        store
            .cache_store("alice@example.org", "$2b$06$changed", NOW)
            .unwrap();
        assert!(store.cache_touch("bob@example.org", NOW + 1).unwrap());
        assert!(store
            .put_domain(
                "new.example.org",
                "new-secret",
                "https://new/",
                "new.org",
                None,
                NOW
            )
            .unwrap());
        assert!(store
            .update_domain(
                "jabber.example.com",
                DomainUpdate {
                    url: Some("https://moved/".into()),
                    ..DomainUpdate::default()
                },
                NOW
            )
            .unwrap());
        store
            .set_roster_hash("alice@example.org", "abc", NOW)
            .unwrap();
        store
            .set_roster_group(
                "staff@example.org",
                &["bob@example.org".into(), "alice@example.org".into()],
            )
            .unwrap();
        let gone = store.delete_user("carol@example.org").unwrap();
        assert_eq!(gone.rosterinfo, 1);
    }
    assert_eq!(
        schema_text(&path),
        schema_before,
        "the original's schema text changed"
    );
    assert_eq!(pragma(&path, "journal_mode"), "delete");
    assert_eq!(pragma(&path, "user_version"), SCHEMA_VERSION.to_string());

    let Some(py) = python(PY_READ, &path) else {
        return;
    };
    assert_eq!(py["journal_mode"], "delete");
    assert_eq!(py["integrity"], "ok");
    let mut schema: Vec<(String, String)> = serde_json::from_value(py["schema"].clone()).unwrap();
    schema.retain(|(name, _)| ORIGINAL_TABLES.contains(&name.as_str()));
    assert_eq!(
        schema, schema_before,
        "Python sees the original's tables as they were"
    );

    let new = row(&py, "authcache", "new@example.org");
    assert_eq!(new[1], "$2b$06$new");
    assert_eq!(new[2], NOW);
    assert_eq!(new[3], NOW);
    assert_eq!(new[4], NOW);
    let alice = row(&py, "authcache", "alice@example.org");
    assert_eq!(alice[1], "$2b$06$changed");
    assert_eq!(
        (&alice[2], &alice[3], &alice[4]),
        (&CACHE_TIME.into(), &NOW.into(), &NOW.into())
    );
    // Untouched columns keep their exact text, microseconds included.
    let raw_alice = py["raw"]["authcache"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0] == "alice@example.org")
        .unwrap();
    assert_eq!(raw_alice[2], "2026-11-28 15:24:02.016053");
    assert_eq!(raw_alice[3], format_timestamp(NOW));
    let bob = row(&py, "authcache", "bob@example.org");
    assert_eq!((&bob[3], &bob[4]), (&CACHE_TIME.into(), &(NOW + 1).into()));

    let domain = row(&py, "domains", "new.example.org");
    assert_eq!(domain[1], "new-secret");
    assert_eq!(domain[4], Value::Null);
    assert_eq!((&domain[5], &domain[6]), (&NOW.into(), &NOW.into()));
    let com = row(&py, "domains", "jabber.example.com");
    assert_eq!(com[1], "com-secret");
    assert_eq!(com[2], "https://moved/");
    assert_eq!(com[4], "admin@example.com");
    assert_eq!((&com[5], &com[6]), (&DOMAIN_TIME.into(), &NOW.into()));

    let info = row(&py, "rosterinfo", "alice@example.org");
    assert_eq!(
        (&info[1], &info[2], &info[3]),
        (&"Alice".into(), &"".into(), &"abc".into())
    );
    assert_eq!(info[4], NOW);
    assert!(rows(&py, "rosterinfo")
        .iter()
        .all(|r| r[0] != "carol@example.org"));
    assert_eq!(
        row(&py, "rostergroups", "staff@example.org")[1],
        "alice@example.org\tbob@example.org"
    );
}

#[test]
fn a_new_file_has_exactly_the_original_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.sqlite3");
    let reference = schema_text(&fixture());
    {
        let store = open(&path);
        store.cache_store("a@example.org", "$2b$06$x", NOW).unwrap();
    }
    // Opening again is a no-op on a complete file.
    drop(open(&path));
    let all = all_tables(&path);
    let mut names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected: Vec<&str> = ORIGINAL_TABLES.iter().chain(&OUR_TABLES).copied().collect();
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        names, expected,
        "the original's tables and ours, nothing else"
    );
    assert_eq!(pragma(&path, "journal_mode"), "delete");
    assert_eq!(pragma(&path, "user_version"), SCHEMA_VERSION.to_string());
    // Same columns, types and defaults as the original's tables.
    let columns = |p: &Path| -> Vec<(String, String, String, Option<String>, i64)> {
        let conn = read_only(p);
        let mut out = Vec::new();
        for (table, _) in &reference {
            let mut stmt = conn
                .prepare("SELECT name, type, dflt_value, pk FROM pragma_table_info(?1)")
                .unwrap();
            let rows = stmt
                .query_map([table], |r| {
                    Ok((table.clone(), r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .unwrap();
            out.extend(rows.map(Result::unwrap));
        }
        out
    };
    assert_eq!(columns(&path), columns(&fixture()));

    // The original writes into our file the way it always did (Python's
    // datetime adapter, with microseconds), and we read that back.
    let py_write = r#"
import datetime, json, sqlite3, sys, warnings
warnings.simplefilter('ignore')
conn = sqlite3.connect(sys.argv[1])
t = datetime.datetime(2030, 1, 2, 3, 4, 5, 678901)
conn.execute('INSERT INTO authcache (jid, pwhash, firstauth, remoteauth, anyauth) VALUES (?, ?, ?, ?, ?)',
             ('py@example.org', '$2b$06$py', t, t, t))
conn.execute("INSERT INTO domains (xmppdomain, authsecret, authurl, authdomain) VALUES ('py.example', 's', 'u', 'a')")
conn.commit()
print(json.dumps([r[0] for r in conn.execute('SELECT jid FROM authcache ORDER BY jid')]))
"#;
    let Some(jids) = python(py_write, &path) else {
        return;
    };
    assert_eq!(jids, serde_json::json!(["a@example.org", "py@example.org"]));
    let store = open(&path);
    let entry = store.cache_get("py@example.org").unwrap().unwrap();
    let t = 1_893_553_445; // 2030-01-02 03:04:05 UTC
    assert_eq!(
        (entry.firstauth, entry.remoteauth, entry.anyauth),
        (t, t, t)
    );
    // CURRENT_TIMESTAMP defaults are read too.
    let domain = store.domain("py.example").unwrap().unwrap();
    assert!(domain.regfirst.unwrap() > 1_700_000_000);
    assert_eq!(domain.regfirst, domain.reglatest);

    let Some(py) = python(PY_READ, &path) else {
        return;
    };
    assert_eq!(row(&py, "authcache", "a@example.org")[2], NOW);
}

#[test]
fn columns_added_by_users_survive_our_updates() {
    let (_dir, path) = fixture_copy();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE authcache ADD COLUMN note TEXT DEFAULT 'fresh';
             ALTER TABLE domains ADD COLUMN note TEXT DEFAULT 'fresh';
             ALTER TABLE rosterinfo ADD COLUMN note TEXT DEFAULT 'fresh';
             ALTER TABLE rostergroups ADD COLUMN note TEXT DEFAULT 'fresh';
             UPDATE authcache SET note = 'kept ' || jid;
             UPDATE domains SET note = 'kept ' || xmppdomain;
             UPDATE rosterinfo SET note = 'kept ' || jid;
             UPDATE rostergroups SET note = 'kept ' || groupname;",
        )
        .unwrap();
    }
    {
        let store = open(&path);
        store
            .cache_store("alice@example.org", "$2b$06$changed", NOW)
            .unwrap();
        store
            .cache_store("new@example.org", "$2b$06$new", NOW)
            .unwrap();
        store.cache_touch("bob@example.org", NOW).unwrap();
        store
            .put_domain(
                "chat.example.net",
                "s",
                "https://u/",
                "example.net",
                Some("me"),
                NOW,
            )
            .unwrap();
        store
            .update_domain(
                "jabber.example.com",
                DomainUpdate {
                    secret: Some("rotated".into()),
                    ..DomainUpdate::default()
                },
                NOW,
            )
            .unwrap();
        store
            .set_roster_hash("alice@example.org", "h", NOW)
            .unwrap();
        store.set_fullname("bob@example.org", "Robert").unwrap();
        store
            .set_grouplist("dave@example.org", &["staff@example.org".into()])
            .unwrap();
        store
            .set_roster_group("staff@example.org", &["alice@example.org".into()])
            .unwrap();
        store.delete_user("carol@example.org").unwrap();
    }
    let conn = Connection::open(&path).unwrap();
    let note =
        |sql: &str, key: &str| -> String { conn.query_row(sql, [key], |r| r.get(0)).unwrap() };
    for jid in ["alice@example.org", "bob@example.org"] {
        assert_eq!(
            note("SELECT note FROM authcache WHERE jid = ?1", jid),
            format!("kept {jid}")
        );
    }
    assert_eq!(
        note(
            "SELECT note FROM authcache WHERE jid = ?1",
            "new@example.org"
        ),
        "fresh"
    );
    for d in ["chat.example.net", "jabber.example.com"] {
        assert_eq!(
            note("SELECT note FROM domains WHERE xmppdomain = ?1", d),
            format!("kept {d}")
        );
    }
    for jid in ["alice@example.org", "bob@example.org", "dave@example.org"] {
        assert_eq!(
            note("SELECT note FROM rosterinfo WHERE jid = ?1", jid),
            format!("kept {jid}")
        );
    }
    assert_eq!(
        note(
            "SELECT note FROM rostergroups WHERE groupname = ?1",
            "staff@example.org"
        ),
        "kept staff@example.org"
    );
    // And the updates themselves happened.
    let store = open(&path);
    assert_eq!(
        store
            .cache_get("alice@example.org")
            .unwrap()
            .unwrap()
            .pwhash,
        "$2b$06$changed"
    );
    assert_eq!(
        store
            .domain("jabber.example.com")
            .unwrap()
            .unwrap()
            .authsecret
            .as_deref(),
        Some("rotated")
    );
    assert_eq!(
        store
            .roster_info("bob@example.org")
            .unwrap()
            .unwrap()
            .fullname
            .as_deref(),
        Some("Robert")
    );
}

/// The original's own statements for a login (`auth_with_cache`), a
/// back-end success (`auth_update_cache`) and `xcdeluser`, run on a file
/// where we keep several credentials per JID.
const PY_ORIGINAL: &str = r#"
import datetime, json, sqlite3, sys, warnings
warnings.simplefilter('ignore')
conn = sqlite3.connect(sys.argv[1], detect_types=sqlite3.PARSE_DECLTYPES)
out = {}
for jid in ('alice@example.org', 'bob@example.org'):
    rows = list(conn.execute('SELECT pwhash, remoteauth, anyauth FROM authcache WHERE jid = ?', (jid,)))
    out[jid] = [[r[0], r[1].isoformat(' '), r[2].isoformat(' ')] for r in rows]
now = datetime.datetime.strptime('NOW_TEXT', '%Y-%m-%d %H:%M:%S')
conn.execute('UPDATE authcache SET anyauth = ? WHERE jid = ?', (now, 'alice@example.org'))
conn.execute('INSERT OR IGNORE INTO authcache (jid, firstauth) VALUES (?, ?)', ('bob@example.org', now))
conn.execute('UPDATE authcache SET pwhash = ?, remoteauth = ?, anyauth = ? WHERE jid = ?',
             ('$2b$06$python', now, now, 'bob@example.org'))
conn.execute('DELETE FROM authcache WHERE jid = ?', ('colon@example.org',))
conn.commit()
print(json.dumps(out))
"#;

#[test]
fn the_original_reads_and_writes_authcache_beside_several_credentials() {
    let (_dir, path) = fixture_copy();
    let hash = |pw: &str| bcrypt::hash(pw, 4).unwrap();
    let (alice_phone, alice_laptop) = (hash("alice-phone"), hash("alice-laptop"));
    {
        let store = open(&path);
        // alice: the fixture's password, then two app passwords.
        store
            .credential_store("alice@example.org", &alice_phone, None, NOW, 8)
            .unwrap();
        store
            .credential_store("alice@example.org", &alice_laptop, None, NOW + 1, 8)
            .unwrap();
        store
            .credential_store("bob@example.org", &hash("bob-phone"), None, NOW, 8)
            .unwrap();
        store
            .credential_store("colon@example.org", &hash("colon-phone"), None, NOW, 8)
            .unwrap();
        assert_eq!(store.credentials("alice@example.org").unwrap().len(), 3);
    }
    assert_eq!(
        all_tables(&path).len(),
        ORIGINAL_TABLES.len() + OUR_TABLES.len()
    );

    let Some(py) = python(PY_READ, &path) else {
        return;
    };
    assert_eq!(py["integrity"], "ok");
    // The original sees one row per JID: the most recently verified
    // credential, with its own times and the JID's first login kept.
    let alice = row(&py, "authcache", "alice@example.org");
    assert_eq!(alice[1], alice_laptop.as_str());
    assert_eq!(
        (&alice[2], &alice[3], &alice[4]),
        (&CACHE_TIME.into(), &(NOW + 1).into(), &(NOW + 1).into())
    );
    assert_eq!(rows(&py, "authcache").len(), 4);

    let script = PY_ORIGINAL.replace("NOW_TEXT", &format_timestamp(NOW + 4));
    let Some(seen) = python(&script, &path) else {
        return;
    };
    let laptop = format_timestamp(NOW + 1);
    assert_eq!(
        seen["alice@example.org"],
        serde_json::json!([[alice_laptop, laptop, laptop]]),
        "the original's own query finds the laptop's credential"
    );
    assert!(bcrypt::verify("alice-laptop", &alice_laptop).unwrap());

    let store = open(&path);
    // The original's login touched authcache only; the other devices stay.
    let alice: Vec<(String, i64)> = store
        .credentials("alice@example.org")
        .unwrap()
        .into_iter()
        .map(|e| (e.pwhash, e.anyauth))
        .collect();
    assert_eq!(alice.len(), 3);
    assert_eq!(alice[0], (alice_laptop.clone(), NOW + 4));
    assert!(alice.iter().any(|(h, _)| h == &alice_phone));
    // The original verified another password for bob: it is in authcache,
    // and bob's other credential still counts.
    let bob = store.credentials("bob@example.org").unwrap();
    assert_eq!(bob.len(), 2);
    assert_eq!(bob[0].pwhash, "$2b$06$python");
    assert_eq!(bob[0].firstauth, CACHE_TIME);
    // xcdeluser deleted colon's row: none of its credentials counts.
    assert!(store.credentials("colon@example.org").unwrap().is_empty());
    assert_eq!(store.cache_get("colon@example.org").unwrap(), None);
}
