#!/usr/bin/env node
// Copies the ABI and creation bytecode of the deployable contracts from forge's out/ into
// crates/contracts/artifacts/, which the Rust bindings embed (so `cargo build` needs neither npm nor forge).
// With --check it changes nothing and fails when the committed artifacts differ from a fresh forge build.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'contracts', 'out');
const dest = path.join(root, 'crates', 'contracts', 'artifacts');
const contracts = ['MetisToken', 'LockingInfo', 'LockingPool', 'BatchInbox', 'StakeVotes', 'PosParams', 'MetisGovernor', 'TimelockController'];
const check = process.argv.includes('--check');

let stale = [];
fs.mkdirSync(dest, { recursive: true });
for (const name of contracts) {
  const src = path.join(out, `${name}.sol`, `${name}.json`);
  if (!fs.existsSync(src)) {
    console.error(`artifacts: ${src} missing; run forge build in contracts/ first`);
    process.exit(1);
  }
  const art = JSON.parse(fs.readFileSync(src, 'utf8'));
  const text = JSON.stringify({ abi: art.abi, bytecode: art.bytecode.object }, null, 1) + '\n';
  const file = path.join(dest, `${name}.json`);
  const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
  if (old === text) continue;
  if (check) stale.push(path.relative(root, file));
  else fs.writeFileSync(file, text);
}
if (stale.length) {
  console.error('artifacts: stale (contracts changed but the embedded artifacts were not regenerated):\n  ' +
    stale.join('\n  ') + '\nrun `make artifacts` and commit the result');
  process.exit(1);
}
console.error(check ? 'artifacts: up to date' : `artifacts: written to ${path.relative(root, dest)}`);
