//! What one answer's rate-limit headers report: the IETF-draft `Ratelimit` and
//! `Ratelimit-Policy` structured-field lists, read to the most constraining item.

use std::time::Duration;

use super::Budget;

/// What one answer's `Ratelimit` / `Ratelimit-Policy` headers say (the most constraining
/// item when several are listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests left in the current window (`r`).
    pub remaining: u32,
    /// Until the window resets (`t`, whole seconds).
    pub reset: Duration,
    /// The policy's quota and window (`q`, `w`) of the same name, when reported.
    pub policy: Option<Budget>,
}

impl Quota {
    /// Parses the IETF-draft headers: `ratelimit` like `"default";r=50;t=30` (possibly a
    /// comma-separated list) and `policy` like `"default";q=1200;w=300`. `None` when
    /// `ratelimit` has no item with both `r` and `t`.
    pub fn parse(ratelimit: &str, policy: Option<&str>) -> Option<Quota> {
        let best = items(ratelimit)
            .filter_map(|(name, params)| Some((name, param(&params, "r")?, param(&params, "t")?)))
            // The fewest left wins; on a tie, the later reset.
            .min_by_key(|(_, r, t)| (*r, std::cmp::Reverse(*t)))?;
        let (name, remaining, reset) = best;
        let policy = policy.and_then(|p| {
            items(p)
                .filter(|(n, _)| *n == name)
                .find_map(|(_, params)| {
                    let requests = u32::try_from(param(&params, "q")?).ok()?;
                    let window = Duration::from_secs(param(&params, "w")?);
                    (requests > 0 && !window.is_zero()).then_some(Budget { requests, window })
                })
        });
        Some(Quota {
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset: Duration::from_secs(reset),
            policy,
        })
    }
}

/// The items of a structured-field list: `(name, parameters)`.
fn items(list: &str) -> impl Iterator<Item = (&str, Vec<(&str, &str)>)> {
    list.split(',').map(|item| {
        let mut members = item.split(';');
        let name = members.next().unwrap_or("").trim().trim_matches('"');
        let params = members
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        (name, params)
    })
}

fn param(params: &[(&str, &str)], key: &str) -> Option<u64> {
    params
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_to_the_most_constraining_item() {
        type Parsed = Option<(u32, u64, Option<(u32, u64)>)>;
        let cases: &[(&str, Option<&str>, Parsed)] = &[
            (r#""default";r=50;t=30"#, None, Some((50, 30, None))),
            (
                r#""default";r=50;t=30"#,
                Some(r#""default";q=1200;w=300"#),
                Some((50, 30, Some((1200, 300)))),
            ),
            (r#"default; r=0; t=7"#, None, Some((0, 7, None))),
            (
                r#""burst";r=3;t=1, "default";r=0;t=12"#,
                Some(r#""burst";q=100;w=60, "default";q=1200;w=300"#),
                Some((0, 12, Some((1200, 300)))),
            ),
            // A policy of another name does not apply.
            (
                r#""default";r=9;t=5"#,
                Some(r#""burst";q=100;w=60"#),
                Some((9, 5, None)),
            ),
            (r#""default";r=0"#, None, None),
            ("garbage", None, None),
            ("", None, None),
        ];
        for (header, policy, want) in cases {
            let got = Quota::parse(header, *policy).map(|q| {
                (
                    q.remaining,
                    q.reset.as_secs(),
                    q.policy.map(|p| (p.requests, p.window.as_secs())),
                )
            });
            assert_eq!(got, *want, "{header} / {policy:?}");
        }
    }
}
