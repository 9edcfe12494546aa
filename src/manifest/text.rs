//! Showing user text in messages: [`escape`] makes it inert on a terminal and in logs.
//!
//! Manifests, file names and worker sources are user input, and messages quote them. A raw
//! newline in a key would print a second, forged `file:line:col:` line; an ANSI escape would
//! reach the terminal; a bidirectional override would reorder what the reader sees. So every
//! message is shown through [`escape`] (the [`Diagnostic`](super::Diagnostic) display does it
//! for the file and the whole message), which rewrites:
//!
//! | character                                        | shown as          |
//! |--------------------------------------------------|-------------------|
//! | newline, carriage return, tab                    | `\n`, `\r`, `\t`  |
//! | other C0 controls, DEL, C1 controls (U+0080–9F)  | `\u{1b}` (hex)    |
//! | bidirectional controls (U+061C, U+200E–F, U+202A–E, U+2066–9) | `\u{202e}` |
//!
//! Everything else, including other non-ASCII text, is shown as written.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal or a log line as is.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with control and bidirectional-control characters escaped (see the module doc).
/// Borrows when there is nothing to escape (the common case).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_table() {
        let table = [
            ("plain text", "plain text"),
            ("été ✓", "été ✓"),
            ("a\nb", "a\\nb"),
            ("x\r\ty", "x\\r\\ty"),
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("nul\0", "nul\\u{0}"),
            ("del\u{7f}", "del\\u{7f}"),
            ("c1\u{9b}", "c1\\u{9b}"),
            ("rtl\u{202e}txt", "rtl\\u{202e}txt"),
            ("iso\u{2066}", "iso\\u{2066}"),
        ];
        for (input, want) in table {
            assert_eq!(escape(input), want, "{input:?}");
        }
        assert!(matches!(escape("ok"), Cow::Borrowed(_)));
    }
}
