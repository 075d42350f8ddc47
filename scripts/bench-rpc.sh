#!/usr/bin/env bash
# The same transfer load against `metis-seq dev` and against anvil, in one run, with the same block time and
# gas limit; prints both figures and the ratio. Usage: make bench-rpc [TXS=20000 ACCOUNTS=400 RATE=0]
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

P2=$(free_port)
RUST_LOG=warn "$BIN" dev --datadir "$WORK/dev" --http-addr "127.0.0.1:$P2" --block-time 1000 --gas-limit "$GAS_LIMIT" >"$WORK/dev.log" 2>&1 &
PIDS+=($!)
wait_rpc "http://127.0.0.1:$P2"
bench_load "http://127.0.0.1:$P2" metis-seq metis

print_ratio metis-seq
