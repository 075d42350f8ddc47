//! The PoS query API (`metis_*` JSON-RPC): epochs and rotation records, the validator set, the ledger state.
//! Reads a snapshot of the ledger the consensus app publishes after each decided block.

use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::RpcModule;
use metis_pos::{Epoch, Ledger};
use parking_lot::RwLock;
use serde_json::{json, Value};
use std::sync::Arc;

/// The ledger after the last decided block; replaced (not mutated) per block, so readers clone the `Arc`.
pub type SharedLedger = Arc<RwLock<Arc<Ledger>>>;

/// Epochs returned per call at most.
const MAX_EPOCHS: u64 = 1000;

fn invalid(msg: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32602, msg.to_string(), None::<()>)
}

fn epoch_json(l: &Ledger, e: &Epoch) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "producer_signer".into(),
            json!(l.sequencer(e.producer).map(|s| s.signer)),
        );
    }
    v
}

pub fn module(ledger: SharedLedger) -> RpcModule<()> {
    let mut m = RpcModule::new(());
    let l = ledger.clone();
    // Registration fails only on a duplicate name; these are unique.
    let _ = m.register_method("metis_epochs", move |params, _, _| {
        let (from, count): (Option<u64>, Option<u64>) = params.parse().unwrap_or((None, None));
        let count = count.unwrap_or(MAX_EPOCHS);
        if count > MAX_EPOCHS {
            return Err(invalid("at most 1000 epochs per call"));
        }
        let l = l.read().clone();
        let from = from.unwrap_or(0) as usize;
        let out: Vec<Value> = l
            .epochs()
            .iter()
            .skip(from)
            .take(count as usize)
            .map(|e| epoch_json(&l, e))
            .collect();
        Ok::<_, ErrorObjectOwned>(Value::Array(out))
    });
    let l = ledger.clone();
    let _ = m.register_method("metis_currentEpoch", move |_, _, _| {
        let l = l.read().clone();
        Ok::<_, ErrorObjectOwned>(epoch_json(&l, l.current_epoch()))
    });
    let l = ledger.clone();
    let _ = m.register_method("metis_validators", move |_, _, _| {
        let l = l.read().clone();
        let epoch = l.current_epoch().id;
        let produced = l.produced_in(epoch);
        let powers: std::collections::BTreeMap<_, _> = l.validators().into_iter().collect();
        let out: Vec<Value> = l
            .sequencers()
            .map(|s| {
                json!({
                    "id": s.id,
                    "signer": s.signer,
                    "consensus_key": s.consensus_key,
                    "stake": s.stake,
                    "status": s.status,
                    "jailed_until_epoch": s.jailed_until_epoch,
                    "voting_power": powers.get(&s.id).copied().unwrap_or(0),
                    "produced_this_epoch": produced.get(&s.id).copied().unwrap_or(0),
                })
            })
            .collect();
        Ok::<_, ErrorObjectOwned>(Value::Array(out))
    });
    let l = ledger;
    let _ = m.register_method("metis_ledger", move |_, _, _| {
        let l = l.read().clone();
        Ok::<_, ErrorObjectOwned>(json!({
            "height": l.height(),
            "state_hash": l.state_hash(),
            "params": l.params(),
            "epochs": l.epochs().len(),
            "schedule": l.schedule(),
        }))
    });
    m
}
