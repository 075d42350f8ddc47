//! Typed contract bindings generated from the committed forge artifacts.
#![allow(clippy::too_many_arguments)]

use alloy::sol;

sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    MetisToken,
    "artifacts/MetisToken.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    LockingInfo,
    "artifacts/LockingInfo.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    LockingPool,
    "artifacts/LockingPool.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    BatchInbox,
    "artifacts/BatchInbox.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    StakeVotes,
    "artifacts/StakeVotes.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    PosParams,
    "artifacts/PosParams.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    MetisGovernor,
    "artifacts/MetisGovernor.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    TimelockController,
    "artifacts/TimelockController.json"
);
