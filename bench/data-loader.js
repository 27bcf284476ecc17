#!/usr/bin/env node
// Streamed image folders: does the data keep up with training, and does memory stay flat as the
// number of files grows? Writes JPEG folders into a temporary directory, then, each run in its
// own process (peak RSS = the process's VmHWM):
//   1. one epoch of a small CIFAR-stem model at 32x32 over 2,000 and over 20,000 files: peak RSS
//      (the loader must hold the same memory whatever the number of files);
//   2. DenseNet-121 at 224x224, batch 16, a few steps over the 'train' transform: s/step and
//      dataWaitShare (the share of training time spent waiting for batches).
//   0. the loader alone: images/s of decoding + the 'train' transform, JPEG 500x375 -> 224, with
//      1 and 2 threads (libuv pool and sharp), and PyTorch's DataLoader(ImageFolder(...)) with 1
//      and 2 workers on the same files when Python has torch, torchvision and Pillow;
// Prints a table and writes bench/results/data-loader-<date>.json.
//   node bench/data-loader.js [--files 2000,20000] [--steps 6] [--threads 2] [--loader-only]
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { flag, has, machine, writeResult } = require('./common.js');

async function makeFolder(dir, files, classes = 10, size = null) {
  const sharp = require('sharp');
  for (let c = 0; c < classes; c++) fs.mkdirSync(path.join(dir, `class${c}`), { recursive: true });
  const started = Date.now();
  const jobs = [];
  for (let i = 0; i < files; i++) {
    const c = i % classes;
    // Photo-like sizes and content: 256-320 px wide, gaussian noise over a class colour.
    const width = size ? size[0] : 256 + (i % 5) * 16;
    const height = size ? size[1] : 192 + (i % 3) * 16;
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
  if (kind === 'loader') {
    require(${JSON.stringify(require.resolve('sharp'))}).concurrency(Number(threads));
    const data = dt.datasets.imageFolder(dir, { size: 224, transform: 'train' });
    const started = performance.now();
    let images = 0;
    for await (const b of data.batches({ epoch: 0, batchSize: 32, train: true, shuffle: true, seed: 0 })) {
      images += b.images.shape[0];
      b.images.dispose();
      b.labels.dispose();
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(JSON.stringify({ files: data.length, seconds, imagesPerSecond: images / seconds }));
    return;
  }
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
  const env = { ...process.env, UV_THREADPOOL_SIZE: String(threads) };
  const r = spawnSync(process.execPath, ['-e', CHILD, dir, kind, String(threads), String(steps)], { encoding: 'utf8', maxBuffer: 1 << 24, env });
  if (r.status !== 0) throw new Error(`measurement failed:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

async function main() {
  const counts = flag('files', '2000,20000').split(',').map(Number);
  const steps = Number(flag('steps', 6));
  const threads = Number(flag('threads', 2));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-loader-'));
  const results = { date: new Date().toISOString(), ...machine(), threads, loader: [], rss: [], densenet121: null };
  try {
    // The loader alone: decode + 'train' transform of 500x375 JPEGs to 224x224, 1 and 2 threads.
    const photos = path.join(root, 'photos');
    await makeFolder(photos, Number(flag('photos', 512)), 10, [500, 375]);
    for (const t of [1, 2]) {
      const r = measure(photos, 'loader', t, steps);
      results.loader.push({ threads: t, ...r });
      console.log(`loader alone (JPEG 500x375 -> 224, 'train' transform), ${t} thread(s): ${r.imagesPerSecond.toFixed(0)} images/s`);
    }
    // PyTorch's DataLoader on the same files, when Python has torch, torchvision and Pillow.
    const python = process.env.PYTHON || 'python3';
    const probe = spawnSync(python, ['-c', 'import torch, torchvision, PIL'], { encoding: 'utf8' });
    if (probe.status !== 0) {
      console.log(`PyTorch's DataLoader: not measured (${python} cannot import torch, torchvision and PIL)`);
    } else {
      results.pytorchLoader = [];
      for (const workers of [1, 2]) {
        const r = spawnSync(python, [path.join(__dirname, 'pytorch_loader.py'), photos, String(workers)], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`pytorch_loader.py failed:\n${r.stderr}`);
        const row = JSON.parse(r.stdout.trim().split('\n').pop());
        results.pytorchLoader.push(row);
        console.log(`PyTorch DataLoader(ImageFolder), num_workers=${workers}: ${row.imagesPerSecond.toFixed(0)} images/s`);
      }
    }
    for (const n of has('loader-only') ? [] : counts) {
      const dir = path.join(root, `n${n}`);
      const made = await makeFolder(dir, n);
      console.log(`wrote ${n} JPEGs in ${made.toFixed(1)} s`);
      const r = measure(dir, 'rss', threads, steps);
      results.rss.push(r);
      console.log(`  one epoch, small model at 32x32: ${r.epochSeconds.toFixed(1)} s, ${r.imagesPerSecond.toFixed(0)} img/s, dataWaitShare ${r.dataWaitShare.toFixed(3)}, peak RSS ${r.peakRssMiB.toFixed(0)} MiB`);
    }
    if (!has('loader-only')) {
      const r = measure(photos, 'densenet121', threads, steps);
      results.densenet121 = r;
      console.log(`DenseNet-121, 224x224, batch 16, ${r.batches} steps: ${(r.epochSeconds / r.batches).toFixed(2)} s/step, dataWaitShare ${r.dataWaitShare.toFixed(3)}, peak RSS ${r.peakRssMiB.toFixed(0)} MiB`);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  writeResult(has('loader-only') ? 'data-loader-alone' : 'data-loader', results);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
