//! The operator's view of the devnet: every node's Prometheus metrics, and the dashboard in headless Chromium
//! (Debian's package, driven over the DevTools protocol), before and after a kill -9 of the producer.

use crate::harness::{alive, kill, serial, wait_for, Devnet};
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use metis_testkit::scrape::{has, scrape, total, CHAIN_METRICS};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// What a node with L1, batches and a threshold key exports beyond [`CHAIN_METRICS`].
const L1_METRICS: &[&str] = &[
    "metis_l1_head",
    "metis_l1_confirmed",
    "metis_l1_events_applied_total",
    "metis_batches_cut_total",
    "metis_batches_signed_total",
    "metis_batch_sign_seconds",
    "metis_batches_posted_total",
    "metis_l1_inbox_next_index",
    "metis_poster_balance_wei",
    "metis_key_round",
    "metis_key_epoch",
];

fn chromium() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .expect("chromium is not installed: `make test` installs Debian's package (scripts/bootstrap.sh)")
}

/// Runs `js` in the page and returns its value (JSON-encoded by the page, so any shape comes back whole).
fn eval(tab: &Tab, js: &str) -> Value {
    let wrapped = format!("JSON.stringify((() => {{ {js} }})())");
    let r = tokio::task::block_in_place(|| tab.evaluate(&wrapped, false)).expect("evaluate");
    r.value
        .as_ref()
        .and_then(Value::as_str)
        .map(|s| serde_json::from_str(s).expect("page JSON"))
        .unwrap_or(Value::Null)
}

/// docs/grafana/metis-seq.json imports as is: panels with unique ids, and every metric its queries name is one
/// a node exports.
fn grafana_queries_name_exported_metrics(scraped: &std::collections::BTreeMap<String, f64>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana/metis-seq.json");
    let text = std::fs::read_to_string(path).expect("the Grafana dashboard");
    let d: Value = serde_json::from_str(&text).expect("the Grafana dashboard is JSON");
    let panels = d["panels"].as_array().expect("panels");
    let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().expect("panel id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids repeat");
    let mut named = std::collections::BTreeSet::new();
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr");
            // Metric names: runs of [a-z0-9_] starting with metis_ or process_.
            let mut rest = expr;
            while let Some(i) = rest.find(|c: char| c.is_ascii_lowercase()) {
                rest = &rest[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(rest.len());
                let word = &rest[..end];
                if word.starts_with("metis_") || word.starts_with("process_") {
                    named.insert(word.trim_end_matches("_bucket").to_string());
                }
                rest = &rest[end..];
            }
        }
    }
    assert!(named.len() >= 30, "{named:?}");
    for name in &named {
        assert!(
            has(scraped, name),
            "the Grafana dashboard queries {name}, which no node exports"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_and_the_dashboard_show_the_pool_and_a_kill_9_as_a_re_election() {
    let _one = serial().await;
    // Long epochs: the re-election comes from the misses, not from the schedule.
    let mut net = Devnet::start("observe", 7, &["--epoch-length", "1000"]).await;
    let manifest = net.reload().clone();
    assert_eq!(manifest["dashboard"], manifest["nodes"][0]["dashboard"], "{manifest}");

    // A batch confirmed on L1 first: the batch, signer and poster metrics have samples then.
    wait_for(90, "a batch confirmed on L1", || async {
        let p = net.call(0, "metis_poster", json!([])).await.ok()?;
        (p["l1_confirmed_index"].as_u64()? >= 1).then_some(())
    })
    .await;

    // Every node: every metric, and the head moving between two scrapes.
    let metrics: Vec<String> = (0..4)
        .map(|i| {
            manifest["nodes"][i]["metrics"]
                .as_str()
                .expect("metrics url")
                .to_string()
        })
        .collect();
    let mut heads = Vec::new();
    for (i, url) in metrics.iter().enumerate() {
        let m = scrape(url).await;
        for name in CHAIN_METRICS.iter().chain(L1_METRICS) {
            assert!(has(&m, name), "node{i} does not export {name}");
        }
        assert_eq!(m["metis_validators"], 4.0, "node{i}");
        assert!(m["metis_l1_head"] >= m["metis_l1_confirmed"], "node{i}");
        assert!(m["metis_batches_cut_total"] >= 1.0, "node{i}");
        assert!(m["metis_poster_balance_wei"] > 0.0, "node{i}");
        heads.push(m["metis_l2_head"]);
    }
    grafana_queries_name_exported_metrics(&scrape(&metrics[0]).await);
    for (i, url) in metrics.iter().enumerate() {
        let h = heads[i];
        wait_for(20, &format!("node{i}'s head metric to move"), || async {
            (scrape(url).await["metis_l2_head"] >= h + 2.0).then_some(())
        })
        .await;
    }

    // The producer, and a node that watches it fail.
    let epoch = net.call(0, "metis_currentEpoch", json!([])).await.expect("epoch");
    let producer_signer = epoch["producer_signer"]
        .as_str()
        .expect("producer signer")
        .to_lowercase();
    let victim = net
        .node_of_signer(&producer_signer)
        .expect("the producer is a devnet node");
    let observer = (0..4).find(|i| *i != victim).expect("another node");
    let dashboard = manifest["nodes"][observer]["dashboard"]
        .as_str()
        .expect("dashboard")
        .to_string();

    // The dashboard in a real browser, live from the observer's WebSocket.
    let browser = tokio::task::block_in_place(|| {
        Browser::new(LaunchOptions {
            headless: true,
            sandbox: false,
            path: Some(chromium()),
            window_size: Some((1400, 2200)),
            idle_browser_timeout: Duration::from_secs(600),
            ..Default::default()
        })
    })
    .expect("launch chromium");
    let tab = tokio::task::block_in_place(|| browser.new_tab()).expect("tab");
    tokio::task::block_in_place(|| tab.navigate_to(&dashboard)?.wait_until_navigated().map(|_| ()))
        .expect("open the dashboard");
    wait_for(30, "live data and a confirmed batch on the page", || async {
        let v = eval(
            &tab,
            "return document.body.dataset.loaded === 'yes' && \
             document.querySelectorAll('#batches tr[data-status=\"confirmed\"]').length > 0;",
        );
        (v == json!(true)).then_some(())
    })
    .await;
    let page = eval(
        &tab,
        "return { \
           signers: [...document.querySelectorAll('#validators tbody tr')].map(r => [r.dataset.signer, r.dataset.stake]), \
           epoch: document.getElementById('epoch').textContent, \
           conn: document.getElementById('conn').dataset.state };",
    );
    let validators = net
        .call(observer, "metis_validators", json!([]))
        .await
        .expect("validators");
    let mut expected: Vec<(String, String)> = validators
        .as_array()
        .expect("validators")
        .iter()
        .map(|v| {
            let stake = v["stake"].as_str().expect("stake");
            let wei = alloy::primitives::U256::from_str_radix(stake.trim_start_matches("0x"), 16).expect("stake hex");
            (v["signer"].as_str().expect("signer").to_lowercase(), wei.to_string())
        })
        .collect();
    let mut shown: Vec<(String, String)> = serde_json::from_value(page["signers"].clone()).expect("signers");
    expected.sort();
    shown.sort();
    assert_eq!(shown.len(), 4, "{page}");
    assert_eq!(shown, expected, "the page's signers and stakes");
    for n in manifest["nodes"].as_array().expect("nodes") {
        let s = n["signer"].as_str().expect("signer").to_lowercase();
        assert!(shown.iter().any(|(x, _)| *x == s), "{s} not on the page");
    }
    let api_epoch = net
        .call(observer, "metis_currentEpoch", json!([]))
        .await
        .expect("epoch")["id"]
        .clone();
    assert_eq!(page["epoch"], json!(api_epoch.to_string()), "{page}");
    assert_eq!(page["conn"], "live");

    let before = scrape(&metrics[observer]).await;
    // kill -9 of the producer; the API and the page are watched side by side.
    let pid = net.m["nodes"][victim]["pid"].as_u64().expect("pid") as u32;
    kill(pid, libc::SIGKILL);
    let killed = Instant::now();
    wait_for(10, "the producer to be gone", || async { (!alive(pid)).then_some(()) }).await;
    let api_at = std::cell::Cell::new(None);
    let page_at = wait_for(60, "the re-election on the page", || async {
        if api_at.get().is_none() {
            let epochs = net.call(observer, "metis_epochs", json!([0, 1000])).await.ok()?;
            if epochs.as_array()?.iter().any(|e| !e["reason"]["ReElection"].is_null()) {
                api_at.set(Some(killed.elapsed()));
            }
        }
        let row = eval(
            &tab,
            "const r = document.querySelector('#rotations tr[data-reason=\"re-election\"]'); \
             return r ? r.textContent : null;",
        );
        row.as_str().map(|t| (t.to_string(), killed.elapsed()))
    })
    .await;
    let api_at = api_at.get().unwrap_or(page_at.1);
    eprintln!(
        "[e2e] kill -9 of node{victim}: re-election in the API after {api_at:?}, on the page after {:?}: {}",
        page_at.1, page_at.0
    );
    assert!(page_at.0.contains("re-election"), "{}", page_at.0);
    assert!(
        page_at.1.saturating_sub(api_at) <= Duration::from_secs(10),
        "the page showed the re-election {:?} after the API",
        page_at.1.saturating_sub(api_at)
    );
    assert!(
        page_at.1 <= Duration::from_secs(10),
        "the page showed the re-election {:?} after the kill",
        page_at.1
    );

    // The screenshot: in the devnet's directory, and where METIS_SEQ_SCREENSHOT says (docs/dashboard.png).
    let png =
        tokio::task::block_in_place(|| tab.capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true))
            .expect("screenshot");
    let shot = net.dir.join("dashboard.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    eprintln!("[e2e] dashboard screenshot: {} ({} bytes)", shot.display(), png.len());
    if let Some(p) = std::env::var_os("METIS_SEQ_SCREENSHOT") {
        std::fs::write(&p, &png).expect("write METIS_SEQ_SCREENSHOT");
    }

    // The metrics saw it too: rounds above zero, the failed producer's misses, a re-election.
    let victim_id = epoch["producer"].as_u64().expect("producer id");
    let after = wait_for(20, "the re-election in the observer's metrics", || async {
        let m = scrape(&metrics[observer]).await;
        (total(&m, "metis_reelections_total") > total(&before, "metis_reelections_total")).then_some(m)
    })
    .await;
    assert!(
        after["metis_rounds_above_zero_total"] > before["metis_rounds_above_zero_total"],
        "rounds above zero did not rise"
    );
    let missed = format!("metis_missed_proposals_total{{sequencer=\"{victim_id}\"}}");
    assert!(
        after.get(&missed).copied().unwrap_or(0.0) > before.get(&missed).copied().unwrap_or(0.0),
        "{missed} did not rise"
    );
    assert!(has(&after, "metis_missed_proposals_total"));
}
