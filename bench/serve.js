#!/usr/bin/env node
// The HTTP server under a sustained load: 16 concurrent clients send JSON tensors to
// examples/serve.js's server (in this process), 1,000 requests of warm-up, then 10,000 measured.
// Prints throughput, latency, batching and RSS every 1,000 requests, and writes
// bench/results/serve-<date>.json. RSS must stay flat after the warm-up.
//   node bench/serve.js [--requests 10000] [--clients 16] [--model bc40|densenet121]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const dt = require('..');
const { createServer } = require('../examples/serve.js');

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};

async function main() {
  const requests = Number(flag('requests', 10000));
  const clients = Number(flag('clients', 16));
  const warmup = 1000;
  dt.setNumThreads(2);
  dt.manualSeed(0);
  const model = dt.densenetCifar({ depth: 40, growthRate: 12, numClasses: 10 });
  const size = 32;
  const running = createServer(model, { maxBatch: 32, maxDelayMs: 5 });
  await new Promise((resolve) => running.server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${running.server.address().port}/predict`;
  const body = JSON.stringify({ shape: [1, 3, size, size], data: Array.from({ length: 3 * size * size }, (_, i) => Math.sin(i) * 0.5) });

  let sent = 0;
  let failed = 0;
  const rss = [];
  const run = async (total, onEvery) => {
    let done = 0;
    const client = async () => {
      while (sent < total) {
        sent += 1;
        const res = await fetch(url, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
        await res.json();
        if (res.status !== 200) failed += 1;
        done += 1;
        if (onEvery && done % 1000 === 0) onEvery(done);
      }
    };
    await Promise.all(Array.from({ length: clients }, client));
  };
  await run(warmup);
  global.gc?.();
  const base = process.memoryUsage().rss / 2 ** 20;
  sent = 0;
  const started = performance.now();
  await run(requests, (done) => {
    const mib = process.memoryUsage().rss / 2 ** 20;
    rss.push({ requests: done, rssMiB: mib });
    console.log(`${String(done).padStart(6)} requests: RSS ${mib.toFixed(1)} MiB (${(mib - base >= 0 ? '+' : '')}${(mib - base).toFixed(1)})`);
  });
  const seconds = (performance.now() - started) / 1000;
  const stats = running.predictor.stats();
  await running.close();
  const result = {
    date: new Date().toISOString(), cpu: os.cpus()[0]?.model, cores: os.cpus().length, model: 'DenseNet (L=40, k=12), 32x32',
    clients, requests, failed, seconds, requestsPerSecond: requests / seconds, meanBatchSize: stats.meanBatchSize,
    p50Ms: stats.p50Ms, p99Ms: stats.p99Ms, rssAfterWarmupMiB: base, rss,
    rssGrowthMiB: rss[rss.length - 1].rssMiB - base,
  };
  console.log(`${requests} requests from ${clients} clients in ${seconds.toFixed(1)} s (${result.requestsPerSecond.toFixed(0)} req/s), ${failed} failed; mean batch ${stats.meanBatchSize.toFixed(1)}, p50 ${stats.p50Ms.toFixed(1)} ms, p99 ${stats.p99Ms.toFixed(1)} ms; RSS ${base.toFixed(1)} -> ${rss[rss.length - 1].rssMiB.toFixed(1)} MiB`);
  const out = path.join(__dirname, 'results', `serve-${result.date.slice(0, 10)}.json`);
  fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`CPU: ${result.cpu}; wrote ${path.relative(process.cwd(), out)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
