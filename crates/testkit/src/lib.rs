//! The one harness of the workspace's integration and end-to-end tests: waiting with deadlines, temp dirs and
//! processes ([`wait`]), the dev accounts, a real anvil from the project's tool folder, the contracts deployed
//! on it by the Rust deployer, threshold keys, and batches signed by a quorum. Every anvil is killed when its
//! handle drops, also when a test fails.

pub mod dev;
pub mod devnet;
pub mod faultproxy;
pub mod links;
pub mod rpc;
pub mod scrape;
pub mod testnet;
pub mod wait;

pub use metis_contracts::dev::{dev_key, dev_keys, DEV_MNEMONIC};
pub use wait::{alive, free_port, kill, port_free, tempdir, wait_for};

use alloy::network::EthereumWallet;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{utils::parse_ether, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use commonware_cryptography::bls12381::{dkg::feldman_desmedt::deal_anonymous, primitives::sharing::Mode};
use commonware_utils::N3f1;
use metis_contracts::bindings::BatchInbox::{BatchHeader, BatchInboxInstance};
use metis_contracts::{deploy_all, digest, DeployConfig, Deployment, LockingPool};
use metis_mpc::{encoding, threshold, MinSig, Share, Sharing};
use rand::{rngs::StdRng, SeedableRng};
use std::num::NonZeroU32;
use std::path::PathBuf;

/// An account as Ethereum's state trie holds it (the RLP list of nonce, balance, storage root, code hash), encoded
/// here independently of the node's own code: what a light client checks an `eth_getProof` account proof against.
pub fn trie_account(
    nonce: u64,
    balance: alloy::primitives::U256,
    storage_root: alloy::primitives::B256,
    code_hash: alloy::primitives::B256,
) -> Vec<u8> {
    #[derive(alloy_rlp::RlpEncodable)]
    struct Leaf {
        nonce: u64,
        balance: alloy::primitives::U256,
        storage_root: alloy::primitives::B256,
        code_hash: alloy::primitives::B256,
    }
    alloy_rlp::encode(Leaf {
        nonce,
        balance,
        storage_root,
        code_hash,
    })
}

/// The `metis-seq` binary the tests run: `METIS_SEQ_BIN`, or the one cargo built beside the running test
/// (`target/<profile>/metis-seq`, where `CARGO_BIN_EXE_metis-seq` points).
pub fn metis_seq_bin() -> PathBuf {
    if let Ok(p) = std::env::var("METIS_SEQ_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/metis-seq
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("metis-seq"))
        .expect("the test runs from cargo's target dir")
}

/// anvil from `METIS_ANVIL` or the project's `.tools/bin` (installed by `make tools`).
pub fn anvil_path() -> PathBuf {
    std::env::var("METIS_ANVIL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/anvil"))
}

/// A fresh anvil on a free loopback port (below the ephemeral range: [`wait::free_port`]).
pub fn spawn_anvil() -> AnvilInstance {
    spawn_anvil_with(&[])
}

/// A fresh anvil on a free loopback port, with extra command-line arguments (e.g. `--block-time 0.25`).
pub fn spawn_anvil_with(args: &[&str]) -> AnvilInstance {
    let path = anvil_path();
    assert!(
        path.exists(),
        "anvil not found at {}: run `make tools` first",
        path.display()
    );
    Anvil::new()
        .path(path)
        .port(wait::free_port())
        .args(args)
        .timeout(30_000)
        .spawn()
}

/// anvil with the whole contract set deployed by anvil's first dev account (the owner).
pub struct L1 {
    pub anvil: AnvilInstance,
    /// Signs with the owner and every extra signer registered at setup.
    pub provider: DynProvider,
    pub owner: PrivateKeySigner,
    pub chain_id: u64,
    pub deployment: Deployment,
}

/// Deploys on a fresh anvil; `extra` signers are registered in the provider's wallet (use `.from(addr)`).
pub async fn deployed_l1(extra: &[PrivateKeySigner]) -> L1 {
    deployed_l1_with(extra, &[]).await
}

/// [`deployed_l1`] on an anvil started with extra arguments.
pub async fn deployed_l1_with(extra: &[PrivateKeySigner], anvil_args: &[&str]) -> L1 {
    deploy_on(spawn_anvil_with(anvil_args), extra, None).await
}

/// [`deployed_l1_with`] with the governance contracts too (still owned by the owner: `hand_over` gives them
/// away).
pub async fn deployed_l1_governed(
    extra: &[PrivateKeySigner],
    anvil_args: &[&str],
    governance: metis_contracts::GovConfig,
) -> L1 {
    deploy_on(spawn_anvil_with(anvil_args), extra, Some(governance)).await
}

async fn deploy_on(
    anvil: AnvilInstance,
    extra: &[PrivateKeySigner],
    governance: Option<metis_contracts::GovConfig>,
) -> L1 {
    let owner: PrivateKeySigner = anvil.keys()[0].clone().into();
    let mut wallet = EthereumWallet::new(owner.clone());
    for s in extra {
        wallet.register_signer(s.clone());
    }
    let provider = ProviderBuilder::new()
        .wallet(wallet)
        .connect_http(anvil.endpoint_url())
        .erased();
    let cfg = DeployConfig {
        owner: owner.address(),
        reward_payer: owner.address(),
        reward_per_block: parse_ether("1").expect("constant"),
        token: None,
        governance,
    };
    let deployment = deploy_all(&provider, &cfg).await.expect("deploying the contracts");
    let chain_id = provider.get_chain_id().await.expect("chain id");
    L1 {
        anvil,
        provider,
        owner,
        chain_id,
        deployment,
    }
}

/// A trusted-dealer sharing among `n` (quorum: more than 2/3), for tests of everything but the DKG itself.
pub fn deal(n: u32, seed: u64) -> (Sharing<MinSig>, Vec<Share>) {
    let n = NonZeroU32::new(n).expect("n > 0");
    deal_anonymous::<MinSig, N3f1>(StdRng::seed_from_u64(seed), Mode::NonZeroCounter, n)
}

impl L1 {
    /// Registers `sharing`'s group key in LockingPool (as the owner).
    pub async fn register_group_key(&self, sharing: &Sharing<MinSig>) {
        let pool = LockingPool::new(self.deployment.locking_pool, self.provider.clone());
        let pk = Bytes::from(encoding::g2_to_eip2537(sharing.public()).to_vec());
        let r = pool
            .setGroupKey(pk)
            .send()
            .await
            .expect("sent")
            .get_receipt()
            .await
            .expect("mined");
        assert!(r.status(), "setGroupKey reverted");
    }

    /// Gives `who` 100 ETH on L1.
    pub async fn fund(&self, who: alloy::primitives::Address) {
        let amount = alloy::primitives::U256::from(10u128.pow(20));
        self.provider
            .raw_request::<_, ()>("anvil_setBalance".into(), (who, amount))
            .await
            .expect("anvil_setBalance");
    }

    pub fn inbox(&self) -> BatchInboxInstance<DynProvider> {
        BatchInboxInstance::new(self.deployment.batch_inbox, self.provider.clone())
    }
}

/// The EIP-2537 group signature over `h` from `shares` (a quorum of `sharing`) for `inbox` on `chain_id`.
pub fn sign_batch<'a>(
    chain_id: u64,
    inbox: alloy::primitives::Address,
    h: &BatchHeader,
    sharing: &Sharing<MinSig>,
    shares: impl IntoIterator<Item = &'a Share>,
) -> Bytes {
    let digest = digest::batch_signing_digest(chain_id, inbox, h).0;
    let partials: Vec<_> = shares
        .into_iter()
        .map(|s| threshold::sign_partial(s, &digest))
        .collect();
    let sig = threshold::aggregate(sharing, &digest, &partials).expect("a quorum of valid partials");
    Bytes::from(encoding::g1_to_eip2537(&sig).to_vec())
}

/// Signs and appends `h` with its calldata `payload`; returns the receipt.
pub async fn append_signed<'a>(
    inbox: &BatchInboxInstance<DynProvider>,
    chain_id: u64,
    h: &BatchHeader,
    payload: Bytes,
    sharing: &Sharing<MinSig>,
    shares: impl IntoIterator<Item = &'a Share>,
) -> TransactionReceipt {
    let sig = sign_batch(chain_id, *inbox.address(), h, sharing, shares);
    let pending = inbox.appendBatch(h.clone(), payload, sig).send().await.expect("sent");
    pending.get_receipt().await.expect("mined")
}
