//! xcauth-mangen writes xcauth(8) and a page per administration subcommand,
//! each page a valid roff page whose cross-references all exist.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

#[test]
fn writes_the_pages_and_every_reference_exists() {
    // The clap checks (duplicate ids, bad settings) the release build skips.
    xcauth::command().debug_assert();

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xcauth-mangen"))
        .arg(dir.path())
        .arg("2026-01-02")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let pages: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(printed.lines().count(), pages.len(), "{printed}");
    for want in [
        "xcauth.8",
        "xcauth-domain.8",
        "xcauth-domain-add.8",
        "xcauth-cache-flush.8",
    ] {
        assert!(pages.contains(want), "{want} missing from {pages:?}");
    }
    assert!(
        !pages.iter().any(|p| p.contains("help")),
        "no pages for the help subcommands: {pages:?}"
    );

    let main = read(&dir.path().join("xcauth.8"));
    let title = main.lines().find(|l| l.starts_with(".TH ")).unwrap_or("");
    assert!(
        title.starts_with(".TH xcauth 8 2026-01-02 \"xcauth 0"),
        "{title}"
    );
    // Options of the server and the administration commands both appear.
    assert!(main.contains("\\-\\-config\\-file"), "no -c in xcauth.8");
    assert!(main.contains("\\-\\-auth\\-test"), "no -A in xcauth.8");
    // Subcommand pages have the global options of the administration.
    let list = read(&dir.path().join("xcauth-domain-list.8"));
    assert!(list.contains("\\-\\-db"), "no --db in xcauth-domain-list.8");

    // Every NAME(8) a page refers to is a page that was written.
    for page in &pages {
        let text = read(&dir.path().join(page));
        for word in text.split(|c: char| c.is_whitespace() || c == '"') {
            if let Some(name) = word.strip_suffix("(8)") {
                let name = name.replace("\\-", "-");
                assert!(
                    pages.contains(&format!("{name}.8")),
                    "{page} refers to {name}(8), which was not written"
                );
            }
        }
    }
}

#[test]
fn refuses_a_date_that_is_not_a_date() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xcauth-mangen"))
        .arg(dir.path())
        .arg("\n.SH INJECTED")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
