//! The JSON-RPC surface as traits: one method per line, its parameters typed, so the namespaces read as a
//! list and jsonrpsee parses the parameters (absent or null trailing parameters are `None`). The node serves
//! them from [`crate::eth`] and [`crate::pos`]; errors come from [`crate::error`].

use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::{Address, Bytes, B256, U256, U64};
use alloy_rpc_types_eth::{
    state::StateOverride, Block, EIP1186AccountProofResponse, FeeHistory, Filter, Log, Transaction, TransactionReceipt,
    TransactionRequest,
};
use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::proc_macros::rpc;
use serde_json::Value;

/// `web3_*`.
#[rpc(server, namespace = "web3")]
pub trait Web3Api {
    #[method(name = "clientVersion")]
    fn client_version(&self) -> RpcResult<String>;
    #[method(name = "sha3")]
    fn sha3(&self, data: Bytes) -> RpcResult<B256>;
}

/// `net_*`.
#[rpc(server, namespace = "net")]
pub trait NetApi {
    #[method(name = "version")]
    fn version(&self) -> RpcResult<String>;
    #[method(name = "listening")]
    fn listening(&self) -> RpcResult<bool>;
    #[method(name = "peerCount")]
    fn peer_count(&self) -> RpcResult<U64>;
}

/// `eth_*`: what wallets and tools (cast, viem, ethers, web3.py) call, with geth's answers and error codes.
#[rpc(server, namespace = "eth")]
pub trait EthApi {
    #[method(name = "chainId")]
    fn chain_id(&self) -> RpcResult<U64>;
    #[method(name = "syncing")]
    fn syncing(&self) -> RpcResult<bool>;
    #[method(name = "mining")]
    fn mining(&self) -> RpcResult<bool>;
    #[method(name = "accounts")]
    fn accounts(&self) -> RpcResult<Vec<Address>>;
    #[method(name = "blockNumber")]
    fn block_number(&self) -> RpcResult<U64>;

    #[method(name = "getBalance")]
    fn balance(&self, address: Address, block: Option<BlockId>) -> RpcResult<U256>;
    #[method(name = "getTransactionCount")]
    fn transaction_count(&self, address: Address, block: Option<BlockId>) -> RpcResult<U64>;
    #[method(name = "getCode")]
    fn code(&self, address: Address, block: Option<BlockId>) -> RpcResult<Bytes>;
    #[method(name = "getStorageAt")]
    fn storage_at(&self, address: Address, slot: U256, block: Option<BlockId>) -> RpcResult<B256>;
    #[method(name = "getProof")]
    fn proof(
        &self,
        address: Address,
        keys: Vec<U256>,
        block: Option<BlockId>,
    ) -> RpcResult<EIP1186AccountProofResponse>;
    #[method(name = "call", with_extensions)]
    async fn call(
        &self,
        request: TransactionRequest,
        block: Option<BlockId>,
        overrides: Option<StateOverride>,
    ) -> RpcResult<Bytes>;
    #[method(name = "estimateGas", with_extensions)]
    async fn estimate_gas(
        &self,
        request: TransactionRequest,
        block: Option<BlockId>,
        overrides: Option<StateOverride>,
    ) -> RpcResult<U64>;

    #[method(name = "gasPrice")]
    fn gas_price(&self) -> RpcResult<U256>;
    #[method(name = "maxPriorityFeePerGas")]
    fn max_priority_fee_per_gas(&self) -> RpcResult<U256>;
    #[method(name = "blobBaseFee")]
    fn blob_base_fee(&self) -> RpcResult<U256>;
    #[method(name = "feeHistory")]
    fn fee_history(&self, count: U64, newest: BlockNumberOrTag, percentiles: Option<Vec<f64>>)
        -> RpcResult<FeeHistory>;

    #[method(name = "sendRawTransaction")]
    fn send_raw_transaction(&self, raw: Bytes) -> RpcResult<B256>;
    #[method(name = "getTransactionByHash")]
    fn transaction_by_hash(&self, hash: B256) -> RpcResult<Option<Transaction>>;
    #[method(name = "getTransactionReceipt")]
    fn transaction_receipt(&self, hash: B256) -> RpcResult<Option<TransactionReceipt>>;
    #[method(name = "getBlockReceipts")]
    fn block_receipts(&self, block: BlockId) -> RpcResult<Option<Vec<TransactionReceipt>>>;
    #[method(name = "getBlockByNumber")]
    fn block_by_number(&self, block: BlockNumberOrTag, full: Option<bool>) -> RpcResult<Option<Block>>;
    #[method(name = "getBlockByHash")]
    fn block_by_hash(&self, hash: B256, full: Option<bool>) -> RpcResult<Option<Block>>;
    #[method(name = "getBlockTransactionCountByNumber")]
    fn block_transaction_count_by_number(&self, block: BlockNumberOrTag) -> RpcResult<Option<U64>>;
    #[method(name = "getBlockTransactionCountByHash")]
    fn block_transaction_count_by_hash(&self, hash: B256) -> RpcResult<Option<U64>>;
    #[method(name = "getTransactionByBlockNumberAndIndex")]
    fn transaction_by_block_number_and_index(
        &self,
        block: BlockNumberOrTag,
        index: U64,
    ) -> RpcResult<Option<Transaction>>;

    #[method(name = "getLogs", with_extensions)]
    async fn logs(&self, filter: Filter) -> RpcResult<Vec<Log>>;
    #[method(name = "newFilter")]
    fn new_filter(&self, filter: Filter) -> RpcResult<U256>;
    #[method(name = "newBlockFilter")]
    fn new_block_filter(&self) -> RpcResult<U256>;
    #[method(name = "newPendingTransactionFilter")]
    fn new_pending_transaction_filter(&self) -> RpcResult<U256>;
    #[method(name = "getFilterChanges", with_extensions)]
    async fn filter_changes(&self, id: U256) -> RpcResult<Value>;
    #[method(name = "getFilterLogs", with_extensions)]
    async fn filter_logs(&self, id: U256) -> RpcResult<Vec<Log>>;
    #[method(name = "uninstallFilter")]
    fn uninstall_filter(&self, id: U256) -> RpcResult<bool>;

    /// newHeads, logs (the second parameter is the filter), newPendingTransactions, syncing; over WebSocket.
    #[subscription(name = "subscribe" => "subscription", unsubscribe = "unsubscribe", item = Value)]
    async fn subscribe(&self, kind: String, params: Option<Value>) -> SubscriptionResult;
}

/// `debug_*`: geth's built-in tracers (`callTracer`, `prestateTracer`) over stored blocks, replayed on the state
/// history.
#[rpc(server, namespace = "debug")]
pub trait DebugApi {
    #[method(name = "traceTransaction", with_extensions)]
    async fn trace_transaction(
        &self,
        hash: B256,
        opts: Option<alloy_rpc_types_trace::geth::GethDebugTracingOptions>,
    ) -> RpcResult<alloy_rpc_types_trace::geth::GethTrace>;
    #[method(name = "traceBlockByNumber", with_extensions)]
    async fn trace_block_by_number(
        &self,
        block: BlockNumberOrTag,
        opts: Option<alloy_rpc_types_trace::geth::GethDebugTracingOptions>,
    ) -> RpcResult<Vec<alloy_rpc_types_trace::geth::TraceResult>>;
}

/// `txpool_*`: the mempool, as geth shows it.
#[rpc(server, namespace = "txpool")]
pub trait TxpoolApi {
    /// Transactions that can run now (`pending`) and that wait behind a nonce gap (`queued`).
    #[method(name = "status")]
    fn status(&self) -> RpcResult<Value>;
}

/// `metis_*`: the PoS query API. Lists take `[from?, count?]` and answer at most 1000 items per call.
#[rpc(server, namespace = "metis")]
pub trait PosApi {
    /// The batch with this index, its pool signature and, when asked, its payload.
    #[method(name = "getBatchByIndex")]
    fn batch_by_index(&self, index: u64, with_payload: Option<bool>) -> RpcResult<Value>;
    /// The batch that holds this L2 block.
    #[method(name = "getBatchForBlock")]
    fn batch_for_block(&self, block: u64) -> RpcResult<Value>;
    /// The Merkle proof of a transaction in its batch's txRoot (what BatchInbox.verifyTx takes).
    #[method(name = "getTxBatchProof", blocking)]
    fn tx_batch_proof(&self, hash: B256) -> RpcResult<Value>;
    /// The ledger's reward report for a batch range and the pool's signature over it.
    #[method(name = "getRewardReport")]
    fn reward_report(&self, id: u64) -> RpcResult<Value>;
    /// The signer: key round in use, whether this node holds a share, open and signed requests.
    #[method(name = "signer")]
    fn signer(&self) -> RpcResult<Value>;
    /// The batch poster (null on a node that does not post).
    #[method(name = "poster")]
    fn poster(&self) -> RpcResult<Value>;
    /// A sequencer by id or by L1 signer address.
    #[method(name = "sequencer")]
    fn sequencer(&self, key: Value) -> RpcResult<Value>;
    /// Applied L1 events with their L1 positions.
    #[method(name = "l1Events")]
    fn l1_events(&self, from: Option<u64>, count: Option<u64>) -> RpcResult<Value>;
    /// The pool's threshold key: the current key, the running round, every round's outcome.
    #[method(name = "thresholdKey")]
    fn threshold_key(&self) -> RpcResult<Value>;
    /// Epochs that ended in a re-election.
    #[method(name = "reElections")]
    fn re_elections(&self) -> RpcResult<Value>;
    /// Changes of the validator set.
    #[method(name = "setChanges")]
    fn set_changes(&self) -> RpcResult<Value>;
    /// This node's L1 view against what the ledger applied.
    #[method(name = "l1Status")]
    fn l1_status(&self) -> RpcResult<Value>;
    /// The commit certificate of a block: its round and signers.
    #[method(name = "commit")]
    fn commit(&self, height: u64) -> RpcResult<Value>;
    #[method(name = "epochs")]
    fn epochs(&self, from: Option<u64>, count: Option<u64>) -> RpcResult<Value>;
    #[method(name = "currentEpoch")]
    fn current_epoch(&self) -> RpcResult<Value>;
    /// Every sequencer: stake, status, voting power, blocks this epoch, jail (why, since, until), commits missed
    /// in the downtime window.
    #[method(name = "validators")]
    fn validators(&self) -> RpcResult<Value>;
    /// Punished offences, oldest first: what the ledger decided (jail, slash asked, whether L1 carried it out
    /// and the L1 event that did, the pool's signature over an open slash once this node has it) and the
    /// evidence with both signed messages (`encoded`: its canonical bytes, whose keccak is its hash).
    #[method(name = "evidence", aliases = ["metis_offences"])]
    fn evidence(&self, from: Option<u64>, count: Option<u64>) -> RpcResult<Value>;
    /// The ledger's height, state hash, parameters, schedule and archive counters.
    #[method(name = "ledger")]
    fn ledger(&self) -> RpcResult<Value>;
    /// How the last blocks were decided here (at most 600): round, the height's start to its decision, the time
    /// since the previous commit.
    #[method(name = "pace")]
    fn pace(&self) -> RpcResult<Value>;
    /// Governed PoS parameters: the values in force with their bounds, the changes L1 made that wait for the
    /// next epoch boundary, and every change applied or refused at one (old and new value, the epoch and block
    /// it applies from, its L1 transaction).
    #[method(name = "governance")]
    fn governance(&self) -> RpcResult<Value>;
}
