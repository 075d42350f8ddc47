//! The PoS query API (`metis_*` JSON-RPC): epochs and rotation records, re-elections, the validator set and its
//! changes, sequencers by id or signer, applied L1 events with their L1 positions, this node's L1 view, commit
//! signers per height, the ledger state. Reads the ledger the chain publishes with each committed block.

use crate::api::PosApiServer;
use crate::error::{internal, invalid_params, RpcResult};
use jsonrpsee::RpcModule;
use metis_chain::archive;
use metis_chain::Chain;
use metis_pos::{Epoch, GovParam, Ledger, Sequencer};
use metis_storage::{schema, StoreError};
use metis_wire::evidence::Evidence;
use serde_json::{json, Value};
use std::sync::Arc;

/// The ledger after the head block (the chain publishes it with each commit).
fn current(chain: &Chain) -> RpcResult<Arc<Ledger>> {
    chain.ledger().ok_or_else(|| internal("this chain has no PoS ledger"))
}

/// Epochs returned per call at most.
const MAX_EPOCHS: u64 = 1000;

/// A store read failing is this node's fault, and says so.
fn stored<T>(r: Result<T, StoreError>) -> RpcResult<T> {
    r.map_err(|e| internal(format!("store: {e}")))
}

/// Our own records always serialize; if one did not, that is this node's fault.
fn to_json(v: &impl serde::Serialize) -> RpcResult<Value> {
    serde_json::to_value(v).map_err(|e| internal(format!("encode: {e}")))
}

fn epoch_json(l: &Ledger, e: &Epoch) -> RpcResult<Value> {
    let mut v = to_json(e)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "producer_signer".into(),
            json!(l.sequencer(e.producer).map(|s| s.signer)),
        );
    }
    Ok(v)
}

/// What the sequencer views need from the ledger beyond the record: computed once per call.
struct SetView<'a> {
    powers: std::collections::BTreeMap<u64, u64>,
    produced: std::collections::BTreeMap<u64, u64>,
    offences: &'a metis_pos::OffenceState,
    /// The downtime limit and what one proposer's blocks may count towards it.
    max_missed: u64,
}

impl<'a> SetView<'a> {
    fn of(l: &'a Ledger) -> Self {
        Self {
            powers: l.validators().into_iter().collect(),
            produced: l.produced_in(l.current_epoch().id),
            offences: l.offences(),
            max_missed: l.params().max_missed(),
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
        "jail": v.offences.jail(s.id),
        "missed_in_window": v.offences.downtime().missed(s.id),
        // Misses counted towards the downtime jail (at most a little over half the limit from any one proposer).
        "downtime_counted": v.offences.downtime().counted(s.id, metis_pos::per_proposer_cap(v.max_missed)),
        "downtime_limit": v.max_missed,
    })
}

/// The `Slashed` event L1 emitted for this evidence, while the ledger still holds it (recent L1 events).
fn slashed_on_l1(l: &Ledger, evidence: &alloy_primitives::B256) -> Option<Value> {
    l.applied_l1().iter().find_map(|a| match &a.tx.event {
        metis_pos::L1Event::Slashed {
            amount, evidence: e, ..
        } if e == evidence => Some(json!({
            "amount": amount,
            "l1_block": a.tx.position.block_number,
            "l1_block_hash": a.tx.position.block_hash,
            "l1_tx_index": a.tx.position.tx_index,
            "l1_tx_hash": a.tx.position.tx_hash,
            "l2_block": a.height,
        })),
        _ => None,
    })
}

/// Offences returned per call at most.
const MAX_OFFENCES: u64 = 100;

fn signed_json(value: Value, signature: &metis_wire::types::Signature) -> Value {
    json!({ "value": value, "signature": alloy_primitives::Bytes::from(signature.0.to_vec()) })
}

/// Both signed messages of an evidence item, readable; `encoded` is what its hash is over.
fn evidence_json(e: &Evidence, encoded: &[u8]) -> Value {
    use metis_wire::NilOrVal;
    let vote_value = |v: &NilOrVal<metis_wire::BlockHash>| match v {
        NilOrVal::Nil => Value::Null,
        NilOrVal::Val(h) => json!(alloy_primitives::B256::from(h.0)),
    };
    let (first, second, step) = match e {
        Evidence::DoubleVote { first, second } => (
            signed_json(vote_value(&first.vote.value), &first.signature),
            signed_json(vote_value(&second.vote.value), &second.signature),
            json!(format!("{:?}", first.vote.vote_type)),
        ),
        Evidence::DoubleProposal { first, second } => (
            signed_json(
                json!(alloy_primitives::B256::from(first.proposal.value.0)),
                &first.signature,
            ),
            signed_json(
                json!(alloy_primitives::B256::from(second.proposal.value.0)),
                &second.signature,
            ),
            json!("Proposal"),
        ),
        Evidence::DoubleStream { first, second } => (
            signed_json(
                json!(alloy_primitives::B256::from(first.init.value.0)),
                &first.signature,
            ),
            signed_json(
                json!(alloy_primitives::B256::from(second.init.value.0)),
                &second.signature,
            ),
            json!("ProposalStream"),
        ),
    };
    json!({
        "offender_key": alloy_primitives::B256::from(e.offender().0),
        "height": e.height().0,
        "round": e.round().as_i64(),
        "step": step,
        "first": first,
        "second": second,
        "encoded": alloy_primitives::Bytes::from(encoded.to_vec()),
    })
}

/// Items returned per list call at most.
const MAX_ITEMS: u64 = 1000;

/// `[from?, count?]` of a list: absent or null fields are defaults; more than `max` is refused.
fn page(from: Option<u64>, count: Option<u64>, max: u64, what: &str) -> RpcResult<(u64, u64)> {
    let count = count.unwrap_or(max);
    if count > max {
        return Err(invalid_params(format!("at most {max} {what} per call")));
    }
    Ok((from.unwrap_or(0), count))
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

fn batch_json(store: &metis_storage::Store, index: u64, with_payload: bool) -> RpcResult<Value> {
    let Some(h) = metis_signer::batches::header(store, index).map_err(internal)? else {
        return Ok(Value::Null);
    };
    let sig: Option<metis_signer::SignatureRecord> = stored(store.get(&schema::batch_signature(index)))?;
    let mut v = header_json(&h);
    v["signature"] = json!(sig.as_ref().map(|r| alloy_primitives::Bytes::from(r.signature.clone())));
    v["signatureLatencyMs"] = json!(sig.as_ref().map(|r| r.latency_ms));
    v["signedByShares"] = json!(sig.as_ref().map(|r| r.signers.clone()));
    v["keyRound"] = json!(sig.as_ref().map(|r| r.key_round));
    if with_payload {
        let payload = stored(store.meta(&schema::batch_payload(index)))?.map(alloy_primitives::Bytes::from);
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

/// The `metis_*` namespace on `chain`, with the signer's status and the node's.
pub fn module(
    chain: Arc<Chain>,
    signer: metis_signer::SharedSignerStatus,
    status: Arc<dyn NodeStatus>,
) -> RpcModule<PosRpc> {
    PosRpc { chain, signer, status }.into_rpc()
}

/// The PoS API over the chain's store and published ledger.
pub struct PosRpc {
    chain: Arc<Chain>,
    signer: metis_signer::SharedSignerStatus,
    status: Arc<dyn NodeStatus>,
}

impl PosRpc {
    fn store(&self) -> metis_storage::Store {
        self.chain.engine().store().clone()
    }
}

impl PosApiServer for PosRpc {
    fn batch_by_index(&self, index: u64, with_payload: Option<bool>) -> RpcResult<Value> {
        batch_json(&self.store(), index, with_payload.unwrap_or(false))
    }

    fn batch_for_block(&self, block: u64) -> RpcResult<Value> {
        let store = self.store();
        match metis_signer::batches::batch_for_block(&store, block).map_err(internal)? {
            Some(h) => batch_json(&store, h.index, false),
            None => Ok(Value::Null),
        }
    }

    fn tx_batch_proof(&self, hash: alloy_primitives::B256) -> RpcResult<Value> {
        let store = self.store();
        let Some((block, index)) = stored(store.tx_location(&hash))? else {
            return Ok(Value::Null);
        };
        let Some(p) = metis_signer::batches::tx_proof(&store, block, index).map_err(internal)? else {
            return Ok(Value::Null);
        };
        Ok(json!({
            "batch": header_json(&p.header),
            "blockNumber": block,
            "txIndex": index,
            "txHash": hash,
            "leaf": p.leaf,
            "proof": p.proof,
        }))
    }

    fn reward_report(&self, id: u64) -> RpcResult<Value> {
        let store = self.store();
        let Some(report) = stored(store.get::<metis_pos::RewardReport>(&schema::reward(id)))? else {
            return Ok(Value::Null);
        };
        let mut v = to_json(&report)?;
        let sig: Option<metis_signer::SignatureRecord> = stored(store.get(&schema::reward_signature(id)))?;
        v["signature"] = json!(sig.as_ref().map(|r| alloy_primitives::Bytes::from(r.signature.clone())));
        v["signatureLatencyMs"] = json!(sig.as_ref().map(|r| r.latency_ms));
        Ok(v)
    }

    fn signer(&self) -> RpcResult<Value> {
        let l = current(&self.chain)?;
        let st = self.signer.read().clone();
        Ok(json!({
            "key_round": st.key_round,
            "has_share": st.has_share,
            "open": st.open,
            "signed": st.signed,
            "latencies_ms": st.latencies_ms,
            "last_error": st.last_error,
            "batches": l.batches(),
            "rewards": l.rewards(),
        }))
    }

    fn poster(&self) -> RpcResult<Value> {
        Ok(self.status.poster())
    }

    fn sequencer(&self, key: Value) -> RpcResult<Value> {
        let l = current(&self.chain)?;
        let found = match &key {
            Value::Number(n) => n.as_u64().and_then(|id| l.sequencer(id)),
            Value::String(s) => match s.parse::<alloy_primitives::Address>() {
                Ok(a) => l.sequencers().find(|q| q.signer == a),
                Err(_) => s.parse::<u64>().ok().and_then(|id| l.sequencer(id)),
            },
            _ => return Err(invalid_params("expected a sequencer id or signer address")),
        };
        let view = SetView::of(&l);
        Ok(found.map(|s| sequencer_json(&view, s)).unwrap_or(Value::Null))
    }

    fn governance(&self) -> RpcResult<Value> {
        let l = current(&self.chain)?;
        let g = l.governance();
        let params: serde_json::Map<String, Value> = GovParam::ALL
            .iter()
            .map(|p| {
                let (min, max) = p.bounds();
                (
                    p.name().to_string(),
                    json!({"value": p.get(l.params()), "min": min, "max": max, "number": p.index()}),
                )
            })
            .collect();
        let epoch = l.current_epoch();
        let pending: Vec<Value> = g
            .pending()
            .iter()
            .map(|c| {
                json!({
                    "param": c.param.name(),
                    "value": c.value,
                    "now": c.param.get(l.params()),
                    "applies_from_epoch": epoch.id.saturating_add(1),
                    "epoch_ends_at": epoch.last_block,
                    "l1_block": c.position.block_number,
                    "l1_tx_hash": c.position.tx_hash,
                    "l2_block": c.height,
                })
            })
            .collect();
        let history: Vec<Value> = g
            .history()
            .iter()
            .zip(g.dropped()..)
            .map(|(c, n)| {
                json!({
                    "number": n,
                    "param": c.param.name(),
                    "old": c.old,
                    "new": c.new,
                    "epoch": c.epoch,
                    "from_block": c.from_block,
                    "l1_block": c.position.block_number,
                    "l1_tx_hash": c.position.tx_hash,
                    "l2_block": c.carried_at,
                    "ignored": c.ignored,
                })
            })
            .collect();
        Ok(json!({"params": params, "pending": pending, "history": history}))
    }

    fn l1_events(&self, from: Option<u64>, count: Option<u64>) -> RpcResult<Value> {
        let (from, count) = page(from, count, MAX_ITEMS, "items")?;
        let l = current(&self.chain)?;
        let store = self.store();
        let archived = l.archived().applied_l1;
        let total = archived.saturating_add(l.applied_l1().len() as u64);
        let mut out: Vec<Value> = Vec::new();
        for n in from..from.saturating_add(count).min(total) {
            let record = if n < archived {
                stored(archive::applied_l1(&store, n))?
            } else {
                usize::try_from(n - archived)
                    .ok()
                    .and_then(|i| l.applied_l1().get(i).cloned())
            };
            out.extend(record.map(|a| {
                json!({
                    "event": a.tx.event.name(),
                    "data": a.tx.event,
                    "l1_block": a.tx.position.block_number,
                    "l1_block_hash": a.tx.position.block_hash,
                    "l1_tx_index": a.tx.position.tx_index,
                    "l1_tx_hash": a.tx.position.tx_hash,
                    "l1_log_index": a.tx.position.log_index,
                    "l2_block": a.height,
                    "ignored": a.ignored,
                })
            }));
        }
        Ok(Value::Array(out))
    }

    fn threshold_key(&self) -> RpcResult<Value> {
        let l = current(&self.chain)?;
        // The public polynomial and members of the last completed round (public data; what aggregators need).
        let output =
            stored(self.store().meta(schema::KEY_OUTPUT))?.map(|o| format!("0x{}", alloy_primitives::hex::encode(o)));
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
        Ok(json!({
            "current": current,
            "output": output,
            "running": k.running,
            "next_round": k.next_round,
            "history": k.history,
        }))
    }

    fn re_elections(&self) -> RpcResult<Value> {
        let l = current(&self.chain)?;
        let store = self.store();
        let mut out: Vec<Value> = Vec::new();
        for n in 0..stored(archive::re_elections_archived(&store))? {
            if let Some(id) = stored(archive::re_election(&store, n))? {
                if let Some(a) = stored(archive::epoch(&store, id))? {
                    out.push(epoch_json(&l, &a.epoch)?);
                }
            }
        }
        for e in l.re_elections() {
            out.push(epoch_json(&l, e)?);
        }
        Ok(Value::Array(out))
    }

    fn set_changes(&self) -> RpcResult<Value> {
        let l = current(&self.chain)?;
        let store = self.store();
        let mut out: Vec<Value> = Vec::new();
        for n in 0..l.archived().set_changes {
            if let Some(c) = stored(archive::set_change(&store, n))? {
                out.push(to_json(&c)?);
            }
        }
        for c in l.set_changes() {
            out.push(to_json(c)?);
        }
        Ok(Value::Array(out))
    }

    fn l1_status(&self) -> RpcResult<Value> {
        let l = current(&self.chain)?;
        let mut v = self.status.l1(l.last_l1());
        v["last_applied"] = json!(l.last_l1());
        Ok(v)
    }

    fn commit(&self, height: u64) -> RpcResult<Value> {
        let Some(cert) = stored(self.store().get::<metis_wire::WireCertificate>(&schema::cert(height)))? else {
            return Ok(Value::Null);
        };
        let signers: Vec<String> = cert.signatures.iter().map(|(a, _, _)| a.to_string()).collect();
        Ok(json!({
            "height": cert.height.0,
            "round": cert.round.as_i64(),
            "block": cert.value_id.to_string(),
            "signers": signers,
        }))
    }

    fn epochs(&self, from: Option<u64>, count: Option<u64>) -> RpcResult<Value> {
        let (from, count) = page(from, count, MAX_EPOCHS, "epochs")?;
        let l = current(&self.chain)?;
        let store = self.store();
        let archived = l.archived().epochs;
        let total = archived.saturating_add(l.epochs().len() as u64);
        // Old epochs come from the store, the rest from the ledger.
        let mut out: Vec<Value> = Vec::new();
        for id in from..from.saturating_add(count).min(total) {
            if id < archived {
                if let Some(a) = stored(archive::epoch(&store, id))? {
                    out.push(epoch_json(&l, &a.epoch)?);
                }
            } else if let Some(e) = l.epoch(id) {
                out.push(epoch_json(&l, e)?);
            }
        }
        Ok(Value::Array(out))
    }

    fn current_epoch(&self) -> RpcResult<Value> {
        let l = current(&self.chain)?;
        epoch_json(&l, l.current_epoch())
    }

    fn validators(&self) -> RpcResult<Value> {
        let l = current(&self.chain)?;
        let view = SetView::of(&l);
        Ok(Value::Array(l.sequencers().map(|s| sequencer_json(&view, s)).collect()))
    }

    fn evidence(&self, from: Option<u64>, count: Option<u64>) -> RpcResult<Value> {
        let (from, count) = page(from, count, MAX_OFFENCES, "offences")?;
        let l = current(&self.chain)?;
        let store = self.store();
        let open: std::collections::BTreeMap<_, _> = l.offences().slashes().map(|r| (r.evidence, r.id)).collect();
        let mut out = Vec::new();
        for o in l
            .offences()
            .offences()
            .iter()
            .skip(usize::try_from(from).unwrap_or(usize::MAX))
            .take(usize::try_from(count).unwrap_or(usize::MAX))
        {
            let m = &o.misbehaviour;
            // The evidence as the including block carried it.
            let carried: Option<Vec<Vec<u8>>> = stored(store.get(&schema::evidence_at(o.included)))?;
            let evidence = carried.as_ref().and_then(|items| {
                let b = items.iter().find(|b| alloy_primitives::keccak256(b) == m.evidence)?;
                Evidence::from_bytes(b).ok().map(|e| evidence_json(&e, b))
            });
            out.push(json!({
                "sequencer": m.sequencer,
                "signer": l.sequencer(m.sequencer).map(|s| s.signer),
                "kind": m.kind,
                "offence_height": m.height,
                "included": o.included,
                "evidence_hash": m.evidence,
                "slash": o.slash,
                "slash_open": open.contains_key(&m.evidence),
                "slash_signature": match open.get(&m.evidence) {
                    Some(id) => stored(store.get::<metis_signer::SignatureRecord>(&schema::slash_signature(*id)))?
                        .map(|r| alloy_primitives::Bytes::from(r.signature)),
                    None => None,
                },
                "jail": l.offences().jail(m.sequencer),
                "l1_slash": slashed_on_l1(&l, &m.evidence),
                "evidence": evidence,
            }));
        }
        Ok(Value::Array(out))
    }

    fn ledger(&self) -> RpcResult<Value> {
        let l = current(&self.chain)?;
        Ok(json!({
            "height": l.height(),
            "state_hash": l.state_hash(),
            "params": l.params(),
            "epochs": l.archived().epochs.saturating_add(l.epochs().len() as u64),
            "archived": l.archived(),
            "schedule": l.schedule(),
            "last_l1_event": l.last_l1(),
            "l1_events": l.archived().applied_l1.saturating_add(l.applied_l1().len() as u64),
        }))
    }

    fn pace(&self) -> RpcResult<Value> {
        to_json(&self.chain.pace())
    }
}
