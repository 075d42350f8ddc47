//! Deliberate misbehaviour, for tests of what honest nodes do with it. Compiled only with the `test-faults`
//! feature, which only the test builds enable: a release binary holds none of it.

use metis_execution::executor::ExecutedBlock;
use metis_execution::RecoveredTx;

/// The environment variable a test sets on a node process to make it misbehave.
pub const ENV: &str = "METIS_SEQ_TEST_FAULT";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Propose blocks whose header claims a wrong state root.
    BadStateRoot,
    /// Propose blocks carrying a transaction from an unfunded account that was never executed.
    ForeignTx,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bad-state-root" => Ok(Self::BadStateRoot),
            "foreign-tx" => Ok(Self::ForeignTx),
            _ => Err(format!("unknown fault {s:?} (bad-state-root, foreign-tx)")),
        }
    }
}

/// The fault the environment asks for, if any.
pub fn from_env() -> Result<Option<Fault>, String> {
    match std::env::var(ENV) {
        Ok(f) => f.parse().map(Some),
        Err(_) => Ok(None),
    }
}

/// Spoils a block this node built; returns a transaction to add to it unexecuted, if the fault wants one.
pub fn apply(fault: Option<Fault>, block: &mut ExecutedBlock, chain_id: u64) -> Option<RecoveredTx> {
    match fault? {
        Fault::BadStateRoot => {
            block.header.state_root = alloy_primitives::keccak256(block.header.state_root);
            block.hash = block.header.hash_slow();
            None
        }
        Fault::ForeignTx => foreign_tx(chain_id),
    }
}

/// A correctly signed transfer from a fresh key nobody funded.
fn foreign_tx(chain_id: u64) -> Option<RecoveredTx> {
    use alloy_consensus::{SignableTransaction, TxEip1559};
    use alloy_signer::SignerSync;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).ok()?;
    let key = alloy_signer_local::PrivateKeySigner::from_slice(&seed).ok()?;
    let tx = TxEip1559 {
        chain_id,
        nonce: 0,
        gas_limit: 21_000,
        max_fee_per_gas: 100_000_000_000,
        max_priority_fee_per_gas: 1,
        to: alloy_primitives::TxKind::Call(alloy_primitives::Address::repeat_byte(0xee)),
        value: alloy_primitives::U256::from(1),
        input: Default::default(),
        access_list: Default::default(),
    };
    let sig = key.sign_hash_sync(&tx.signature_hash()).ok()?;
    RecoveredTx::from_envelope(alloy_consensus::TxEnvelope::from(tx.into_signed(sig))).ok()
}
