//! The PoS query API (`metis_*` JSON-RPC): epochs and rotation records, re-elections, the validator set and its
//! changes, sequencers by id or signer, applied L1 events with their L1 positions, this node's L1 view, commit
//! signers per height, the ledger state. Reads the ledger the chain publishes with each committed block.

use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::RpcModule;
use metis_chain::archive;
use metis_chain::Chain;
use metis_pos::{Epoch, Ledger, Sequencer};
use metis_storage::{schema, StoreError};
use serde_json::{json, Value};
use std::sync::Arc;

/// The ledger after the head block (the chain publishes it with each commit).
fn current(chain: &Chain) -> Result<Arc<Ledger>, ErrorObjectOwned> {
    chain
        .ledger()
        .ok_or_else(|| ErrorObjectOwned::owned(-32603, "this chain has no PoS ledger", None::<()>))
}

/// Epochs returned per call at most.
const MAX_EPOCHS: u64 = 1000;

fn invalid(msg: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32602, msg.to_string(), None::<()>)
}

/// A store read failing is this node's fault, and says so.
fn stored<T>(r: Result<T, StoreError>) -> Result<T, ErrorObjectOwned> {
    r.map_err(|e| ErrorObjectOwned::owned(-32603, format!("store: {e}"), None::<()>))
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

/// What the sequencer views need from the ledger beyond the record: computed once per call.
struct SetView {
    powers: std::collections::BTreeMap<u64, u64>,
    produced: std::collections::BTreeMap<u64, u64>,
}

impl SetView {
    fn of(l: &Ledger) -> Self {
        Self {
            powers: l.validators().into_iter().collect(),
            produced: l.produced_in(l.current_epoch().id),
        }
    }
}

fn sequencer_json(v: &SetView, s: &Sequencer) -> Value {
    let (powers, produced) = (&v.powers, &v.produced);
    json!({
        "id": s.id,
        "signer": s.signer,
        "consensus_key": s.consensus_key,
        "dkg_key": s.dkg_key,
        "stake": s.stake,
        "status": s.status,
        "jailed_until_epoch": s.jailed_until_epoch,
        "l1_jailed": s.l1_jailed,
        "voting_power": powers.get(&s.id).copied().unwrap_or(0),
        "produced_this_epoch": produced.get(&s.id).copied().unwrap_or(0),
    })
}

/// `[from?, count?]`: absent or null fields are defaults, anything else that is not a number is refused.
fn optional_pair(params: jsonrpsee::types::Params<'_>) -> Result<(Option<u64>, Option<u64>), ErrorObjectOwned> {
    if params.as_str().is_none() {
        return Ok((None, None));
    }
    let mut seq = params.sequence();
    let from: Option<u64> = seq.optional_next().map_err(|_| invalid("expected [from?, count?]"))?;
    let count: Option<u64> = seq.optional_next().map_err(|_| invalid("expected [from?, count?]"))?;
    Ok((from, count))
}

/// Items returned per list call at most.
const MAX_ITEMS: u64 = 1000;

fn page(params: jsonrpsee::types::Params<'_>) -> Result<(usize, usize), ErrorObjectOwned> {
    let (from, count) = optional_pair(params)?;
    let count = count.unwrap_or(MAX_ITEMS);
    if count > MAX_ITEMS {
        return Err(invalid("at most 1000 items per call"));
    }
    Ok((from.unwrap_or(0) as usize, count as usize))
}

fn header_json(h: &metis_contracts::bindings::BatchInbox::BatchHeader) -> Value {
    json!({
        "index": h.index,
        "l2FirstBlock": h.l2FirstBlock,
        "l2LastBlock": h.l2LastBlock,
        "parentHash": h.parentHash,
        "txRoot": h.txRoot,
        "stateRoot": h.stateRoot,
        "payloadHash": h.payloadHash,
        "blobHashes": h.blobHashes,
        "hash": metis_contracts::digest::batch_hash(h),
    })
}

fn batch_json(store: &metis_storage::Store, index: u64, with_payload: bool) -> Result<Value, ErrorObjectOwned> {
    let internal = |e: String| ErrorObjectOwned::owned(-32603, e, None::<()>);
    let Some(h) = metis_signer::batches::header(store, index).map_err(|e| internal(e.to_string()))? else {
        return Ok(Value::Null);
    };
    let sig: Option<metis_signer::SignatureRecord> = stored(store.get(&schema::batch_signature(index)))?;
    let mut v = header_json(&h);
    v["signature"] = json!(sig.as_ref().map(|r| alloy_primitives::Bytes::from(r.signature.clone())));
    v["signatureLatencyMs"] = json!(sig.as_ref().map(|r| r.latency_ms));
    v["signedByShares"] = json!(sig.as_ref().map(|r| r.signers.clone()));
    v["keyRound"] = json!(sig.as_ref().map(|r| r.key_round));
    if with_payload {
        let payload = store
            .meta(&schema::batch_payload(index))
            .map_err(|e| internal(e.to_string()))?
            .map(alloy_primitives::Bytes::from);
        v["payload"] = json!(payload);
    }
    Ok(v)
}

/// What the PoS API shows of the parts the RPC does not hold: this node's L1 view and its batch poster. The
/// node implements it over the listener's view and the poster's status.
pub trait NodeStatus: Send + Sync + 'static {
    /// This node's L1 view: read up to, events read, and how many after `last_applied` the ledger has not taken.
    fn l1(&self, last_applied: Option<(u64, u64)>) -> Value;
    /// The poster's state (null on a node that does not post).
    fn poster(&self) -> Value;
}

/// The `metis_*` namespace on `backend`, with the signer's status and the node's.
pub fn module(
    backend: Arc<Chain>,
    signer: metis_signer::SharedSignerStatus,
    status: Arc<dyn NodeStatus>,
) -> RpcModule<()> {
    let mut m = RpcModule::new(());
    // Registration fails only on a duplicate name; these are unique.
    let s = status.clone();
    let _ = m.register_method("metis_poster", move |_, _, _| Ok::<_, ErrorObjectOwned>(s.poster()));
    batches(&mut m, &backend, signer);
    sequencers(&mut m, &backend);
    history(&mut m, &backend, status);
    epochs(&mut m, &backend);
    m
}

/// Batches, their proofs, reward reports and the signer's state.
fn batches(m: &mut RpcModule<()>, backend: &Arc<Chain>, signer: metis_signer::SharedSignerStatus) {
    let b = backend.clone();
    let _ = m.register_method("metis_getBatchByIndex", move |params, _, _| {
        let mut seq = params.sequence();
        let index: u64 = seq.next().map_err(|_| invalid("expected [index, withPayload?]"))?;
        let with_payload: Option<bool> = seq
            .optional_next()
            .map_err(|_| invalid("expected [index, withPayload?]"))?;
        let store = b.engine().store().clone();
        batch_json(&store, index, with_payload.unwrap_or(false))
    });
    let b = backend.clone();
    let _ = m.register_method("metis_getBatchForBlock", move |params, _, _| {
        let (n,): (u64,) = params.parse().map_err(|_| invalid("expected [blockNumber]"))?;
        let store = b.engine().store().clone();
        match metis_signer::batches::batch_for_block(&store, n) {
            Ok(Some(h)) => batch_json(&store, h.index, false),
            Ok(None) => Ok(Value::Null),
            Err(e) => Err(ErrorObjectOwned::owned(-32603, e.to_string(), None::<()>)),
        }
    });
    let b = backend.clone();
    let _ = m.register_method("metis_getTxBatchProof", move |params, _, _| {
        let (hash,): (alloy_primitives::B256,) = params.parse().map_err(|_| invalid("expected [txHash]"))?;
        let store = b.engine().store().clone();
        let internal = |e: String| ErrorObjectOwned::owned(-32603, e, None::<()>);
        let Some((block, index)) = store.tx_location(&hash).map_err(|e| internal(e.to_string()))? else {
            return Ok(Value::Null);
        };
        // Reads the batch's transactions: off the async workers.
        let proof = tokio::task::block_in_place(|| metis_signer::batches::tx_proof(&store, block, index))
            .map_err(|e| internal(e.to_string()))?;
        Ok::<_, ErrorObjectOwned>(match proof {
            None => Value::Null,
            Some(p) => json!({
                "batch": header_json(&p.header),
                "blockNumber": block,
                "txIndex": index,
                "txHash": hash,
                "leaf": p.leaf,
                "proof": p.proof,
            }),
        })
    });
    let b = backend.clone();
    let _ = m.register_method("metis_getRewardReport", move |params, _, _| {
        let (id,): (u64,) = params.parse().map_err(|_| invalid("expected [batchId]"))?;
        let store = b.engine().store().clone();
        let internal = |e: String| ErrorObjectOwned::owned(-32603, e, None::<()>);
        let Some(report) = stored(store.get::<metis_pos::RewardReport>(&schema::reward(id)))? else {
            return Ok(Value::Null);
        };
        let mut v: Value = serde_json::to_value(&report).map_err(|e| internal(e.to_string()))?;
        let sig: Option<metis_signer::SignatureRecord> = stored(store.get(&schema::reward_signature(id)))?;
        v["signature"] = json!(sig.as_ref().map(|r| alloy_primitives::Bytes::from(r.signature.clone())));
        v["signatureLatencyMs"] = json!(sig.as_ref().map(|r| r.latency_ms));
        Ok::<_, ErrorObjectOwned>(v)
    });
    let l = backend.clone();
    let _ = m.register_method("metis_signer", move |_, _, _| {
        let (batches, rewards) = {
            let l = current(&l)?;
            (l.batches().clone(), l.rewards().clone())
        };
        let st = signer.read().clone();
        Ok::<_, ErrorObjectOwned>(json!({
            "key_round": st.key_round,
            "has_share": st.has_share,
            "open": st.open,
            "signed": st.signed,
            "latencies_ms": st.latencies_ms,
            "last_error": st.last_error,
            "batches": batches,
            "rewards": rewards,
        }))
    });
}

/// Sequencers, applied L1 events and the threshold key.
fn sequencers(m: &mut RpcModule<()>, backend: &Arc<Chain>) {
    let l = backend.clone();
    let _ = m.register_method("metis_sequencer", move |params, _, _| {
        let (key,): (Value,) = params
            .parse()
            .map_err(|_| invalid("expected a sequencer id or signer address"))?;
        let l = current(&l)?;
        let found = match &key {
            Value::Number(n) => n.as_u64().and_then(|id| l.sequencer(id)),
            Value::String(s) => match s.parse::<alloy_primitives::Address>() {
                Ok(a) => l.sequencers().find(|q| q.signer == a),
                Err(_) => s.parse::<u64>().ok().and_then(|id| l.sequencer(id)),
            },
            _ => None,
        };
        let view = SetView::of(&l);
        Ok::<_, ErrorObjectOwned>(found.map(|s| sequencer_json(&view, s)).unwrap_or(Value::Null))
    });
    let l = backend.clone();
    let store = backend.engine().store().clone();
    let _ = m.register_method("metis_l1Events", move |params, _, _| {
        let (from, count) = page(params)?;
        let l = current(&l)?;
        let archived = l.archived().applied_l1;
        let total = archived + l.applied_l1().len() as u64;
        let (from, count) = (from as u64, count as u64);
        let mut records: Vec<metis_pos::AppliedL1> = Vec::new();
        for n in from..from.saturating_add(count).min(total) {
            let record = if n < archived {
                stored(archive::applied_l1(&store, n))?
            } else {
                usize::try_from(n - archived)
                    .ok()
                    .and_then(|i| l.applied_l1().get(i).cloned())
            };
            records.extend(record);
        }
        let out: Vec<Value> = records
            .iter()
            .map(|a| {
                json!({
                    "event": a.tx.event.name(),
                    "data": a.tx.event,
                    "l1_block": a.tx.position.block_number,
                    "l1_block_hash": a.tx.position.block_hash,
                    "l1_tx_index": a.tx.position.tx_index,
                    "l1_log_index": a.tx.position.log_index,
                    "l2_block": a.height,
                    "ignored": a.ignored,
                })
            })
            .collect();
        Ok::<_, ErrorObjectOwned>(Value::Array(out))
    });
    threshold_key(m, backend);
}

/// The pool's threshold key: current key epoch, running round, every round's outcome.
fn threshold_key(m: &mut RpcModule<()>, backend: &Arc<Chain>) {
    let l = backend.clone();
    let b = backend.clone();
    let _ = m.register_method("metis_thresholdKey", move |_, _, _| {
        let l = current(&l)?;
        // The public polynomial and members of the last completed round (public data; what aggregators need).
        let output = b
            .engine()
            .store()
            .meta(schema::KEY_OUTPUT)
            .ok()
            .flatten()
            .map(|o| format!("0x{}", alloy_primitives::hex::encode(o)));
        let k = l.keys();
        let current = k.current.as_ref().map(|e| {
            // The "MPC address": the last 20 bytes of keccak256 of the EIP-2537 key, as LockingPool derives it.
            let address = alloy_primitives::Address::from_slice(&alloy_primitives::keccak256(&e.group_key)[12..]);
            json!({
                "round": e.round,
                "group_key": e.group_key,
                "mpc_address": address,
                "quorum": e.quorum,
                "members": e.members,
                "since": e.since,
            })
        });
        Ok::<_, ErrorObjectOwned>(json!({
            "current": current,
            "output": output,
            "running": k.running,
            "next_round": k.next_round,
            "history": k.history,
        }))
    });
}

/// Re-elections, set changes and this node's L1 view.
fn history(m: &mut RpcModule<()>, backend: &Arc<Chain>, status: Arc<dyn NodeStatus>) {
    let l = backend.clone();
    let store = backend.engine().store().clone();
    let _ = m.register_method("metis_reElections", move |_, _, _| {
        let l = current(&l)?;
        let mut out: Vec<Value> = Vec::new();
        for n in 0..stored(archive::re_elections_archived(&store))? {
            if let Some(id) = stored(archive::re_election(&store, n))? {
                out.extend(stored(archive::epoch(&store, id))?.map(|a| epoch_json(&l, &a.epoch)));
            }
        }
        out.extend(l.re_elections().map(|e| epoch_json(&l, e)));
        Ok::<_, ErrorObjectOwned>(Value::Array(out))
    });
    let l = backend.clone();
    let store = backend.engine().store().clone();
    let _ = m.register_method("metis_setChanges", move |_, _, _| {
        let l = current(&l)?;
        let mut out: Vec<Value> = Vec::new();
        for n in 0..l.archived().set_changes {
            out.extend(stored(archive::set_change(&store, n))?.map(|c| serde_json::to_value(c).unwrap_or(Value::Null)));
        }
        out.extend(
            l.set_changes()
                .iter()
                .map(|c| serde_json::to_value(c).unwrap_or(Value::Null)),
        );
        Ok::<_, ErrorObjectOwned>(Value::Array(out))
    });
    let l = backend.clone();
    let _ = m.register_method("metis_l1Status", move |_, _, _| {
        let l = current(&l)?;
        let mut v = status.l1(l.last_l1());
        v["last_applied"] = json!(l.last_l1());
        Ok::<_, ErrorObjectOwned>(v)
    });
}

/// Commit certificates, epochs, validators and the ledger.
fn epochs(m: &mut RpcModule<()>, backend: &Arc<Chain>) {
    let b = backend.clone();
    let _ = m.register_method("metis_commit", move |params, _, _| {
        let (height,): (u64,) = params.parse().map_err(|_| invalid("expected a block number"))?;
        let cert = stored(
            b.engine()
                .store()
                .get::<metis_wire::WireCertificate>(&schema::cert(height)),
        )?;
        let Some(cert) = cert else {
            return Ok(Value::Null);
        };
        let signers: Vec<String> = cert.signatures.iter().map(|(a, _, _)| a.to_string()).collect();
        Ok::<_, ErrorObjectOwned>(json!({
            "height": cert.height.0,
            "round": cert.round.as_i64(),
            "block": cert.value_id.to_string(),
            "signers": signers,
        }))
    });
    let l = backend.clone();
    let store = backend.engine().store().clone();
    let _ = m.register_method("metis_epochs", move |params, _, _| {
        let (from, count) = optional_pair(params)?;
        let count = count.unwrap_or(MAX_EPOCHS);
        if count > MAX_EPOCHS {
            return Err(invalid("at most 1000 epochs per call"));
        }
        let l = current(&l)?;
        let from = from.unwrap_or(0);
        let archived = l.archived().epochs;
        let total = archived + l.epochs().len() as u64;
        // Old epochs come from the store, the rest from the ledger.
        let mut out: Vec<Value> = Vec::new();
        for id in from..from.saturating_add(count).min(total) {
            if id < archived {
                out.extend(stored(archive::epoch(&store, id))?.map(|a| epoch_json(&l, &a.epoch)));
            } else {
                out.extend(l.epoch(id).map(|e| epoch_json(&l, e)));
            }
        }
        Ok::<_, ErrorObjectOwned>(Value::Array(out))
    });
    let l = backend.clone();
    let _ = m.register_method("metis_currentEpoch", move |_, _, _| {
        let l = current(&l)?;
        Ok::<_, ErrorObjectOwned>(epoch_json(&l, l.current_epoch()))
    });
    let l = backend.clone();
    let _ = m.register_method("metis_validators", move |_, _, _| {
        let l = current(&l)?;
        let view = SetView::of(&l);
        let out: Vec<Value> = l.sequencers().map(|s| sequencer_json(&view, s)).collect();
        Ok::<_, ErrorObjectOwned>(Value::Array(out))
    });
    let l = backend.clone();
    let _ = m.register_method("metis_ledger", move |_, _, _| {
        let l = current(&l)?;
        Ok::<_, ErrorObjectOwned>(json!({
            "height": l.height(),
            "state_hash": l.state_hash(),
            "params": l.params(),
            "epochs": l.archived().epochs + l.epochs().len() as u64,
            "archived": l.archived(),
            "schedule": l.schedule(),
            "last_l1_event": l.last_l1(),
        }))
    });
}
