//! Read-only execution for eth_call and eth_estimateGas: a transaction run on top of the head state (with
//! optional per-call state overrides), never committed.

use crate::executor::{evm_block_env, evm_cfg, BlockContext};
use crate::genesis::{ChainSpec, KECCAK_EMPTY};
use crate::state::{Account, BlockOverlay, StateSource};
use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use revm::context::TxEnv;
use revm::context_interface::result::{EVMError, ExecutionResult, HaltReason};
use revm::interpreter::{InstructionResult, Interpreter};
use revm::state::Bytecode;
use revm::{Context, InspectEvm, Inspector, MainBuilder, MainContext};
use std::collections::BTreeMap;
use std::time::Instant;

/// A per-call change to one account (eth_call's state override set).
#[derive(Clone, Debug, Default)]
pub struct AccountOverride {
    pub balance: Option<U256>,
    pub nonce: Option<u64>,
    pub code: Option<Bytes>,
    /// Replaces the whole storage.
    pub state: Option<BTreeMap<U256, U256>>,
    /// Changes these slots only.
    pub state_diff: Option<BTreeMap<U256, U256>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Invalid(String),
    #[error("both state and stateDiff overrides given for {0}")]
    ConflictingOverride(Address),
    #[error("execution aborted: it ran past its time limit")]
    Timeout,
}

/// How often (in EVM steps) the clock is read: a step costs nanoseconds, a clock read tens of them.
const STEPS_PER_CLOCK_READ: u32 = 4096;

/// Stops a run at a wall-clock deadline (geth's `--rpc.evmtimeout`): the gas cap bounds the work, not its time
/// (cheap opcodes in a loop, or a cold-state read per step).
struct Deadline {
    at: Instant,
    steps: u32,
    passed: bool,
}

impl<CTX> Inspector<CTX> for Deadline {
    fn step(&mut self, interp: &mut Interpreter, _: &mut CTX) {
        if !self.passed {
            self.steps = self.steps.wrapping_add(1);
            if !self.steps.is_multiple_of(STEPS_PER_CLOCK_READ) || Instant::now() < self.at {
                return;
            }
            self.passed = true;
        }
        // Every frame still running stops at its next step, so the whole call unwinds.
        interp.halt(InstructionResult::OutOfGas);
    }
}

/// Outcome of a call.
#[derive(Clone, Debug)]
pub enum CallOutcome {
    Success { gas_used: u64, output: Bytes },
    Revert { gas_used: u64, output: Bytes },
    Halt { gas_used: u64, reason: HaltReason },
}

impl CallOutcome {
    pub fn gas_used(&self) -> u64 {
        match self {
            Self::Success { gas_used, .. } | Self::Revert { gas_used, .. } | Self::Halt { gas_used, .. } => *gas_used,
        }
    }
}

impl<S: StateSource + ?Sized> BlockOverlay<'_, S> {
    fn apply_override(&mut self, addr: Address, o: &AccountOverride) -> Result<(), CallError> {
        if o.state.is_some() && o.state_diff.is_some() {
            return Err(CallError::ConflictingOverride(addr));
        }
        let current = self.account(&addr).map_err(|e| CallError::Invalid(e.to_string()))?;
        let mut acct = current.unwrap_or(Account {
            nonce: 0,
            balance: U256::ZERO,
            code_hash: KECCAK_EMPTY,
        });
        if let Some(b) = o.balance {
            acct.balance = b;
        }
        if let Some(n) = o.nonce {
            acct.nonce = n;
        }
        let changes = self.changes_mut();
        if let Some(code) = &o.code {
            acct.code_hash = if code.is_empty() { KECCAK_EMPTY } else { keccak256(code) };
            changes.new_code.insert(acct.code_hash, Bytecode::new_raw(code.clone()));
        }
        let entry = changes.accounts.entry(addr).or_default();
        entry.info = Some(acct);
        if let Some(state) = &o.state {
            entry.storage_cleared = true;
            entry.storage = state.clone();
        }
        if let Some(diff) = &o.state_diff {
            entry.storage.extend(diff.iter().map(|(k, v)| (*k, *v)));
        }
        Ok(())
    }
}

/// Runs `tx` on `state` in the environment of `ctx`. Without a gas price the base fee is not charged (as geth's
/// eth_call), and the nonce is not checked. A run still going at `deadline` is aborted.
pub fn call<S: StateSource + ?Sized>(
    state: &S,
    spec: &ChainSpec,
    ctx: &BlockContext,
    tx: TxEnv,
    overrides: &BTreeMap<Address, AccountOverride>,
    deadline: Instant,
) -> Result<CallOutcome, CallError> {
    let mut overlay = BlockOverlay::over(state);
    for (addr, o) in overrides {
        overlay.apply_override(*addr, o)?;
    }
    let mut cfg = evm_cfg(spec);
    cfg.disable_nonce_check = true;
    if tx.gas_price == 0 {
        cfg.disable_base_fee = true;
    }
    let mut evm = Context::mainnet()
        .with_db(overlay)
        .with_cfg(cfg)
        .with_block(evm_block_env(ctx))
        .build_mainnet_with_inspector(Deadline {
            at: deadline,
            steps: 0,
            passed: false,
        });
    let result = evm.inspect_tx(tx);
    if evm.inspector.passed {
        return Err(CallError::Timeout);
    }
    match result {
        Ok(out) => {
            let gas_used = out.result.tx_gas_used();
            Ok(match out.result {
                ExecutionResult::Success { output, .. } => CallOutcome::Success {
                    gas_used,
                    output: output.into_data(),
                },
                ExecutionResult::Revert { output, .. } => CallOutcome::Revert { gas_used, output },
                ExecutionResult::Halt { reason, .. } => CallOutcome::Halt { gas_used, reason },
            })
        }
        Err(EVMError::Transaction(e)) => Err(CallError::Invalid(e.to_string())),
        Err(e) => Err(CallError::Invalid(e.to_string())),
    }
}

/// The smallest gas limit with which `tx` succeeds, searched between its intrinsic cost and `cap`.
pub fn estimate_gas<S: StateSource + ?Sized>(
    state: &S,
    spec: &ChainSpec,
    ctx: &BlockContext,
    mut tx: TxEnv,
    overrides: &BTreeMap<Address, AccountOverride>,
    cap: u64,
    deadline: Instant,
) -> Result<Result<u64, CallOutcome>, CallError> {
    tx.gas_limit = cap;
    let first = call(state, spec, ctx, tx.clone(), overrides, deadline)?;
    let used = match &first {
        CallOutcome::Success { gas_used, .. } => *gas_used,
        _ => return Ok(Err(first)),
    };
    // Refunds and the 63/64 rule mean the limit needed can exceed the gas used: search upwards from it.
    let mut lo = used.saturating_sub(1);
    let mut hi = cap;
    tx.gas_limit = used;
    if matches!(
        call(state, spec, ctx, tx.clone(), overrides, deadline)?,
        CallOutcome::Success { .. }
    ) {
        return Ok(Ok(used));
    }
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        tx.gas_limit = mid;
        match call(state, spec, ctx, tx.clone(), overrides, deadline)? {
            CallOutcome::Success { .. } => hi = mid,
            _ => lo = mid,
        }
    }
    Ok(Ok(hi))
}

/// Hash of empty code, re-exported for callers building overrides.
pub const EMPTY_CODE_HASH: B256 = KECCAK_EMPTY;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{eip1559, initcode_for, keys};
    use crate::{build_block, BlockContext, WorldState};
    use alloy_primitives::TxKind;

    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(60)
    }

    #[test]
    fn call_estimate_and_overrides() {
        let ks = keys(1);
        let me = ks[0].address();
        let spec = ChainSpec::dev(5, &[me], U256::from(10u128.pow(21)));
        let (mut state, root) = WorldState::genesis(&spec);
        let genesis = crate::engine::genesis_header(&spec, root);
        let ctx = BlockContext::child_of(&genesis, genesis.hash_slow(), &spec, 1, Address::ZERO);
        // Runtime: SSTORE(0, CALLDATALOAD(0)); if the word is 0xdead, REVERT with it.
        let runtime: Vec<u8> = vec![
            0x60, 0x00, 0x35, 0x80, 0x60, 0x00, 0x55, // store
            0x61, 0xde, 0xad, 0x14, 0x60, 0x13, 0x57, 0x00, // eq 0xdead -> jump 0x13, else stop
            0x5b, 0x5b, 0x5b, 0x5b, // padding
            0x5b, 0x60, 0x00, 0x35, 0x60, 0x00, 0x52, // 0x13: JUMPDEST, MSTORE(0, word)
            0x60, 0x20, 0x60, 0x00, 0xfd, // REVERT(0, 32)
        ];
        let deploy = eip1559(
            &ks[0],
            5,
            0,
            TxKind::Create,
            U256::ZERO,
            initcode_for(&runtime),
            300_000,
        );
        let (block, rejected) = build_block(&state, &spec, ctx.clone(), vec![deploy]);
        assert!(rejected.is_empty(), "{rejected:?}");
        state.commit(&block.changeset, block.root_update);
        let contract = me.create(0);

        let tx = |data: Vec<u8>| TxEnv {
            caller: me,
            kind: TxKind::Call(contract),
            data: data.into(),
            gas_limit: 1_000_000,
            chain_id: Some(5),
            ..Default::default()
        };
        let word = U256::from(7).to_be_bytes::<32>().to_vec();
        let none = BTreeMap::new();
        assert!(matches!(
            call(&state, &spec, &ctx, tx(word.clone()), &none, later()).unwrap(),
            CallOutcome::Success { .. }
        ));
        let dead = U256::from(0xdead).to_be_bytes::<32>().to_vec();
        match call(&state, &spec, &ctx, tx(dead.clone()), &none, later()).unwrap() {
            CallOutcome::Revert { output, .. } => assert_eq!(output.as_ref(), dead.as_slice()),
            other => panic!("expected a revert, got {other:?}"),
        }
        // The estimate is the exact minimum: one gas less fails.
        let est = estimate_gas(&state, &spec, &ctx, tx(word.clone()), &none, 1_000_000, later())
            .unwrap()
            .unwrap();
        let mut t = tx(word.clone());
        t.gas_limit = est;
        assert!(matches!(
            call(&state, &spec, &ctx, t.clone(), &none, later()).unwrap(),
            CallOutcome::Success { .. }
        ));
        t.gas_limit = est - 1;
        assert!(!matches!(
            call(&state, &spec, &ctx, t, &none, later()).unwrap(),
            CallOutcome::Success { .. }
        ));
        assert!(estimate_gas(&state, &spec, &ctx, tx(dead), &none, 1_000_000, later())
            .unwrap()
            .is_err());

        // Override: an unfunded caller with a balance, and replaced code that just stops.
        let stranger = Address::repeat_byte(0x77);
        let mut o = BTreeMap::new();
        o.insert(
            stranger,
            AccountOverride {
                balance: Some(U256::from(10u128.pow(18))),
                ..Default::default()
            },
        );
        o.insert(
            contract,
            AccountOverride {
                code: Some(Bytes::from_static(&[0x00])),
                ..Default::default()
            },
        );
        let mut t = tx(U256::from(0xdead).to_be_bytes::<32>().to_vec());
        t.caller = stranger;
        t.value = U256::from(1);
        assert!(matches!(
            call(&state, &spec, &ctx, t, &o, later()).unwrap(),
            CallOutcome::Success { .. }
        ));
        // And the real state is untouched.
        assert_eq!(state.storage_at(&contract, &U256::ZERO), U256::ZERO);
    }

    #[test]
    fn an_endless_loop_stops_at_the_deadline_not_the_gas_cap() {
        let mut spec = ChainSpec::dev(5, &[], U256::ZERO);
        // Gas enough to loop for hours.
        spec.gas_limit = 1 << 50;
        let (state, root) = WorldState::genesis(&spec);
        let genesis = crate::engine::genesis_header(&spec, root);
        let ctx = BlockContext::child_of(&genesis, genesis.hash_slow(), &spec, 1, Address::ZERO);
        // JUMPDEST; PUSH1 0; JUMP: loops until the gas runs out.
        let looper = Address::repeat_byte(0x55);
        let mut o = BTreeMap::new();
        o.insert(
            looper,
            AccountOverride {
                code: Some(Bytes::from_static(&[0x5b, 0x60, 0x00, 0x56])),
                ..Default::default()
            },
        );
        let tx = TxEnv {
            caller: Address::repeat_byte(0x11),
            kind: TxKind::Call(looper),
            gas_limit: 1 << 50,
            chain_id: Some(5),
            ..Default::default()
        };
        let limit = std::time::Duration::from_millis(200);
        let started = Instant::now();
        let err = call(&state, &spec, &ctx, tx.clone(), &o, started + limit).unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, CallError::Timeout), "{err}");
        assert!(took >= limit && took < limit * 10, "stopped after {took:?}");
        let err = estimate_gas(&state, &spec, &ctx, tx, &o, 1 << 50, Instant::now() + limit).unwrap_err();
        assert!(matches!(err, CallError::Timeout), "{err}");
    }
}
