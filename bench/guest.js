#!/usr/bin/env node
// densetorch as a guest in a busy Node process: a training run (DenseNet-BC L=100 k=12, batch 64,
// 32x32) while the HTTP server of examples/serve.js, in the same process, answers concurrent
// clients (batch-1 JSON tensors, sent from another process). Measured meanwhile: the event loop's delay
// (perf_hooks.monitorEventLoopDelay, 1 ms resolution), fs.readFile latency of a small file every
// 10 ms (libuv's pool), requests/s, and the training's images/s against the same run alone. Then
// the same training while 16 other models each predict back to back (batch 1): the same figures.
// Written to bench/results/guest-<date>.json.
//   node bench/guest.js [--clients 64] [--steps 12] [--served bc40|bc100]   (npm run bench -- --guest)
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const dt = require('..');
const { createServer } = require('../examples/serve.js');
const { flag, machine, median, percentile, writeResult } = require('./common.js');

const clients = Number(flag('clients', 64));
const steps = Number(flag('steps', 12));
const served = flag('served', 'bc40');
const threads = Number(process.env.THREADS || 2);
const SERVED = {
  bc40: { depth: 40, growthRate: 12 },
  bc100: { depth: 100, growthRate: 12 },
};
if (!SERVED[served]) throw new Error(`--served must be one of ${Object.keys(SERVED).join(', ')}, got ${served}`);

function randomData(n) {
  let s = 7;
  const images = new Float32Array(n * 3 * 32 * 32).map(() => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
  return dt.datasets.fromTensors(dt.tensor(images, [n, 3, 32, 32]), dt.tensor(Array.from({ length: n }, (_, i) => i % 10), [n], { dtype: 'int64' }));
}

/** One training run of `steps` batches; images/s over the batches after the first two. */
async function train(model, data) {
  const times = [];
  let last = performance.now();
  await model.fit(data, {
    epochs: 1, batchSize: 64, shuffle: false,
    onBatchEnd: (b) => {
      const now = performance.now();
      if (b.batch > 2) times.push(now - last);
      last = now;
    },
  });
  return { imagesPerSecond: (64 * times.length) / (times.reduce((a, b) => a + b, 0) / 1000), stepMs: median(times) };
}

/** fs.readFile of a small file, one every 10 ms, until stop() */
function probeFs(file) {
  const latencies = [];
  let running = true;
  const loop = async () => {
    while (running) {
      const t = performance.now();
      await fs.promises.readFile(file);
      latencies.push(performance.now() - t);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  const done = loop();
  return async () => {
    running = false;
    await done;
    latencies.sort((a, b) => a - b);
    return { samples: latencies.length, p50Ms: percentile(latencies, 50), maxMs: latencies[latencies.length - 1] };
  };
}

/**
 * Clients sending batch-1 requests back to back until stop(), from a process of their own (as
 * real clients are): their JS work does not load the server's event loop.
 */
function loadServer(url, body) {
  const child = spawn(process.execPath, [path.join(__dirname, 'http-clients.js'), url, String(clients)], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdin.write(body);
  child.stdin.end();
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  const exited = new Promise((resolve) => child.on('close', resolve));
  return async () => {
    child.kill('SIGTERM');
    await exited;
    return { clients, ...JSON.parse(out) };
  };
}

/** Runs `fn` while watching the event loop's delay and fs.readFile's latency. */
async function measuring(file, fn) {
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const stopFs = probeFs(file);
  const value = await fn();
  const fsReadFile = await stopFs();
  loop.disable();
  const ms = (ns) => ns / 1e6;
  return { value, eventLoop: { p50Ms: ms(loop.percentile(50)), p99Ms: ms(loop.percentile(99)), maxMs: ms(loop.max) }, fsReadFile };
}

async function main() {
  dt.setNumThreads(threads);
  dt.manualSeed(0);
  const data = randomData(64 * steps);
  const trainer = dt.densenetCifar({ depth: 100, growthRate: 12 });
  const file = path.join(os.tmpdir(), `densetorch-guest-bench-${process.pid}.txt`);
  fs.writeFileSync(file, 'densetorch');
  const servedModel = dt.densenetCifar(SERVED[served]).eval();
  const running = createServer(servedModel, { maxBatch: 32, maxDelayMs: 5 });
  await new Promise((resolve) => running.server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${running.server.address().port}/predict`;
  const body = JSON.stringify({ shape: [1, 3, 32, 32], data: Array.from({ length: 3 * 32 * 32 }, (_, i) => Math.sin(i)) });

  console.log(`densetorch ${dt.versions.densetorch}, ${threads} threads, ${machine().cpu}`);
  const alone = await train(trainer, data);
  console.log(`training alone: ${alone.imagesPerSecond.toFixed(1)} img/s (median step ${alone.stepMs.toFixed(0)} ms)`);

  // The clients connect first (starting their process is no part of what is measured).
  const stopLoad = loadServer(url, body);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const { value: busy, eventLoop, fsReadFile } = await measuring(file, () => train(trainer, data));
  const requests = await stopLoad();
  await running.close();

  // The same training while 16 other models each predict one image after another: every
  // prediction waits for the compute thread (between two training steps).
  const predictors = Array.from({ length: 16 }, () => dt.densenetCifar(SERVED.bc40).eval());
  const one = dt.tensor(new Float32Array(3 * 32 * 32).fill(0.1), [1, 3, 32, 32]);
  let predictions = 0;
  let predicting = true;
  const loops = predictors.map(async (m) => {
    while (predicting) {
      (await m.predict(one)).dispose();
      predictions += 1;
    }
  });
  const many = await measuring(file, () => train(trainer, data));
  predicting = false;
  await Promise.all(loops);
  fs.rmSync(file, { force: true });

  const result = {
    date: new Date().toISOString(), ...machine(), threads, densetorch: dt.versions.densetorch,
    training: 'DenseNet-BC L=100 k=12, batch 64, 32x32', served: `DenseNet-BC L=${SERVED[served].depth} k=12, 32x32, maxBatch 32, maxDelayMs 5`,
    trainingAlone: alone, trainingUnderLoad: busy, trainingRatio: busy.imagesPerSecond / alone.imagesPerSecond,
    eventLoop, fsReadFile, requests,
    sixteenPredictors: { training: many.value, trainingRatio: many.value.imagesPerSecond / alone.imagesPerSecond, predictions, eventLoop: many.eventLoop, fsReadFile: many.fsReadFile },
  };
  console.log(`under load (${clients} clients): training ${busy.imagesPerSecond.toFixed(1)} img/s (${(100 * result.trainingRatio).toFixed(0)}% of alone)`);
  console.log(`event loop delay: p50 ${eventLoop.p50Ms.toFixed(1)} ms, p99 ${eventLoop.p99Ms.toFixed(1)} ms, max ${eventLoop.maxMs.toFixed(1)} ms`);
  console.log(`fs.readFile: p50 ${fsReadFile.p50Ms.toFixed(2)} ms, max ${fsReadFile.maxMs.toFixed(1)} ms over ${fsReadFile.samples} reads`);
  console.log(`requests: ${requests.requestsPerSecond.toFixed(1)}/s, p50 ${requests.p50Ms.toFixed(0)} ms, p99 ${requests.p99Ms.toFixed(0)} ms, ${requests.failed} failed`);
  console.log(`16 models predicting (${predictions} predictions): training ${many.value.imagesPerSecond.toFixed(1)} img/s; event loop p99 ${many.eventLoop.p99Ms.toFixed(1)} ms, max ${many.eventLoop.maxMs.toFixed(1)} ms; fs.readFile p50 ${many.fsReadFile.p50Ms.toFixed(2)} ms, max ${many.fsReadFile.maxMs.toFixed(1)} ms`);
  writeResult('guest', result);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
