//! `metis-seq status --rpc URL [--watch]`: the pool at a glance in a terminal, from one node's JSON-RPC (the same
//! `metis_*` API the dashboard reads): head, epoch and producer, the validators with power and misses, the last
//! batch on L1, the threshold key, recent rotations and offences.

use anyhow::{Context, Result};
use metis_bench::rpc_call;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Duration;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The node's JSON-RPC URL.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    pub rpc: String,
    /// Refresh every this many seconds until interrupted (Ctrl-C).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<u64>,
    /// Print the raw API answers as one JSON object instead.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StatusArgs) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("HTTP client")?;
    let Some(every) = args.watch else {
        let s = fetch(&client, &args.rpc).await?;
        print!("{}", if args.json { format!("{s:#}\n") } else { render(&s) });
        return Ok(());
    };
    let every = Duration::from_secs(every.max(1));
    loop {
        // Clear the screen and home the cursor (ANSI), then the summary or why there is none.
        let text = match fetch(&client, &args.rpc).await {
            Ok(s) if args.json => format!("{s:#}\n"),
            Ok(s) => render(&s),
            Err(e) => format!("{}: {e:#}\n", args.rpc),
        };
        print!("\x1b[2J\x1b[H{text}");
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// The API answers the summary is made of.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<Value> {
    let call = |m: &'static str, p: Value| async move {
        rpc_call(client, url, m, p)
            .await
            .with_context(|| format!("{m} on {url}"))
    };
    let (head, ledger, epoch, validators, poster, key, signer) = tokio::try_join!(
        call("eth_blockNumber", json!([])),
        call("metis_ledger", json!([])),
        call("metis_currentEpoch", json!([])),
        call("metis_validators", json!([])),
        call("metis_poster", json!([])),
        call("metis_thresholdKey", json!([])),
        call("metis_signer", json!([])),
    )?;
    let epochs_total = ledger["epochs"].as_u64().unwrap_or(0);
    let (epochs, evidence) = tokio::try_join!(
        call("metis_epochs", json!([epochs_total.saturating_sub(5), 5])),
        call("metis_evidence", json!([0, 100])),
    )?;
    Ok(json!({
        "head": head, "ledger": ledger, "epoch": epoch, "validators": validators, "poster": poster,
        "key": key, "signer": signer, "epochs": epochs, "evidence": evidence,
    }))
}

fn quantity(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).ok(),
        _ => None,
    }
}

/// Whole tokens of a wei amount (hex or decimal string), for the stake column.
fn tokens(v: &Value) -> String {
    let Some(s) = v.as_str() else { return "?".into() };
    let parsed = match s.strip_prefix("0x") {
        Some(h) => alloy::primitives::U256::from_str_radix(h, 16),
        None => alloy::primitives::U256::from_str_radix(s, 10),
    };
    match parsed {
        Ok(w) => (w / alloy::primitives::U256::from(10u64).pow(alloy::primitives::U256::from(18u64))).to_string(),
        Err(_) => "?".into(),
    }
}

fn reason(r: &Value) -> String {
    match r {
        Value::String(s) => s.to_lowercase(),
        Value::Object(o) => match (o.get("ReElection"), o.get("Jailed")) {
            (Some(x), _) => format!("re-election ({} missed {})", x["failed"], x["misses"]),
            (_, Some(x)) => format!("jailed producer {}", x["producer"]),
            _ => r.to_string(),
        },
        _ => r.to_string(),
    }
}

fn or_dash(v: &Value) -> String {
    if v.is_null() {
        "-".into()
    } else {
        v.to_string().trim_matches('"').to_string()
    }
}

/// The summary as text. Writing to a String cannot fail, so `write!`'s results are ignored.
pub fn render(s: &Value) -> String {
    let mut out = String::new();
    let e = &s["epoch"];
    let _ = writeln!(
        out,
        "head {}   epoch {} (blocks {}-{})   producer {} {}",
        quantity(&s["head"]).map_or("-".into(), |h| h.to_string()),
        or_dash(&e["id"]),
        or_dash(&e["first_block"]),
        or_dash(&e["last_block"]),
        or_dash(&e["producer"]),
        or_dash(&e["producer_signer"]),
    );
    let _ = writeln!(
        out,
        "\n{:>3}  {:<42}  {:>12}  {:>8}  {:<8}  {:>8}  {:>8}  jailed",
        "id", "signer", "stake", "power", "status", "produced", "missed"
    );
    for v in s["validators"].as_array().into_iter().flatten() {
        let jailed = v["l1_jailed"].as_bool() == Some(true)
            || v["jailed_until_epoch"].as_u64().unwrap_or(0) > e["id"].as_u64().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:>3}  {:<42}  {:>12}  {:>8}  {:<8}  {:>8}  {:>8}  {}",
            or_dash(&v["id"]),
            or_dash(&v["signer"]),
            tokens(&v["stake"]),
            or_dash(&v["voting_power"]),
            or_dash(&v["status"]),
            or_dash(&v["produced_this_epoch"]),
            or_dash(&v["missed_in_window"]),
            if jailed {
                format!("until epoch {}", or_dash(&v["jailed_until_epoch"]))
            } else {
                "no".into()
            },
        );
    }
    let b = &s["signer"]["batches"];
    let p = &s["poster"];
    let _ = writeln!(
        out,
        "\nbatches  cut {}   on L1 {} (confirmed {})   last cut {}",
        or_dash(&b["next_index"]),
        or_dash(&p["l1_next_index"]),
        or_dash(&p["l1_confirmed_index"]),
        match &b["last_cut"] {
            Value::Null => "-".into(),
            c => format!(
                "#{} blocks {}-{}",
                or_dash(&c["index"]),
                or_dash(&c["first"]),
                or_dash(&c["last"])
            ),
        },
    );
    if let Some(l) = p["landed"].as_array().and_then(|l| l.last()) {
        let _ = writeln!(
            out,
            "         last landed #{} in L1 block {} tx {}",
            or_dash(&l["index"]),
            or_dash(&l["l1_block"]),
            or_dash(&l["l1_tx"])
        );
    }
    let k = &s["key"];
    let _ = match &k["current"] {
        Value::Null => writeln!(out, "key      none yet"),
        c => writeln!(
            out,
            "key      epoch {}   {} of {} members {}   MPC address {}{}",
            or_dash(&c["round"]),
            or_dash(&c["quorum"]),
            c["members"].as_array().map_or(0, Vec::len),
            or_dash(&c["members"]),
            or_dash(&c["mpc_address"]),
            if k["running"].is_null() {
                String::new()
            } else {
                format!("   round {} running", or_dash(&k["running"]["round"]))
            },
        ),
    };
    let _ = writeln!(out, "\nrecent epochs");
    for ep in s["epochs"].as_array().into_iter().flatten().rev() {
        let _ = writeln!(
            out,
            "  {:>5}  blocks {:>6}-{:<6}  producer {:>3}  {}",
            or_dash(&ep["id"]),
            or_dash(&ep["first_block"]),
            or_dash(&ep["last_block"]),
            or_dash(&ep["producer"]),
            reason(&ep["reason"]),
        );
    }
    let offences = s["evidence"].as_array().map_or(0, Vec::len);
    let _ = writeln!(out, "\noffences {offences}");
    for o in s["evidence"].as_array().into_iter().flatten().rev().take(5) {
        let _ = writeln!(
            out,
            "  sequencer {} {} at height {}   slash {}",
            or_dash(&o["sequencer"]),
            or_dash(&o["kind"]),
            or_dash(&o["offence_height"]),
            if o["l1_slash"].is_null() {
                "not on L1 yet"
            } else {
                "carried out on L1"
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_pool() {
        let s = json!({
            "head": "0x2a",
            "epoch": {"id": 3, "first_block": 31, "last_block": 40, "producer": 2, "producer_signer": "0xab"},
            "validators": [
                {"id": 1, "signer": "0x01", "stake": "0x152d02c7e14af6800000", "voting_power": 100000,
                 "status": "Active", "produced_this_epoch": 4, "missed_in_window": 1, "jailed_until_epoch": 5,
                 "l1_jailed": false},
            ],
            "signer": {"batches": {"next_index": 4, "last_cut": {"index": 3, "first": 31, "last": 40}}},
            "poster": {"l1_next_index": 4, "l1_confirmed_index": 3, "landed": []},
            "key": {"current": {"round": 0, "quorum": 3, "members": [1, 2, 3, 4], "mpc_address": "0xcd"}},
            "epochs": [{"id": 2, "first_block": 21, "last_block": 30, "producer": 1,
                        "reason": {"ReElection": {"failed": 3, "misses": 3}}}],
            "evidence": [],
        });
        let text = render(&s);
        assert!(
            text.starts_with("head 42   epoch 3 (blocks 31-40)   producer 2 0xab"),
            "{text}"
        );
        assert!(text.contains("100000"), "stake in tokens: {text}");
        assert!(text.contains("until epoch 5"), "{text}");
        assert!(text.contains("re-election (3 missed 3)"), "{text}");
        assert!(text.contains("cut 4   on L1 4 (confirmed 3)"), "{text}");
        assert!(text.contains("epoch 0   3 of 4 members"), "{text}");
    }
}
