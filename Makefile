# The two commands a fresh machine needs: `make devnet` and `make test`. Both install what they use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# One target dir outside the clone, so CI and every clone on this machine reuse builds.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/metis-seq/target
TOOLS := $(CURDIR)/.tools/bin
FORGE := cd contracts && PATH="$(TOOLS):$$PATH" forge

.PHONY: help tools build contracts artifacts check-artifacts fmt fmt-check clippy forge-test rust-test test devnet bench-rpc bench-net bench-exec bench-scale bench-keyrounds plot-scale plot-tools chaos

help:
	@echo "make devnet   start a local devnet: anvil + contracts + 4 sequencers locked on L1, DKG, batches (./devnet, devnet.json)"
	@echo "make test     bootstrap tools, fmt, clippy, forge tests, artifact check, Rust tests"
	@echo "make chaos    the chaos suite: every fault on a --netns devnet under load, invariants, a table (ROUNDS=N SEED=S HOLD=secs FAULTS=a,b)"
	@echo "make artifacts  rebuild contracts and refresh the ABIs/bytecode the Rust side embeds"
	@echo "make bench-rpc | bench-net | bench-exec | bench-scale | bench-keyrounds   benchmarks (TXS=, ACCOUNTS=, RATE=, NODES= for bench-net; NODES=\"4 10\" for bench-scale); figures in docs/benchmarks.md"

tools:
	@bash scripts/bootstrap.sh

build: tools
	cargo build --bin metis-seq

contracts: tools
	$(FORGE) build

artifacts: contracts
	node scripts/artifacts.js

check-artifacts: contracts
	node scripts/artifacts.js --check

fmt:
	cargo fmt --all
	$(FORGE) fmt

fmt-check:
	cargo fmt --all --check
	$(FORGE) fmt --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

forge-test: tools
	$(FORGE) test

rust-test: tools
	cargo test --workspace

test: tools
	$(MAKE) --no-print-directory fmt-check
	$(MAKE) --no-print-directory clippy
	$(MAKE) --no-print-directory forge-test
	$(MAKE) --no-print-directory check-artifacts
	$(MAKE) --no-print-directory rust-test

# DEVNET_ARGS: more `metis-seq devnet` options, e.g. DEVNET_ARGS="--nodes 1 --blobs --fresh".
devnet: build
	"$(CARGO_TARGET_DIR)/debug/metis-seq" devnet --dir devnet --anvil "$(TOOLS)/anvil" $(DEVNET_ARGS)

# Benchmarks (not part of `make test`): figures go to docs/benchmarks.md.
bench-rpc: tools
	bash scripts/bench-rpc.sh

bench-net: tools
	bash scripts/bench-net.sh

bench-exec:
	cargo bench -p metis-execution --bench execute

# Every chaos fault, ROUNDS rounds in a random order with random hold times around HOLD seconds (SEED repeats a
# run); prints the table. `make test` runs a short fixed selection.
chaos: tools
	METIS_CHAOS_ROUNDS=$${ROUNDS:-all} METIS_CHAOS_FAULTS=$${FAULTS:-} METIS_CHAOS_SEED=$${SEED:-} METIS_CHAOS_HOLD_SECS=$${HOLD:-30} \
	  cargo test --workspace --test chaos -- --nocapture

# NODES="4 10 16": one devnet per size, its figures as JSON lines in bench-scale.jsonl, a table and a plot
# (FAILOVERS=3 kills of the producer per size).
bench-scale: tools plot-tools
	cargo build --release --bin metis-seq
	python3 scripts/bench_scale.py "$(CARGO_TARGET_DIR)/release/metis-seq" "$(TOOLS)/anvil" "$${NODES:-4 10}" "$${OUT:-bench-scale.jsonl}"
	$(PLOT_PY) scripts/plot_scale.py "$${OUT:-bench-scale.jsonl}" "$${PNG:-bench-scale.png}"

# The plot of saved figures: make plot-scale IN=docs/bench-scale.jsonl PNG=docs/bench-scale.png
plot-scale: plot-tools
	$(PLOT_PY) scripts/plot_scale.py "$${IN:-bench-scale.jsonl}" "$${PNG:-bench-scale.png}"

# The key rounds among 4..100 sequencers in one process (sizes against the vote-extension caps, compute).
bench-keyrounds:
	cargo build --release --bin metis-seq
	"$(CARGO_TARGET_DIR)/release/metis-seq" bench keyrounds --sizes "$${SIZES:-4,10,32,64,100}"

# matplotlib for the plots, pinned, in a venv of its own (only the benchmarks need it).
PLOT_VENV := $(CURDIR)/.tools/plot
PLOT_PY := $(PLOT_VENV)/bin/python
plot-tools:
	@[ -x "$(PLOT_PY)" ] && "$(PLOT_PY)" -c "import matplotlib" 2>/dev/null || { \
	  python3 -m venv "$(PLOT_VENV)" && "$(PLOT_VENV)/bin/pip" install -q "matplotlib==3.9.2"; }

