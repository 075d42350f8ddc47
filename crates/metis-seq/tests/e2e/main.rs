//! End-to-end: `metis-seq devnet` driven as a user drives it (RPC, API, L1, CLI). One devnet at a time.

mod accountability;
mod anchor;
mod chain;
mod fast_blocks;
mod faults;
mod governance;
mod harness;
mod membership;
mod observe;
mod rpc_nodes;
