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
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("tracer not supported: {0} (this node serves callTracer and prestateTracer)")]
    Unsupported(String),
    #[error("tracer config: {0}")]
    Config(String),
    #[error("replaying transaction {index} of block {block}: {reason}")]
    Replay { block: u64, index: usize, reason: String },
    #[error("execution timeout: the trace of block {block} stopped before transaction {index}")]
    Timeout { block: u64, index: usize },
    #[error("timeout {0:?}: not a duration (e.g. \"5s\", \"500ms\")")]
    BadTimeout(String),
}

/// When a trace must end: the earlier of `limit` (the node's) and now plus the caller's `timeout` option (a Go
/// duration, as geth takes it).
pub fn trace_deadline(opts: &GethDebugTracingOptions, limit: Instant) -> Result<Instant, TraceError> {
    let Some(text) = &opts.timeout else {
        return Ok(limit);
    };
    let asked = go_duration(text).ok_or_else(|| TraceError::BadTimeout(text.clone()))?;
    Ok(Instant::now().checked_add(asked).map_or(limit, |t| t.min(limit)))
}

/// A Go duration such as "5s", "1.5s", "300ms" or "1m30s".
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(split);
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = next;
    }
    Duration::try_from_secs_f64(total).ok()
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
/// Past `deadline` no further transaction is started (one in progress finishes: the pool executed the whole
/// block within its block time, so a single replay is bounded by that).
pub fn trace_block<S: StateSource + ?Sized>(
    parent: &S,
    spec: &ChainSpec,
    header: &Header,
    txs: &[(Address, TxEnvelope)],
    only: Option<usize>,
    opts: &GethDebugTracingOptions,
    deadline: Instant,
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
        if Instant::now() >= deadline {
            return Err(TraceError::Timeout {
                block: header.number,
                index,
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_geth_takes_them() {
        assert_eq!(go_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        for bad in ["", "5", "s", "5 parsecs", "-1s"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_earlier_of_the_callers_timeout_and_the_nodes_limit_holds() {
        let limit = Instant::now() + Duration::from_secs(5);
        let opts = |t: Option<&str>| GethDebugTracingOptions {
            timeout: t.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(trace_deadline(&opts(None), limit).unwrap(), limit);
        assert!(trace_deadline(&opts(Some("100ms")), limit).unwrap() < limit);
        assert_eq!(trace_deadline(&opts(Some("1h")), limit).unwrap(), limit);
        assert!(matches!(
            trace_deadline(&opts(Some("soon")), limit),
            Err(TraceError::BadTimeout(_))
        ));
    }
}
