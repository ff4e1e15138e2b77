//! Writes the manual pages of `xcauth`, generated from its command line:
//! xcauth(8) and one page per administration subcommand (xcauth-domain(8),
//! xcauth-domain-add(8), …), the pages xcauth(8) refers to.
//!
//! `xcauth-mangen OUT_DIR [DATE]`: DATE (YYYY-MM-DD) goes into the page
//! footer; the package build passes the date of its changelog entry so
//! that the pages are reproducible. Prints the files it wrote.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_mangen::Man;

/// Section 8: system administration commands and daemons.
const SECTION: &str = "8";
const MANUAL: &str = "System Administration";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (out, date) = match args.as_slice() {
        [out] => (PathBuf::from(out), String::new()),
        [out, date] if is_date(date) => (PathBuf::from(out), date.clone()),
        _ => {
            eprintln!("usage: xcauth-mangen OUT_DIR [YYYY-MM-DD]");
            return ExitCode::from(2);
        }
    };
    let mut command = xcauth::command();
    // Names the subcommands xcauth-domain, xcauth-domain-add, … as the
    // pages' titles and cross-references do.
    command.build();
    // The footer of every page names the program and its version.
    let source = format!(
        "xcauth {}",
        command.get_version().unwrap_or(env!("CARGO_PKG_VERSION"))
    );
    let mut written = Vec::new();
    if let Err(e) = write_pages(&command, &out, &date, &source, &mut written) {
        eprintln!("xcauth-mangen: {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    for path in written {
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}

/// The page of `command`, then those of its subcommands, depth first.
fn write_pages(
    command: &clap::Command,
    out: &Path,
    date: &str,
    source: &str,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let page = Man::new(command.clone())
        .section(SECTION)
        .manual(MANUAL)
        .date(date)
        .source(source)
        .generate_to(out)?;
    written.push(page);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, out, date, source, written)?;
    }
    Ok(())
}

/// YYYY-MM-DD, digits only: nothing else belongs in the footer.
fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}
