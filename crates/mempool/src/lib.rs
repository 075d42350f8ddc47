//! The mempool ([`pool`]) and the numbered log of transactions this node admitted from its own users
//! ([`log`]), which gossip reads with a cursor per peer.

pub mod log;
pub mod pool;

pub use log::{LocalLog, LocalTxs, LOCAL_LOG_CAP};
pub use pool::{Added, Mempool, PoolConfig, PoolError};
