// What ethers v6 sees of a chain, as a wallet or dapp uses it: run against anvil and against a metis-seq node by
// tests/real_clients.rs, which compares the two. Prints one JSON object.
//
// node ethers_v6.js HTTP_URL WS_URL PRIVATE_KEY
"use strict";
const { ethers } = require("ethers");

async function main() {
  const [http, ws, key] = process.argv.slice(2);
  const provider = new ethers.JsonRpcProvider(http, undefined, { staticNetwork: true, polling: true, pollingInterval: 100 });
  const wallet = new ethers.Wallet(key, provider);
  const out = {};

  // A block as ethers parses it (geth's 32-byte extraData limit is what other clients enforce).
  const latest = await provider.getBlock("latest");
  out.extraDataBytes = ethers.dataLength(latest.extraData);

  // An EIP-2930 transaction: a gas price and an access list (one address, one key).
  const to = "0x000000000000000000000000000000000000c0de";
  const accessList = [{ address: "0x00000000000000000000000000000000000000aa", storageKeys: [ethers.ZeroHash] }];
  const feeData = await provider.getFeeData();
  const gasPrice = feeData.gasPrice * 2n;
  const req = { to, value: 1n, gasPrice, accessList, type: 1 };
  out.estimate = (await wallet.estimateGas(req)).toString();

  // A WebSocket subscription: its id, and a new block announced while the transaction lands.
  const wsProvider = new ethers.WebSocketProvider(ws, undefined, { staticNetwork: true });
  const subId = await wsProvider.send("eth_subscribe", ["newHeads"]);
  out.subscriptionIdType = typeof subId;
  out.subscriptionIdHex = typeof subId === "string" && /^0x[0-9a-f]+$/i.test(subId);
  await wsProvider.send("eth_unsubscribe", [subId]);
  const announced = new Promise((resolve) => wsProvider.once("block", (n) => resolve(n)));

  const tx = await wallet.sendTransaction({ ...req, gasLimit: BigInt(out.estimate) });
  const receipt = await tx.wait(1, 30000);
  out.txType = receipt.type;
  out.status = receipt.status;
  out.gasUsed = receipt.gasUsed.toString();
  let timer;
  const late = new Promise((_, no) => {
    timer = setTimeout(() => no(new Error("no block over WebSocket in 15 s")), 15000);
  });
  const block = await Promise.race([announced, late]);
  clearTimeout(timer);
  out.blockAnnounced = typeof block === "number";
  // `once` unsubscribes after the event, asynchronously: stop listening and make one round trip, so no request is
  // still pending when the provider is destroyed (destroy cancels it with an error).
  await wsProvider.removeAllListeners();
  await wsProvider.send("eth_chainId", []);
  await wsProvider.destroy();
  provider.destroy();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
