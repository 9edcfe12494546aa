use super::*;
use crate::cloudflare::RequestStats;
use std::collections::HashSet;

#[test]
fn drift_fields_are_bounded() {
    assert_eq!(drift_field("title: a → b"), "title");
    assert_eq!(drift_field("bindings.CACHE: kv:a → kv:b"), "bindings");
    assert_eq!(drift_field("content: aaaa → bbbb"), "content");
    assert_eq!(
        drift_field("compatibility_flags: [] → [x]"),
        "compatibility_flags"
    );
    assert_eq!(drift_field("script s: deleted out of band"), "deleted");
    assert_eq!(
        drift_field("namespace 12ab: deleted out of band"),
        "deleted"
    );
    assert_eq!(drift_field("something new: x"), "other");
}

#[test]
fn every_family_has_help_and_type_and_samples_parse() {
    let m = Metrics::new();
    m.reconciled("kv", "create", Duration::from_millis(30));
    m.reconciled("worker", "made-up", Duration::from_secs(500));
    m.drift(
        "worker",
        &["bindings.A: x → y".into(), "content: a → b".into()],
    );
    m.pass(true, Duration::from_millis(200));
    m.manifest_load(true);
    m.manifest_load(false);
    m.reload();
    m.set_ready(true);
    let mut stats = RequestStats::default();
    stats.by_status.insert(("list_namespaces".into(), 200), 3);
    stats.by_status.insert(("put \"odd\"\\op".into(), 0), 1);
    let text = m.render(Some(&stats), Some(Duration::from_secs(2)));

    let mut helped = HashSet::new();
    let mut typed = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_owned());
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
                .unwrap_or(name);
            assert!(typed.contains(family), "{line}: no TYPE before it");
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                value.parse::<f64>().is_ok() || value == "+Inf",
                "{line}: bad value"
            );
        }
    }
    assert_eq!(helped, typed);
    assert!(text.contains("lumierd_reconciles_total{kind=\"kv\",result=\"create\"} 1\n"));
    assert!(text.contains("lumierd_reconciles_total{kind=\"worker\",result=\"other\"} 1\n"));
    assert!(text.contains("lumierd_reconcile_duration_seconds_bucket{kind=\"kv\",le=\"0.05\"} 1\n"));
    assert!(
        text.contains("lumierd_reconcile_duration_seconds_bucket{kind=\"worker\",le=\"+Inf\"} 1\n")
    );
    assert!(text.contains("lumierd_drift_events_total{kind=\"worker\",field=\"bindings\"} 1\n"));
    assert!(text.contains("lumierd_manifest_load_failures_total 1\n"));
    assert!(text.contains("lumierd_reloads_total 1\n"));
    assert!(text.contains("lumierd_ready 1\n"));
    assert!(text.contains(
        "lumierd_cloudflare_requests_total{operation=\"list_namespaces\",code=\"200\"} 3\n"
    ));
    assert!(text.contains("operation=\"put \\\"odd\\\"\\\\op\",code=\"0\"} 1\n"));
    assert!(text.contains("lumierd_cloudflare_ratelimit_blocked_seconds 2\n"));
}

#[test]
fn a_failed_store_read_keeps_the_last_resource_counts() {
    use crate::store::{Record, State};
    let m = Metrics::new();
    let ready = Record {
        state: State::Ready,
        ..Record::default()
    };
    m.set_resources([Ok::<_, ()>(ready.clone()), Ok(ready.clone())])
        .unwrap();
    assert!(m
        .render(None, None)
        .contains("lumierd_resources{state=\"Ready\"} 2\n"));
    assert_eq!(
        m.set_resources([Ok(ready), Err("etcd down")]),
        Err("etcd down")
    );
    assert!(m
        .render(None, None)
        .contains("lumierd_resources{state=\"Ready\"} 2\n"));
}
