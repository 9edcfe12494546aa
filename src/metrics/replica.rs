//! The replica's families (HA, #14): who leads as this replica sees it, since when, how often
//! that changed, and whether the status it serves is stale. Rendered after the others, from
//! the [`Replica`]'s report at the time of the scrape.
//!
//! The label naming this replica is `instance_id`, not `instance`: Prometheus sets `instance`
//! on every scraped sample (the target's address) and would rename ours to `exported_instance`.

use super::exposition::{bool_f, family, sample};
use crate::replica::Replica;

/// Appends the replica's families to `out`.
pub fn render_replica(out: &mut String, replica: &Replica) {
    let l = replica.leadership();
    family(
        out,
        "lumierd_leader",
        "gauge",
        "1 while this replica (instance_id) leads and may write to the provider, else 0.",
    );
    sample(
        out,
        "lumierd_leader",
        &[("instance_id", &l.instance)],
        bool_f(l.leading),
    );
    family(
        out,
        "lumierd_leader_info",
        "gauge",
        "Always 1, labelled with the leader this replica sees (no sample while none is known).",
    );
    if let Some(leader) = &l.leader {
        sample(out, "lumierd_leader_info", &[("leader", leader)], 1.0);
    }
    family(
        out,
        "lumierd_leader_since_timestamp_seconds",
        "gauge",
        "When the current leader took the lease, since the Unix epoch (0: no leader known).",
    );
    let since = l
        .since
        .map(|t| super::exposition::unix(t.system_time()))
        .unwrap_or(0.0);
    sample(out, "lumierd_leader_since_timestamp_seconds", &[], since);
    family(
        out,
        "lumierd_leader_changes_total",
        "counter",
        "Changes of who leads as this replica saw them (it took the lease, lost it, or follows another).",
    );
    sample(out, "lumierd_leader_changes_total", &[], l.changes as f64);
    family(
        out,
        "lumierd_status_stale",
        "gauge",
        "1 while the store cannot be read and status serves this replica's last view, else 0.",
    );
    let stale = replica.stale().is_some();
    sample(out, "lumierd_status_stale", &[], bool_f(stale));
}
