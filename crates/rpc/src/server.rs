//! The JSON-RPC server: HTTP and WebSocket on one port, batches, request/response size limits. The server runs
//! its own accept loop (jsonrpsee's tower service per connection) so that it knows each client's address: the
//! number of connections per address is capped, and heavy requests are counted per address
//! ([`crate::limits`]).

use crate::eth::{Ctx, EthRpc, RpcLimits};
use crate::http::Routes;
use crate::limits::{PerIp, RemoteIp};
use crate::rate::{RateLimitLayer, RateLimiter};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::HttpResponse;
use jsonrpsee::server::{
    serve_with_graceful_shutdown, stop_channel, BatchRequestConfig, HttpRequest, Methods, Server, ServerConfig,
    ServerHandle, StopHandle,
};
use jsonrpsee::RpcModule;
use metis_chain::Chain;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

#[derive(Clone, Debug)]
pub struct RpcConfig {
    pub addr: SocketAddr,
    /// Largest request body (bytes); a raw transaction is at most 128 KiB, hex doubles it.
    pub max_request_body: u32,
    pub max_response_body: u32,
    /// Open TCP connections, in all and from one address.
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    pub max_subscriptions_per_connection: u32,
    /// Calls per second from one address (each call of a batch counts), and the burst allowed above it.
    pub requests_per_ip_per_sec: u32,
    pub requests_per_ip_burst: u32,
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
            max_connections_per_ip: 64,
            max_subscriptions_per_connection: 64,
            requests_per_ip_per_sec: 1000,
            requests_per_ip_burst: 2000,
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
        client_version: format!("metis-seq/v{}", env!("CARGO_PKG_VERSION")),
        tip_cache: Default::default(),
        filters: Default::default(),
        heavy: crate::limits::HeavyWork::new(limits.heavy.clone()),
        log_subscriptions: Arc::new(tokio::sync::Semaphore::new(limits.max_log_subscriptions)),
        limits,
    };
    EthRpc(Arc::new(ctx)).into_module()
}

pub async fn start(backend: Arc<Chain>, cfg: RpcConfig) -> std::io::Result<RpcServer> {
    start_with(backend, cfg, Vec::new(), Routes::default()).await
}

/// Starts the RPC with further namespaces (e.g. the PoS query API) merged in, and the plain HTTP routes
/// (health, readiness, dashboard).
pub async fn start_with(
    backend: Arc<Chain>,
    cfg: RpcConfig,
    extra: Vec<jsonrpsee::Methods>,
    routes: Routes,
) -> std::io::Result<RpcServer> {
    let config = ServerConfig::builder()
        .max_request_body_size(cfg.max_request_body)
        .max_response_body_size(cfg.max_response_body)
        .max_connections(cfg.max_connections)
        .max_subscriptions_per_connection(cfg.max_subscriptions_per_connection)
        .set_batch_request_config(BatchRequestConfig::Limit(cfg.max_batch))
        .set_id_provider(HexIdProvider)
        .build();
    let listener = TcpListener::bind(cfg.addr).await?;
    let local_addr = listener.local_addr()?;
    // Registration fails only on a method name given twice.
    let invalid =
        |e: jsonrpsee::core::RegisterMethodError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string());
    let mut m = module(backend, cfg.limits.clone()).map_err(invalid)?;
    for e in extra {
        m.merge(e).map_err(invalid)?;
    }
    let methods = Arc::new(m.method_names().collect::<std::collections::HashSet<&'static str>>());
    let (stop, handle) = stop_channel();
    let accept = Accept {
        listener,
        service: Server::builder()
            .set_config(config)
            .set_rpc_middleware(RpcServiceBuilder::new().layer(RateLimitLayer {
                limiter: Arc::new(RateLimiter::new(cfg.requests_per_ip_per_sec, cfg.requests_per_ip_burst)),
                methods,
            }))
            .to_service_builder(),
        methods: m.into(),
        stop,
        open: Arc::new(Semaphore::new(cfg.max_connections as usize)),
        per_ip: Arc::default(),
        max_per_ip: cfg.max_connections_per_ip,
        routes: Arc::new(routes),
    };
    tokio::spawn(accept.run());
    Ok(RpcServer { local_addr, handle })
}

/// Subscription ids as geth writes them: "0x" and 32 hex digits (128 random bits). Clients such as web3.py
/// take the id as a string; jsonrpsee's default is a JSON number.
#[derive(Debug)]
struct HexIdProvider;

impl jsonrpsee::core::traits::IdProvider for HexIdProvider {
    fn next_id(&self) -> jsonrpsee::types::SubscriptionId<'static> {
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // No OS randomness: a counter still gives distinct ids on this server (only guessable ones).
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            bytes[8..].copy_from_slice(&n.to_be_bytes());
        }
        jsonrpsee::types::SubscriptionId::Str(format!("0x{}", alloy_primitives::hex::encode(bytes)).into())
    }
}

struct Accept {
    listener: TcpListener,
    service: jsonrpsee::server::TowerServiceBuilder<
        tower::layer::util::Stack<RateLimitLayer, tower::layer::util::Identity>,
        tower::layer::util::Identity,
    >,
    methods: Methods,
    stop: StopHandle,
    open: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    max_per_ip: u32,
    routes: Arc<Routes>,
}

impl Accept {
    async fn run(self) {
        loop {
            let (socket, remote) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors, most likely: wait for some to close rather than spin.
                        warn!(error = %e, "RPC accept failed; pausing");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = self.stop.clone().shutdown() => break,
            };
            let ip = remote.ip().to_canonical();
            let Ok(slot) = self.open.clone().try_acquire_owned() else {
                debug!(%remote, "RPC connection refused: the server is full");
                continue;
            };
            let Some(ticket) = self.per_ip.enter(ip, self.max_per_ip) else {
                debug!(%remote, "RPC connection refused: too many from this address");
                continue;
            };
            let service = WithRemoteIp {
                inner: self.service.clone().build(self.methods.clone(), self.stop.clone()),
                ip,
                routes: self.routes.clone(),
            };
            let stopped = self.stop.clone().shutdown();
            tokio::spawn(async move {
                let _held = (slot, ticket);
                if let Err(e) = serve_with_graceful_shutdown(socket, service, stopped).await {
                    debug!(%remote, error = %e, "RPC connection ended");
                }
            });
        }
    }
}

/// Puts the client's address in every request's extensions, where methods and middleware read it, and answers
/// the plain GET routes ([`crate::http`]) itself.
#[derive(Clone)]
struct WithRemoteIp<S> {
    inner: S,
    ip: IpAddr,
    routes: Arc<Routes>,
}

type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<HttpResponse, BoxError>> + Send>>;

impl<S, B> tower::Service<HttpRequest<B>> for WithRemoteIp<S>
where
    S: tower::Service<HttpRequest<B>, Response = HttpResponse, Error = BoxError, Future = BoxFuture>,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest<B>) -> Self::Future {
        // A WebSocket upgrade is JSON-RPC's, whatever its path.
        if req.method() == ::http::Method::GET && !req.headers().contains_key("upgrade") {
            if let Some(r) = crate::http::route(&self.routes, req.uri().path()) {
                return Box::pin(async move { Ok(r) });
            }
        }
        req.extensions_mut().insert(RemoteIp(self.ip));
        self.inner.call(req)
    }
}
