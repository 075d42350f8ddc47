//! eth_subscribe over WebSocket: newHeads, logs (with a filter), newPendingTransactions.

use crate::error::invalid_params;
use crate::eth::Ctx;
use alloy_rpc_types_eth::Filter;
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::{RpcModule, SubscriptionMessage};

fn msg(v: &impl serde::Serialize) -> Result<SubscriptionMessage, serde_json::Error> {
    Ok(serde_json::value::to_raw_value(v)?.into())
}
use tokio::sync::broadcast::error::RecvError;

pub fn register(module: &mut RpcModule<Ctx>) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    module.register_subscription(
        "eth_subscribe",
        "eth_subscription",
        "eth_unsubscribe",
        |params, pending, ctx, _| async move {
            let mut seq = params.sequence();
            let kind: String = match seq.next() {
                Ok(k) => k,
                Err(e) => {
                    pending.reject(e).await;
                    return Ok(());
                }
            };
            match kind.as_str() {
                "newHeads" => {
                    let mut rx = ctx.backend.subscribe_blocks();
                    let sink = pending.accept().await?;
                    loop {
                        tokio::select! {
                            _ = sink.closed() => return Ok(()),
                            received = rx.recv() => match received {
                                Ok(block) => sink.send(msg(&block.header)?).await?,
                                Err(RecvError::Lagged(_)) => continue,
                                Err(RecvError::Closed) => return Ok(()),
                            }
                        }
                    }
                }
                "logs" => {
                    let filter: Filter = match seq.optional_next() {
                        Ok(f) => f.unwrap_or_default(),
                        Err(e) => {
                            pending.reject(e).await;
                            return Ok(());
                        }
                    };
                    let mut rx = ctx.backend.subscribe_blocks();
                    let sink = pending.accept().await?;
                    loop {
                        tokio::select! {
                            _ = sink.closed() => return Ok(()),
                            received = rx.recv() => match received {
                                Ok(block) => {
                                    for log in block.logs.iter().filter(|l| filter.matches(&l.inner)) {
                                        sink.send(msg(log)?).await?;
                                    }
                                }
                                Err(RecvError::Lagged(_)) => continue,
                                Err(RecvError::Closed) => return Ok(()),
                            }
                        }
                    }
                }
                "newPendingTransactions" => {
                    let mut rx = ctx.backend.subscribe_pending();
                    let sink = pending.accept().await?;
                    loop {
                        tokio::select! {
                            _ = sink.closed() => return Ok(()),
                            received = rx.recv() => match received {
                                Ok(hash) => sink.send(msg(&hash)?).await?,
                                Err(RecvError::Lagged(_)) => continue,
                                Err(RecvError::Closed) => return Ok(()),
                            }
                        }
                    }
                }
                "syncing" => {
                    let sink = pending.accept().await?;
                    sink.send(msg(&false)?).await?;
                    sink.closed().await;
                    SubscriptionResult::Ok(())
                }
                other => {
                    pending
                        .reject(invalid_params(format!("unsupported subscription: {other}")))
                        .await;
                    Ok(())
                }
            }
        },
    )?;
    Ok(())
}
