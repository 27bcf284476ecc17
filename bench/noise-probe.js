#!/usr/bin/env node
// How much this machine's own speed moves, with no densetorch process involved: compiles
// bench/native/noise_probe.cpp (one thread alternating densetorch's weight-gradient micro-kernel
// on operands that stay in L2 and a register-only FMA loop, same buffers throughout) with the
// system's C++ compiler, runs it, and summarises each workload's samples. A bench row's spread
// over fresh processes is only densetorch's to fix where this probe stays steady.
//   node bench/noise-probe.js                     # 30 seconds
//   node bench/noise-probe.js --seconds 60 --json # also bench/results/noise-probe-<date>.json
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { flag, has, median, machine, writeResult } = require('./common');

/** Quantile q (0..1) of a sorted list, by the nearest rank. */
function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** min / median / max of a workload's samples, and how many ran under 90% of its 95th percentile. */
function summarise(name, samples, times) {
  const sorted = [...samples].sort((a, b) => a - b);
  const fast = quantile(sorted, 0.95);
  const slow = samples.map((x) => x < 0.9 * fast);
  // The longest stretch of consecutive slow samples, in seconds (first to last of the stretch).
  let longest = 0;
  let start = -1;
  slow.forEach((isSlow, i) => {
    start = isSlow ? (start < 0 ? i : start) : -1;
    if (isSlow) longest = Math.max(longest, times[i] - times[start]);
  });
  return {
    name, samples: samples.length, minGflops: sorted[0], medianGflops: median(sorted), maxGflops: sorted[sorted.length - 1],
    p95Gflops: fast, slowFraction: slow.filter(Boolean).length / samples.length, longestSlowSeconds: longest,
  };
}

function main() {
  const seconds = Number(flag('seconds', 30));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-probe-'));
  try {
    const exe = path.join(dir, 'noise_probe');
    execFileSync(process.env.CXX || 'g++', ['-O3', '-std=c++20', path.join(__dirname, 'native', 'noise_probe.cpp'), '-o', exe], { stdio: 'inherit' });
    const lines = execFileSync(exe, [String(seconds)], { encoding: 'utf8', maxBuffer: 64 << 20 }).trim().split('\n').slice(1);
    const rows = lines.map((l) => l.split(',').map(Number));
    const times = rows.map((r) => r[0]);
    const workloads = [
      summarise('weight_grad (L2-resident tile, fastest of 200 calls)', rows.map((r) => r[1]), times),
      summarise('register-only FMAs', rows.map((r) => r[2]), times),
    ];
    for (const w of workloads) {
      console.log(`${w.name}: ${w.minGflops.toFixed(1)} / ${w.medianGflops.toFixed(1)} / ${w.maxGflops.toFixed(1)} GFLOP/s ` +
        `(min / median / max of ${w.samples}); ${(100 * w.slowFraction).toFixed(0)}% of samples under 90% of the ` +
        `95th percentile (${w.p95Gflops.toFixed(1)}), longest slow stretch ${w.longestSlowSeconds.toFixed(2)} s`);
    }
    if (has('json')) writeResult('noise-probe', { date: new Date().toISOString(), ...machine(), seconds, workloads });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main();
