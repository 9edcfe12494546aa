//! `.lumierdignore`: paths under the manifests root that are not manifests.
//!
//! The file sits at the root; gitignore-style simple patterns, one per line:
//!
//! | line                 | meaning                                                          |
//! |----------------------|------------------------------------------------------------------|
//! | empty, `# comment`   | nothing                                                          |
//! | `name.json`          | no `/` inside: that name at any depth (a file or a folder)       |
//! | `/config.json`, `a/b`| a `/` inside (or leading): the path relative to the root         |
//! | `fixtures/`          | trailing `/`: folders only                                       |
//! | `*`, `?`             | any run of characters / one character, never `/`                 |
//! | `**`                 | any run of characters including `/` (`**/x`, `a/**`, `a/**/b`)   |
//! | `!pattern`           | re-include what an earlier line ignored (the last match decides) |
//!
//! A folder that is ignored is not entered, so nothing under it can be re-included (as in
//! git). Character classes (`[abc]`) and escapes are not supported: `[` is a literal character.
//! Matching is linear in the pattern times the path (no backtracking blow-up).

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// The glob, `/`-separated, without leading `/`, trailing `/` or `!`.
    glob: Vec<char>,
    /// Matches the path relative to the root (else the last component, at any depth).
    anchored: bool,
    dir_only: bool,
    negate: bool,
}

/// The rules of a `.lumierdignore` file (none when there is no file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    rules: Vec<Rule>,
}

impl Ignore {
    /// Parses the text of a `.lumierdignore` file. Every line is a valid pattern.
    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, line) = match line.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let (dir_only, line) = match line.strip_suffix('/') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let anchored = line.contains('/');
            let line = line.trim_start_matches('/');
            if line.is_empty() {
                continue;
            }
            rules.push(Rule {
                glob: line.chars().collect(),
                anchored,
                dir_only,
                negate,
            });
        }
        Ignore { rules }
    }

    /// Whether `rel` (relative to the root, `/`-separated) is ignored; `is_dir` says whether
    /// it is a folder. The last rule that matches decides.
    pub fn is_ignored(&self, rel: &str, is_dir: bool) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let mut ignored = false;
        for rule in &self.rules {
            if rule.dir_only && !is_dir {
                continue;
            }
            let subject = if rule.anchored { rel } else { name };
            if glob_match(&rule.glob, subject) {
                ignored = !rule.negate;
            }
        }
        ignored
    }
}

/// Whether `text` matches `glob` (`*`, `?` within a component, `**` across them); dynamic
/// programming over (pattern position, text position), so O(pattern × text).
fn glob_match(glob: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    // reach[j]: the pattern so far can end having consumed text[..j].
    let mut reach = vec![false; text.len() + 1];
    reach[0] = true;
    let mut i = 0;
    while i < glob.len() {
        let mut next = vec![false; text.len() + 1];
        match glob[i] {
            '*' if glob.get(i + 1) == Some(&'*') => {
                // `**`, and a `/` right after it may match nothing (`a/**/b` matches `a/b`).
                let mut run = false;
                for j in 0..=text.len() {
                    run |= reach[j];
                    next[j] = run;
                }
                i += 2;
                if glob.get(i) == Some(&'/') {
                    let mut with_slash = vec![false; text.len() + 1];
                    for j in 0..text.len() {
                        if next[j] && text[j] == '/' {
                            with_slash[j + 1] = true;
                        }
                    }
                    for j in 0..=text.len() {
                        next[j] = with_slash[j] || (next[j] && (j == 0 || text[j - 1] == '/'));
                    }
                    i += 1;
                }
                reach = next;
                continue;
            }
            '*' => {
                let mut run = false;
                for j in 0..=text.len() {
                    if j > 0 && text[j - 1] == '/' {
                        run = false;
                    }
                    run |= reach[j];
                    next[j] = run;
                }
            }
            '?' => {
                for j in 0..text.len() {
                    if reach[j] && text[j] != '/' {
                        next[j + 1] = true;
                    }
                }
            }
            c => {
                for j in 0..text.len() {
                    if reach[j] && text[j] == c {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reach = next;
        i += 1;
    }
    reach[text.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_table() {
        let ignore = Ignore::parse(
            "# data files\n\npackage.json\n/tsconfig.json\nfixtures/\nsrc/**/*.json\n*.tmp.json\n!keep.tmp.json\ndocs/?.json\n",
        );
        let table: &[(&str, bool, bool)] = &[
            ("package.json", false, true),
            ("web/package.json", false, true),
            ("tsconfig.json", false, true),
            ("web/tsconfig.json", false, false),
            ("fixtures", true, true),
            ("web/fixtures", true, true),
            ("fixtures", false, false),
            ("src/data.json", false, true),
            ("src/a/b/data.json", false, true),
            ("srcdata.json", false, false),
            ("x.tmp.json", false, true),
            ("keep.tmp.json", false, false),
            ("docs/a.json", false, true),
            ("docs/ab.json", false, false),
            ("stage.json", false, false),
        ];
        for (path, is_dir, want) in table {
            assert_eq!(ignore.is_ignored(path, *is_dir), *want, "{path}");
        }
    }

    #[test]
    fn globs() {
        let m = |g: &str, t: &str| glob_match(&g.chars().collect::<Vec<_>>(), t);
        assert!(m("*", "abc"));
        assert!(!m("*", "a/b"));
        assert!(m("**", "a/b"));
        assert!(m("a/**", "a/b/c"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "ab"));
        assert!(m("**/x.json", "x.json"));
        assert!(m("**/x.json", "d/x.json"));
        assert!(m("[x].json", "[x].json"));
        // No blow-up on many stars.
        let long = "a".repeat(200);
        assert!(!m(&"*a".repeat(50), &(long + "b")));
    }
}
