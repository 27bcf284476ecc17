#!/usr/bin/env node
// Compiles the TypeScript (tsc -p tsconfig.json) and marks the CLI executable: tsc writes
// dist/cli.js without the executable bit, and `npx densetorch` in a clone runs that file as the
// package's bin directly, where an installed package would have the bit set by npm.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

/** Runs tsc (from `tsc`, a resolved typescript/bin/tsc) and chmods the CLI; exits on failure. */
function buildTs(tsc = require.resolve('typescript/bin/tsc')) {
  const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status || 1);
  fs.chmodSync(path.join(root, 'dist', 'cli.js'), 0o755);
}

if (require.main === module) buildTs();

module.exports = { buildTs };
