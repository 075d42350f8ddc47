//! Prometheus scrapes for tests: the text exposition format parsed into `name{labels}` -> value.

use std::collections::BTreeMap;

/// What every sequencer node exports, with or without L1 (the chain, consensus and the ledger, the mempool).
pub const CHAIN_METRICS: &[&str] = &[
    "metis_l2_head",
    "metis_l2_finalized",
    "metis_block_interval_seconds",
    "metis_consensus_height",
    "metis_consensus_round",
    "metis_decision_seconds",
    "metis_rounds_above_zero_total",
    "metis_epoch",
    "metis_producer_id",
    "metis_reelections_total",
    "metis_validators",
    "metis_voting_power",
    "metis_jailed",
    "metis_peers",
    "metis_mempool_txs",
    "metis_mempool_bytes",
    "metis_rpc_requests_total",
    "metis_rpc_seconds",
    "metis_evidence_total",
    "metis_governance_changes_total",
    "metis_missed_proposals_total",
    // The process collector and Malachite's registry.
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "malachitebft_core_consensus_height",
];

/// Every sample of the endpoint at `url`; panics on a line that is not one (a broken exposition fails the test).
pub async fn scrape(url: &str) -> BTreeMap<String, f64> {
    let text = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("scraping {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading {url}: {e}"));
    parse(&text)
}

pub fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {l}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {l}"));
            (series.to_string(), value)
        })
        .collect()
}

/// Whether the scrape has a series of metric `name` (plain, labelled, or a histogram's parts).
pub fn has(m: &BTreeMap<String, f64>, name: &str) -> bool {
    m.keys().any(|k| {
        k == name
            || k.starts_with(&format!("{name}{{"))
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|p| k == &format!("{name}{p}") || k.starts_with(&format!("{name}{p}{{")))
    })
}

/// The sum over every series of metric `name` (a counter with labels, say); 0 when there is none.
pub fn total(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| *v)
        .sum()
}
