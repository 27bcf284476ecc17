#!/usr/bin/env node
// Concurrent HTTP clients in a process of their own (bench/guest.js): reads one request body from
// stdin, sends it from `count` clients back to back until SIGTERM, then prints its figures as JSON.
//   node bench/http-clients.js <url> <count> < body.json
'use strict';
const { percentile } = require('./common.js');

const [url, count] = process.argv.slice(2);
let body = '';
process.stdin.on('data', (d) => {
  body += d;
});
process.stdin.on('end', () => {
  let running = true;
  let answered = 0;
  let failed = 0;
  const latencies = [];
  const started = performance.now();
  const client = async () => {
    while (running) {
      const t = performance.now();
      try {
        const res = await fetch(url, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
        await res.json();
        latencies.push(performance.now() - t);
        if (res.status === 200) answered += 1;
        else failed += 1;
      } catch {
        failed += 1;
      }
    }
  };
  const all = Promise.all(Array.from({ length: Number(count) }, client));
  process.on('SIGTERM', async () => {
    const seconds = (performance.now() - started) / 1000;
    running = false;
    await all;
    latencies.sort((a, b) => a - b);
    process.stdout.write(JSON.stringify({ answered, failed, requestsPerSecond: answered / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) }));
  });
});
