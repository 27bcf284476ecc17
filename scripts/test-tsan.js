#!/usr/bin/env node
'use strict';
/**
 * Runs the concurrency tests against the ThreadSanitizer build (make it first: npm run build:tsan).
 *   npm run test:tsan [-- <mocha arguments>]      (default: the tests that exercise threads)
 * Node, V8 and LibTorch are not instrumented: TSan sees the addon's own memory accesses and every
 * lock and thread start in the process (pthread calls are intercepted), so it checks what
 * densetorch's threads (the JS thread, the compute thread, libuv's pool, evaluate's and the data
 * loader's threads) share. LibTorch runs with one intra-op thread (OMP_NUM_THREADS=1): libgomp's
 * barriers are futexes TSan cannot see, so its worker threads would only yield false reports.
 * Any report makes the process exit non-zero (exitcode 66), and the run fails.
 */
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const addon = path.join(root, 'build-tsan', 'Release', 'densetorch.node');
if (!fs.existsSync(addon)) {
  console.error(`No ThreadSanitizer build at ${addon}; run \`npm run build:tsan\` first.`);
  process.exit(2);
}
const cxx = process.env.CXX || 'c++';
const runtime = execFileSync(cxx, ['-print-file-name=libtsan.so'], { encoding: 'utf8' }).trim();
const suppressions = path.join(__dirname, 'tsan-suppressions.txt');
const env = {
  ...process.env,
  DENSETORCH_ADDON: addon,
  DENSETORCH_SANITIZER: 'thread',
  LD_PRELOAD: runtime,
  OMP_NUM_THREADS: '1',
  TSAN_OPTIONS: `halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=${suppressions}`,
};
const tests = process.argv.length > 2 ? process.argv.slice(2) : [
  'test/23-good-guest.test.js', 'test/15-serving.test.js', 'test/07-training.test.js', 'test/17-real-data.test.js',
];
console.log(`densetorch: running ${tests.join(' ')} with ${addon} under ThreadSanitizer`);
const mocha = path.join(root, 'node_modules', 'mocha', 'bin', 'mocha.js');
const r = spawnSync(process.execPath, [mocha, '--no-config', '--timeout', '600000', '--node-option', 'expose-gc', ...tests], { cwd: root, env, stdio: 'inherit' });
process.exit(r.status ?? 1);
