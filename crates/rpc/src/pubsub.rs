//! eth_subscribe over WebSocket: newHeads, logs (with a filter), newPendingTransactions.

use crate::convert::{block_logs_matching, rpc_header};
use crate::error::{invalid_params, limit_exceeded};
use crate::eth::Ctx;
use alloy_rpc_types_eth::Filter;
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::{PendingSubscriptionSink, SubscriptionMessage};
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};

fn msg(v: &impl Serialize) -> Result<SubscriptionMessage, serde_json::Error> {
    Ok(serde_json::value::to_raw_value(v)?.into())
}

/// Accepts the subscription and forwards what `pick` makes of each broadcast item until the client leaves.
/// A subscriber that lags behind skips what it missed rather than stalling the node.
async fn forward<T: Clone, U: Serialize>(
    pending: PendingSubscriptionSink,
    mut rx: broadcast::Receiver<T>,
    pick: impl Fn(T) -> Vec<U>,
) -> SubscriptionResult {
    let sink = pending.accept().await?;
    loop {
        tokio::select! {
            _ = sink.closed() => return Ok(()),
            received = rx.recv() => match received {
                Ok(item) => {
                    for out in pick(item) {
                        sink.send(msg(&out)?).await?;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }
}

/// Serves one eth_subscribe: newHeads, logs (`params` is the filter), newPendingTransactions, syncing.
pub async fn subscribe(
    ctx: &Ctx,
    pending: PendingSubscriptionSink,
    kind: String,
    params: Option<serde_json::Value>,
) -> SubscriptionResult {
    let chain = &ctx.backend;
    match kind.as_str() {
        "newHeads" => {
            forward(pending, chain.subscribe_blocks(), |b| {
                let size = alloy_rlp::Encodable::length(&b.header);
                vec![rpc_header(&b.header, b.hash, size)]
            })
            .await
        }
        "logs" => {
            let filter: Filter = match params.map(serde_json::from_value).transpose() {
                Ok(f) => f.unwrap_or_default(),
                Err(e) => {
                    pending
                        .reject(invalid_params(format!("invalid logs filter: {e}")))
                        .await;
                    return Ok(());
                }
            };
            let Ok(_live) = ctx.log_subscriptions.clone().try_acquire_owned() else {
                pending
                    .reject(limit_exceeded(
                        "too many logs subscriptions on this node; poll eth_getLogs instead",
                    ))
                    .await;
                return Ok(());
            };
            forward(pending, chain.subscribe_blocks(), move |b| {
                // The bloom rules out most blocks for a narrow filter without looking at a log.
                if !filter.matches_bloom(b.header.logs_bloom) {
                    return Vec::new();
                }
                block_logs_matching(b.hash, &b.header, &b.txs, &b.receipts, |l| filter.matches(l))
            })
            .await
        }
        "newPendingTransactions" => forward(pending, chain.subscribe_pending(), |h| vec![h]).await,
        "syncing" => {
            let sink = pending.accept().await?;
            sink.send(msg(&false)?).await?;
            sink.closed().await;
            Ok(())
        }
        other => {
            pending
                .reject(invalid_params(format!("unsupported subscription: {other}")))
                .await;
            Ok(())
        }
    }
}
