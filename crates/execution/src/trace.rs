//! geth's built-in tracers over a stored block (`debug_traceTransaction`, `debug_traceBlockByNumber`): the block
//! is replayed on the state after its parent, transaction by transaction, under revm-inspectors'
//! `TracingInspector`, whose geth builder writes the `callTracer` and `prestateTracer` frames explorers index.

use crate::executor::{evm_block_env, evm_cfg, BlockContext};
use crate::genesis::ChainSpec;
use crate::state::{BlockOverlay, StateSource};
use crate::tx::RecoveredTx;
use alloy_consensus::{Header, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256};
use alloy_rpc_types_trace::geth::{
    GethDebugBuiltInTracerType, GethDebugTracerType, GethDebugTracingOptions, GethTrace,
};
use revm::{Context, ExecuteCommitEvm, ExecuteEvm, InspectEvm, MainBuilder, MainContext};
use revm_inspectors::tracing::{TracingInspector, TracingInspectorConfig};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("tracer not supported: {0} (this node serves callTracer and prestateTracer)")]
    Unsupported(String),
    #[error("tracer config: {0}")]
    Config(String),
    #[error("replaying transaction {index} of block {block}: {reason}")]
    Replay { block: u64, index: usize, reason: String },
}

enum Tracer {
    Call(alloy_rpc_types_trace::geth::CallConfig),
    Prestate(alloy_rpc_types_trace::geth::PreStateConfig),
}

impl Tracer {
    fn of(opts: &GethDebugTracingOptions) -> Result<Self, TraceError> {
        let config = opts.tracer_config.clone();
        match &opts.tracer {
            Some(GethDebugTracerType::BuiltInTracer(GethDebugBuiltInTracerType::CallTracer)) => config
                .into_call_config()
                .map(Self::Call)
                .map_err(|e| TraceError::Config(e.to_string())),
            Some(GethDebugTracerType::BuiltInTracer(GethDebugBuiltInTracerType::PreStateTracer)) => config
                .into_pre_state_config()
                .map(Self::Prestate)
                .map_err(|e| TraceError::Config(e.to_string())),
            Some(other) => Err(TraceError::Unsupported(format!("{other:?}"))),
            None => Err(TraceError::Unsupported("the default struct logger".into())),
        }
    }

    fn inspector_config(&self) -> TracingInspectorConfig {
        match self {
            Self::Call(c) => TracingInspectorConfig::from_geth_call_config(c),
            Self::Prestate(c) => TracingInspectorConfig::from_geth_prestate_config(c),
        }
    }
}

/// Traces the transactions of the block `header` heads (`txs`, with their senders) on `parent`, the state after
/// the block before it: every transaction, or only the one at `only` (those before it are replayed untraced).
pub fn trace_block<S: StateSource + ?Sized>(
    parent: &S,
    spec: &ChainSpec,
    header: &Header,
    txs: &[(Address, TxEnvelope)],
    only: Option<usize>,
    opts: &GethDebugTracingOptions,
) -> Result<Vec<(B256, GethTrace)>, TraceError> {
    let tracer = Tracer::of(opts)?;
    let config = tracer.inspector_config();
    let ctx = BlockContext::of(header).ok_or(TraceError::Replay {
        block: header.number,
        index: 0,
        reason: "its header has no base fee".into(),
    })?;
    let mut evm = Context::mainnet()
        .with_db(BlockOverlay::over(parent))
        .with_cfg(evm_cfg(spec))
        .with_block(evm_block_env(&ctx))
        .build_mainnet_with_inspector(TracingInspector::new(config));
    let mut out = Vec::new();
    for (index, (sender, envelope)) in txs.iter().enumerate() {
        if only.is_some_and(|o| index > o) {
            break;
        }
        let replay = |reason: String| TraceError::Replay {
            block: header.number,
            index,
            reason,
        };
        let tx = RecoveredTx {
            envelope: envelope.clone(),
            sender: *sender,
            hash: *envelope.hash(),
            encoded_len: envelope.encode_2718_len(),
        };
        evm.inspector = TracingInspector::new(config);
        let traced = only.is_none_or(|o| o == index);
        let result = if traced {
            evm.inspect_tx(tx.tx_env())
        } else {
            evm.transact(tx.tx_env())
        }
        .map_err(|e| replay(e.to_string()))?;
        if traced {
            let trace = match &tracer {
                Tracer::Call(c) => GethTrace::CallTracer(
                    evm.inspector
                        .geth_builder()
                        .geth_call_traces(*c, result.result.tx_gas_used()),
                ),
                Tracer::Prestate(c) => GethTrace::PreStateTracer(
                    evm.inspector
                        .geth_builder()
                        .geth_prestate_traces(&result, c, &evm.ctx.journaled_state.database)
                        .map_err(|e| replay(e.to_string()))?,
                ),
            };
            out.push((tx.hash, trace));
        }
        evm.commit(result.state);
    }
    Ok(out)
}
