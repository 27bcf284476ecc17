#!/usr/bin/env node
// The HTTP server (examples/serve.js, in this process) under load from concurrent clients
// sending batch-1 JSON tensors. Two parts, written to bench/results/serve-<date>.json:
//   --soak: 16 clients, 1,000 requests of warm-up then 10,000 measured, RSS every 1,000
//           (it must stay flat after the warm-up);
//   --matrix (default): requests/s and p50/p99 for 1, 8 and 64 clients, DenseNet-BC (L=100,
//           k=12) at 32x32 and DenseNet-121 at 224x224, batching off (maxBatch 1) vs on (32).
//   node bench/serve.js [--soak] [--matrix] [--requests N]   (npm run bench -- --serve)
'use strict';
const dt = require('..');
const { createServer } = require('../examples/serve.js');

const { flag, has, machine, percentile, writeResult } = require('./common.js');

/** Sends `total` requests from `clients` concurrent clients; returns seconds, failures and latencies (ms). */
async function load(url, body, total, clients, onThousand) {
  let sent = 0;
  let failed = 0;
  let done = 0;
  const latencies = [];
  const started = performance.now();
  const client = async () => {
    while (sent < total) {
      sent += 1;
      const t = performance.now();
      const res = await fetch(url, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
      await res.json();
      latencies.push(performance.now() - t);
      if (res.status !== 200) failed += 1;
      done += 1;
      if (onThousand && done % 1000 === 0) onThousand(done);
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { seconds, failed, requestsPerSecond: total / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

function jsonBody(size) {
  return JSON.stringify({ shape: [1, 3, size, size], data: Array.from({ length: 3 * size * size }, (_, i) => Math.sin(i) * 0.5) });
}

async function listen(model, options) {
  const running = createServer(model, options);
  await new Promise((resolve) => running.server.listen(0, '127.0.0.1', resolve));
  return { running, url: `http://127.0.0.1:${running.server.address().port}/predict` };
}

async function matrix() {
  const rows = [];
  const models = [
    { name: 'DenseNet-BC (L=100, k=12), 32x32', make: () => dt.densenetCifar({ depth: 100, growthRate: 12 }), size: 32, requests: Number(flag('requests', 600)) },
    { name: 'DenseNet-121, 224x224', make: () => dt.densenet121(), size: 224, requests: Math.max(64, Math.round(Number(flag('requests', 600)) / 8)) },
  ];
  for (const m of models) {
    dt.manualSeed(0);
    const model = m.make();
    const body = jsonBody(m.size);
    for (const clients of [1, 8, 64]) {
      for (const batching of [false, true]) {
        const { running, url } = await listen(model, { maxBatch: batching ? 32 : 1, maxDelayMs: batching ? 5 : 0 });
        await load(url, body, Math.min(16, m.requests), Math.min(clients, 8)); // warm-up
        const r = await load(url, body, m.requests, clients);
        const stats = running.predictor.stats();
        await running.close();
        const row = { model: m.name, clients, batching, requests: m.requests, ...r, meanBatchSize: stats.meanBatchSize };
        rows.push(row);
        console.log(`${m.name.padEnd(34)} ${String(clients).padStart(2)} clients, batching ${batching ? 'on ' : 'off'}: ${r.requestsPerSecond.toFixed(1).padStart(7)} req/s, p50 ${r.p50Ms.toFixed(0).padStart(5)} ms, p99 ${r.p99Ms.toFixed(0).padStart(5)} ms, mean batch ${stats.meanBatchSize.toFixed(1)}${r.failed ? `, ${r.failed} failed` : ''}`);
      }
    }
  }
  return rows;
}

async function soak() {
  const requests = Number(flag('requests', 10000));
  const clients = 16;
  const warmup = 1000;
  dt.manualSeed(0);
  const model = dt.densenetCifar({ depth: 40, growthRate: 12, numClasses: 10 });
  const size = 32;
  const running = createServer(model, { maxBatch: 32, maxDelayMs: 5 });
  await new Promise((resolve) => running.server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${running.server.address().port}/predict`;
  const body = jsonBody(size);
  await load(url, body, warmup, clients);
  global.gc?.();
  const base = process.memoryUsage().rss / 2 ** 20;
  const rss = [];
  const r = await load(url, body, requests, clients, (done) => {
    const mib = process.memoryUsage().rss / 2 ** 20;
    rss.push({ requests: done, rssMiB: mib });
    console.log(`${String(done).padStart(6)} requests: RSS ${mib.toFixed(1)} MiB (${(mib - base >= 0 ? '+' : '')}${(mib - base).toFixed(1)})`);
  });
  const stats = running.predictor.stats();
  await running.close();
  const result = { model: 'DenseNet (L=40, k=12), 32x32', clients, requests, ...r, meanBatchSize: stats.meanBatchSize,
    rssAfterWarmupMiB: base, rss, rssGrowthMiB: rss[rss.length - 1].rssMiB - base };
  console.log(`${requests} requests from ${clients} clients in ${r.seconds.toFixed(1)} s (${r.requestsPerSecond.toFixed(0)} req/s), ${r.failed} failed; mean batch ${stats.meanBatchSize.toFixed(1)}, p50 ${r.p50Ms.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms; RSS ${base.toFixed(1)} -> ${rss[rss.length - 1].rssMiB.toFixed(1)} MiB`);
  return result;
}

async function main() {
  dt.setNumThreads(Number(process.env.THREADS || 2));
  const runSoak = has('soak');
  const runMatrix = has('matrix') || !runSoak;
  const result = { date: new Date().toISOString(), ...machine(), threads: dt.getNumThreads() };
  if (runMatrix) result.matrix = await matrix();
  if (runSoak) result.soak = await soak();
  writeResult(runSoak && !runMatrix ? 'serve-soak' : 'serve', result);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
