#!/usr/bin/env bash
# The 4-node sequencer network against anvil, in one run: the same transfer load (sent to one node, gossiped
# to the others), the same block time and gas limit; then decision latency per height from the nodes' logs and
# the failover time (kill -9 of the producer -> next block).
# Usage: make bench-net [TXS=20000 ACCOUNTS=400 RATE=0 (burst) | RATE=10000 (sustained offered load)]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TXS="${TXS:-20000}"
ACCOUNTS="${ACCOUNTS:-400}"
GAS_LIMIT="${GAS_LIMIT:-300000000}"
RATE="${RATE:-0}"   # offered tx/s; 0 = a burst as fast as the node takes it
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/metis-seq/target}"
TARGET="$CARGO_TARGET_DIR"
BIN="$TARGET/release/metis-seq"
CAST="$ROOT/.tools/bin/cast"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_rpc() {
  for _ in $(seq 1 300); do
    "$CAST" chain-id --rpc-url "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "no RPC at $1" >&2; return 1
}

echo "building metis-seq (release)"
cargo build --release --bin metis-seq

P1=$(free_port)
"$ROOT/.tools/bin/anvil" --port "$P1" --block-time 1 --gas-limit "$GAS_LIMIT" --silent >"$WORK/anvil.log" 2>&1 &
PIDS+=($!)
wait_rpc "http://127.0.0.1:$P1"
"$BIN" bench transfers --rpc "http://127.0.0.1:$P1" --txs "$TXS" --accounts "$ACCOUNTS" --rate "$RATE" --label anvil | tee "$WORK/anvil.out"
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true
PIDS=()

BASE=$(( 20000 + (RANDOM % 3000) * 10 ))
"$BIN" testnet --out "$WORK/net" --nodes 4 --base-port "$BASE" --gas-limit "$GAS_LIMIT" --epoch-length 1000 >/dev/null
for i in 0 1 2 3; do
  RUST_LOG=info "$BIN" node --config "$WORK/net/node$i/config.toml" --passphrase-file "$WORK/net/passphrase" \
    >"$WORK/node$i.out" 2>"$WORK/node$i.log" &
  PIDS+=($!)
done
RPC="http://127.0.0.1:$((BASE + 2))"
for i in 0 1 2 3; do wait_rpc "http://127.0.0.1:$((BASE + 10 * i + 2))"; done
"$BIN" bench transfers --rpc "$RPC" --txs "$TXS" --accounts "$ACCOUNTS" --rate "$RATE" --label "metis-seq 4 nodes" | tee "$WORK/metis.out"

a=$(sed -n 's/^RESULT .*tps=\([0-9.]*\).*/\1/p' "$WORK/anvil.out")
m=$(sed -n 's/^RESULT .*tps=\([0-9.]*\).*/\1/p' "$WORK/metis.out")
python3 -c "print(f'ratio 4-node metis-seq/anvil: {float($m)/float($a):.2f}x ({float($m):.0f} vs {float($a):.0f} tx/s, $TXS transfers offered at rate $RATE/s (0 = burst), gas limit $GAS_LIMIT, 1 s blocks)')"

# Decision latency: height start -> decided, on node 1 (a validator that is not the producer of epoch 0's
# first blocks in general), over every height so far.
python3 - "$WORK/node1.log" <<'PY'
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

# Failover: kill -9 the producer right after a block; time until the next block on another node.
PROD=$(curl -s -X POST -H 'content-type: application/json' --data '{"jsonrpc":"2.0","id":1,"method":"metis_currentEpoch","params":[]}' "$RPC" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["producer"])')
P=$((PROD - 1)); O=$(( (P + 1) % 4 )); ORPC="http://127.0.0.1:$((BASE + 10 * O + 2))"
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
