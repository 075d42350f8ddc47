//! Ethereum JSON-RPC over the execution engine: the methods wallets and tools (cast, viem, ethers, web3.py)
//! use, with geth's error codes and messages, over HTTP and WebSocket on one port; and the PoS query API
//! (`metis_*`, [`pos`]).

pub mod api;
pub mod convert;
pub mod error;
pub mod eth;
pub mod filters;
pub mod http;
pub mod limits;
pub mod pos;
pub mod pubsub;
pub mod rate;
pub mod server;

pub use eth::RpcLimits;
pub use server::{start, start_with, RpcConfig, RpcServer};
