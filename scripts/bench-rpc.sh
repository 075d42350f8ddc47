#!/usr/bin/env bash
# The same transfer load against `metis-seq dev` and against anvil, in one run, with the same block time and
# gas limit; prints both figures and the ratio. Usage: make bench-rpc [TXS=20000 ACCOUNTS=400]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TXS="${TXS:-20000}"
ACCOUNTS="${ACCOUNTS:-400}"
GAS_LIMIT="${GAS_LIMIT:-300000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/metis-seq/target}"
TARGET="$CARGO_TARGET_DIR"
BIN="$TARGET/release/metis-seq"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_rpc() {
  for _ in $(seq 1 300); do
    "$ROOT/.tools/bin/cast" chain-id --rpc-url "$1" >/dev/null 2>&1 && return 0
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
"$BIN" bench transfers --rpc "http://127.0.0.1:$P1" --txs "$TXS" --accounts "$ACCOUNTS" --label anvil | tee "$WORK/anvil.out"
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true

P2=$(free_port)
RUST_LOG=warn "$BIN" dev --datadir "$WORK/dev" --http-addr "127.0.0.1:$P2" --block-time 1000 --gas-limit "$GAS_LIMIT" >"$WORK/dev.log" 2>&1 &
PIDS+=($!)
wait_rpc "http://127.0.0.1:$P2"
"$BIN" bench transfers --rpc "http://127.0.0.1:$P2" --txs "$TXS" --accounts "$ACCOUNTS" --label metis-seq | tee "$WORK/metis.out"

a=$(sed -n 's/^RESULT .*tps=\([0-9.]*\).*/\1/p' "$WORK/anvil.out")
m=$(sed -n 's/^RESULT .*tps=\([0-9.]*\).*/\1/p' "$WORK/metis.out")
python3 -c "print(f'ratio metis-seq/anvil: {float($m)/float($a):.2f}x ({float($m):.0f} vs {float($a):.0f} tx/s, $TXS transfers, gas limit $GAS_LIMIT, 1 s blocks)')"
