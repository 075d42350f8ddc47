//! The L1 transaction sender: keeps an ordered list of wanted transactions landed from one account.
//!
//! The sender holds no durable state. Each step reads the account's mined nonce and the fee market, and
//! lines the wanted items up on the nonces from the mined one on: a nonce that holds nothing is sent, a nonce
//! that holds another item (already posted by someone else, or superseded) is replaced, and a nonce whose
//! transaction has waited `bump_after_blocks` is sent again with higher fees (execution and blob fees), up to the
//! configured caps. So a restart (pending transactions are replaced, never duplicated: same nonces), a dropped
//! transaction (sent again) and an L1 reorg that un-mines one (its nonce is free again) all come back to the
//! same lines.

use alloy::eips::eip7594::BlobTransactionSidecarEip7594;
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use tracing::{debug, info, warn};

const GWEI: u128 = 1_000_000_000;

#[derive(Clone, Debug)]
pub struct SenderConfig {
    pub chain_id: u64,
    /// Blocks a transaction may wait before it is sent again with higher fees.
    pub bump_after_blocks: u64,
    /// Highest max fee per gas ever offered (wei).
    pub max_fee_cap: u128,
    /// Highest max fee per blob gas ever offered (wei).
    pub max_blob_fee_cap: u128,
    /// Transactions in flight at once (consecutive nonces).
    pub max_in_flight: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            chain_id: 1,
            bump_after_blocks: 3,
            max_fee_cap: 500 * GWEI,
            max_blob_fee_cap: 500 * GWEI,
            max_in_flight: 4,
        }
    }
}

/// A transaction the caller wants on L1, identified by `key` (what it carries, e.g. batch 7).
#[derive(Clone, Debug)]
pub struct Outgoing<K> {
    pub key: K,
    pub to: Address,
    pub input: Bytes,
    pub gas_limit: u64,
    pub sidecar: Option<Arc<BlobTransactionSidecarEip7594>>,
}

/// Fees offered by one sent transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Fees {
    pub max_fee: u128,
    pub tip: u128,
    /// Max fee per blob gas (blob transactions only).
    pub blob_fee: Option<u128>,
}

impl Fees {
    /// The least a replacement must offer: geth asks +10% on both execution fees and +100% on the blob fee
    /// (we add 12.5% and 100%), whatever the market does.
    fn bumped(self) -> Fees {
        let up = |x: u128| x.saturating_add(x / 8).saturating_add(1);
        Fees {
            max_fee: up(self.max_fee),
            tip: up(self.tip),
            blob_fee: self.blob_fee.map(|b| b.saturating_mul(2).max(1)),
        }
    }

    fn max(self, o: Fees) -> Fees {
        Fees {
            max_fee: self.max_fee.max(o.max_fee),
            tip: self.tip.max(o.tip),
            blob_fee: match (self.blob_fee, o.blob_fee) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// A transaction sent at one nonce.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Slot<K> {
    pub key: K,
    pub hash: B256,
    pub fees: Fees,
    /// L1 head when it was (last) sent.
    pub sent_at: u64,
    /// Times it was sent again with higher fees.
    pub bumps: u32,
}

/// What one step saw and did.
#[derive(Clone, Debug)]
pub struct Step<K> {
    pub head: u64,
    /// The account's mined nonce.
    pub nonce: u64,
    /// Transactions that left the pool into a block since the last step: (nonce, what it carried, hash).
    pub mined: Vec<(u64, K, B256)>,
    /// Transactions sent in this step (new, replacements and bumps).
    pub sent: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("L1 RPC: {0}")]
    Rpc(#[from] alloy::transports::TransportError),
    #[error("L1 latest block is missing")]
    NoHead,
}

pub struct Sender<K> {
    provider: DynProvider,
    from: Address,
    cfg: SenderConfig,
    slots: BTreeMap<u64, Slot<K>>,
}

impl<K: Clone + Debug + PartialEq + Send + Sync> Sender<K> {
    /// `provider` must sign for `from` (a wallet filler) and fill nothing else: every field is set here.
    pub fn new(provider: DynProvider, from: Address, cfg: SenderConfig) -> Self {
        Self {
            provider,
            from,
            cfg,
            slots: BTreeMap::new(),
        }
    }

    pub fn address(&self) -> Address {
        self.from
    }

    /// Transactions in flight, by nonce.
    pub fn in_flight(&self) -> &BTreeMap<u64, Slot<K>> {
        &self.slots
    }

    /// Fees a fresh transaction offers now: twice the base fee plus the tip (one full block of doubling base fee
    /// room), within the caps.
    async fn market(&self) -> Result<(u64, Fees, u128), SenderError> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await?
            .ok_or(SenderError::NoHead)?;
        let base = block.header.base_fee_per_gas.unwrap_or(0) as u128;
        let tip = self.provider.get_max_priority_fee_per_gas().await.unwrap_or(GWEI);
        let blob_base = self.provider.get_blob_base_fee().await.unwrap_or(1).max(1);
        let fees = Fees {
            max_fee: (base * 2 + tip).min(self.cfg.max_fee_cap),
            tip: tip.min(self.cfg.max_fee_cap),
            blob_fee: None,
        };
        Ok((
            block.header.number,
            fees,
            (blob_base * 2).min(self.cfg.max_blob_fee_cap),
        ))
    }

    fn capped(&self, f: Fees) -> Fees {
        Fees {
            max_fee: f.max_fee.min(self.cfg.max_fee_cap),
            tip: f.tip.min(self.cfg.max_fee_cap).min(f.max_fee.min(self.cfg.max_fee_cap)),
            blob_fee: f.blob_fee.map(|b| b.min(self.cfg.max_blob_fee_cap)),
        }
    }

    /// Lines `wanted` (in order) up on the nonces from the mined one on, sending what is missing, replacing what
    /// differs and bumping what waited too long.
    pub async fn step(&mut self, wanted: &[Outgoing<K>]) -> Result<Step<K>, SenderError> {
        let (head, market, blob_market) = self.market().await?;
        let nonce = self.provider.get_transaction_count(self.from).latest().await?;
        let still = self.slots.split_off(&nonce);
        let mined: Vec<(u64, K, B256)> = std::mem::replace(&mut self.slots, still)
            .into_iter()
            .map(|(n, s)| (n, s.key, s.hash))
            .collect();
        let mut sent = 0;
        for (k, item) in wanted.iter().take(self.cfg.max_in_flight).enumerate() {
            let n = nonce + k as u64;
            let fresh = Fees {
                blob_fee: item.sidecar.as_ref().map(|_| blob_market),
                ..market
            };
            let (fees, bumps) = match self.slots.get(&n) {
                None => (fresh, 0),
                Some(s) if s.key != item.key => (self.capped(fresh.max(s.fees.bumped())), s.bumps + 1),
                Some(s) if head >= s.sent_at + self.cfg.bump_after_blocks => {
                    let f = self.capped(fresh.max(s.fees.bumped()));
                    if f == s.fees {
                        warn!(nonce = n, item = ?s.key, fees = ?f, "transaction stuck at the fee cap");
                        continue;
                    }
                    (f, s.bumps + 1)
                }
                Some(_) => continue,
            };
            match self.send(n, item, fees).await {
                Ok(hash) => {
                    if bumps > 0 {
                        info!(nonce = n, item = ?item.key, tx = %hash, max_fee = fees.max_fee, tip = fees.tip, blob_fee = ?fees.blob_fee, bumps, "L1 transaction replaced with higher fees");
                    } else {
                        info!(nonce = n, item = ?item.key, tx = %hash, max_fee = fees.max_fee, blob_fee = ?fees.blob_fee, "L1 transaction sent");
                    }
                    self.slots.insert(
                        n,
                        Slot {
                            key: item.key.clone(),
                            hash,
                            fees,
                            sent_at: head,
                            bumps,
                        },
                    );
                    sent += 1;
                }
                Err(e) => {
                    let msg = e.to_string();
                    if msg.contains("underpriced") || msg.contains("already known") || msg.contains("nonce too low") {
                        // Something we do not know of holds this nonce (a send from before a restart): offer more
                        // next step.
                        debug!(nonce = n, error = %msg, "nonce taken in the pool; bumping");
                        self.slots.insert(
                            n,
                            Slot {
                                key: item.key.clone(),
                                hash: B256::ZERO,
                                fees,
                                sent_at: 0,
                                bumps,
                            },
                        );
                    } else {
                        return Err(e);
                    }
                    break;
                }
            }
        }
        Ok(Step {
            head,
            nonce,
            mined,
            sent,
        })
    }

    async fn send(&self, nonce: u64, item: &Outgoing<K>, fees: Fees) -> Result<B256, SenderError> {
        let mut req = TransactionRequest::default()
            .with_from(self.from)
            .with_to(item.to)
            .with_input(item.input.clone())
            .with_nonce(nonce)
            .with_chain_id(self.cfg.chain_id)
            .with_gas_limit(item.gas_limit)
            .with_max_fee_per_gas(fees.max_fee)
            .with_max_priority_fee_per_gas(fees.tip);
        if let (Some(sc), Some(blob_fee)) = (&item.sidecar, fees.blob_fee) {
            req.max_fee_per_blob_gas = Some(blob_fee);
            req.blob_versioned_hashes = Some(sc.versioned_hashes().collect());
            req.sidecar = Some(alloy::eips::eip7594::BlobTransactionSidecarVariant::Eip7594(
                (**sc).clone(),
            ));
        }
        let pending = self.provider.send_transaction(req).await?;
        Ok(*pending.tx_hash())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_clear_geth_replacement_rules() {
        let f = Fees {
            max_fee: 100,
            tip: 10,
            blob_fee: Some(7),
        };
        let b = f.bumped();
        assert!(b.max_fee * 10 >= f.max_fee * 11 && b.tip * 10 >= f.tip * 11);
        assert_eq!(b.blob_fee, Some(14));
        let m = b.max(Fees {
            max_fee: 500,
            tip: 1,
            blob_fee: None,
        });
        assert_eq!((m.max_fee, m.tip, m.blob_fee), (500, b.tip, Some(14)));
    }
}
