#!/usr/bin/env python3
"""How the pool's costs grow with its size: for each N in NODES, a devnet of N sequencers (release build, its own
anvil, all on this machine) and, in order: the DKG time, decision latency and CPU per height on the idle chain,
send-to-receipt at a light load, decision latency of ~1,000-transfer blocks, batch signing latency, failover
(kill -9 of the producer), and the reshare when one sequencer leaves through L1. One JSON line per size goes to
OUT (default bench-scale.jsonl) and a table to stdout.

Usage (make bench-scale does the build and the tools): bench_scale.py BIN ANVIL "4 10 16" [OUT]
"""
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN, ANVIL, SIZES = sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3].split()]
OUT = sys.argv[4] if len(sys.argv) > 4 else "bench-scale.jsonl"
HZ = os.sysconf("SC_CLK_TCK")
FAILOVERS = int(os.environ.get("FAILOVERS", "3"))
TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def rpc(url, method, params=None, timeout=5):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    req = urllib.request.Request(url, body, {"content-type": "application/json"})
    r = json.load(urllib.request.urlopen(req, timeout=timeout))
    if "error" in r:
        raise RuntimeError(f"{method}: {r['error']}")
    return r["result"]


def wait(what, deadline_s, probe, every=0.2):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            v = probe()
            if v:
                return v
        except Exception:  # noqa: BLE001 - a node still starting answers with errors; the deadline decides
            pass
        time.sleep(every)
    raise SystemExit(f"timed out after {deadline_s} s waiting for {what}")


def q(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))] if v else None


def cpu_secs(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def log_ts(line):
    m = TS.match(line)
    return time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + m.group(1)[19:]) if m else None


def decided(log, since_ts):
    """(txs, elapsed_ms) of every height decided on this node after since_ts (a log timestamp, UTC)."""
    rows = []
    for line in open(log, errors="replace"):
        m = re.search(r"decided 0x\w+ .*txs=(\d+) .*elapsed_ms=(\d+)", line)
        if m and (log_ts(line) or 0) >= since_ts:
            rows.append((int(m.group(1)), int(m.group(2))))
    return rows


def utc_now():
    return time.mktime(time.gmtime()) + (time.time() % 1)


def key_rounds(log):
    """{round: (started_ts, completed_ts or None, kind)} from a node's log."""
    rounds = {}
    for line in open(log, errors="replace"):
        m = re.search(r"key round started round=(\d+) kind=(\w+)", line)
        if m:
            rounds[int(m.group(1))] = [log_ts(line), None, m.group(2)]
        m = re.search(r"key round completed round=(\d+)", line)
        if m and int(m.group(1)) in rounds:
            rounds[int(m.group(1))][1] = log_ts(line)
    return rounds


def bench(url, txs, accounts, rate, batch):
    """Transfers sent in JSON-RPC batches of `batch`, paced to `rate` a second: (tx/s, p50 ms, p99 ms)."""
    out = subprocess.run([BIN, "bench", "transfers", "--rpc", url, "--txs", str(txs), "--accounts", str(accounts),
                          "--rate", str(rate), "--batch", str(batch), "--label", "scale"], capture_output=True, text=True, timeout=600)
    m = re.search(r"RESULT .*tps=([\d.]+) p50_ms=(\d+) p99_ms=(\d+)", out.stdout)
    if not m:
        raise SystemExit(f"bench transfers failed: {out.stdout[-500:]} {out.stderr[-2000:]}")
    return float(m.group(1)), int(m.group(2)), int(m.group(3))


class Figures(dict):
    """The figures of one size, each printed as it is measured (a long run shows where it stands)."""

    def __setitem__(self, k, v):
        print(f"  {k} = {v}", flush=True)
        super().__setitem__(k, v)


def decided_at(log, height):
    """(round, proposer) of `height` as this node decided it, or None."""
    for line in open(log, errors="replace"):
        m = re.search(rf"height={height} .*decided 0x\w+ round=(\d+) proposer=(\d+)", line)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def failover(nodes, logs, d, extra):
    """Kills the producer right after a block, times the next block on another node and restarts the dead node:
    (its index, ms, the round the next block was decided in)."""
    n = len(nodes)
    url = nodes[0]["rpc"]
    while True:
        e = rpc(url, "metis_currentEpoch")
        signer = next(v["signer"] for v in rpc(url, "metis_validators") if v["id"] == e["producer"]).lower()
        p = next(i for i, x in enumerate(nodes) if x["signer"].lower() == signer)
        other = nodes[(p + 1) % n]["rpc"]
        h = int(rpc(other, "eth_blockNumber"), 16)
        wait("a block", 30, lambda: int(rpc(other, "eth_blockNumber"), 16) > h, every=0.005)
        h = int(rpc(other, "eth_blockNumber"), 16)
        now = rpc(other, "metis_currentEpoch")
        # The next height is this producer's round 0 only inside its epoch (the last block may elect another).
        if now["id"] == e["id"] and h + 1 < now["last_block"]:
            break
    t = time.monotonic()
    os.kill(nodes[p]["pid"], signal.SIGKILL)
    wait("the block after the failover", 60, lambda: int(rpc(other, "eth_blockNumber"), 16) > h, every=0.005)
    ms = round((time.monotonic() - t) * 1000)
    got = wait("the decision in the log", 10, lambda: decided_at(logs[(p + 1) % n], h + 1))
    # Back as the devnet started it (the supervisor reports an exit, it does not restart), caught up.
    restarted = subprocess.Popen([BIN, "node", "--config", nodes[p]["config"], "--passphrase-file",
                                  os.path.join(d, "l2", "passphrase")], stdout=subprocess.DEVNULL,
                                 stderr=open(logs[p], "a"), env={**os.environ, "RUST_LOG": "info"})
    extra.append(restarted)
    nodes[p] = {**nodes[p], "pid": restarted.pid}
    head = int(rpc(other, "eth_blockNumber"), 16)
    wait("the restarted node to catch up", 120,
         lambda: int(rpc(nodes[p]["rpc"], "eth_blockNumber"), 16) >= head + 2, every=0.5)
    return p, ms, got[0]


def one_size(n, work, base_port, l1_port):
    d = os.path.join(work, f"n{n}")
    t0 = time.monotonic()
    extra = []
    devnet = subprocess.Popen([BIN, "devnet", "--dir", d, "--fresh", "--nodes", str(n), "--rpc-nodes", "0",
                               "--base-port", str(base_port), "--l1-port", str(l1_port), "--anvil", ANVIL,
                               "--epoch-length", "30", "--batch-blocks", "10", "--ready-timeout", "600"],
                              stdout=open(os.path.join(work, f"devnet{n}.out"), "w"), stderr=subprocess.STDOUT)
    try:
        manifest = os.path.join(d, "devnet.json")
        m = wait("the devnet to be ready", 900, lambda: (lambda j: j if j.get("state") == "ready" else None)(
            json.load(open(manifest))))
        ready_s = time.monotonic() - t0
        nodes = m["nodes"]
        url = nodes[0]["rpc"]
        pids = [x["pid"] for x in nodes]
        logs = [x["log"] for x in nodes]
        r = Figures(nodes=n, start_s=round(ready_s, 1))
        first = key_rounds(logs[0]).get(min(key_rounds(logs[0]) or [0]), None)
        r["dkg_ms"] = round((first[1] - first[0]) * 1000) if first and first[1] else None

        # Idle chain: empty heights.
        h0 = int(rpc(url, "eth_blockNumber"), 16)
        c0, t_idle = [cpu_secs(p) for p in pids], utc_now()
        time.sleep(20)
        h1 = int(rpc(url, "eth_blockNumber"), 16)
        c1 = [cpu_secs(p) for p in pids]
        heights = max(1, h1 - h0)
        per = [(b - a) / heights for a, b in zip(c0, c1)]
        r["idle_cpu_ms_per_height_per_node"] = round(1000 * statistics.mean(per), 1)
        r["idle_cpu_ms_per_height_max"] = round(1000 * max(per), 1)
        r["rss_mib_mean"] = round(statistics.mean(rss_mib(p) for p in pids))
        r["rss_mib_max"] = round(max(rss_mib(p) for p in pids))
        empty = [e for log in logs for (t, e) in decided(log, t_idle) if t == 0]
        r["empty_decision_ms_p50"], r["empty_decision_ms_p99"] = q(empty, .5), q(empty, .99)

        # Light load: send-to-receipt.
        _, r["light_receipt_ms_p50"], r["light_receipt_ms_p99"] = bench(url, 300, 30, 20, 1)

        # ~1,000 transfers a block.
        t_load, c0 = utc_now(), [cpu_secs(p) for p in pids]
        h0 = int(rpc(url, "eth_blockNumber"), 16)
        r["load_tps"], r["load_receipt_ms_p50"], r["load_receipt_ms_p99"] = bench(url, 10000, 200, 1000, 10)
        h1 = int(rpc(url, "eth_blockNumber"), 16)
        c1 = [cpu_secs(p) for p in pids]
        r["load_cpu_ms_per_height_per_node"] = round(1000 * statistics.mean(
            (b - a) / max(1, h1 - h0) for a, b in zip(c0, c1)), 1)
        full = [e for log in logs for (t, e) in decided(log, t_load) if t >= 500]
        r["kblock_heights"] = len(full) // n
        r["kblock_decision_ms_p50"], r["kblock_decision_ms_p99"] = q(full, .5), q(full, .99)

        # Heights that carry one transaction: one transfer a second (a block time), one per request.
        t_one = utc_now()
        bench(url, 20, 20, 1, 1)
        one = [e for log in logs for (t, e) in decided(log, t_one) if t == 1]
        r["one_tx_heights"] = len(one) // n
        r["one_tx_decision_ms_p50"], r["one_tx_decision_ms_p99"] = q(one, .5), q(one, .99)

        # Batch signing, over everything so far (node 0's view).
        sig = [int(x) for x in re.findall(r"what=\"?batch\"? .*?latency_ms=(\d+)", open(logs[0], errors="replace").read())]
        r["batches_signed"] = len(sig)
        r["batch_sign_ms_p50"], r["batch_sign_ms_p99"] = q(sig, .5), q(sig, .99)

        # Failover, FAILOVERS times: kill -9 of the producer right after a block whose successor is still in
        # its epoch (so the dead node is the next height's round-0 proposer for sure); the next block on another
        # node, and the round it was decided in there. The node is then restarted and caught up.
        times, rounds = [], []
        p = 0
        for _ in range(FAILOVERS):
            p, ms, rnd = failover(nodes, logs, d, extra)
            times.append(ms)
            rounds.append(rnd)
        r["failover_ms"] = times
        r["failover_round"] = rounds

        # One sequencer leaves through L1 (not the one just killed): the reshare among the rest.
        leaver = nodes[(p + 2) % n]
        before = set(key_rounds(logs[0]))
        subprocess.run([BIN, "l1", "unlock", "--l1-rpc", m["l1"]["rpc"], "--key-file", leaver["owner_key_file"],
                        "--locking-pool", m["contracts"]["locking_pool"]], check=True, capture_output=True,
                       env={**os.environ, "RUST_LOG": "warn"}, timeout=120)
        watcher = logs[(p + 1) % n]

        def reshared():
            new = {k: v for k, v in key_rounds(watcher).items() if k not in before and v[1]}
            return min(new.items()) if new else None
        before = set(key_rounds(watcher))
        _, (s, c, kind) = wait("the reshare after a leave", 240, reshared, every=1)
        r["reshare_ms"], r["reshare_kind"] = round((c - s) * 1000), kind
        return r
    finally:
        for x in extra:
            x.kill()
            x.wait()
        subprocess.run([BIN, "devnet", "stop", "--dir", d], capture_output=True, timeout=120)
        devnet.send_signal(signal.SIGTERM)
        try:
            devnet.wait(timeout=60)
        except subprocess.TimeoutExpired:
            devnet.kill()


def main():
    work = tempfile.mkdtemp(prefix="bench-scale-")
    rows = []
    for i, n in enumerate(SIZES):
        print(f"[bench-scale] {n} sequencers ({work})", flush=True)
        r = one_size(n, work, 20000 + 1000 * i, 18545 + i)
        print(json.dumps(r), flush=True)
        with open(OUT, "a") as f:
            f.write(json.dumps(r) + "\n")
        rows.append(r)
    cols = [k for k in rows[0] if k != "nodes"]
    print("\n| sequencers | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for r in rows:
        print(f"| {r['nodes']} | " + " | ".join(str(r.get(c)) for c in cols) + " |")
    if not os.environ.get("KEEP_WORK"):
        subprocess.run(["rm", "-rf", work])
    else:
        print(f"kept {work}")


main()
