//! What a command prints: the [`Report`] of lines and exit status, and the text helpers that keep stored names from breaking the output.

use super::EXIT_MISSING;

/// Shown in `domain list` in place of a secret.
pub(super) const HIDDEN: &str = "***";
/// Shown for an empty (NULL) column.
pub(super) const ABSENT: &str = "-";

/// What a command printed and how it ends.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Report {
    /// Lines for standard output.
    pub(super) out: Vec<String>,
    /// Lines for standard error (prefixed with `xcauth: ` there).
    pub(super) err: Vec<String>,
    /// Exit status.
    pub(super) status: u8,
}

impl Report {
    pub(super) fn line(&mut self, text: impl Into<String>) {
        self.out.push(text.into());
    }

    pub(super) fn note(&mut self, text: impl Into<String>) {
        self.err.push(text.into());
    }

    /// Notes that the named thing was missing and sets [`EXIT_MISSING`].
    pub(super) fn missing(&mut self, text: impl Into<String>) {
        self.note(text);
        self.status = EXIT_MISSING;
    }
}

/// Splits `name@domain` at the first `@`, as the roster sync does.
pub(super) fn split_at_sign(key: &str) -> (&str, &str) {
    key.split_once('@').unwrap_or((key, ""))
}

/// Longest stored name, URL or value shown whole (a DNS name has at most
/// 253 characters); the rest is cut and its length said.
pub(crate) const MAX_SHOWN_CHARS: usize = 256;

/// `text` with control characters and the invisible characters that
/// reorder or hide text (U+202E and friends) escaped, cut after
/// [`MAX_SHOWN_CHARS`]: a stored name cannot break the table, fake a line
/// of output, show itself backwards or flood the terminal.
pub(crate) fn shown(text: &str) -> String {
    shown_within(text, MAX_SHOWN_CHARS)
}

/// [`shown`], cut after `max` characters (a longer text of our own, such
/// as a finding that quotes a name).
pub(crate) fn shown_within(text: &str, max: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len().min(max + 32));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            let _ = write!(out, "… ({} characters)", text.chars().count());
            break;
        }
        if c.is_control() || reorders_or_hides(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Bidirectional controls, zero-width characters, line and paragraph
/// separators and the byte-order mark.
fn reorders_or_hides(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// A URL as [`shown`], with any `user:password@` replaced by `***@`.
pub(crate) fn shown_url(url: &str) -> String {
    shown(&crate::config::masked_url(url))
}

/// A nullable column for display.
pub(super) fn optional(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => shown(v),
        _ => ABSENT.to_owned(),
    }
}

/// `1 thing`, `2 things`.
pub(super) fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `0 groups`, `1 group (a@d)`, `2 groups (a@d, b@d)`.
pub(super) fn listed(items: &[String], one: &str, many: &str) -> String {
    let count = counted(items.len(), one, many);
    if items.is_empty() {
        return count;
    }
    let names: Vec<String> = items.iter().map(|i| shown(i)).collect();
    format!("{count} ({})", names.join(", "))
}

/// Left-aligned columns two spaces apart; the last column is not padded.
/// Widths count characters.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            text.extend(std::iter::repeat_n(' ', pad));
        }
        text.trim_end().to_owned()
    };
    let mut lines = vec![line(&mut header.iter().copied())];
    for row in rows {
        lines.push(line(&mut row.iter().map(String::as_str)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::tests::strings;

    #[test]
    fn text_helpers() {
        assert_eq!(
            table(&["A", "BB"], &[strings(&["xyz", "1"]), strings(&["ë", ""])]),
            strings(&["A    BB", "xyz  1", "ë"])
        );
        assert_eq!(shown("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(listed(&[], "group", "groups"), "0 groups");
        assert_eq!(
            listed(&strings(&["a@d", "b@d"]), "group", "groups"),
            "2 groups (a@d, b@d)"
        );
        assert_eq!(split_at_sign("g@d@e"), ("g", "d@e"));
    }
}
