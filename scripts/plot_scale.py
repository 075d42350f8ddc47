#!/usr/bin/env python3
"""Plots `make bench-scale`'s figures against the number of sequencers: one panel per figure, p50 and p99 where
there are both. Usage: plot_scale.py IN.jsonl OUT.png (make plot-scale; matplotlib from the venv it makes)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first

src, out = sys.argv[1], sys.argv[2]
rows = sorted((json.loads(line) for line in open(src) if line.strip()), key=lambda r: r["nodes"])
if not rows:
    raise SystemExit(f"no rows in {src}")
n = [r["nodes"] for r in rows]


def value(r, key):
    """A figure of one row; a list (one value per repetition, e.g. failovers) plots as its median."""
    v = r.get(key)
    if isinstance(v, list):
        v = sorted(v)[len(v) // 2] if v else None
    return v


# (title, unit, [(series key, label)])
PANELS = [
    ("empty and 1-tx height decided", "ms", [("empty_decision_ms_p50", "empty p50"),
                                             ("empty_decision_ms_p99", "empty p99"),
                                             ("one_tx_decision_ms_p50", "1 tx p50")]),
    ("~1,000-transfer height decided", "ms", [("kblock_decision_ms_p50", "p50"), ("kblock_decision_ms_p99", "p99")]),
    ("send-to-receipt at 20 tx/s", "ms", [("light_receipt_ms_p50", "p50"), ("light_receipt_ms_p99", "p99")]),
    ("failover (kill -9 of the producer)", "ms", [("failover_ms", "next block (median of the kills)")]),
    ("DKG and reshare", "ms", [("dkg_ms", "DKG"), ("reshare_ms", "reshare (one leaves)")]),
    ("batch signing", "ms", [("batch_sign_ms_p50", "p50"), ("batch_sign_ms_p99", "p99")]),
    ("CPU per height per node", "ms", [("idle_cpu_ms_per_height_per_node", "idle"),
                                       ("load_cpu_ms_per_height_per_node", "1,000 tx/s")]),
    ("RSS per node", "MiB", [("rss_mib_mean", "mean"), ("rss_mib_max", "max")]),
    ("1,000 tx/s offered: achieved", "tx/s", [("load_tps", "achieved")]),
]

fig, axes = plt.subplots(3, 3, figsize=(13, 10))
for ax, (title, unit, series) in zip(axes.flat, PANELS):
    for key, label in series:
        pts = [(x, value(r, key)) for x, r in zip(n, rows) if value(r, key) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("sequencers")
    ax.set_ylabel(unit)
    ax.set_xticks(n)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle("make bench-scale: one devnet per size, all nodes on one 2-core machine, 1 s blocks", fontsize=12)
fig.tight_layout()
fig.savefig(out, dpi=90)
print(f"wrote {out} ({len(rows)} sizes: {n})")
