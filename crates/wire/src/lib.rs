//! The consensus layer's types and their one encoding: the Malachite context (heights, rounds, votes,
//! proposals and their parts, validator sets with the proposer schedule), the signing domains, the wire codec,
//! certificates, and the block as it travels (header, transactions, PoS transactions, last commit).
//! The consensus app, the key rounds, the store's readers and the PoS API share them.

pub mod block;
pub mod codec;
pub mod evidence;
pub mod signing;
pub mod types;

pub use block::BlockData;
pub use codec::{WireCertificate, WireCodec};
pub use malachitebft_core_types::{NilOrVal, Round};
pub use signing::{ConsensusSigner, ConsensusVerifier};
pub use types::{Address, BlockHash, Height, MetisContext, ValidatorSet};
