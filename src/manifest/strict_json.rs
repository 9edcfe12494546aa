//! `.json` manifests are strict JSON (RFC 8259), checked before the YAML reader (which would
//! accept trailing commas, comments and single quotes) sees them; an error is reported at
//! serde_json's line and the character (not byte) column, with a hint for a trailing comma.

use super::{Diagnostic, Pos};

/// Checks that a `.json` file is strict JSON (RFC 8259: no trailing commas, comments or
/// single quotes, which the YAML reader would accept), at serde_json's line and column.
pub(super) fn strict_json(file: &str, text: &str) -> Result<(), Diagnostic> {
    let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) else {
        return Ok(());
    };
    let full = e.to_string();
    // serde_json appends " at line L column C", which the diagnostic already says.
    let message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    };
    // serde_json counts columns in bytes; diagnostics count characters.
    let line = e.line().max(1);
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let mut byte_col = (e.column().max(1) - 1).min(line_text.len());
    while !line_text.is_char_boundary(byte_col) {
        byte_col -= 1;
    }
    let before = &line_text[..byte_col];
    let pos = Pos {
        line,
        col: before.chars().count() + 1,
    };
    // The usual culprit from YAML habits: a comma before `}` or `]`.
    let after_comma = before.trim_end().ends_with(',')
        || (before.trim().is_empty()
            && text
                .lines()
                .take(pos.line - 1)
                .filter(|l| !l.trim().is_empty())
                .last()
                .is_some_and(|l| l.trim_end().ends_with(',')));
    let hint = if after_comma {
        " (a trailing comma? JSON allows none: remove it)"
    } else {
        ""
    };
    Err(Diagnostic {
        file: file.to_owned(),
        pos,
        message: format!("not valid JSON: {message}{hint}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_json_errors_are_at_character_columns_with_a_comma_hint() {
        let d = strict_json("m.json", "{\"é\": 1,}").unwrap_err();
        assert_eq!(d.pos, Pos { line: 1, col: 9 });
        assert!(d.message.contains("trailing comma"), "{}", d.message);
        let d = strict_json("m.json", "{\n  \"a\": [1, 2,\n  ]\n}").unwrap_err();
        assert_eq!(d.pos.line, 3, "{d}");
        assert!(d.message.contains("trailing comma"), "{}", d.message);
        let d = strict_json("m.json", "").unwrap_err();
        assert_eq!(d.pos, Pos { line: 1, col: 1 });
        assert!(!d.message.contains("trailing comma"), "{}", d.message);
        assert!(strict_json("m.json", "{\"a\": [1, 2]}").is_ok());
    }
}
