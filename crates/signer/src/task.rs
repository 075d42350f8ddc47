//! The signer task: its state ([`crate::state`]) fed from its mailbox ([`crate::mailbox`]) until the chain
//! stops.

use crate::mailbox::Mailbox;
use crate::state::{Signer, REPEAT};
use crate::{SharedSignerStatus, SignerConfig, SigningKey};
use metis_chain::Chain;
use metis_net::sighub::{Peer, SignHub, SignMsg};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{info_span, Instrument};

/// What the signer starts from, as the node's ledger has it.
pub struct Resume {
    /// The key the node signs with now.
    pub key: Option<SigningKey>,
    /// The ledger's last reward report.
    pub last_report: Option<metis_pos::RewardReport>,
    /// Slashes the ledger asked of L1 that L1 has not carried out.
    pub open_slashes: Vec<metis_pos::SlashRequest>,
}

/// Starts the signer task on the chain's commits (call it before consensus decides the next block).
pub fn spawn(
    cfg: SignerConfig,
    chain: &Chain,
    hub: Arc<SignHub>,
    from_peers: mpsc::Receiver<(Peer, Vec<SignMsg>)>,
    resume: Resume,
    status: SharedSignerStatus,
) -> tokio::task::JoinHandle<()> {
    let mut mailbox = Mailbox::new(chain.subscribe_committed(), from_peers, REPEAT);
    let mut s = Signer::new(cfg, chain.engine().store().clone(), hub, status);
    metrics::counter!("metis_batches_signed_total").increment(0);
    tokio::spawn(
        async move {
            s.start(resume.key, resume.last_report, &resume.open_slashes);
            while let Some(input) = mailbox.recv().await {
                s.handle(input);
                s.publish_status();
            }
        }
        .instrument(info_span!("signer")),
    )
}
