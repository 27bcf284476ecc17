#!/usr/bin/env node
// One benchmark case for densetorch, run in its own process (clean peak memory).
// Usage: node bench/densetorch_case.js '<json case>'  ->  prints one JSON line.
'use strict';
const fs = require('node:fs');
const dt = require('..');
const { median } = require('./common');

function peakRssMiB() {
  return Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
}

// On CUDA the memory that counts is the device's: the caching allocator's peak (as PyTorch's
// torch.cuda.max_memory_allocated), and time is read after the queued kernels finished.
const cuda = (c) => (c.device ?? 'cpu') !== 'cpu';
function memory(c) {
  if (!cuda(c)) return { peakRssMiB: peakRssMiB() };
  const s = dt.cuda.memoryStats();
  return { peakRssMiB: peakRssMiB(), peakCudaMiB: s.peakAllocated / 2 ** 20, peakCudaReservedMiB: s.peakReserved / 2 ** 20 };
}

function build(c) {
  const common = { memoryEfficient: c.memoryEfficient, numClasses: c.classes, device: c.device ?? 'cpu' };
  return c.model === 'densenet121' ? dt.densenet121(common) : dt.densenetCifar({ depth: c.depth, growthRate: c.growthRate, ...common });
}

// The limits of one case, measured through the same LibTorch and threads (bench/native/roofline,
// a program of its own): the FMA peak (register-only FMAs on the same threads), the sgemm ceiling
// (4096² at::mm) and the conv-only floor (each of the model's convolutions alone, channels-last;
// for training with both backward convolutions), and the model's forward FLOPs per image.
function limits(c, model) {
  const tools = require('./native/tools.js');
  const n = 4096;
  const peak = tools.fmaPeak(c.threads);
  const { seconds } = tools.roofline(['sgemm', c.threads, n, 5]);
  const train = c.mode === 'train';
  const m = tools.roofline(tools.modelArgs('model', c.threads, model.config, c.size, c.batch, train, train ? 3 : 5));
  return { peakGflops: peak.gflops, peakIsa: peak.isa, sgemmGflops: (2 * n ** 3) / seconds / 1e9, floorSeconds: m.floorSeconds, forwardFlopsPerImage: m.forwardFlopsPerImage, convolutions: m.convolutions };
}

async function main() {
  const c = JSON.parse(process.argv[2]);
  dt.setNumThreads(c.threads);
  dt.manualSeed(0);
  const model = build(c);
  if (c.limits) {
    console.log(JSON.stringify(limits(c, model)));
    return;
  }
  const n = c.batch * 3 * c.size * c.size;
  if (c.mode === 'train') {
    // One batch of data, one step per epoch: the data held is one batch, as on PyTorch's side.
    const images = dt.tensor(new Float32Array(n).map(() => Math.random() - 0.5), [c.batch, 3, c.size, c.size]);
    const labels = dt.tensor(Array.from({ length: c.batch }, (_, i) => i % c.classes), [c.batch], { dtype: 'int64' });
    const data = dt.datasets.fromTensors(images, labels);
    const seconds = [];
    let done = 0;
    await model.fit(data, {
      epochs: c.warmup + c.steps, batchSize: c.batch, shuffle: false,
      optimizer: { type: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-4 },
      precision: c.precision ?? 'fp32',
      onBatchEnd: (b) => {
        done += 1;
        if (done > c.warmup) seconds.push(c.batch / b.imagesPerSecond);
      },
    });
    const step = median(seconds);
    console.log(JSON.stringify({ stepSeconds: step, imagesPerSecond: c.batch / step, ...memory(c) }));
  } else {
    const x = dt.tensor(new Float32Array(n).map(() => Math.random() - 0.5), [c.batch, 3, c.size, c.size], { device: c.device ?? 'cpu' });
    const seconds = [];
    for (let i = 0; i < c.warmup + c.steps; i++) {
      const t = process.hrtime.bigint();
      (await model.predict(x, { batchSize: c.batch, precision: c.precision ?? 'fp32' })).dispose();
      if (cuda(c)) dt.cuda.synchronize();
      if (i >= c.warmup) seconds.push(Number(process.hrtime.bigint() - t) / 1e9);
    }
    const step = median(seconds);
    console.log(JSON.stringify({ stepSeconds: step, imagesPerSecond: c.batch / step, ...memory(c) }));
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
