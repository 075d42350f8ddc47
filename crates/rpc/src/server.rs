//! The JSON-RPC server: HTTP and WebSocket on one port, batches, request/response size limits.

use crate::eth::{Ctx, RpcLimits};
use jsonrpsee::server::{BatchRequestConfig, Server, ServerConfig, ServerHandle};
use jsonrpsee::RpcModule;
use metis_chain::Chain;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct RpcConfig {
    pub addr: SocketAddr,
    /// Largest request body (bytes); a raw transaction is at most 128 KiB, hex doubles it.
    pub max_request_body: u32,
    pub max_response_body: u32,
    pub max_connections: u32,
    pub max_batch: u32,
    pub limits: RpcLimits,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            addr: ([127, 0, 0, 1], 8545).into(),
            max_request_body: 5 * 1024 * 1024,
            max_response_body: 50 * 1024 * 1024,
            max_connections: 500,
            max_batch: 1000,
            limits: RpcLimits::default(),
        }
    }
}

/// A running server; stops when dropped or on `stop`.
pub struct RpcServer {
    pub local_addr: SocketAddr,
    handle: ServerHandle,
}

impl RpcServer {
    pub fn stop(&self) {
        let _ = self.handle.stop();
    }

    pub async fn stopped(self) {
        self.handle.stopped().await
    }
}

pub fn module(backend: Arc<Chain>, limits: RpcLimits) -> RpcModule<Ctx> {
    let ctx = Ctx {
        backend,
        limits,
        client_version: format!("metis-seq/v{}", env!("CARGO_PKG_VERSION")),
        tip_cache: Default::default(),
        filters: Default::default(),
    };
    let mut m = RpcModule::new(ctx);
    // Method names are unique by construction; registration only fails on a duplicate.
    crate::eth::register(&mut m).expect("unique eth method names");
    crate::pubsub::register(&mut m).expect("unique subscription names");
    m
}

pub async fn start(backend: Arc<Chain>, cfg: RpcConfig) -> std::io::Result<RpcServer> {
    start_with(backend, cfg, Vec::new()).await
}

/// Starts the RPC with further namespaces (e.g. the PoS query API) merged in.
pub async fn start_with(
    backend: Arc<Chain>,
    cfg: RpcConfig,
    extra: Vec<jsonrpsee::RpcModule<()>>,
) -> std::io::Result<RpcServer> {
    let config = ServerConfig::builder()
        .max_request_body_size(cfg.max_request_body)
        .max_response_body_size(cfg.max_response_body)
        .max_connections(cfg.max_connections)
        .set_batch_request_config(BatchRequestConfig::Limit(cfg.max_batch))
        .build();
    let server = Server::builder().set_config(config).build(cfg.addr).await?;
    let local_addr = server.local_addr()?;
    let mut m = module(backend, cfg.limits);
    for e in extra {
        m.merge(e)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    }
    let handle = server.start(m);
    Ok(RpcServer { local_addr, handle })
}
