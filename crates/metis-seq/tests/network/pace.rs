//! Every node starts each height with the others, also one that comes back late: a node out of phase is timed
//! out when its turn to propose comes (CI, 2026-12-07: a node that joined 0.5 s late kept that lag for four
//! heights, and its block went to round 1).

use crate::common::testnet::{NetOptions, Testnet};
use crate::{exclusive, genesis_producer};
use std::collections::BTreeMap;
use std::path::Path;

/// Seconds since 1970 of a log line's RFC 3339 UTC timestamp (`2026-12-07T22:15:28.432853Z ...`).
fn line_time(line: &str) -> Option<f64> {
    let ts = line.get(..27)?;
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm) = (num(11..13)?, num(14..16)?);
    let secs: f64 = ts.get(17..26)?.parse().ok()?;
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3_600 + mm * 60) as f64 + secs)
}

/// When the node whose log is at `path` started each height (the last start, if it started one twice).
fn height_starts(path: &Path) -> BTreeMap<u64, f64> {
    let text = std::fs::read_to_string(path).expect("node log");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.split("Starting new height height=").nth(1) else {
            continue;
        };
        let (Some(t), Ok(h)) = (line_time(line), rest.trim().parse::<u64>()) else {
            continue;
        };
        out.insert(h, t);
    }
    out
}

#[test]
fn log_times_parse() {
    let t = line_time("2026-12-07T22:15:28.432853Z  INFO consensus{height=1 round=0}: ...").unwrap();
    assert!((t - 1_796_681_728.432853).abs() < 1e-6, "{t}");
    let before = line_time("2024-02-29T23:59:59.900000Z x").unwrap();
    let after = line_time("2024-03-01T00:00:00.100000Z x").unwrap();
    assert!((after - before - 0.2).abs() < 1e-6);
}

/// A node that missed two proposals (its links lost them) learns those blocks by sync, after the others have
/// moved on, and starts each height with the others (within 200 ms) from the second after the ones it missed:
/// it does not wait a block time from when sync gave it a block the others had long before, nor collect
/// precommits for three quarters of a block time from its own late start of a height.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_proposals_starts_its_heights_with_the_others_again() {
    let _one = exclusive().await;
    let mut net = Testnet::generate("net-pace", NetOptions::default());
    // The producer builds its own blocks and misses nothing: another node loses them.
    let (_, producer) = genesis_producer(&net.pos_genesis());
    let late = (producer + 1) % 4;
    const MISSED: (u64, u64) = (5, 6);
    let fault = format!("miss-proposals@{}-{}", MISSED.0, MISSED.1);
    for i in 0..4 {
        net.start(i, (i == late).then_some(fault.as_str()));
    }
    let all: Vec<usize> = (0..4).collect();
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != late).collect();
    let (first, last) = (MISSED.1 + 2, MISSED.1 + 12);
    net.wait_height(&all, last + 1, 60).await;
    let starts: Vec<BTreeMap<u64, f64>> = all.iter().map(|&i| height_starts(&net.log_path(i))).collect();
    let mut offs = Vec::new();
    for height in MISSED.0..=last {
        let theirs: Vec<f64> = rest.iter().filter_map(|&i| starts[i].get(&height).copied()).collect();
        assert_eq!(theirs.len(), rest.len(), "a node logged no start of height {height}");
        let mine = *starts[late]
            .get(&height)
            .unwrap_or_else(|| panic!("the node that missed proposals logged no start of height {height}"));
        let (a, b) = theirs
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), t| (a.min(*t), b.max(*t)));
        offs.push((height, mine - b.max(a.min(mine))));
    }
    let shown: Vec<String> = offs.iter().map(|(h, o)| format!("{h}: {:+.0} ms", o * 1e3)).collect();
    eprintln!(
        "[pace] start of each height on the node that missed {MISSED:?}, against the others': {}",
        shown.join(", ")
    );
    for (height, off) in offs.iter().filter(|(h, _)| *h >= first) {
        assert!(
            off.abs() < 0.2,
            "height {height}: the node that missed proposals {MISSED:?} started it {:.0} ms outside the \
             others' starts ({})",
            off * 1e3,
            shown.join(", ")
        );
    }
}
