//! Deliberate misbehaviour, for tests of what honest nodes do with it. Compiled only with the `test-faults`
//! feature, which only the test builds enable: a release binary holds none of it.

use metis_execution::executor::ExecutedBlock;
use metis_execution::RecoveredTx;
use metis_wire::codec::WireCertificate;
use metis_wire::types::{Address, ValidatorSet};

/// The environment variable a test sets on a node process to make it misbehave.
pub const ENV: &str = "METIS_SEQ_TEST_FAULT";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Propose blocks whose header claims a wrong state root.
    BadStateRoot,
    /// Propose blocks carrying a transaction from an unfunded account that was never executed.
    ForeignTx,
    /// Sign and send a second, conflicting vote for every vote (done by Malachite's Byzantine network proxy).
    DoubleVote,
    /// Sign and send a second proposal for a different value with every proposal (Malachite's proxy).
    DoublePropose,
    /// Leave one validator (the first of the set but this node that the quorum can spare) out of the commit
    /// every proposed block carries, to get it jailed for downtime.
    CensorCommit,
    /// Publish 100 signed proposal streams a second for the next height, at rounds 0, 1, 2, ... 9,999 and again,
    /// each with a 64 KiB junk block.
    StreamFlood,
    /// Drop every proposal stream received for the fault's heights, as if the links had lost them: the node
    /// learns those blocks by sync, after the others have moved on.
    MissProposals,
}

impl Fault {
    /// Faults Malachite's engine commits (through its Byzantine network proxy), not this app.
    pub fn in_engine(self) -> bool {
        matches!(self, Self::DoubleVote | Self::DoublePropose)
    }
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bad-state-root" => Ok(Self::BadStateRoot),
            "foreign-tx" => Ok(Self::ForeignTx),
            "double-vote" => Ok(Self::DoubleVote),
            "double-propose" => Ok(Self::DoublePropose),
            "censor-commit" => Ok(Self::CensorCommit),
            "stream-flood" => Ok(Self::StreamFlood),
            "miss-proposals" => Ok(Self::MissProposals),
            _ => Err(format!(
                "unknown fault {s:?} (bad-state-root, foreign-tx, double-vote, double-propose, censor-commit, \
                 stream-flood, miss-proposals)"
            )),
        }
    }
}

/// A fault and the heights it is committed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultSpec {
    pub fault: Fault,
    pub from_height: u64,
    /// The last height (inclusive); none: for good.
    pub to_height: Option<u64>,
}

impl FaultSpec {
    /// Parses `[moniker:]fault[@from[-to]]`; `None` when the spec names another node. A devnet's nodes inherit
    /// one environment, so the moniker picks the one that misbehaves.
    pub fn parse(spec: &str, moniker: &str) -> Result<Option<Self>, String> {
        let (who, rest) = match spec.split_once(':') {
            Some((who, rest)) => (Some(who), rest),
            None => (None, spec),
        };
        let height = |h: &str| h.parse::<u64>().map_err(|e| format!("fault height {h:?}: {e}"));
        let (name, from_height, to_height) = match rest.split_once('@') {
            Some((name, range)) => match range.split_once('-') {
                Some((from, to)) => (name, height(from)?, Some(height(to)?)),
                None => (name, height(range)?, None),
            },
            None => (rest, 0, None),
        };
        let fault = name.parse()?;
        if who.is_some_and(|w| w != moniker) {
            return Ok(None);
        }
        Ok(Some(Self {
            fault,
            from_height,
            to_height,
        }))
    }

    /// Whether the fault is committed at `height`.
    pub fn at(&self, height: u64) -> bool {
        height >= self.from_height && self.to_height.is_none_or(|to| height <= to)
    }
}

/// The fault the environment asks of the node named `moniker`, if any.
pub fn from_env(moniker: &str) -> Result<Option<FaultSpec>, String> {
    match std::env::var(ENV) {
        Ok(f) => FaultSpec::parse(&f, moniker),
        Err(_) => Ok(None),
    }
}

/// Spoils a block this node built; returns a transaction to add to it unexecuted, if the fault wants one.
pub fn apply(fault: Option<FaultSpec>, block: &mut ExecutedBlock, chain_id: u64) -> Option<RecoveredTx> {
    let spec = fault.filter(|f| f.at(block.header.number))?;
    match spec.fault {
        Fault::BadStateRoot => {
            block.header.state_root = alloy_primitives::keccak256(block.header.state_root);
            block.hash = block.header.hash_slow();
            None
        }
        Fault::ForeignTx => foreign_tx(chain_id),
        Fault::DoubleVote | Fault::DoublePropose | Fault::CensorCommit | Fault::StreamFlood | Fault::MissProposals => {
            None
        }
    }
}

/// The commit a censoring proposer carries: `commit` without the precommit of the first validator of `set` (not
/// `own`) whose removal still leaves more than two thirds of the power, so validators accept it.
pub fn censor(
    fault: Option<FaultSpec>,
    height: u64,
    commit: Option<&WireCertificate>,
    set: Option<&ValidatorSet>,
    own: Address,
) -> Option<WireCertificate> {
    let (commit, set) = (commit?, set?);
    if !fault.is_some_and(|f| f.fault == Fault::CensorCommit && f.at(height)) {
        return Some(commit.clone());
    }
    let total: u128 = set.validators().iter().map(|v| u128::from(v.voting_power)).sum();
    let power = |c: &WireCertificate| -> u128 {
        c.signatures
            .iter()
            .filter_map(|(a, _, _)| set.by_address(a))
            .map(|v| u128::from(v.voting_power))
            .sum()
    };
    for victim in set.validators().iter().filter(|v| v.address != own) {
        let mut out = commit.clone();
        out.signatures.retain(|(a, _, _)| *a != victim.address);
        if out.signatures.len() < commit.signatures.len() && power(&out) * 3 > total * 2 {
            return Some(out);
        }
    }
    Some(commit.clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_names_its_node_and_height() {
        let f = |s: &str, m: &str| FaultSpec::parse(s, m);
        assert_eq!(
            f("double-vote", "node0"),
            Ok(Some(FaultSpec {
                fault: Fault::DoubleVote,
                from_height: 0,
                to_height: None
            }))
        );
        assert_eq!(
            f("node3:double-propose@40", "node3"),
            Ok(Some(FaultSpec {
                fault: Fault::DoublePropose,
                from_height: 40,
                to_height: None
            }))
        );
        let range = f("node3:double-vote@25-30", "node3").unwrap().unwrap();
        assert_eq!((range.from_height, range.to_height), (25, Some(30)));
        assert!(!range.at(24) && range.at(25) && range.at(30) && !range.at(31));
        assert_eq!(f("node3:double-vote@40", "node1"), Ok(None));
        assert!(f("node3:nosuch", "node1").is_err(), "a typo is an error on every node");
        assert!(f("double-vote@x", "node1").is_err());
    }
}
