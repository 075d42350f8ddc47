//! A devnet started by `metis-seq devnet` for one test (the handle is `metis_testkit::devnet`).

#![allow(dead_code, unused_imports)]

pub use metis_testkit::devnet::*;
pub use metis_testkit::{alive, kill, port_free, tempdir, wait_for};

pub const BIN: &str = env!("CARGO_BIN_EXE_metis-seq");

pub fn anvil() -> std::path::PathBuf {
    metis_testkit::anvil_path()
}
