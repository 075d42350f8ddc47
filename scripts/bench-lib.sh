# Shared by the bench scripts (sourced): settings, cleanup, the release build, and the anvil half of every
# "same load against anvil in the same run" comparison.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TXS="${TXS:-20000}"
ACCOUNTS="${ACCOUNTS:-400}"
GAS_LIMIT="${GAS_LIMIT:-300000000}"
RATE="${RATE:-0}"   # offered tx/s; 0 = a burst as fast as the node takes it
NODES="${NODES:-4}" # sequencer nodes in bench-net
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/metis-seq/target}"
BIN="$CARGO_TARGET_DIR/release/metis-seq"
CAST="$ROOT/.tools/bin/cast"
WORK="$(mktemp -d)"
PIDS=()
# KEEP_WORK=1 keeps the nodes' logs and configs for a look afterwards.
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_rpc() {
  for _ in $(seq 1 300); do
    "$CAST" chain-id --rpc-url "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "no RPC at $1" >&2; return 1
}

# The transfer load against RPC $1, labelled $2, into $WORK/$3.out.
bench_load() {
  "$BIN" bench transfers --rpc "$1" --txs "$TXS" --accounts "$ACCOUNTS" --rate "$RATE" --label "$2" | tee "$WORK/$3.out"
}

echo "building metis-seq (release)"
cargo build --release --bin metis-seq

# anvil with the same block time and gas limit, under the same load; stopped afterwards.
P_ANVIL=$(free_port)
"$ROOT/.tools/bin/anvil" --port "$P_ANVIL" --block-time 1 --gas-limit "$GAS_LIMIT" --silent >"$WORK/anvil.log" 2>&1 &
ANVIL_PID=$!
PIDS+=($ANVIL_PID)
wait_rpc "http://127.0.0.1:$P_ANVIL"
bench_load "http://127.0.0.1:$P_ANVIL" anvil anvil
kill "$ANVIL_PID"; wait "$ANVIL_PID" 2>/dev/null || true

# Prints the ratio of $WORK/metis.out to $WORK/anvil.out, labelled $1.
print_ratio() {
  local a m
  a=$(sed -n 's/^RESULT .*tps=\([0-9.]*\).*/\1/p' "$WORK/anvil.out")
  m=$(sed -n 's/^RESULT .*tps=\([0-9.]*\).*/\1/p' "$WORK/metis.out")
  python3 -c "print(f'ratio $1/anvil: {float($m)/float($a):.2f}x ({float($m):.0f} vs {float($a):.0f} tx/s, $TXS transfers offered at rate $RATE/s (0 = burst), gas limit $GAS_LIMIT, 1 s blocks)')"
}
