#!/usr/bin/env node
// A `solc` forge can drive, backed by solc-js (npm `solc`): forge only needs
// `--version` and `--standard-json` (input on stdin, output on stdout).
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const args = process.argv.slice(2);

if (args.includes('--version')) {
  // forge parses the second line: "Version: <semver>+commit.<hash>..."
  process.stdout.write('solc, the solidity compiler commandline interface\nVersion: ' + solc.version() + '\n');
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('solc-wrapper: only --version and --standard-json are supported (got: ' + args.join(' ') + ')\n');
  process.exit(2);
}

// Import paths forge may pass for sources it did not inline.
const roots = [process.cwd()];
for (let i = 0; i < args.length; i++) {
  if ((args[i] === '--base-path' || args[i] === '--include-path' || args[i] === '--allow-paths') && args[i + 1]) {
    for (const p of args[i + 1].split(',')) roots.push(p);
    i++;
  }
}

function findImports(p) {
  for (const root of roots) {
    const full = path.isAbsolute(p) ? p : path.join(root, p);
    try {
      return { contents: fs.readFileSync(full, 'utf8') };
    } catch (_) { /* try the next root */ }
  }
  return { error: 'File not found: ' + p };
}

const input = fs.readFileSync(0, 'utf8');
process.stdout.write(solc.compile(input, { import: findImports }));
