//! The JSON-RPC server: HTTP and WebSocket on one port, batches, request/response size limits.

use crate::eth::{Ctx, EthRpc, RpcLimits};
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

/// The eth, net and web3 namespaces over `backend`.
pub fn module(backend: Arc<Chain>, limits: RpcLimits) -> Result<RpcModule<()>, jsonrpsee::core::RegisterMethodError> {
    let ctx = Ctx {
        backend,
        limits,
        client_version: format!("metis-seq/v{}", env!("CARGO_PKG_VERSION")),
        tip_cache: Default::default(),
        filters: Default::default(),
    };
    EthRpc(Arc::new(ctx)).into_module()
}

pub async fn start(backend: Arc<Chain>, cfg: RpcConfig) -> std::io::Result<RpcServer> {
    start_with(backend, cfg, Vec::new()).await
}

/// Starts the RPC with further namespaces (e.g. the PoS query API) merged in.
pub async fn start_with(
    backend: Arc<Chain>,
    cfg: RpcConfig,
    extra: Vec<jsonrpsee::Methods>,
) -> std::io::Result<RpcServer> {
    let config = ServerConfig::builder()
        .max_request_body_size(cfg.max_request_body)
        .max_response_body_size(cfg.max_response_body)
        .max_connections(cfg.max_connections)
        .set_batch_request_config(BatchRequestConfig::Limit(cfg.max_batch))
        .build();
    let server = Server::builder().set_config(config).build(cfg.addr).await?;
    let local_addr = server.local_addr()?;
    // Registration fails only on a method name given twice.
    let invalid =
        |e: jsonrpsee::core::RegisterMethodError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string());
    let mut m = module(backend, cfg.limits).map_err(invalid)?;
    for e in extra {
        m.merge(e).map_err(invalid)?;
    }
    let handle = server.start(m);
    Ok(RpcServer { local_addr, handle })
}
