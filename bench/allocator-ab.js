#!/usr/bin/env node
// What glibc's process-wide settings would still buy densetorch: the same build in alternating
// fresh processes, with glibc's defaults (as densetorch leaves them) and with the settings an
// earlier densetorch applied at load time (mallopt M_MMAP_THRESHOLD 256 MiB, M_TRIM_THRESHOLD -1,
// M_ARENA_MAX 1, here from an LD_PRELOAD library compiled on the fly). Prints each pair and the
// median ratio with a distribution-free 95% interval; writes bench/results/allocator-ab-<date>.json.
//   node bench/allocator-ab.js [--pairs 8]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { abCases, flag, machine, writeResult } = require('./common.js');

const pairs = Number(flag('pairs', 8));
const threads = Number(process.env.THREADS || 2);
const CASES = [
  { name: 'DenseNet-121 train b16 memory-efficient', model: 'densenet121', size: 224, classes: 1000, batch: 16, mode: 'train', memoryEfficient: true, warmup: 2, steps: 4 },
  { name: 'DenseNet-BC-100 train b64 memory-efficient', model: 'cifar', depth: 100, growthRate: 12, size: 32, classes: 10, batch: 64, mode: 'train', memoryEfficient: true, warmup: 2, steps: 5 },
];

function buildShim(dir) {
  const source = path.join(dir, 'mallopt_at_load.c');
  const lib = path.join(dir, 'libmallopt_at_load.so');
  fs.writeFileSync(source, `#include <malloc.h>
__attribute__((constructor)) static void tune(void) {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, -1);
  mallopt(M_ARENA_MAX, 1);
}
`);
  const cc = spawnSync(process.env.CC || 'gcc', ['-shared', '-fPIC', '-O1', source, '-o', lib], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`cannot compile the mallopt library: ${cc.stderr}`);
  return lib;
}

function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-allocator-ab-'));
  try {
    const result = { date: new Date().toISOString(), ...machine(), threads, pairs };
    result.cases = abCases(CASES, { threads, pairs, a: { name: 'defaults', env: {} }, b: { name: 'mallopt', env: { LD_PRELOAD: buildShim(dir) } } });
    writeResult('allocator-ab', result);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main();
