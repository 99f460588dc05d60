//! Escaping of data-derived text for the sinks that would otherwise interpret it: the
//! terminal (ANSI escape sequences, control characters, bidirectional overrides), Markdown
//! table cells and CSV fields. JSON is escaped by its serializer and HTML by [`crate::html`].
//!
//! Ids, labels, trigger strings, column names and file names come from untrusted input; a
//! `\x1b[2J` in a row id must not clear the screen of whoever reads an error message, and a
//! `|` or newline in a label must not break a results table.

use std::borrow::Cow;
use std::fmt::Write;

/// True for characters that change how a terminal shows what follows rather than showing
/// themselves: C0 and C1 controls, DEL, and the Unicode bidirectional formatting characters
/// (which can make text display in another order than it reads).
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn escape_where(s: &str, hazard: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&hazard) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hazard(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text for the terminal, one line: every control character (newlines and tabs included) and
/// bidirectional override is shown as an escape (`\x1b`, `\n`, `\u{202e}`), so the text can
/// neither drive the terminal nor forge further lines of output.
pub fn terminal_line(s: &str) -> Cow<'_, str> {
    escape_where(s, is_hazard)
}

/// Text for the terminal that may span lines: as [`terminal_line`], but newlines and tabs
/// are kept. For output whose lines are made by poisongate (summaries, tables), after
/// data-derived values in it were escaped with [`terminal_line`] or are known to be safe.
pub fn terminal(s: &str) -> Cow<'_, str> {
    escape_where(s, |c| c != '\n' && c != '\t' && is_hazard(c))
}

/// A Markdown table cell: on one line, with `|` escaped so it cannot end the cell, `<`, `>`
/// and `&` written as entities so no HTML is rendered, a leading backslash kept literal, and
/// control characters escaped as for [`terminal_line`].
pub fn markdown_cell(s: &str) -> Cow<'_, str> {
    if !s
        .chars()
        .any(|c| matches!(c, '|' | '<' | '>' | '&' | '\\') || is_hazard(c))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\\' => out.push_str("\\\\"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c if is_hazard(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A CSV field (RFC 4180): quoted, with quotes doubled, when it holds a comma, quote, newline
/// or carriage return; other control characters and bidirectional overrides, which no reader
/// of the file wants raw, are escaped as for [`terminal_line`] first.
pub fn csv_field(s: &str) -> Cow<'_, str> {
    let s = escape_where(s, |c| c != '\n' && c != '\r' && is_hazard(c));
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NASTY: &str = "a\u{1b}[31mred\u{1b}[0m\nverdict: PASS\r\u{7}\u{9b}2J\u{202e}b";

    #[test]
    fn terminal_line_escapes_every_control_and_bidi_character() {
        let s = terminal_line(NASTY);
        assert_eq!(
            s,
            "a\\x1b[31mred\\x1b[0m\\nverdict: PASS\\r\\x07\\u{9b}2J\\u{202e}b"
        );
        assert!(!s.chars().any(is_hazard));
        assert!(matches!(terminal_line("plain ünïcode"), Cow::Borrowed(_)));
    }

    #[test]
    fn terminal_keeps_lines_and_tabs_only() {
        let s = terminal("one\ttwo\nthree \u{1b}[2J");
        assert_eq!(s, "one\ttwo\nthree \\x1b[2J");
    }

    #[test]
    fn markdown_cell_cannot_break_the_table_or_render_html() {
        let s = markdown_cell("x | y\n<script>&\\\u{1b}[1m");
        assert_eq!(s, "x \\| y\\n&lt;script&gt;&amp;\\\\\\x1b[1m");
        assert!(!s.contains('\n') && !s.contains('<'));
        // every | left is escaped
        assert!(s.match_indices('|').all(|(i, _)| s[..i].ends_with('\\')));
    }

    #[test]
    fn csv_field_quotes_and_escapes() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\nbye"), "\"say \"\"hi\"\"\nbye\"");
        assert_eq!(csv_field("\u{1b}[31m-1"), "\\x1b[31m-1");
    }
}
