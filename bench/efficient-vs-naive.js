#!/usr/bin/env node
// Memory-efficient vs naive training step time in one process: both models (same weights, same
// batch) take turns, a few fit steps each per round, so that both see the same machine state;
// prints each round's median step of each mode and the ratio, then the median ratio and a 95%
// confidence interval for it (distribution-free, from the rounds: use ROUNDS >= 10 for a claim).
//   node bench/efficient-vs-naive.js                 # BC-100 batch 64 and DenseNet-121 batch 16
//   ROUNDS=6 STEPS=4 THREADS=2 node bench/efficient-vs-naive.js --json out.json
//   node bench/efficient-vs-naive.js --only DenseNet-121   # one model
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const dt = require('..');
const { median, medianInterval } = require('./common');

const rounds = Number(process.env.ROUNDS || 4);
const steps = Number(process.env.STEPS || 3);
const threads = Number(process.env.THREADS || 2);

const CASES = [
  { name: 'DenseNet-BC L=100 k=12', build: (o) => dt.densenetCifar({ depth: 100, growthRate: 12, numClasses: 10, ...o }), batch: 64, size: 32, classes: 10 },
  { name: 'DenseNet-121', build: (o) => dt.densenet121({ numClasses: 1000, ...o }), batch: 16, size: 224, classes: 1000 },
];

/** The median step time of `steps` fit steps (after one warm-up step). */
async function stepSeconds(model, data, batch) {
  const seconds = [];
  await model.fit(data, {
    epochs: steps + 1, batchSize: batch, shuffle: false,
    optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9, nesterov: true, weightDecay: 1e-4 },
    onBatchEnd: (b) => seconds.push(batch / b.imagesPerSecond),
  });
  return median(seconds.slice(1));
}

async function main() {
  dt.setNumThreads(threads);
  const results = [];
  const onlyAt = process.argv.indexOf('--only');
  for (const c of CASES.filter((x) => onlyAt < 0 || x.name === process.argv[onlyAt + 1])) {
    dt.manualSeed(0);
    const naive = c.build({ memoryEfficient: false });
    const efficient = c.build({ memoryEfficient: true });
    efficient.loadStateDict(naive.stateDict());
    const n = c.batch * 3 * c.size * c.size;
    const images = dt.tensor(new Float32Array(n).map(() => Math.random() - 0.5), [c.batch, 3, c.size, c.size]);
    const labels = dt.tensor(Array.from({ length: c.batch }, (_, i) => i % c.classes), [c.batch], { dtype: 'int64' });
    const data = dt.datasets.fromTensors(images, labels);
    const row = { model: c.name, batch: c.batch, naive: [], efficient: [], ratio: [] };
    for (let r = 0; r < rounds; r++) {
      // Alternate which mode goes first, so that neither always follows the other.
      const order = r % 2 ? ['efficient', 'naive'] : ['naive', 'efficient'];
      const t = {};
      for (const mode of order) t[mode] = await stepSeconds(mode === 'naive' ? naive : efficient, data, c.batch);
      row.naive.push(t.naive);
      row.efficient.push(t.efficient);
      row.ratio.push(t.efficient / t.naive);
      console.log(`${c.name.padEnd(24)} round ${r + 1}: naive ${t.naive.toFixed(3)} s, memory-efficient ${t.efficient.toFixed(3)} s, ` +
        `${(100 * (t.efficient / t.naive - 1)).toFixed(1)}%`);
    }
    row.medianRatio = median(row.ratio);
    const ci = medianInterval(row.ratio);
    row.medianRatio95 = [ci.low, ci.high];
    const pct = (x) => (x === undefined ? '?' : `${(100 * (x - 1)).toFixed(1)}%`);
    console.log(`${c.name.padEnd(24)} memory-efficient over naive: median ${pct(row.medianRatio)} ` +
      `(95% interval ${pct(ci.low)} to ${pct(ci.high)}; rounds ${row.ratio.map(pct).join(', ')})`);
    results.push(row);
  }
  const out = process.argv.indexOf('--json');
  if (out > 0) {
    fs.mkdirSync(path.dirname(process.argv[out + 1]), { recursive: true });
    fs.writeFileSync(process.argv[out + 1], JSON.stringify({ date: new Date().toISOString(), threads, rounds, steps,
      cpu: require('node:os').cpus()[0].model, rows: results }, null, 2) + '\n');
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
