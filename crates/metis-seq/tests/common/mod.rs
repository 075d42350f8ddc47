//! The harness of these tests is `metis-testkit`; this module names its parts as the tests use them.

#![allow(dead_code, unused_imports)]

pub use metis_testkit::dev::{transfer, DevNode};
pub use metis_testkit::testnet;
pub use metis_testkit::{tempdir, wait_for};

/// Dev account `i` of the test mnemonic (funded in the L2 genesis).
pub fn dev_key(i: u32) -> alloy::signers::local::PrivateKeySigner {
    metis_testkit::dev_key(i).expect("dev key")
}
