#!/usr/bin/env bash
# Devnet: anvil as L1 with the full contract set deployed and wired, and a 4-node sequencer network (Tendermint
# over loopback, 1 s blocks, stake-weighted rotation) serving the L2 JSON-RPC. The genesis sequencers lock their
# stake on L1 first and the nodes follow LockingPool from then on (2 confirmations). The devnet issue replaces this
# with `metis-seq devnet` (DKG, batches, manifest). Ctrl-C stops everything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${DEVNET_DIR:-$ROOT/devnet}"
PORT="${L1_PORT:-8545}"
# METIS_SEQ_BIN: another build (e.g. the release binary, for benchmarks). DEVNET_BLOBS=1: batches in blobs.
BIN="${METIS_SEQ_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/metis-seq/target}/debug/metis-seq}"
# anvil's first dev account (devnet only).
export METIS_L1_PRIVATE_KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80

mkdir -p "$DIR/logs"
step() { printf '[devnet %5ss] %s\n' "$SECONDS" "$*"; }

step "starting anvil on 127.0.0.1:$PORT (log: $DIR/logs/anvil.log)"
"$ROOT/.tools/bin/anvil" --host 127.0.0.1 --port "$PORT" --block-time 1 >"$DIR/logs/anvil.log" 2>&1 &
ANVIL=$!
PIDS=($ANVIL)
trap 'step "stopping"; for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
# Ctrl-C or SIGTERM is the normal way to stop: exit cleanly (the EXIT trap stops anvil).
trap 'exit 0' INT TERM
for _ in $(seq 1 100); do
  "$ROOT/.tools/bin/cast" chain-id --rpc-url "http://127.0.0.1:$PORT" >/dev/null 2>&1 && break
  kill -0 $ANVIL 2>/dev/null || { cat "$DIR/logs/anvil.log"; echo "anvil exited" >&2; exit 1; }
  sleep 0.1
done

step "deploying contracts"
RUST_LOG=warn "$BIN" l1 deploy --l1-rpc "http://127.0.0.1:$PORT" --out "$DIR/contracts.json" >/dev/null
L2_BASE="${L2_BASE_PORT:-28000}"
step "locking 4 sequencers on L1 and generating their network in $DIR/l2 (ports $L2_BASE..$((L2_BASE + 32)))"
rm -rf "$DIR/l2"
BLOBS=()
[ "${DEVNET_BLOBS:-0}" = 1 ] && BLOBS=(--batch-blobs)
RUST_LOG=warn "$BIN" testnet --out "$DIR/l2" --nodes 4 --base-port "$L2_BASE" --key-phase-blocks 3 --batch-blocks 10 \
  --reward-epochs 2 "${BLOBS[@]}" \
  --l1-rpc "http://127.0.0.1:$PORT" --l1-contracts "$DIR/contracts.json" >/dev/null
for i in 0 1 2 3; do
  RUST_LOG=info "$BIN" node --config "$DIR/l2/node$i/config.toml" --passphrase-file "$DIR/l2/passphrase" \
    >"$DIR/logs/node$i.out" 2>"$DIR/logs/node$i.log" &
  PIDS+=($!)
done
for i in 0 1 2 3; do
  for _ in $(seq 1 300); do
    "$ROOT/.tools/bin/cast" block-number --rpc-url "http://127.0.0.1:$((L2_BASE + 10 * i + 2))" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
step "waiting for the sequencers' threshold key (DKG over blocks 2..10)"
GROUP_KEY=""
for _ in $(seq 1 300); do
  GROUP_KEY=$(curl -s -H 'content-type: application/json' \
    --data '{"jsonrpc":"2.0","id":1,"method":"metis_thresholdKey","params":[]}' "http://127.0.0.1:$((L2_BASE + 2))" |
    python3 -c 'import json,sys; c=json.load(sys.stdin)["result"]["current"]; print(c["group_key"] if c else "")' 2>/dev/null || true)
  [ -n "$GROUP_KEY" ] && break
  sleep 0.1
done
[ -n "$GROUP_KEY" ] || { echo "no threshold key after 30 s (see $DIR/logs)" >&2; exit 1; }
POOL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["locking_pool"])' "$DIR/contracts.json")
step "registering the group key in LockingPool"
RUST_LOG=warn "$BIN" l1 set-group-key --l1-rpc "http://127.0.0.1:$PORT" --locking-pool "$POOL" --public-key "$GROUP_KEY"
step "ready"
echo "L1 RPC:     http://127.0.0.1:$PORT (chain id $("$ROOT/.tools/bin/cast" chain-id --rpc-url "http://127.0.0.1:$PORT"))"
echo "contracts:  $DIR/contracts.json"
cat "$DIR/contracts.json"; echo
echo "owner:      0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 (anvil dev key 0; DEVNET ONLY)"
for i in 0 1 2 3; do echo "L2 node $i:  http://127.0.0.1:$((L2_BASE + 10 * i + 2)) (log: $DIR/logs/node$i.log)"; done
echo "L2 chain id 59902; dev accounts of the well-known mnemonic are funded (DEVNET ONLY)."
echo "sequencer owners' L1 keys: $DIR/l2/node*/owner.key (DEVNET ONLY)"
echo "PoS API:    curl -s -H 'content-type: application/json' --data '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"metis_currentEpoch\",\"params\":[]}' http://127.0.0.1:$((L2_BASE + 2))"
echo "Ctrl-C to stop."
wait $ANVIL
