//! The eth_*, net_* and web3_* methods ([`crate::api`]) over snapshots of the chain's head ([`HeadView`]), its
//! mempool and the installed filters. Calls and log scans go through [`HeavyWork`].

use crate::api::{DebugApiServer, EthApiServer, NetApiServer, TxpoolApiServer, Web3ApiServer};
use crate::convert::{block_logs_matching, rpc_block, rpc_receipt, rpc_tx};
use crate::error::{internal, invalid_params, limit_exceeded, not_found, reverted, server_error, RpcResult};
use crate::filters::FilterKind;
use crate::limits::{remote_ip, HeavyLimits, HeavyWork};
use alloy_consensus::{Header, Transaction as _, TxEnvelope};
use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::{Address, Bytes, TxKind, B256, U256, U64};
use alloy_rpc_types_eth::{
    state::StateOverride, Block, EIP1186AccountProofResponse, EIP1186StorageProof, FeeHistory, Filter,
    FilterBlockOption, Log as RpcLog, Transaction as RpcTransaction, TransactionReceipt, TransactionRequest,
};
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{Extensions, PendingSubscriptionSink, RpcModule};
use metis_chain::{Chain, HeadView};
use metis_execution::call::{self, AccountOverride, CallOutcome};
use metis_execution::executor::{next_base_fee, BlockContext};
use metis_execution::genesis::KECCAK_EMPTY;
use metis_execution::RecoveredTx;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Limits that keep one request from taking the node down.
#[derive(Clone, Debug)]
pub struct RpcLimits {
    /// Widest block range eth_getLogs and log filters scan.
    pub max_log_range: u64,
    /// Most logs one eth_getLogs answers.
    pub max_logs: usize,
    /// Most blocks eth_feeHistory covers.
    pub max_fee_history: u64,
    /// Gas one eth_call or eth_estimateGas run may use at most (geth's `--rpc.gascap`).
    pub gas_cap: u64,
    /// Live `logs` subscriptions, node-wide.
    pub max_log_subscriptions: usize,
    /// Threads, time and per-address share for calls and log scans.
    pub heavy: HeavyLimits,
}

impl Default for RpcLimits {
    fn default() -> Self {
        Self {
            max_log_range: 10_000,
            max_logs: 10_000,
            max_fee_history: 1024,
            gas_cap: 50_000_000,
            max_log_subscriptions: 1000,
            heavy: HeavyLimits::default(),
        }
    }
}

/// Default tip suggestion when recent blocks say nothing (as geth and anvil: 1 gwei).
pub const DEFAULT_TIP: u128 = 1_000_000_000;

/// Most storage keys one eth_getProof proves (each is a walk of the account's storage trie).
pub const MAX_PROOF_KEYS: usize = 1024;

pub struct Ctx {
    pub backend: Arc<Chain>,
    pub limits: RpcLimits,
    pub client_version: String,
    /// The suggested tip and the head it was computed at: wallets ask on every transaction, the answer only
    /// changes with the head.
    pub tip_cache: parking_lot::Mutex<Option<(B256, u128)>>,
    /// Installed polling filters.
    pub filters: parking_lot::Mutex<crate::filters::Filters>,
    pub heavy: HeavyWork,
    /// One permit per live `logs` subscription: each is matched against every new block.
    pub log_subscriptions: Arc<tokio::sync::Semaphore>,
}

fn store_err(e: impl std::fmt::Display) -> ErrorObjectOwned {
    internal(format!("storage: {e}"))
}

/// A block's header, hash and transactions.
type FullBlock = (Header, B256, Vec<(Address, TxEnvelope)>);

fn block_number(view: &HeadView, tag: BlockNumberOrTag) -> u64 {
    match tag {
        BlockNumberOrTag::Earliest => 0,
        BlockNumberOrTag::Number(n) => n,
        // Every block is final once decided: latest, safe, finalized and pending are the head.
        _ => view.head().number,
    }
}

fn resolve(view: &HeadView, id: BlockId) -> RpcResult<Option<u64>> {
    match id {
        BlockId::Number(tag) => Ok(Some(block_number(view, tag))),
        BlockId::Hash(h) => view.store().block_number(&h.block_hash).map_err(store_err),
    }
}

/// The transactions of stored block `n`: a block with a header has a body, so a missing one is this node's
/// fault and says so (it must not read as an empty block).
fn body(view: &HeadView, n: u64) -> RpcResult<Vec<(Address, alloy_consensus::TxEnvelope)>> {
    view.store()
        .transactions(n)
        .map_err(store_err)?
        .ok_or_else(|| internal(format!("block {n} has no body in this node's store")))
}

/// The receipts of stored block `n` (likewise never missing).
fn receipts_of(view: &HeadView, n: u64) -> RpcResult<Vec<alloy_consensus::ReceiptEnvelope>> {
    view.store()
        .receipts(n)
        .map_err(store_err)?
        .ok_or_else(|| internal(format!("block {n} has no receipts in this node's store")))
}

fn load_block(view: &HeadView, number: u64) -> RpcResult<Option<FullBlock>> {
    let store = view.store();
    let Some(header) = store.header(number).map_err(store_err)? else {
        return Ok(None);
    };
    let txs = body(view, number)?;
    let hash = header.hash_slow();
    Ok(Some((header, hash, txs)))
}

/// The state a read is made on: the head's (in memory), or an older block's from the store's state history.
enum StateRead {
    Head,
    Past(metis_storage::StateAt),
}

/// Where `id` points: the head, or an older block whose state the history still holds (or a clear error).
fn state_for(view: &HeadView, id: Option<BlockId>) -> RpcResult<StateRead> {
    // No block named: the latest, as geth.
    let n = resolve(view, id.unwrap_or(BlockId::latest()))?.ok_or_else(|| not_found("block not found"))?;
    if n == view.head().number {
        return Ok(StateRead::Head);
    }
    match view.store().state_at(n) {
        Ok(s) => Ok(StateRead::Past(s)),
        Err(metis_storage::HistoryError::Store(e)) => Err(store_err(e)),
        Err(metis_storage::HistoryError::Future { .. }) => Err(not_found("block not found")),
        Err(e) => Err(server_error(e.to_string())),
    }
}

impl StateRead {
    fn account(&self, view: &HeadView, addr: &Address) -> RpcResult<Option<metis_execution::Account>> {
        match self {
            Self::Head => Ok(view.state().account(addr).cloned()),
            Self::Past(s) => s.account(addr).map_err(store_err),
        }
    }

    fn storage(&self, view: &HeadView, addr: &Address, slot: &U256) -> RpcResult<U256> {
        match self {
            Self::Head => Ok(view.state().storage_at(addr, slot)),
            Self::Past(s) => s.storage(addr, slot).map_err(store_err),
        }
    }

    fn code(&self, view: &HeadView, hash: &B256) -> RpcResult<Option<revm::state::Bytecode>> {
        match self {
            Self::Head => Ok(view.state().code(hash).cloned()),
            Self::Past(s) => s.code(hash).map_err(store_err),
        }
    }

    /// The block a call runs in: the head's, or the older block's own header (as geth: its number, time and
    /// base fee, on the state after it).
    fn context(&self, view: &HeadView) -> RpcResult<BlockContext> {
        match self {
            Self::Head => BlockContext::of(view.head()).ok_or_else(|| internal("the head's header has no base fee")),
            Self::Past(s) => s
                .header(s.block())
                .map_err(store_err)?
                .and_then(|h| BlockContext::of(&h))
                .ok_or_else(|| internal(format!("block {} has no header in the store", s.block()))),
        }
    }
}

fn overrides(o: Option<StateOverride>) -> BTreeMap<Address, AccountOverride> {
    o.unwrap_or_default()
        .into_iter()
        .map(|(addr, a)| {
            let conv = |m: alloy_primitives::map::B256HashMap<B256>| {
                m.into_iter()
                    .map(|(k, v)| (U256::from_be_bytes(k.0), U256::from_be_bytes(v.0)))
                    .collect()
            };
            (
                addr,
                AccountOverride {
                    balance: a.balance,
                    nonce: a.nonce,
                    code: a.code,
                    state: a.state.map(conv),
                    state_diff: a.state_diff.map(conv),
                },
            )
        })
        .collect()
}

/// The revm transaction for an eth_call request.
fn call_tx(req: &TransactionRequest, chain_id: u64, gas_cap: u64) -> RpcResult<revm::context::TxEnv> {
    if req.gas_price.is_some() && (req.max_fee_per_gas.is_some() || req.max_priority_fee_per_gas.is_some()) {
        return Err(invalid_params(
            "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified",
        ));
    }
    let input = req.input.input().cloned().unwrap_or_default();
    let gas_price = req.gas_price.or(req.max_fee_per_gas).unwrap_or(0);
    // A gas price with an access list is an EIP-2930 transaction, as geth and anvil take it: the list's
    // intrinsic gas and warm slots count.
    let tx_type = match (req.gas_price.is_some(), req.access_list.is_some()) {
        (true, false) => 0,
        (true, true) => 1,
        (false, _) => 2,
    };
    Ok(revm::context::TxEnv {
        tx_type,
        caller: req.from.unwrap_or_default(),
        gas_limit: req.gas.unwrap_or(gas_cap).min(gas_cap),
        gas_price,
        kind: req.to.unwrap_or(TxKind::Create),
        value: req.value.unwrap_or_default(),
        data: input,
        nonce: req.nonce.unwrap_or_default(),
        chain_id: Some(chain_id),
        access_list: req.access_list.clone().unwrap_or_default(),
        gas_priority_fee: if req.gas_price.is_some() {
            None
        } else {
            req.max_priority_fee_per_gas.or(Some(0))
        },
        ..Default::default()
    })
}

/// The logs `filter` matches in blocks `from..=to`; a scan still going at `deadline` is abandoned.
fn logs_in_range(
    ctx: &Ctx,
    view: &HeadView,
    filter: &Filter,
    (from, to): (u64, u64),
    deadline: Instant,
) -> RpcResult<Vec<RpcLog>> {
    if to >= from && to - from >= ctx.limits.max_log_range {
        return Err(limit_exceeded(format!(
            "block range too large: at most {} blocks",
            ctx.limits.max_log_range
        )));
    }
    let mut out = Vec::new();
    for n in from..=to.min(view.head().number) {
        if n % 64 == 0 && Instant::now() > deadline {
            return Err(limit_exceeded(format!(
                "query timeout exceeded ({:?}): ask for fewer blocks",
                ctx.heavy.timeout()
            )));
        }
        let Some(header) = view.store().header(n).map_err(store_err)? else {
            continue;
        };
        if !filter.matches_bloom(header.logs_bloom) {
            continue;
        }
        let hash = header.hash_slow();
        let txs = body(view, n)?;
        let receipts = receipts_of(view, n)?;
        out.extend(block_logs_matching(hash, &header, &txs, &receipts, |l| {
            filter.matches(l)
        }));
        if out.len() > ctx.limits.max_logs {
            return Err(limit_exceeded(format!(
                "query returned more than {} results",
                ctx.limits.max_logs
            )));
        }
    }
    Ok(out)
}

fn get_logs(ctx: &Ctx, filter: &Filter, deadline: Instant) -> RpcResult<Vec<RpcLog>> {
    let view = ctx.backend.view();
    match filter.block_option {
        FilterBlockOption::AtBlockHash(h) => {
            let n = view
                .store()
                .block_number(&h)
                .map_err(store_err)?
                .ok_or_else(|| not_found("unknown block"))?;
            logs_in_range(ctx, &view, filter, (n, n), deadline)
        }
        FilterBlockOption::Range { from_block, to_block } => {
            let from = block_number(&view, from_block.unwrap_or_default());
            let to = block_number(&view, to_block.unwrap_or_default());
            if from > to {
                return Err(invalid_params("invalid block range params"));
            }
            logs_in_range(ctx, &view, filter, (from, to), deadline)
        }
    }
}

fn fee_history(
    ctx: &Ctx,
    count: u64,
    newest: BlockNumberOrTag,
    percentiles: Option<Vec<f64>>,
) -> RpcResult<FeeHistory> {
    if let Some(p) = &percentiles {
        if p.len() > 100 || p.iter().any(|x| !(0.0..=100.0).contains(x)) || p.windows(2).any(|w| w[0] > w[1]) {
            return Err(invalid_params("invalid reward percentiles"));
        }
    }
    let view = ctx.backend.view();
    let newest = block_number(&view, newest).min(view.head().number);
    let count = count.min(ctx.limits.max_fee_history).min(newest + 1);
    if count == 0 {
        return Ok(FeeHistory::default());
    }
    let oldest = newest + 1 - count;
    let mut base_fee_per_gas = Vec::new();
    let mut gas_used_ratio = Vec::new();
    let mut rewards = Vec::new();
    let mut last_header = None;
    for n in oldest..=newest {
        let header = view
            .store()
            .header(n)
            .map_err(store_err)?
            .ok_or_else(|| internal("missing header"))?;
        let base_fee = header.base_fee_per_gas.unwrap_or_default();
        base_fee_per_gas.push(u128::from(base_fee));
        gas_used_ratio.push(header.gas_used as f64 / header.gas_limit.max(1) as f64);
        if let Some(p) = &percentiles {
            let txs = body(&view, n)?;
            let receipts = receipts_of(&view, n)?;
            let mut tips: Vec<(u128, u64)> = Vec::new();
            let mut prev = 0;
            for ((_, tx), r) in txs.iter().zip(&receipts) {
                tips.push((
                    tx.effective_tip_per_gas(base_fee).unwrap_or(0),
                    r.cumulative_gas_used().saturating_sub(prev),
                ));
                prev = r.cumulative_gas_used();
            }
            tips.sort();
            let total: u64 = tips.iter().map(|t| t.1).sum();
            let row = p
                .iter()
                .map(|pct| {
                    if tips.is_empty() {
                        return 0;
                    }
                    let threshold = (total as f64 * pct / 100.0) as u64;
                    let mut acc = 0;
                    for (tip, gas) in &tips {
                        acc += gas;
                        if acc >= threshold {
                            return *tip;
                        }
                    }
                    tips.last().map_or(0, |t| t.0)
                })
                .collect();
            rewards.push(row);
        }
        last_header = Some(header);
    }
    if let Some(h) = &last_header {
        base_fee_per_gas.push(u128::from(next_base_fee(h)));
    }
    Ok(FeeHistory {
        base_fee_per_gas,
        gas_used_ratio,
        base_fee_per_blob_gas: vec![0; count as usize + 1],
        blob_gas_used_ratio: vec![0.0; count as usize],
        oldest_block: oldest,
        reward: percentiles.map(|_| rewards),
    })
}

/// Suggested tip: the 60th percentile of tips paid in the last 20 blocks, or 1 gwei when they are empty.
fn suggested_tip(ctx: &Ctx) -> RpcResult<u128> {
    let head = ctx.backend.view().head_hash();
    if let Some((at, tip)) = *ctx.tip_cache.lock() {
        if at == head {
            return Ok(tip);
        }
    }
    let tip = compute_suggested_tip(ctx)?;
    *ctx.tip_cache.lock() = Some((head, tip));
    Ok(tip)
}

fn compute_suggested_tip(ctx: &Ctx) -> RpcResult<u128> {
    let h = fee_history(ctx, 20, BlockNumberOrTag::Latest, Some(vec![60.0]))?;
    let tips: Vec<u128> = h
        .reward
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .filter(|t| *t > 0)
        .collect();
    if tips.is_empty() {
        return Ok(DEFAULT_TIP);
    }
    let mut t = tips;
    t.sort();
    Ok(t[t.len() / 2])
}

fn tx_by_hash(ctx: &Ctx, hash: B256) -> RpcResult<Option<RpcTransaction>> {
    let view = ctx.backend.view();
    if let Some((n, i)) = view.store().tx_location(&hash).map_err(store_err)? {
        let Some((header, bh, txs)) = load_block(&view, n)? else {
            return Ok(None);
        };
        return Ok(txs
            .get(i as usize)
            .map(|(s, t)| rpc_tx(t, *s, Some((bh, &header, i as u64)))));
    }
    Ok(ctx
        .backend
        .mempool()
        .get(&hash)
        .map(|t| rpc_tx(&t.envelope, t.sender, None)))
}

fn receipt_by_hash(ctx: &Ctx, hash: B256) -> RpcResult<Option<TransactionReceipt>> {
    let view = ctx.backend.view();
    let Some((n, i)) = view.store().tx_location(&hash).map_err(store_err)? else {
        return Ok(None);
    };
    let Some((header, bh, txs)) = load_block(&view, n)? else {
        return Ok(None);
    };
    let receipts = receipts_of(&view, n)?;
    Ok(rpc_receipt(bh, &header, &txs, &receipts, i as usize))
}

fn block_by(ctx: &Ctx, id: BlockId, full: bool) -> RpcResult<Option<Block>> {
    let view = ctx.backend.view();
    let Some(n) = resolve(&view, id)? else {
        return Ok(None);
    };
    Ok(load_block(&view, n)?.map(|(h, hash, txs)| rpc_block(hash, &h, &txs, full)))
}

fn timed_out(ctx: &Ctx, e: call::CallError) -> ErrorObjectOwned {
    match e {
        // geth's words, which clients match on.
        call::CallError::Timeout => server_error(format!("execution aborted (timeout = {:?})", ctx.heavy.timeout())),
        e => server_error(e),
    }
}

fn run_call(
    ctx: &Ctx,
    req: &TransactionRequest,
    id: Option<BlockId>,
    o: Option<StateOverride>,
    deadline: Instant,
) -> RpcResult<Bytes> {
    let view = ctx.backend.view();
    let at = state_for(&view, id)?;
    let block = at.context(&view)?;
    let tx = call_tx(req, view.spec().chain_id, block.gas_limit.min(ctx.limits.gas_cap))?;
    let out = match &at {
        StateRead::Head => call::call(view.state(), view.spec(), &block, tx, &overrides(o), deadline),
        StateRead::Past(s) => call::call(s, view.spec(), &block, tx, &overrides(o), deadline),
    }
    .map_err(|e| timed_out(ctx, e))?;
    match out {
        CallOutcome::Success { output, .. } => Ok(output),
        CallOutcome::Revert { output, .. } => Err(reverted(&output)),
        CallOutcome::Halt { reason, .. } => Err(server_error(format!("{reason:?}"))),
    }
}

fn estimate(
    ctx: &Ctx,
    req: &TransactionRequest,
    id: Option<BlockId>,
    o: Option<StateOverride>,
    deadline: Instant,
) -> RpcResult<U64> {
    let view = ctx.backend.view();
    let at = state_for(&view, id)?;
    let block = at.context(&view)?;
    let limit = block.gas_limit.min(ctx.limits.gas_cap);
    let cap = req.gas.unwrap_or(limit).min(limit);
    let tx = call_tx(req, view.spec().chain_id, cap)?;
    let spec = view.spec();
    let out = match &at {
        StateRead::Head => call::estimate_gas(view.state(), spec, &block, tx, &overrides(o), cap, deadline),
        StateRead::Past(s) => call::estimate_gas(s, spec, &block, tx, &overrides(o), cap, deadline),
    }
    .map_err(|e| timed_out(ctx, e))?;
    match out {
        Ok(gas) => Ok(U64::from(gas)),
        Err(CallOutcome::Revert { output, .. }) => Err(reverted(&output)),
        Err(CallOutcome::Halt { reason, .. }) => Err(server_error(format!(
            "gas required exceeds allowance ({cap}): {reason:?}"
        ))),
        Err(CallOutcome::Success { .. }) => Err(internal("estimate failed")),
    }
}

fn filter_changes(ctx: &Ctx, id: U256, deadline: Instant) -> RpcResult<serde_json::Value> {
    let kind = ctx
        .filters
        .lock()
        .get_mut(&id)
        .cloned()
        .ok_or_else(|| not_found("filter not found"))?;
    let view = ctx.backend.view();
    let head = view.head().number;
    let (value, next) = match kind {
        FilterKind::Logs { filter, next_block } => {
            let logs = if next_block > head {
                vec![]
            } else {
                let to = match filter.block_option {
                    FilterBlockOption::Range {
                        to_block: Some(BlockNumberOrTag::Number(t)),
                        ..
                    } => t.min(head),
                    _ => head,
                };
                logs_in_range(ctx, &view, &filter, (next_block, to), deadline)?
            };
            (
                serde_json::to_value(logs),
                FilterKind::Logs {
                    filter,
                    next_block: head + 1,
                },
            )
        }
        FilterKind::Blocks { next_block } => {
            let mut hashes = Vec::new();
            for n in next_block..=head {
                if let Some(h) = view.store().header(n).map_err(store_err)? {
                    hashes.push(h.hash_slow());
                }
            }
            (
                serde_json::to_value(hashes),
                FilterKind::Blocks { next_block: head + 1 },
            )
        }
        FilterKind::PendingTxs { last_seq } => {
            let (hashes, seq) = ctx.backend.pending_since(last_seq);
            (serde_json::to_value(hashes), FilterKind::PendingTxs { last_seq: seq })
        }
    };
    if let Some(k) = ctx.filters.lock().get_mut(&id) {
        *k = next;
    }
    value.map_err(internal)
}

fn install(ctx: &Ctx, kind: FilterKind) -> RpcResult<U256> {
    ctx.filters
        .lock()
        .install(kind)
        .ok_or_else(|| limit_exceeded("too many filters"))
}

/// The eth, net and web3 namespaces over one context.
#[derive(Clone)]
pub struct EthRpc(pub Arc<Ctx>);

impl EthRpc {
    /// The three namespaces in one module.
    pub fn into_module(self) -> Result<RpcModule<()>, jsonrpsee::core::RegisterMethodError> {
        let mut m = RpcModule::new(());
        m.merge(Web3ApiServer::into_rpc(self.clone()))?;
        m.merge(NetApiServer::into_rpc(self.clone()))?;
        m.merge(TxpoolApiServer::into_rpc(self.clone()))?;
        m.merge(DebugApiServer::into_rpc(self.clone()))?;
        m.merge(EthApiServer::into_rpc(self))?;
        Ok(m)
    }

    fn block_count(&self, id: BlockId) -> RpcResult<Option<U64>> {
        Ok(block_by(&self.0, id, false)?.map(|b| U64::from(b.transactions.len())))
    }
}

/// Replays block `number` on the state after its parent under a geth tracer: every transaction, or the one at
/// `only`.
fn trace(
    ctx: &Ctx,
    number: u64,
    only: Option<usize>,
    opts: &alloy_rpc_types_trace::geth::GethDebugTracingOptions,
    limit: Instant,
) -> RpcResult<Vec<(B256, alloy_rpc_types_trace::geth::GethTrace)>> {
    let deadline = metis_execution::trace::trace_deadline(opts, limit).map_err(|e| invalid_params(e.to_string()))?;
    let view = ctx.backend.view();
    let store = view.store();
    let header = store
        .header(number)
        .map_err(store_err)?
        .ok_or_else(|| not_found("block not found"))?;
    let txs = store
        .transactions(number)
        .map_err(store_err)?
        .ok_or_else(|| internal(format!("block {number} has no body in the store")))?;
    let Some(parent_number) = number.checked_sub(1) else {
        return Ok(Vec::new());
    };
    let parent = match store.state_at(parent_number) {
        Ok(s) => s,
        Err(metis_storage::HistoryError::Store(e)) => return Err(store_err(e)),
        Err(e) => return Err(server_error(e.to_string())),
    };
    metis_execution::trace::trace_block(&parent, view.spec(), &header, &txs, only, opts, deadline).map_err(
        |e| match e {
            metis_execution::trace::TraceError::Replay { .. } => internal(e.to_string()),
            metis_execution::trace::TraceError::Timeout { .. } => server_error(e.to_string()),
            _ => invalid_params(e.to_string()),
        },
    )
}

/// The tracer to run. Without options geth runs its struct logger, which this node does not serve: asked for
/// by name only.
fn tracer_options(
    opts: Option<alloy_rpc_types_trace::geth::GethDebugTracingOptions>,
) -> RpcResult<alloy_rpc_types_trace::geth::GethDebugTracingOptions> {
    opts.ok_or_else(|| {
        invalid_params(
            "tracer not supported: the default struct logger (this node serves callTracer and prestateTracer: \
             pass {\"tracer\": \"callTracer\"})",
        )
    })
}

#[jsonrpsee::core::async_trait]
impl DebugApiServer for EthRpc {
    async fn trace_transaction(
        &self,
        ext: &Extensions,
        hash: B256,
        opts: Option<alloy_rpc_types_trace::geth::GethDebugTracingOptions>,
    ) -> RpcResult<alloy_rpc_types_trace::geth::GethTrace> {
        let ctx = self.0.clone();
        self.0
            .heavy
            .run(remote_ip(ext), move |deadline| {
                let (number, index) = ctx
                    .backend
                    .view()
                    .store()
                    .tx_location(&hash)
                    .map_err(store_err)?
                    .ok_or_else(|| not_found("transaction not found"))?;
                let index = usize::try_from(index).map_err(|_| internal("transaction index"))?;
                trace(&ctx, number, Some(index), &tracer_options(opts)?, deadline)?
                    .pop()
                    .map(|(_, t)| t)
                    .ok_or_else(|| internal(format!("transaction {index} is not in block {number}")))
            })
            .await
    }

    async fn trace_block_by_number(
        &self,
        ext: &Extensions,
        block: BlockNumberOrTag,
        opts: Option<alloy_rpc_types_trace::geth::GethDebugTracingOptions>,
    ) -> RpcResult<Vec<alloy_rpc_types_trace::geth::TraceResult>> {
        let ctx = self.0.clone();
        self.0
            .heavy
            .run(remote_ip(ext), move |deadline| {
                let number = block_number(&ctx.backend.view(), block);
                Ok(trace(&ctx, number, None, &tracer_options(opts)?, deadline)?
                    .into_iter()
                    .map(|(hash, result)| alloy_rpc_types_trace::geth::TraceResult::Success {
                        result,
                        tx_hash: Some(hash),
                    })
                    .collect())
            })
            .await
    }
}

impl Web3ApiServer for EthRpc {
    fn client_version(&self) -> RpcResult<String> {
        Ok(self.0.client_version.clone())
    }

    fn sha3(&self, data: Bytes) -> RpcResult<B256> {
        Ok(alloy_primitives::keccak256(data))
    }
}

impl TxpoolApiServer for EthRpc {
    fn status(&self) -> RpcResult<serde_json::Value> {
        let view = self.0.backend.view();
        let (pending, queued) = self.0.backend.mempool().status(view.state());
        Ok(serde_json::json!({"pending": U64::from(pending), "queued": U64::from(queued)}))
    }
}

impl NetApiServer for EthRpc {
    fn version(&self) -> RpcResult<String> {
        Ok(self.0.backend.view().spec().chain_id.to_string())
    }

    fn listening(&self) -> RpcResult<bool> {
        Ok(true)
    }

    fn peer_count(&self) -> RpcResult<U64> {
        Ok(U64::from(self.0.backend.peers()))
    }
}

#[jsonrpsee::core::async_trait]
impl EthApiServer for EthRpc {
    fn chain_id(&self) -> RpcResult<U64> {
        Ok(U64::from(self.0.backend.view().spec().chain_id))
    }

    fn syncing(&self) -> RpcResult<bool> {
        Ok(false)
    }

    fn mining(&self) -> RpcResult<bool> {
        Ok(false)
    }

    fn accounts(&self) -> RpcResult<Vec<Address>> {
        Ok(Vec::new())
    }

    fn block_number(&self) -> RpcResult<U64> {
        Ok(U64::from(self.0.backend.view().head().number))
    }

    fn balance(&self, address: Address, block: Option<BlockId>) -> RpcResult<U256> {
        let view = self.0.backend.view();
        let at = state_for(&view, block)?;
        Ok(at.account(&view, &address)?.map(|a| a.balance).unwrap_or_default())
    }

    fn transaction_count(&self, address: Address, block: Option<BlockId>) -> RpcResult<U64> {
        let view = self.0.backend.view();
        if block == Some(BlockId::Number(BlockNumberOrTag::Pending)) {
            let nonce = view.state().account(&address).map_or(0, |a| a.nonce);
            return Ok(U64::from(self.0.backend.mempool().next_nonce(&address, nonce)));
        }
        let at = state_for(&view, block)?;
        Ok(U64::from(at.account(&view, &address)?.map_or(0, |a| a.nonce)))
    }

    fn code(&self, address: Address, block: Option<BlockId>) -> RpcResult<Bytes> {
        let view = self.0.backend.view();
        let at = state_for(&view, block)?;
        let Some(account) = at.account(&view, &address)? else {
            return Ok(Bytes::new());
        };
        Ok(at
            .code(&view, &account.code_hash)?
            .map(|b| b.original_bytes())
            .unwrap_or_default())
    }

    fn storage_at(&self, address: Address, slot: U256, block: Option<BlockId>) -> RpcResult<B256> {
        let view = self.0.backend.view();
        let at = state_for(&view, block)?;
        Ok(B256::from(at.storage(&view, &address, &slot)?))
    }

    fn proof(
        &self,
        address: Address,
        keys: Vec<U256>,
        block: Option<BlockId>,
    ) -> RpcResult<EIP1186AccountProofResponse> {
        if keys.len() > MAX_PROOF_KEYS {
            return Err(limit_exceeded(format!(
                "{} storage keys asked for; at most {MAX_PROOF_KEYS} per call",
                keys.len()
            )));
        }
        let view = self.0.backend.view();
        let n = resolve(&view, block.unwrap_or(BlockId::latest()))?.ok_or_else(|| not_found("block not found"))?;
        let head = view.head().number;
        // The tries are kept for the head only; older state is kept as values (enough for calls, not proofs).
        if n != head {
            return Err(server_error(format!(
                "proofs are served for the latest block only (block {head}); block {n} is older"
            )));
        }
        let state = view.state();
        let p = state.proof(&address, &keys);
        let account = state.account(&address);
        let bytes = |nodes: Vec<Vec<u8>>| nodes.into_iter().map(Bytes::from).collect();
        Ok(EIP1186AccountProofResponse {
            address,
            balance: account.map_or(U256::ZERO, |a| a.balance),
            code_hash: account.map_or(KECCAK_EMPTY, |a| a.code_hash),
            nonce: account.map_or(0, |a| a.nonce),
            storage_hash: p.storage_root,
            account_proof: bytes(p.account),
            storage_proof: p
                .slots
                .into_iter()
                .map(|s| EIP1186StorageProof {
                    key: B256::from(s.slot).into(),
                    value: s.value,
                    proof: bytes(s.proof),
                })
                .collect(),
        })
    }

    async fn call(
        &self,
        ext: &Extensions,
        request: TransactionRequest,
        block: Option<BlockId>,
        overrides: Option<StateOverride>,
    ) -> RpcResult<Bytes> {
        let ctx = self.0.clone();
        self.0
            .heavy
            .run(remote_ip(ext), move |deadline| {
                run_call(&ctx, &request, block, overrides, deadline)
            })
            .await
    }

    async fn estimate_gas(
        &self,
        ext: &Extensions,
        request: TransactionRequest,
        block: Option<BlockId>,
        overrides: Option<StateOverride>,
    ) -> RpcResult<U64> {
        let ctx = self.0.clone();
        self.0
            .heavy
            .run(remote_ip(ext), move |deadline| {
                estimate(&ctx, &request, block, overrides, deadline)
            })
            .await
    }

    fn gas_price(&self) -> RpcResult<U256> {
        let base = next_base_fee(self.0.backend.view().head());
        Ok(U256::from(u128::from(base) + suggested_tip(&self.0)?))
    }

    fn max_priority_fee_per_gas(&self) -> RpcResult<U256> {
        Ok(U256::from(suggested_tip(&self.0)?))
    }

    fn blob_base_fee(&self) -> RpcResult<U256> {
        Ok(U256::ZERO)
    }

    fn fee_history(
        &self,
        count: U64,
        newest: BlockNumberOrTag,
        percentiles: Option<Vec<f64>>,
    ) -> RpcResult<FeeHistory> {
        fee_history(&self.0, count.to(), newest, percentiles)
    }

    fn send_raw_transaction(&self, raw: Bytes) -> RpcResult<B256> {
        let tx = RecoveredTx::decode(&raw).map_err(server_error)?;
        self.0.backend.submit(tx).map_err(server_error)
    }

    fn transaction_by_hash(&self, hash: B256) -> RpcResult<Option<RpcTransaction>> {
        tx_by_hash(&self.0, hash)
    }

    fn transaction_receipt(&self, hash: B256) -> RpcResult<Option<TransactionReceipt>> {
        receipt_by_hash(&self.0, hash)
    }

    fn block_receipts(&self, block: BlockId) -> RpcResult<Option<Vec<TransactionReceipt>>> {
        let view = self.0.backend.view();
        let Some(n) = resolve(&view, block)? else {
            return Ok(None);
        };
        let Some((header, hash, txs)) = load_block(&view, n)? else {
            return Ok(None);
        };
        let receipts = receipts_of(&view, n)?;
        Ok(Some(
            (0..txs.len())
                .filter_map(|i| rpc_receipt(hash, &header, &txs, &receipts, i))
                .collect(),
        ))
    }

    fn block_by_number(&self, block: BlockNumberOrTag, full: Option<bool>) -> RpcResult<Option<Block>> {
        block_by(&self.0, BlockId::Number(block), full.unwrap_or(false))
    }

    fn block_by_hash(&self, hash: B256, full: Option<bool>) -> RpcResult<Option<Block>> {
        block_by(&self.0, BlockId::from(hash), full.unwrap_or(false))
    }

    fn block_transaction_count_by_number(&self, block: BlockNumberOrTag) -> RpcResult<Option<U64>> {
        self.block_count(BlockId::Number(block))
    }

    fn block_transaction_count_by_hash(&self, hash: B256) -> RpcResult<Option<U64>> {
        self.block_count(BlockId::from(hash))
    }

    fn transaction_by_block_number_and_index(
        &self,
        block: BlockNumberOrTag,
        index: U64,
    ) -> RpcResult<Option<RpcTransaction>> {
        let view = self.0.backend.view();
        let n = block_number(&view, block);
        let Some((h, bh, txs)) = load_block(&view, n)? else {
            return Ok(None);
        };
        let i: u64 = index.to();
        Ok(txs.get(i as usize).map(|(s, t)| rpc_tx(t, *s, Some((bh, &h, i)))))
    }

    async fn logs(&self, ext: &Extensions, filter: Filter) -> RpcResult<Vec<RpcLog>> {
        let ctx = self.0.clone();
        self.0
            .heavy
            .run(remote_ip(ext), move |deadline| get_logs(&ctx, &filter, deadline))
            .await
    }

    fn new_filter(&self, filter: Filter) -> RpcResult<U256> {
        let head = self.0.backend.view().head().number;
        let next_block = match filter.block_option {
            FilterBlockOption::Range {
                from_block: Some(BlockNumberOrTag::Number(n)),
                ..
            } => n,
            _ => head + 1,
        };
        install(
            &self.0,
            FilterKind::Logs {
                filter: Box::new(filter),
                next_block,
            },
        )
    }

    fn new_block_filter(&self) -> RpcResult<U256> {
        let next_block = self.0.backend.view().head().number + 1;
        install(&self.0, FilterKind::Blocks { next_block })
    }

    fn new_pending_transaction_filter(&self) -> RpcResult<U256> {
        let (_, seq) = self.0.backend.pending_since(u64::MAX);
        install(&self.0, FilterKind::PendingTxs { last_seq: seq })
    }

    async fn filter_changes(&self, ext: &Extensions, id: U256) -> RpcResult<serde_json::Value> {
        let ctx = self.0.clone();
        self.0
            .heavy
            .run(remote_ip(ext), move |deadline| filter_changes(&ctx, id, deadline))
            .await
    }

    async fn filter_logs(&self, ext: &Extensions, id: U256) -> RpcResult<Vec<RpcLog>> {
        let kind = self
            .0
            .filters
            .lock()
            .get_mut(&id)
            .cloned()
            .ok_or_else(|| not_found("filter not found"))?;
        let FilterKind::Logs { filter, .. } = kind else {
            return Err(invalid_params("filter is not a log filter"));
        };
        let ctx = self.0.clone();
        self.0
            .heavy
            .run(remote_ip(ext), move |deadline| get_logs(&ctx, &filter, deadline))
            .await
    }

    fn uninstall_filter(&self, id: U256) -> RpcResult<bool> {
        Ok(self.0.filters.lock().uninstall(&id))
    }

    async fn subscribe(
        &self,
        pending: PendingSubscriptionSink,
        kind: String,
        params: Option<serde_json::Value>,
    ) -> SubscriptionResult {
        crate::pubsub::subscribe(&self.0, pending, kind, params).await
    }
}
