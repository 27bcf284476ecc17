#!/usr/bin/env node
// Peak RSS of one training step (forward + cross-entropy + backward), naive vs memory-efficient.
// Each configuration runs in its own process so peak memory is clean.
//   node bench/peak-memory.js            # the two configurations
//   node bench/peak-memory.js --json out.json
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const CONFIGS = [
  { name: 'DenseNet-BC L=100 k=12', build: 'densenetCifar', args: { depth: 100, growthRate: 12 }, batch: 64, size: 32, classes: 10 },
  { name: 'DenseNet-121', build: 'densenet121', args: {}, batch: 16, size: 224, classes: 1000 },
];

function child(config, memoryEfficient, threads) {
  const script = `
    const dt = require(${JSON.stringify(path.resolve(__dirname, '..'))});
    const fs = require('node:fs');
    const hwm = () => Number(/VmHWM:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
    const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
    dt.setNumThreads(${threads});
    dt.manualSeed(0);
    const c = ${JSON.stringify(config)};
    const model = dt[c.build]({ ...c.args, memoryEfficient: ${memoryEfficient} });
    const n = c.batch * 3 * c.size * c.size;
    const x = dt.tensor(new Float32Array(n).map(() => Math.random() - 0.5), [c.batch, 3, c.size, c.size]);
    const labels = dt.tensor(Array.from({ length: c.batch }, (_, i) => i % c.classes), [c.batch], { dtype: 'int64' });
    const before = rss();
    const t0 = process.hrtime.bigint();
    model.lossAndGrads(x, labels);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ baselineMiB: before, peakMiB: hwm(), seconds }));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const threads = Number(process.env.THREADS || os.cpus().length);
const rows = [];
for (const config of CONFIGS) {
  for (const memoryEfficient of [false, true]) {
    const r = child(config, memoryEfficient, threads);
    rows.push({ model: config.name, batch: config.batch, size: config.size, memoryEfficient, ...r });
    console.log(`${config.name.padEnd(24)} batch ${String(config.batch).padStart(3)} ${config.size}x${config.size} ` +
      `${memoryEfficient ? 'efficient' : 'naive    '}  peak RSS ${r.peakMiB.toFixed(0).padStart(6)} MiB ` +
      `(step adds ${(r.peakMiB - r.baselineMiB).toFixed(0)} MiB), first step ${r.seconds.toFixed(2)} s`);
  }
}
const out = process.argv.indexOf('--json');
if (out > 0) {
  fs.mkdirSync(path.dirname(process.argv[out + 1]), { recursive: true });
  fs.writeFileSync(process.argv[out + 1], JSON.stringify({ date: new Date().toISOString(), threads, cpus: os.cpus()[0].model, rows }, null, 2) + '\n');
}
