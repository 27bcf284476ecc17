#!/usr/bin/env node
'use strict';
/**
 * Runs the mocha suite against the AddressSanitizer build (make it first: npm run build:asan).
 *   npm run test:asan [-- <mocha arguments>]
 * Node itself is not instrumented, so the sanitizer runtime is preloaded (LD_PRELOAD) and leak
 * detection is off (V8 and LibTorch keep allocations until exit by design); any ASan/UBSan report
 * makes the process exit non-zero.
 */
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const addon = path.join(root, 'build-asan', 'Release', 'densetorch.node');
if (!fs.existsSync(addon)) {
  console.error(`No AddressSanitizer build at ${addon}; run \`npm run build:asan\` first.`);
  process.exit(2);
}
const cxx = process.env.CXX || 'c++';
const runtime = (name) => execFileSync(cxx, [`-print-file-name=${name}`], { encoding: 'utf8' }).trim();
const env = {
  ...process.env,
  DENSETORCH_ADDON: addon,
  DENSETORCH_SANITIZER: 'address', // RSS bounds are skipped (ASan's quarantine keeps freed memory)
  LD_PRELOAD: [runtime('libasan.so'), runtime('libubsan.so')].join(' '),
  ASAN_OPTIONS: 'detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86',
  UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
};
console.log(`densetorch: running the suite with ${addon} under ASan+UBSan`);
const mocha = path.join(root, 'node_modules', 'mocha', 'bin', 'mocha.js');
const r = spawnSync(process.execPath, [mocha, ...process.argv.slice(2)], { cwd: root, env, stdio: 'inherit' });
process.exit(r.status ?? 1);
