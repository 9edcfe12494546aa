use super::*;
use std::sync::{Arc, Mutex};
use tracing::field::Empty;

/// What the subscriber wrote, shared with the test.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON lines `body` logs through the `json` subscriber at `level`, each parsed.
fn lines(level: &str, body: impl FnOnce()) -> Vec<Value> {
    let buf = Buf::default();
    let out = buf.clone();
    let filter = tracing_subscriber::EnvFilter::new(level);
    tracing::subscriber::with_default(json(filter, move || out.clone()), body);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn span_fields_are_at_the_top_level_of_every_line_inside_it() {
    let got = lines("info", || {
        let key = "shop/dev/api";
        let span = tracing::info_span!("reconcile", resource = %key, kind = "kv", app = "shop", stage = "dev", name = "api");
        let _in = span.enter();
        tracing::info!(action = "create", details = ?["id: 1"], "reconciled");
        tracing::warn!(error = %"boom", "reconcile failed");
    });
    assert_eq!(got.len(), 2, "{got:?}");
    for v in &got {
        assert_eq!(v["resource"], "shop/dev/api", "{v}");
        assert_eq!(v["kind"], "kv", "{v}");
        assert_eq!(
            (&v["app"], &v["stage"], &v["name"]),
            (&"shop".into(), &"dev".into(), &"api".into())
        );
        assert!(v["timestamp"].is_string() && v["target"].is_string(), "{v}");
        for nested in ["span", "spans", "fields"] {
            assert!(v.get(nested).is_none(), "{v}");
        }
    }
    assert_eq!(got[0]["level"], "INFO");
    assert_eq!(got[0]["message"], "reconciled");
    assert_eq!(got[0]["action"], "create");
    assert_eq!(got[0]["details"], r#"["id: 1"]"#);
    assert_eq!(
        (&got[1]["level"], &got[1]["error"]),
        (&"WARN".into(), &"boom".into())
    );
}

#[test]
fn an_events_field_wins_over_a_spans_and_an_inner_span_over_an_outer() {
    let got = lines("info", || {
        let outer = tracing::info_span!("outer", app = "outer", stage = "outer", kept = 1);
        let _o = outer.enter();
        let inner = tracing::info_span!("inner", app = "inner", stage = "inner");
        let _i = inner.enter();
        tracing::info!(stage = "event", "x");
    });
    let v = &got[0];
    assert_eq!(
        (&v["app"], &v["stage"], &v["kept"]),
        (&"inner".into(), &"event".into(), &1.into())
    );
    // Each name once in the line's text, not only in the parsed value.
    let text = v.to_string();
    assert_eq!(text.matches("\"stage\"").count(), 1, "{text}");
}

#[test]
fn values_keep_their_json_type_and_text_is_escaped() {
    // Longer than `Batched`'s buffer, and after the buffer has text: both spill paths.
    let long = "é".repeat(200);
    let got = lines("info", || {
        let span = tracing::info_span!(
            "s",
            long = %long,
            text = "a \"quote\", a \\ and\na line\u{1}",
            n = -7i64,
            big = u64::MAX,
            yes = true,
            half = 0.5,
            nan = f64::NAN,
            late = Empty,
        );
        span.record("late", 3u64);
        let _in = span.enter();
        tracing::info!(r#type = "raw", "m\"sg\n");
    });
    let v = &got[0];
    assert_eq!(v["long"], long.as_str());
    assert_eq!(v["text"], "a \"quote\", a \\ and\na line\u{1}");
    assert_eq!(
        (&v["n"], &v["big"], &v["yes"]),
        (&(-7).into(), &u64::MAX.into(), &true.into())
    );
    assert_eq!(
        (&v["half"], &v["nan"], &v["late"]),
        (&0.5.into(), &Value::Null, &3.into())
    );
    assert_eq!(
        (&v["type"], &v["message"]),
        (&"raw".into(), &"m\"sg\n".into())
    );
}

#[test]
fn a_span_the_filter_disables_is_not_created_and_adds_nothing() {
    let got = lines("warn", || {
        let span = tracing::info_span!("reconcile", app = "shop");
        assert!(span.is_disabled());
        let _in = span.enter();
        tracing::warn!("outside any enabled span");
    });
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].get("app").is_none(), "{}", got[0]);
}
