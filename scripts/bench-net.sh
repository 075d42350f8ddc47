#!/usr/bin/env bash
# The sequencer network (4 nodes unless NODES says otherwise) against anvil, in one run: the same transfer load (sent to one node, gossiped
# to the others), the same block time and gas limit; then decision latency per height from the nodes' logs and
# the failover time (kill -9 of the producer -> next block).
# Usage: make bench-net [TXS=20000 ACCOUNTS=400 RATE=0 (burst) | RATE=10000 (sustained offered load)] [NODES=4]
# NODES=1 runs one validator (the same consensus, execution and RPC path, without the other nodes' share of the
# machine's cores); the failover step needs 4.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
PIDS=()

BASE=$(( 20000 + (RANDOM % 3000) * 10 ))
"$BIN" testnet --out "$WORK/net" --nodes "$NODES" --base-port "$BASE" --gas-limit "$GAS_LIMIT" --epoch-length 1000 >/dev/null
# The load generator is one client address: lift the per-address request limits it would hit (as a proxy in
# front of a public node would), and leave every other limit as configured.
sed -i -e 's/^requests_per_ip_per_sec = .*/requests_per_ip_per_sec = 1000000/' \
  -e 's/^requests_per_ip_burst = .*/requests_per_ip_burst = 1000000/' "$WORK"/net/node*/config.toml
for i in $(seq 0 $((NODES - 1))); do
  RUST_LOG="${NODE_LOG:-info}" "$BIN" node --config "$WORK/net/node$i/config.toml" --passphrase-file "$WORK/net/passphrase" \
    >"$WORK/node$i.out" 2>"$WORK/node$i.log" &
  PIDS+=($!)
done
RPC="http://127.0.0.1:$((BASE + 2))"
for i in $(seq 0 $((NODES - 1))); do wait_rpc "http://127.0.0.1:$((BASE + 10 * i + 2))"; done
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
CPU0=(); for p in "${PIDS[@]}"; do CPU0+=("$(cpu_secs "$p")"); done
bench_load "$RPC" "metis-seq $NODES nodes" metis
# CPU per node over the load (funding, sending, and every block until the last receipt), per transfer.
for i in "${!PIDS[@]}"; do
  python3 -c "import sys; c=float(sys.argv[2])-float(sys.argv[1]); print(f'node{sys.argv[3]}: {c:.2f} CPU s over the load, {c*1e6/int(sys.argv[4]):.0f} us per transfer')" \
    "${CPU0[$i]}" "$(cpu_secs "${PIDS[$i]}")" "$i" "$TXS"
done

print_ratio "$NODES-node metis-seq"

# Decision latency: height start -> decided, on node 1 (a validator that is not the producer of epoch 0's
# first blocks in general), over every height so far.
python3 - "$WORK/node$((NODES > 1 ? 1 : 0)).log" <<'PY'
import re, sys
rows = [(int(m.group(1)), int(m.group(2))) for m in (re.search(r'decided .* txs=(\d+) .*elapsed_ms=(\d+)', l) for l in open(sys.argv[1])) if m][2:]
for name, sel in (("all heights", rows), ("heights with transactions", [r for r in rows if r[0] > 0])):
    v = sorted(e for _, e in sel)
    if v:
        q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
        print(f"decision latency (height start -> decided), {name}, {len(v)} heights: p50 {q(.5)} ms, p90 {q(.9)} ms, max {v[-1]} ms")
big = max(rows, default=(0, 0))
print(f"largest block: {big[0]} transfers, decided {big[1]} ms after its height started")
PY

[ "$NODES" -ge 4 ] || exit 0
# Failover: kill -9 the producer right after a block; time until the next block on another node.
PROD=$(curl -s -X POST -H 'content-type: application/json' --data '{"jsonrpc":"2.0","id":1,"method":"metis_currentEpoch","params":[]}' "$RPC" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["producer"])')
P=$((PROD - 1)); O=$(( (P + 1) % NODES )); ORPC="http://127.0.0.1:$((BASE + 10 * O + 2))"
python3 - "$ORPC" "${PIDS[$P]}" <<'PY'
import json, os, signal, sys, time, urllib.request
rpc, pid = sys.argv[1], int(sys.argv[2])
def head():
    req = urllib.request.Request(rpc, json.dumps({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}).encode(), {"content-type":"application/json"})
    return int(json.load(urllib.request.urlopen(req, timeout=5))["result"], 16)
samples = []
h = head()
while head() == h: time.sleep(0.005)
h = head()
t0 = time.monotonic(); os.kill(pid, signal.SIGKILL)
while head() == h: time.sleep(0.005)
print(f"failover: kill -9 of the producer right after block {h} -> block {h+1} in {(time.monotonic()-t0)*1000:.0f} ms")
PY
