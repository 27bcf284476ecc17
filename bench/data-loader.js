#!/usr/bin/env node
// Streamed image folders: does the data keep up with training, and does memory stay flat as the
// number of files grows? Writes JPEG folders into a temporary directory, then, each run in its
// own process (peak RSS = the process's VmHWM):
//   1. one epoch of a small CIFAR-stem model at 32x32 over 2,000 and over 20,000 files: peak RSS
//      (the loader must hold the same memory whatever the number of files);
//   2. DenseNet-121 at 224x224, batch 16, a few steps over the 'train' transform: s/step and
//      dataWaitShare (the share of training time spent waiting for batches).
// Prints a table and writes bench/results/data-loader-<date>.json.
//   node bench/data-loader.js [--files 2000,20000] [--steps 6] [--threads 2]
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { flag, machine, writeResult } = require('./common.js');

async function makeFolder(dir, files, classes = 10) {
  const sharp = require('sharp');
  for (let c = 0; c < classes; c++) fs.mkdirSync(path.join(dir, `class${c}`), { recursive: true });
  const started = Date.now();
  const jobs = [];
  for (let i = 0; i < files; i++) {
    const c = i % classes;
    // Photo-like sizes and content: 256-320 px wide, gaussian noise over a class colour.
    const width = 256 + (i % 5) * 16;
    const height = 192 + (i % 3) * 16;
    jobs.push(sharp({ create: { width, height, channels: 3, background: { r: 25 * c, g: 128, b: 255 - 25 * c }, noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
      .jpeg({ quality: 85 }).toFile(path.join(dir, `class${c}`, `img${String(i).padStart(6, '0')}.jpg`)));
    if (jobs.length === 64) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
  return (Date.now() - started) / 1000;
}

// One measurement in a child process: prints a JSON line.
const CHILD = `
const dt = require(${JSON.stringify(path.resolve(__dirname, '..'))});
const fs = require('node:fs');
const [dir, kind, threads, steps] = process.argv.slice(1);
dt.setNumThreads(Number(threads));
(async () => {
  let model, data, batchSize;
  if (kind === 'rss') {
    data = dt.datasets.imageFolder(dir, { size: 32, transform: 'train' });
    model = dt.densenetCifar({ depth: 10, growthRate: 4, numClasses: 10 });
    batchSize = 64;
  } else {
    data = dt.datasets.imageFolder(dir, { size: 224, transform: 'train', limit: 16 * Number(steps) });
    model = dt.densenet121({ numClasses: 10 });
    batchSize = 16;
  }
  const started = Date.now();
  const times = [];
  const history = await model.fit(data, { epochs: 1, batchSize, onBatchEnd: (b) => times.push(b) });
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const hwm = Number(/VmHWM:\\s+(\\d+) kB/.exec(status)[1]) / 1024;
  const e = history.epochs[0];
  console.log(JSON.stringify({ files: data.length, seconds: (Date.now() - started) / 1000, epochSeconds: e.seconds,
    imagesPerSecond: e.imagesPerSecond, dataWaitShare: e.dataWaitShare, peakRssMiB: hwm, batches: times.length }));
})().catch((err) => { console.error(err); process.exit(1); });
`;

function measure(dir, kind, threads, steps) {
  const r = spawnSync(process.execPath, ['-e', CHILD, dir, kind, String(threads), String(steps)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`measurement failed:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

async function main() {
  const counts = flag('files', '2000,20000').split(',').map(Number);
  const steps = Number(flag('steps', 6));
  const threads = Number(flag('threads', 2));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-loader-'));
  const results = { date: new Date().toISOString(), ...machine(), threads, rss: [], densenet121: null };
  try {
    for (const n of counts) {
      const dir = path.join(root, `n${n}`);
      const made = await makeFolder(dir, n);
      console.log(`wrote ${n} JPEGs in ${made.toFixed(1)} s`);
      const r = measure(dir, 'rss', threads, steps);
      results.rss.push(r);
      console.log(`  one epoch, small model at 32x32: ${r.epochSeconds.toFixed(1)} s, ${r.imagesPerSecond.toFixed(0)} img/s, dataWaitShare ${r.dataWaitShare.toFixed(3)}, peak RSS ${r.peakRssMiB.toFixed(0)} MiB`);
    }
    const r = measure(path.join(root, `n${counts[0]}`), 'densenet121', threads, steps);
    results.densenet121 = r;
    console.log(`DenseNet-121, 224x224, batch 16, ${r.batches} steps: ${(r.epochSeconds / r.batches).toFixed(2)} s/step, dataWaitShare ${r.dataWaitShare.toFixed(3)}, peak RSS ${r.peakRssMiB.toFixed(0)} MiB`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  writeResult('data-loader', results);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
