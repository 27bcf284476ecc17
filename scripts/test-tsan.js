#!/usr/bin/env node
'use strict';
/**
 * Runs the concurrency tests against the ThreadSanitizer build (make it first: npm run build:tsan).
 *   npm run test:tsan [-- <test files>]      (default: the tests that exercise threads)
 * Node, V8 and LibTorch are not instrumented: TSan sees the addon's own memory accesses and every
 * lock and thread start in the process (pthread calls are intercepted), so it checks what
 * densetorch's threads (the JS thread, the compute thread, libuv's pool, evaluate's and the data
 * loader's threads) share. LibTorch runs with one intra-op thread (OMP_NUM_THREADS=1): libgomp's
 * barriers are futexes TSan cannot see, so its worker threads would only yield false reports.
 * Any report makes the process exit non-zero (exitcode 66), and the run fails.
 */
const path = require('node:path');
const { runSanitized } = require('./sanitized-run.js');

// The streamed-data tests decode with sharp, whose libvips threads race with V8 in ways TSan
// cannot tell from real races (neither is instrumented); the stress test streams batches without it.
const tests = process.argv.length > 2 ? process.argv.slice(2) : [
  'test/23-good-guest.test.js', 'test/15-serving.test.js', 'test/07-training.test.js',
];
runSanitized({
  name: 'thread',
  buildDir: 'build-tsan',
  buildScript: 'build:tsan',
  runtimes: ['libtsan.so'],
  env: {
    OMP_NUM_THREADS: '1',
    TSAN_OPTIONS: `halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=${path.join(__dirname, 'tsan-suppressions.txt')}`,
  },
  mochaArgs: ['--no-config', '--timeout', '600000', '--node-option', 'expose-gc', ...tests],
});
