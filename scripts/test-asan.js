#!/usr/bin/env node
'use strict';
/**
 * Runs the mocha suite against the AddressSanitizer build (make it first: npm run build:asan).
 *   npm run test:asan [-- <mocha arguments>]
 * Node itself is not instrumented, so the sanitizer runtime is preloaded (LD_PRELOAD) and leak
 * detection is off (V8 and LibTorch keep allocations until exit by design); any ASan/UBSan report
 * makes the process exit non-zero. RSS bounds are skipped (ASan's quarantine keeps freed memory).
 */
const { runSanitized } = require('./sanitized-run.js');

runSanitized({
  name: 'address',
  buildDir: 'build-asan',
  buildScript: 'build:asan',
  runtimes: ['libasan.so', 'libubsan.so'],
  env: {
    ASAN_OPTIONS: 'detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86',
    UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
  },
  mochaArgs: process.argv.slice(2),
});
