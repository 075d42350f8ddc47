//! The mempool ([`mempool`]) and the numbered log of transactions this node admitted from its own users
//! ([`log`]), which gossip reads with a cursor per peer.

pub mod log;
pub mod mempool;

pub use log::{LocalLog, LocalTxs, LOCAL_LOG_CAP, LOCAL_LOG_MAX_BYTES};
pub use mempool::{Added, Mempool, MempoolConfig, MempoolError};
