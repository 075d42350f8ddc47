//! `metis-seq gov ...`: the pool's governance from the command line. Proposals are OpenZeppelin Governor
//! proposals on L1 (so Tally, `cast` and any Governor tool see the same ones); this command builds the typed
//! actions, checks what it can before anything is sent, and reads proposals back from their events.

use crate::l1_cmd::Connection;
use crate::l1_tx::{confirm, revert_reason};
use alloy::{
    dyn_abi::{DynSolType, DynSolValue, JsonAbiExt},
    json_abi::Function,
    primitives::{keccak256, Address, Bytes, B256, U256},
    providers::{DynProvider, Provider},
    rpc::types::Filter,
    sol_types::{SolCall, SolEvent},
};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use metis_contracts::{Deployment, LockingInfo, LockingPool, MetisGovernor, PosParams, StakeVotes};
use metis_pos::GovParam;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum GovCommand {
    /// Propose actions for the stake to vote on (the sender's votes must reach the proposal threshold). Prints
    /// the proposal id.
    Propose {
        #[command(flatten)]
        at: GovConnection,
        #[command(flatten)]
        actions: Actions,
        /// What the proposal does and why (its first line is its title).
        #[arg(long)]
        description: String,
    },
    /// Vote on an active proposal with the sender's stake at the proposal's snapshot.
    Vote {
        #[command(flatten)]
        at: GovConnection,
        /// The proposal id (decimal or 0x hex).
        id: String,
        support: Support,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Queue a proposal that passed on the timelock (anyone may).
    Queue {
        #[command(flatten)]
        at: GovConnection,
        id: String,
    },
    /// Execute a queued proposal once the timelock's delay has passed (anyone may).
    Execute {
        #[command(flatten)]
        at: GovConnection,
        id: String,
    },
    /// Every proposal, oldest first, one JSON line each (no key needed).
    List {
        #[command(flatten)]
        at: GovConnection,
    },
    /// One proposal: state, actions, votes, quorum, snapshot and deadlines in L1 blocks and wall time (JSON; no
    /// key needed).
    Show {
        #[command(flatten)]
        at: GovConnection,
        id: String,
    },
    /// Give the sender's votes to another address (or back to itself).
    Delegate {
        #[command(flatten)]
        at: GovConnection,
        to: Address,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Support {
    Against,
    For,
    Abstain,
}

impl Support {
    /// GovernorCountingSimple's numbering.
    fn code(self) -> u8 {
        match self {
            Support::Against => 0,
            Support::For => 1,
            Support::Abstain => 2,
        }
    }
}

/// The L1 connection and the deployment's addresses.
#[derive(Args)]
pub struct GovConnection {
    #[command(flatten)]
    conn: Connection,
    /// The deployment's addresses: the JSON `metis-seq l1 deploy --out` and the devnet (DIR/contracts.json) write.
    #[arg(long, env = "METIS_CONTRACTS")]
    contracts: PathBuf,
}

impl GovConnection {
    fn deployment(&self) -> Result<Governed> {
        let raw = std::fs::read_to_string(&self.contracts)
            .with_context(|| format!("reading {}", self.contracts.display()))?;
        let d: Deployment =
            serde_json::from_str(&raw).with_context(|| format!("{} is not a deployment", self.contracts.display()))?;
        let (Some(governor), Some(params), Some(votes)) = (d.governor, d.pos_params, d.votes) else {
            bail!(
                "{} names no governor: this deployment is governed by its owner key (a devnet started with --admin)",
                self.contracts.display()
            );
        };
        Ok(Governed {
            governor,
            params,
            votes,
            pool: d.locking_pool,
            info: d.locking_info,
            from_block: d.deployed_at_block,
        })
    }
}

struct Governed {
    governor: Address,
    params: Address,
    votes: Address,
    pool: Address,
    info: Address,
    from_block: u64,
}

/// What a proposal does. Any number of them, in this order: typed ones first, then the raw calls.
#[derive(Args, Default)]
pub struct Actions {
    /// Allow an address to lock stake for a sequencer (repeatable).
    #[arg(long, value_name = "ADDR")]
    whitelist: Vec<Address>,
    /// Disallow an address from locking (repeatable).
    #[arg(long, value_name = "ADDR")]
    unwhitelist: Vec<Address>,
    /// The smallest stake a sequencer may lock, in whole tokens.
    #[arg(long, value_name = "TOKENS")]
    min_lock: Option<u64>,
    /// The largest stake a sequencer may lock (the PoS voting-power cap), in whole tokens.
    #[arg(long, value_name = "TOKENS")]
    max_lock: Option<u64>,
    /// Reward per produced L2 block, in token wei.
    #[arg(long, value_name = "WEI")]
    reward_per_block: Option<U256>,
    /// Seconds between a withdrawal or unlock and its claim.
    #[arg(long, value_name = "SECS")]
    exit_delay: Option<u64>,
    /// A PoS parameter (applied by every node at the next epoch boundary), e.g. epoch_length=20 (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    param: Vec<String>,
    /// Release a sequencer LockingPool holds jailed after a slash, by its id (repeatable).
    #[arg(long, value_name = "SEQUENCER_ID")]
    unjail: Vec<u64>,
    /// Pause staking on L1.
    #[arg(long, conflicts_with = "unpause")]
    pause: bool,
    #[arg(long)]
    unpause: bool,
    /// A raw call, after the typed actions: TARGET SIGNATURE ARGS..., e.g. --call 0xPOOL "setTreasury(address)"
    /// 0xabc.. (repeat it for more calls; they run in the order given).
    #[arg(long, num_args = 2.., value_names = ["TARGET", "SIGNATURE"])]
    call: Vec<String>,
}

/// One call the timelock makes.
#[derive(Debug, PartialEq)]
struct Action {
    target: Address,
    calldata: Bytes,
    /// For people: what the call does.
    what: String,
}

fn tokens(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

impl Actions {
    /// The calls, every argument checked (parameter names and bounds, signatures and their arguments).
    fn build(&self, g: &Governed) -> Result<Vec<Action>> {
        let mut out = Vec::new();
        let mut push = |target: Address, calldata: Vec<u8>, what: String| {
            out.push(Action {
                target,
                calldata: Bytes::from(calldata),
                what,
            })
        };
        for a in &self.whitelist {
            push(
                g.pool,
                LockingPool::setWhitelistCall {
                    user: *a,
                    allowed: true,
                }
                .abi_encode(),
                format!("whitelist {a}"),
            );
        }
        for a in &self.unwhitelist {
            push(
                g.pool,
                LockingPool::setWhitelistCall {
                    user: *a,
                    allowed: false,
                }
                .abi_encode(),
                format!("unwhitelist {a}"),
            );
        }
        if let Some(n) = self.min_lock {
            push(
                g.info,
                LockingInfo::setMinLockCall { newMinLock: tokens(n) }.abi_encode(),
                format!("min_lock = {n} tokens"),
            );
        }
        if let Some(n) = self.max_lock {
            push(
                g.info,
                LockingInfo::setMaxLockCall { newMaxLock: tokens(n) }.abi_encode(),
                format!("max_lock = {n} tokens"),
            );
        }
        if let Some(r) = self.reward_per_block {
            push(
                g.pool,
                LockingPool::updateBlockRewardCall { newReward: r }.abi_encode(),
                format!("reward_per_block = {r} wei"),
            );
        }
        if let Some(s) = self.exit_delay {
            push(
                g.pool,
                LockingPool::setExitDelayCall {
                    newDelay: U256::from(s),
                }
                .abi_encode(),
                format!("exit_delay = {s} s"),
            );
        }
        for id in &self.unjail {
            push(
                g.pool,
                LockingPool::unjailCall { seqId: U256::from(*id) }.abi_encode(),
                format!("unjail sequencer {id}"),
            );
        }
        for p in &self.param {
            let (param, value) = parse_param(p)?;
            push(
                g.params,
                PosParams::setCall {
                    param: param.index(),
                    value: U256::from(value),
                }
                .abi_encode(),
                format!("{} = {value}", param.name()),
            );
        }
        if self.pause || self.unpause {
            push(
                g.pool,
                LockingPool::setPauseCall { paused_: self.pause }.abi_encode(),
                if self.pause { "pause" } else { "unpause" }.to_string(),
            );
        }
        for c in call_groups(&self.call)? {
            let (target, calldata, what) = raw_call(c)?;
            push(target, calldata, what);
        }
        if out.is_empty() {
            bail!("a proposal needs at least one action (--whitelist, --max-lock, --param, --call, ...)");
        }
        Ok(out)
    }
}

/// `NAME=VALUE` for a PoS parameter, within the ledger's bounds (PosParams has the same).
fn parse_param(s: &str) -> Result<(GovParam, u64)> {
    let Some((name, value)) = s.split_once('=') else {
        bail!("--param {s}: expected NAME=VALUE, e.g. epoch_length=20");
    };
    let Some(param) = GovParam::from_name(name.trim()) else {
        let names: Vec<&str> = GovParam::ALL.iter().map(|p| p.name()).collect();
        bail!(
            "--param {s}: no parameter {name:?}; the governed ones are {}",
            names.join(", ")
        );
    };
    let value: u64 = value
        .trim()
        .parse()
        .with_context(|| format!("--param {s}: {value:?} is not a whole number"))?;
    let (lo, hi) = param.bounds();
    if value < lo || value > hi {
        bail!("--param {s}: {} must be within {lo}..={hi}", param.name());
    }
    Ok((param, value))
}

/// The repeated `--call` values split into calls. clap hands them over as one list; each call is TARGET SIGNATURE
/// and as many arguments as the signature takes, so the signatures mark where the next call starts.
fn call_groups(values: &[String]) -> Result<Vec<&[String]>> {
    let mut out = Vec::new();
    let mut rest = values;
    while !rest.is_empty() {
        let [_, sig, ..] = rest else {
            bail!("--call takes TARGET SIGNATURE ARGS...");
        };
        let f = Function::parse(sig).with_context(|| format!("--call: {sig:?} is not a function signature"))?;
        let len = f.inputs.len().saturating_add(2).min(rest.len());
        let (call, next) = rest.split_at(len);
        out.push(call);
        rest = next;
    }
    Ok(out)
}

/// `[TARGET, SIGNATURE, ARGS...]` encoded; the arguments are parsed as the signature's types.
fn raw_call(c: &[String]) -> Result<(Address, Vec<u8>, String)> {
    let [target, sig, args @ ..] = c else {
        bail!("--call takes TARGET SIGNATURE ARGS...");
    };
    let target: Address = target
        .parse()
        .with_context(|| format!("--call: {target:?} is not an address"))?;
    let f = Function::parse(sig).with_context(|| format!("--call: {sig:?} is not a function signature"))?;
    if f.inputs.len() != args.len() {
        bail!(
            "--call {sig}: {} argument(s) expected, {} given",
            f.inputs.len(),
            args.len()
        );
    }
    let mut values = Vec::with_capacity(args.len());
    for (input, arg) in f.inputs.iter().zip(args) {
        let ty: DynSolType = input
            .ty
            .parse()
            .with_context(|| format!("--call {sig}: unknown type {}", input.ty))?;
        let v: DynSolValue = ty
            .coerce_str(arg)
            .with_context(|| format!("--call {sig}: {arg:?} is not a {}", input.ty))?;
        values.push(v);
    }
    let calldata = f
        .abi_encode_input(&values)
        .with_context(|| format!("--call {sig}: encoding the arguments"))?;
    Ok((target, calldata, format!("{target}.{}({})", f.name, args.join(", "))))
}

/// A proposal id: decimal or 0x hex.
fn parse_id(s: &str) -> Result<U256> {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => U256::from_str_radix(hex, 16),
        None => U256::from_str_radix(s, 10),
    };
    parsed.with_context(|| format!("{s:?} is not a proposal id (decimal or 0x hex)"))
}

/// OZ's `IGovernor.ProposalState`, by number.
const STATES: [&str; 8] = [
    "Pending",
    "Active",
    "Canceled",
    "Defeated",
    "Succeeded",
    "Queued",
    "Expired",
    "Executed",
];

fn state_name(s: u8) -> &'static str {
    STATES.get(usize::from(s)).copied().unwrap_or("Unknown")
}

/// A proposal as its creation event has it.
struct Proposal {
    id: U256,
    proposer: Address,
    targets: Vec<Address>,
    values: Vec<U256>,
    calldatas: Vec<Bytes>,
    description: String,
    created_block: Option<u64>,
    created_tx: Option<B256>,
}

impl Proposal {
    fn description_hash(&self) -> B256 {
        keccak256(self.description.as_bytes())
    }

    /// What `queue` and `execute` take: the proposal as created.
    fn call_args(&self) -> (Vec<Address>, Vec<U256>, Vec<Bytes>, B256) {
        (
            self.targets.clone(),
            self.values.clone(),
            self.calldatas.clone(),
            self.description_hash(),
        )
    }
}

/// Blocks per `get_logs` request (public endpoints refuse wide ranges).
const LOG_RANGE: u64 = 5_000;

/// Every proposal the governor has seen, from its creation events.
async fn proposals(p: &DynProvider, g: &Governed) -> Result<Vec<Proposal>> {
    let head = p.get_block_number().await.context("reading the L1 head")?;
    let mut out = Vec::new();
    let mut from = g.from_block;
    while from <= head {
        let to = from.saturating_add(LOG_RANGE - 1).min(head);
        let filter = Filter::new()
            .address(g.governor)
            .event_signature(MetisGovernor::ProposalCreated::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let logs = p
            .get_logs(&filter)
            .await
            .with_context(|| format!("reading the governor's proposals in blocks {from}..={to}"))?;
        for log in logs {
            let decoded = log
                .log_decode::<MetisGovernor::ProposalCreated>()
                .context("a ProposalCreated event that does not decode")?;
            let e = decoded.inner.data;
            out.push(Proposal {
                id: e.proposalId,
                proposer: e.proposer,
                targets: e.targets,
                values: e.values,
                calldatas: e.calldatas,
                description: e.description,
                created_block: log.block_number,
                created_tx: log.transaction_hash,
            });
        }
        from = to.saturating_add(1);
    }
    Ok(out)
}

async fn find(p: &DynProvider, g: &Governed, id: U256) -> Result<Proposal> {
    proposals(p, g)
        .await?
        .into_iter()
        .find(|x| x.id == id)
        .with_context(|| format!("no proposal {id} on governor {}", g.governor))
}

/// Seconds per L1 block, from the last 64 blocks (at least 1).
async fn block_secs(p: &DynProvider) -> Result<f64> {
    let head = p.get_block_number().await.context("reading the L1 head")?;
    let back = head.saturating_sub(64);
    let t = |n: u64| async move {
        p.get_block_by_number(n.into())
            .await
            .with_context(|| format!("reading L1 block {n}"))?
            .map(|b| b.header.timestamp)
            .with_context(|| format!("L1 block {n} is missing"))
    };
    let (a, b) = (t(back).await?, t(head).await?);
    if head == back || b <= a {
        return Ok(1.0);
    }
    Ok((b - a) as f64 / (head - back) as f64)
}

/// The proposal `id` (as given), which must be in state `want` before anything is sent for it.
async fn proposal_in(
    at: &GovConnection,
    id: &str,
    want: u8,
    done: &str,
) -> Result<(DynProvider, MetisGovernor::MetisGovernorInstance<DynProvider>, Proposal)> {
    let id = parse_id(id)?;
    let g = at.deployment()?;
    let (p, _) = at.conn.provider().await?;
    let gov = MetisGovernor::new(g.governor, p.clone());
    let s = state(&gov, id).await?;
    if s != want {
        bail!(
            "proposal {id} is {}: only a {} proposal is {done}",
            state_name(s),
            state_name(want)
        );
    }
    let x = find(&p, &g, id).await?;
    Ok((p, gov, x))
}

async fn state(gov: &MetisGovernor::MetisGovernorInstance<DynProvider>, id: U256) -> Result<u8> {
    gov.state(id)
        .call()
        .await
        .map_err(|e| anyhow::anyhow!("reading the state of proposal {id}: {}", revert_reason(&e)))
}

pub async fn run(cmd: GovCommand) -> Result<()> {
    match cmd {
        GovCommand::Propose {
            at,
            actions,
            description,
        } => {
            let g = at.deployment()?;
            if description.trim().is_empty() {
                bail!("--description is empty: say what the proposal does and why");
            }
            let built = actions.build(&g)?;
            let (p, sender) = at.conn.provider().await?;
            let pool = LockingPool::new(g.pool, p.clone());
            for id in &actions.unjail {
                let s = pool
                    .sequencers(U256::from(*id))
                    .call()
                    .await
                    .with_context(|| format!("reading sequencer {id}"))?;
                if !s.jailed {
                    bail!("--unjail {id}: sequencer {id} is not jailed on L1");
                }
            }
            let actions = built;
            let gov = MetisGovernor::new(g.governor, p.clone());
            let targets: Vec<Address> = actions.iter().map(|a| a.target).collect();
            let values = vec![U256::ZERO; actions.len()];
            let calls: Vec<Bytes> = actions.iter().map(|a| a.calldata.clone()).collect();
            let id = gov
                .hashProposal(
                    targets.clone(),
                    values.clone(),
                    calls.clone(),
                    keccak256(description.as_bytes()),
                )
                .call()
                .await
                .context("reading the proposal's id")?;
            let snapshot = gov
                .proposalSnapshot(id)
                .call()
                .await
                .context("reading proposalSnapshot")?;
            if !snapshot.is_zero() {
                bail!("proposal {id} exists already (same actions and description): `gov show {id}`");
            }
            let clock = gov.clock().call().await.context("reading the governor's clock")?;
            let before = U256::from(clock).saturating_sub(U256::from(1));
            let votes = gov
                .getVotes(sender, before)
                .call()
                .await
                .context("reading the sender's votes")?;
            let threshold = gov
                .proposalThreshold()
                .call()
                .await
                .context("reading proposalThreshold")?;
            if votes < threshold {
                bail!(
                    "{sender} has {votes} votes (wei of stake delegated to it at the last block); proposing takes \
                     {threshold}"
                );
            }
            let tx = confirm("propose", gov.propose(targets, values, calls, description).send().await).await?;
            let what: Vec<&str> = actions.iter().map(|a| a.what.as_str()).collect();
            println!(
                "{}",
                serde_json::json!({ "proposal_id": id.to_string(), "tx": tx, "actions": what })
            );
            Ok(())
        }
        GovCommand::Vote {
            at,
            id,
            support,
            reason,
        } => {
            let id = parse_id(&id)?;
            let g = at.deployment()?;
            let (p, sender) = at.conn.provider().await?;
            let gov = MetisGovernor::new(g.governor, p.clone());
            let s = state(&gov, id).await?;
            if s != 1 {
                bail!(
                    "proposal {id} is {}: only an Active proposal takes votes",
                    state_name(s)
                );
            }
            if gov.hasVoted(id, sender).call().await.context("reading hasVoted")? {
                bail!("{sender} has voted on proposal {id} already");
            }
            let snapshot = gov
                .proposalSnapshot(id)
                .call()
                .await
                .context("reading proposalSnapshot")?;
            let weight = gov
                .getVotes(sender, snapshot)
                .call()
                .await
                .context("reading the sender's votes")?;
            if weight.is_zero() {
                eprintln!("note: {sender} had no votes at the snapshot (block {snapshot}); this vote counts zero");
            }
            let sent = match &reason {
                Some(r) => gov.castVoteWithReason(id, support.code(), r.clone()).send().await,
                None => gov.castVote(id, support.code()).send().await,
            };
            let tx = confirm("castVote", sent).await?;
            println!(
                "{}",
                serde_json::json!({
                    "proposal_id": id.to_string(), "tx": tx, "support": format!("{support:?}").to_lowercase(),
                    "weight": weight.to_string(),
                })
            );
            Ok(())
        }
        GovCommand::Queue { at, id } => {
            let (_, gov, x) = proposal_in(&at, &id, 4, "queued").await?;
            let (targets, values, calldatas, description) = x.call_args();
            let tx = confirm("queue", gov.queue(targets, values, calldatas, description).send().await).await?;
            let eta = gov.proposalEta(x.id).call().await.context("reading proposalEta")?;
            println!(
                "{}",
                serde_json::json!({ "proposal_id": x.id.to_string(), "tx": tx, "executable_at": eta.to_string() })
            );
            Ok(())
        }
        GovCommand::Execute { at, id } => {
            let (p, gov, x) = proposal_in(&at, &id, 5, "executed").await?;
            let eta = gov.proposalEta(x.id).call().await.context("reading proposalEta")?;
            let now = p
                .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
                .await
                .context("reading the L1 head")?
                .context("the L1 head is missing")?
                .header
                .timestamp;
            if U256::from(now) < eta {
                bail!(
                    "proposal {} is executable at L1 time {eta}, {} s from the head's time",
                    x.id,
                    eta.saturating_sub(U256::from(now))
                );
            }
            let (targets, values, calldatas, description) = x.call_args();
            let tx = confirm(
                "execute",
                gov.execute(targets, values, calldatas, description).send().await,
            )
            .await?;
            println!("{}", serde_json::json!({ "proposal_id": x.id.to_string(), "tx": tx }));
            Ok(())
        }
        GovCommand::List { at } => {
            let g = at.deployment()?;
            let p = at.conn.reader().await?;
            let gov = MetisGovernor::new(g.governor, p.clone());
            for x in proposals(&p, &g).await? {
                let s = state(&gov, x.id).await?;
                let v = gov.proposalVotes(x.id).call().await.context("reading proposalVotes")?;
                println!(
                    "{}",
                    serde_json::json!({
                        "proposal_id": x.id.to_string(),
                        "state": state_name(s),
                        "title": x.description.lines().next().unwrap_or(""),
                        "for": v.forVotes.to_string(),
                        "against": v.againstVotes.to_string(),
                        "abstain": v.abstainVotes.to_string(),
                    })
                );
            }
            Ok(())
        }
        GovCommand::Show { at, id } => {
            let id = parse_id(&id)?;
            let g = at.deployment()?;
            let p = at.conn.reader().await?;
            let x = find(&p, &g, id).await?;
            println!("{}", serde_json::to_string_pretty(&show(&p, &g, &x).await?)?);
            Ok(())
        }
        GovCommand::Delegate { at, to } => {
            let g = at.deployment()?;
            let (p, sender) = at.conn.provider().await?;
            let votes = StakeVotes::new(g.votes, p);
            let tx = confirm("delegate", votes.delegate(to).send().await).await?;
            println!(
                "{}",
                serde_json::json!({ "tx": tx, "delegator": sender, "delegate": to })
            );
            Ok(())
        }
    }
}

/// Everything `gov show` says about a proposal.
async fn show(p: &DynProvider, g: &Governed, x: &Proposal) -> Result<serde_json::Value> {
    let gov = MetisGovernor::new(g.governor, p.clone());
    let s = state(&gov, x.id).await?;
    let snapshot = gov
        .proposalSnapshot(x.id)
        .call()
        .await
        .context("reading proposalSnapshot")?;
    let deadline = gov
        .proposalDeadline(x.id)
        .call()
        .await
        .context("reading proposalDeadline")?;
    let eta = gov.proposalEta(x.id).call().await.context("reading proposalEta")?;
    let v = gov.proposalVotes(x.id).call().await.context("reading proposalVotes")?;
    let head = p.get_block_number().await.context("reading the L1 head")?;
    // The quorum of a snapshot still ahead is not known yet: the governor answers it once the block is past.
    let quorum = if snapshot < U256::from(head) {
        Some(
            gov.quorum(snapshot)
                .call()
                .await
                .context("reading the quorum")?
                .to_string(),
        )
    } else {
        None
    };
    let secs = block_secs(p).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let when = |block: U256| -> serde_json::Value {
        let block = u64::try_from(block).unwrap_or(u64::MAX);
        let ahead = block.saturating_sub(head);
        serde_json::json!({
            "block": block,
            "blocks_from_head": block as i128 - head as i128,
            "about_unix_time": now.saturating_add((ahead as f64 * secs) as u64),
        })
    };
    let actions: Vec<serde_json::Value> = x
        .targets
        .iter()
        .zip(&x.values)
        .zip(&x.calldatas)
        .map(|((t, v), c)| serde_json::json!({ "target": t, "value": v.to_string(), "calldata": c }))
        .collect();
    Ok(serde_json::json!({
        "proposal_id": x.id.to_string(),
        "state": state_name(s),
        "proposer": x.proposer,
        "description": x.description,
        "created": { "block": x.created_block, "tx": x.created_tx },
        "actions": actions,
        "votes": {
            "for": v.forVotes.to_string(),
            "against": v.againstVotes.to_string(),
            "abstain": v.abstainVotes.to_string(),
        },
        "quorum": quorum,
        "snapshot": when(snapshot),
        "deadline": when(deadline),
        "executable_at_unix_time": if eta.is_zero() { None } else { Some(eta.to_string()) },
        "l1_head": head,
        "l1_block_secs": secs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn governed() -> Governed {
        Governed {
            governor: Address::repeat_byte(1),
            params: Address::repeat_byte(2),
            votes: Address::repeat_byte(3),
            pool: Address::repeat_byte(4),
            info: Address::repeat_byte(5),
            from_block: 0,
        }
    }

    #[test]
    fn typed_actions_encode_the_contracts_calls() {
        let a = Actions {
            whitelist: vec![Address::repeat_byte(9)],
            max_lock: Some(3),
            param: vec!["epoch_length=20".into()],
            unjail: vec![7],
            pause: true,
            ..Default::default()
        };
        let out = a.build(&governed()).unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(out[0].target, Address::repeat_byte(4));
        assert_eq!(
            out[0].calldata,
            Bytes::from(
                LockingPool::setWhitelistCall {
                    user: Address::repeat_byte(9),
                    allowed: true
                }
                .abi_encode()
            )
        );
        assert_eq!(out[1].target, Address::repeat_byte(5));
        assert_eq!(
            out[1].calldata,
            Bytes::from(LockingInfo::setMaxLockCall { newMaxLock: tokens(3) }.abi_encode())
        );
        assert_eq!(
            out[2].calldata,
            Bytes::from(LockingPool::unjailCall { seqId: U256::from(7) }.abi_encode())
        );
        assert_eq!(out[3].target, Address::repeat_byte(2));
        assert_eq!(
            out[3].calldata,
            Bytes::from(
                PosParams::setCall {
                    param: 0,
                    value: U256::from(20)
                }
                .abi_encode()
            )
        );
        assert_eq!(
            out[4].calldata,
            Bytes::from(LockingPool::setPauseCall { paused_: true }.abi_encode())
        );
    }

    #[test]
    fn repeated_raw_calls_are_each_encoded_by_their_signature_in_order() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            actions: Actions,
        }
        let (pool, to) = (Address::repeat_byte(4), Address::repeat_byte(7));
        let cli = <Cli as clap::Parser>::try_parse_from([
            "gov".to_string(),
            "--call".into(),
            pool.to_string(),
            "setTreasury(address)".into(),
            to.to_string(),
            "--call".into(),
            pool.to_string(),
            "setPause(bool)".into(),
            "true".into(),
        ])
        .unwrap();
        let out = cli.actions.build(&governed()).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].target, pool);
        assert_eq!(
            out[1].calldata,
            Bytes::from(LockingPool::setPauseCall { paused_: true }.abi_encode())
        );
        assert_eq!(
            out[0].calldata,
            Bytes::from(
                LockingPool::setTreasuryCall {
                    newTreasury: Address::repeat_byte(7)
                }
                .abi_encode()
            )
        );
    }

    #[test]
    fn malformed_input_is_refused_before_anything_is_sent() {
        let g = governed();
        let bad = |a: Actions| a.build(&g).map(|_| ()).unwrap_err().to_string();
        assert!(bad(Actions::default()).contains("at least one action"));
        let e = bad(Actions {
            param: vec!["epoch_length=1".into()],
            ..Default::default()
        });
        assert!(e.contains("within 2..=100000"), "{e}");
        let e = bad(Actions {
            param: vec!["epoch=20".into()],
            ..Default::default()
        });
        assert!(e.contains("no parameter") && e.contains("epoch_length"), "{e}");
        let e = bad(Actions {
            param: vec!["epoch_length".into()],
            ..Default::default()
        });
        assert!(e.contains("NAME=VALUE"), "{e}");
        let e = bad(Actions {
            call: vec!["0x12".into(), "f()".into()],
            ..Default::default()
        });
        assert!(e.contains("not an address"), "{e}");
        let e = bad(Actions {
            call: vec![
                format!("{}", Address::ZERO),
                "setTreasury(address)".into(),
                "nope".into(),
            ],
            ..Default::default()
        });
        assert!(e.contains("is not a address"), "{e}");
        let e = bad(Actions {
            call: vec![format!("{}", Address::ZERO), "setTreasury(address)".into()],
            ..Default::default()
        });
        assert!(e.contains("1 argument(s) expected, 0 given"), "{e}");
        // One argument too many for the first call: it is read as the next call's target, and refused.
        let e = bad(Actions {
            call: vec![
                format!("{}", Address::ZERO),
                "setPause(bool)".into(),
                "true".into(),
                "false".into(),
                "unpause()".into(),
            ],
            ..Default::default()
        });
        assert!(e.contains("\"false\" is not an address"), "{e}");
        assert!(parse_id("12").is_ok() && parse_id("0x0c").is_ok_and(|v| v == U256::from(12)));
        assert!(parse_id("twelve").is_err());
    }
}
