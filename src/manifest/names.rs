//! Pure checks of names and identifiers, each returning a message that names the fix.

/// Cloudflare's limit on a Worker script name.
pub const MAX_SCRIPT_NAME: usize = 63;
/// Cloudflare's limit on a KV namespace title.
pub const MAX_KV_TITLE: usize = 512;

/// An app name, stage or resource name: non-empty, no whitespace, control characters or `/`.
/// (Stricter rules for worker script names are checked on the full provider name.)
pub fn check_part(value: &str, what: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty; give it a name"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '/')
    {
        return Err(format!(
            "{what} `{value}` contains {}; use letters, digits, `-` and `_`",
            describe_char(c)
        ));
    }
    Ok(())
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\t' => "a tab".into(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

fn script_char_ok(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

/// A worker's script name `{app}-{stage}-{name}`: lowercase `a-z 0-9 - _`, starting with a
/// letter or digit, at most 63 characters. The message says which part is at fault.
pub fn check_script_name(app: &str, stage: &str, name: &str, full: &str) -> Result<(), String> {
    for (part, what) in [
        (app, "app.name"),
        (stage, "stage"),
        (name, "the resource name"),
    ] {
        if let Some(c) = part.chars().find(|c| !script_char_ok(*c)) {
            return Err(format!(
                "worker script name `{full}` is invalid: {what} `{part}` has {}; Cloudflare script names allow only lowercase a-z, 0-9, `-` and `_`",
                describe_char(c)
            ));
        }
    }
    if !full.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(format!(
            "worker script name `{full}` must start with a letter or digit: change the start of app.name `{app}`"
        ));
    }
    let len = full.chars().count();
    if len > MAX_SCRIPT_NAME {
        return Err(format!(
            "worker script name `{full}` is {len} characters, Cloudflare allows {MAX_SCRIPT_NAME}: shorten app.name `{app}` ({}), stage `{stage}` ({}) or the resource name `{name}` ({})",
            app.chars().count(),
            stage.chars().count(),
            name.chars().count()
        ));
    }
    Ok(())
}

/// A managed namespace's title `{app}-{stage}-{name}`: at most 512 characters.
pub fn check_kv_title(app: &str, stage: &str, name: &str, full: &str) -> Result<(), String> {
    let len = full.chars().count();
    if len > MAX_KV_TITLE {
        return Err(format!(
            "KV namespace title `{}…` is {len} characters, Cloudflare allows {MAX_KV_TITLE}: shorten app.name ({}), stage ({}) or the resource name ({})",
            full.chars().take(40).collect::<String>(),
            app.chars().count(),
            stage.chars().count(),
            name.chars().count()
        ));
    }
    Ok(())
}

/// A KV namespace id: 32 lowercase hex characters.
pub fn check_namespace_id(id: &str) -> Result<(), String> {
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Ok(());
    }
    Err(format!(
        "`existing.id` `{id}` is not a namespace id: it must be 32 lowercase hex characters (see `wrangler kv namespace list`)"
    ))
}

const JS_RESERVED: &[&str] = &[
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
    "let",
    "static",
    "implements",
    "interface",
    "package",
    "private",
    "protected",
    "public",
    "await",
];

/// A binding name: a JavaScript identifier (`env.NAME` must work), not a reserved word.
pub fn check_binding_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
        return Err(format!(
            "binding name `{name}` is not a JavaScript identifier; use letters, digits, `_` and `$`, not starting with a digit (e.g. `MY_CACHE`)"
        ));
    }
    if JS_RESERVED.contains(&name) {
        return Err(format!(
            "binding name `{name}` is a JavaScript reserved word; pick another name"
        ));
    }
    Ok(())
}

/// A compatibility date: `YYYY-MM-DD`, a real calendar date.
pub fn check_date(date: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "compatibility date `{date}` is not a date; write it as YYYY-MM-DD, e.g. `2025-01-01`"
        )
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    // Digits only: `u32::from_str` alone would take `+202` as a year.
    if y.len() != 4
        || m.len() != 2
        || d.len() != 2
        || !date.bytes().all(|b| b.is_ascii_digit() || b == b'-')
    {
        return Err(bad());
    }
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return Err(bad());
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if d == 0 || d > days {
        return Err(bad());
    }
    Ok(())
}

/// A compatibility flag: non-empty, without surrounding whitespace or control characters
/// (Cloudflare matches flags exactly, so `" nodejs_compat"` would silently be another flag).
pub fn check_flag(flag: &str) -> Result<(), String> {
    if flag.is_empty() {
        return Err("a compatibility flag is empty; remove it or name the flag".into());
    }
    if flag.trim() != flag {
        return Err(format!(
            "compatibility flag `{flag}` has whitespace around it; write `{}`",
            flag.trim()
        ));
    }
    if let Some(c) = flag.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "compatibility flag `{flag}` contains {}; flags are single words like `nodejs_compat`",
            describe_char(c)
        ));
    }
    Ok(())
}

/// The allowed word closest to `word` (by edit distance), when it is close enough to be a typo.
pub fn closest<'a>(word: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(word, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4) && *d < a.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_names() {
        let table: &[(&str, &str, &str, Option<&str>)] = &[
            ("shop", "prod", "api", None),
            ("shop", "prod", "api_v2", None),
            ("Shop", "prod", "api", Some("app.name `Shop` has `S`")),
            ("shop", "pr.od", "api", Some("stage `pr.od` has `.`")),
            ("shop", "prod", "API", Some("the resource name `API` has `A`")),
            ("-shop", "prod", "api", Some("must start with a letter or digit")),
            (
                "shop",
                "prod",
                "a-really-long-worker-name-that-will-not-fit-in-sixty-three",
                Some("is 68 characters, Cloudflare allows 63: shorten app.name `shop` (4), stage `prod` (4) or the resource name"),
            ),
        ];
        for (app, stage, name, want) in table {
            let full = format!("{app}-{stage}-{name}");
            let got = check_script_name(app, stage, name, &full);
            match want {
                None => assert_eq!(got, Ok(()), "{full}"),
                Some(w) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(w)),
                    "{full}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn kv_titles() {
        assert!(check_kv_title("a", "b", "c", "a-b-c").is_ok());
        let long = "x".repeat(510);
        let full = format!("a-b-{long}");
        let err = check_kv_title("a", "b", &long, &full).unwrap_err();
        assert!(
            err.contains("is 514 characters, Cloudflare allows 512"),
            "{err}"
        );
        assert!(err.contains("the resource name (510)"), "{err}");
    }

    #[test]
    fn namespace_ids() {
        assert!(check_namespace_id("0123456789abcdef0123456789abcdef").is_ok());
        for bad in [
            "0123",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcdeg",
            "",
        ] {
            let err = check_namespace_id(bad).unwrap_err();
            assert!(err.contains("32 lowercase hex characters"), "{bad}: {err}");
        }
    }

    #[test]
    fn binding_names() {
        for ok in ["CACHE", "_x", "$y", "a1", "MY_KV"] {
            assert!(check_binding_name(ok).is_ok(), "{ok}");
        }
        for (bad, want) in [
            ("1ABC", "not a JavaScript identifier"),
            ("MY-KV", "not a JavaScript identifier"),
            ("", "not a JavaScript identifier"),
            ("class", "reserved word"),
        ] {
            let err = check_binding_name(bad).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn dates() {
        for ok in ["2025-01-01", "2024-02-29", "2000-02-29"] {
            assert!(check_date(ok).is_ok(), "{ok}");
        }
        for bad in [
            "2025-1-1",
            "2025-02-30",
            "1900-02-29",
            "2025-13-01",
            "yesterday",
            "2025-01-01T00:00",
            "+202-01-01",
            "2025-+1-01",
            "2025-01-+1",
            " 202-01-01",
        ] {
            assert!(check_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags() {
        assert!(check_flag("nodejs_compat").is_ok());
        for (bad, want) in [
            ("", "is empty"),
            (" x ", "whitespace around it; write `x`"),
            ("a b", "contains a space"),
            ("x\n", "whitespace around it"),
        ] {
            let err = check_flag(bad).unwrap_err();
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }

    #[test]
    fn parts() {
        assert!(check_part("my-app", "app.name").is_ok());
        assert!(check_part("", "stage")
            .unwrap_err()
            .contains("stage is empty"));
        assert!(check_part("a b", "stage")
            .unwrap_err()
            .contains("contains a space"));
        assert!(check_part("a/b", "stage")
            .unwrap_err()
            .contains("contains `/`"));
    }

    #[test]
    fn typo_suggestions() {
        let keys = ["app", "stage", "resources", "drift"];
        assert_eq!(closest("resource", &keys), Some("resources"));
        assert_eq!(closest("stgae", &keys), Some("stage"));
        assert_eq!(closest("zzzzzz", &keys), None);
        assert_eq!(
            closest("bindigns", &["bindings", "entry"]),
            Some("bindings")
        );
    }
}
