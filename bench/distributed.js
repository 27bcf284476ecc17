#!/usr/bin/env node
// Data-parallel training on this machine (c10d, Gloo over loopback):
//   1. DenseNet-BC (L=100, k=12), batch 64 in all: 1 process x 2 threads against 2 ranks x 1
//      thread (batch 32 each): images/s and peak RSS per process;
//   2. all-reduce of DenseNet-121's gradients (and BC-100's) between 2 ranks: time and bandwidth;
//   3. the ring all-reduce estimate for 8 and 64 machines on 10 and 100 Gb/s networks.
//   npm run bench -- --distributed [--steps 4] [--port 29650]
// With --netem (root; scripts/netns.js): BC-100 and DenseNet-121 steps and all-reduce times for
// 2 ranks on one host against 2 hosts (network namespaces, one rank each) over links shaped to
// 10 and 1 Gb/s, held against the ring estimate.
//   npm run bench -- --distributed --netem [--steps 3]
'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');
const { flag, machine, writeResult } = require('./common');

const steps = Number(flag('steps', 4));
const basePort = Number(flag('port', 29650));
const ROOT = path.join(__dirname, '..');

/**
 * Runs this script as a worker (`--worker KIND`) in `world` processes; resolves with their JSON
 * lines. With `hosts` (scripts/netns.js), rank r runs in host r and rank 0's address is the master.
 */
function runWorkers(kind, world, threads, port, extra = {}, hosts = null) {
  return Promise.all(Array.from({ length: world }, (_, rank) => new Promise((resolve, reject) => {
    const env = { ...process.env, OMP_NUM_THREADS: String(threads), ...extra };
    if (world > 1) Object.assign(env, { RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: hosts ? '0' : String(rank), MASTER_ADDR: hosts ? hosts.addrs[0] : '127.0.0.1', MASTER_PORT: String(port) });
    const args = [__filename, '--worker', kind, '--threads', String(threads), '--steps', String(steps)];
    const options = { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] };
    const child = hosts ? hosts.spawn(rank, process.execPath, args, options) : spawn(process.execPath, args, options);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`${kind} worker ${rank} exited with ${code}`))));
  })));
}

async function worker(kind) {
  const dt = require('..');
  dt.setNumThreads(Number(flag('threads', 1)));
  const group = process.env.WORLD_SIZE ? await dt.distributed.init({ timeoutMs: 120_000 }) : { rank: 0, worldSize: 1 };
  let result;
  if (kind === 'train') {
    // BC-100 at 32x32, batch 64 in all; DenseNet-121 at 224x224, batch 16 in all.
    const big = process.env.DT_BENCH_MODEL === 'densenet121';
    const globalBatch = big ? 16 : 64;
    const size = big ? 224 : 32;
    const batch = globalBatch / group.worldSize;
    const n = globalBatch * (steps + 1); // one warm-up step
    const images = new Float32Array(n * 3 * size * size).map((_, i) => Math.sin(i * 0.37));
    const labels = new Int32Array(n).map((_, i) => i % 10);
    const data = dt.datasets.fromTensors(dt.tensor(images, [n, 3, size, size]), dt.tensor(labels, [n], { dtype: 'int32' }));
    const model = big ? dt.densenet121({ numClasses: 10 }) : dt.densenetCifar({ depth: 100, growthRate: 12, numClasses: 10 });
    const ends = [];
    await model.fit(data, { epochs: 1, batchSize: batch, shuffle: false, onBatchEnd: () => ends.push(performance.now()) });
    const seconds = (ends[ends.length - 1] - ends[0]) / 1000 / steps;
    result = { rank: group.rank, secondsPerStep: seconds, imagesPerSecond: globalBatch / seconds, peakRssMiB: process.resourceUsage().maxRSS / 1024 };
  } else {
    const sizes = { 'DenseNet-121': dt.densenet121().numParameters(), 'DenseNet-BC L=100 k=12': dt.densenetCifar({ depth: 100, growthRate: 12, numClasses: 10 }).numParameters() };
    result = { rank: group.rank };
    for (const [name, count] of Object.entries(sizes)) {
      const t = dt.tensor(new Float32Array(count).fill(1), [count]);
      const times = [];
      for (let i = 0; i < 12; i += 1) {
        await dt.distributed.barrier();
        const t0 = performance.now();
        await dt.distributed.allReduce(t);
        if (i >= 2) times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      result[name] = { parameters: count, bytes: count * 4, medianMs: times[Math.floor(times.length / 2)], minMs: times[0] };
    }
  }
  if (process.env.WORLD_SIZE) dt.distributed.destroy();
  console.log(JSON.stringify(result));
}

/** Ring all-reduce time: 2(W-1)/W of the bytes through each link, plus 2(W-1) latency steps. */
function ringSeconds(bytes, world, gbitPerSecond, latencySeconds = 50e-6) {
  return (2 * (world - 1) / world) * bytes / (gbitPerSecond * 1e9 / 8) + 2 * (world - 1) * latencySeconds;
}

/** --netem: 2 ranks on one host against 2 hosts over shaped links, BC-100 and DenseNet-121. */
async function netemMain() {
  const netns = require('../scripts/netns.js');
  const why = netns.unavailable();
  if (why) throw new Error(`--netem needs two network namespaces: ${why}`);
  const noDelay = netns.netemMissing();
  console.log(`emulated links: ${machine().cpu}, ${machine().cores} cores, 1 thread per rank, ${steps} timed steps${noDelay ? `\n(${noDelay})` : ''}`);
  const links = [{ name: '1 host (loopback)', rate: null }, { name: '2 hosts, 10 Gb/s', rate: '10gbit' }, { name: '2 hosts, 1 Gb/s', rate: '1gbit' }];
  const rows = [];
  let port = basePort + 10;
  for (const link of links) {
    const hosts = link.rate ? netns.createHosts({ tag: 'b', link: { rate: link.rate } }) : null;
    try {
      const reduce = (await runWorkers('allreduce', 2, 1, port++, {}, hosts))[0];
      for (const model of ['bc100', 'densenet121']) {
        const train = (await runWorkers('train', 2, 1, port++, { DT_BENCH_MODEL: model }, hosts))[0];
        const r = reduce[model === 'bc100' ? 'DenseNet-BC L=100 k=12' : 'DenseNet-121'];
        const gbit = link.rate ? netns.bitsPerSecond(link.rate) / 1e9 : null;
        const row = {
          link: link.name, model: model === 'bc100' ? 'DenseNet-BC (L=100, k=12), 32x32, batch 2x32' : 'DenseNet-121, 224x224, batch 2x8',
          secondsPerStep: train.secondsPerStep, imagesPerSecond: train.imagesPerSecond, gradientMB: r.bytes / 1e6,
          allreduceMs: r.medianMs, ringEstimateMs: gbit ? ringSeconds(r.bytes, 2, gbit) * 1000 : null,
        };
        rows.push(row);
        console.log(`  ${row.link.padEnd(18)} ${row.model.padEnd(46)} ${row.secondsPerStep.toFixed(2)} s/step  all-reduce ${row.allreduceMs.toFixed(1)} ms${row.ringEstimateMs ? ` (ring estimate ${row.ringEstimateMs.toFixed(1)} ms)` : ''}`);
      }
    } finally {
      if (hosts) hosts.remove();
    }
  }
  writeResult('distributed-netem', { ...machine(), date: new Date().toISOString(), steps, delay: noDelay || 'none asked', rows });
}

async function main() {
  console.log(`data-parallel benchmark: ${machine().cpu}, ${machine().cores} cores, ${steps} timed steps`);
  const single = (await runWorkers('train', 1, 2, basePort))[0];
  const ranks = await runWorkers('train', 2, 1, basePort + 1);
  const reduce = await runWorkers('allreduce', 2, 1, basePort + 2);
  const rows = [
    ['1 process x 2 threads, batch 64', single.imagesPerSecond, single.secondsPerStep, [single.peakRssMiB]],
    ['2 ranks x 1 thread, batch 32 each', ranks[0].imagesPerSecond, ranks[0].secondsPerStep, ranks.map((r) => r.peakRssMiB)],
  ];
  console.log('\nDenseNet-BC (L=100, k=12) training, 32x32, batch 64 in all');
  for (const [name, ips, sps, rss] of rows) console.log(`  ${name.padEnd(36)} ${ips.toFixed(1).padStart(6)} img/s  ${sps.toFixed(2)} s/step  peak RSS ${rss.map((m) => `${m.toFixed(0)} MiB`).join(' + ')}`);
  console.log(`  ratio (2 ranks / 1 process): ${(ranks[0].imagesPerSecond / single.imagesPerSecond).toFixed(2)}x`);
  console.log('\nall-reduce (sum) of float32 gradients between 2 ranks over loopback (Gloo)');
  const allreduce = {};
  for (const name of ['DenseNet-121', 'DenseNet-BC L=100 k=12']) {
    const r = reduce[0][name];
    const algbw = r.bytes / (r.medianMs / 1000) / 1e9;
    allreduce[name] = { ...r, algorithmGBps: algbw, busGBps: algbw * (2 * (2 - 1) / 2) };
    console.log(`  ${name.padEnd(24)} ${(r.bytes / 1e6).toFixed(1).padStart(5)} MB  median ${r.medianMs.toFixed(1)} ms (min ${r.minMs.toFixed(1)})  ${algbw.toFixed(2)} GB/s`);
  }
  const bcShare = allreduce['DenseNet-BC L=100 k=12'].medianMs / 1000 / ranks[0].secondsPerStep;
  console.log(`  BC-100's all-reduce is ${(100 * bcShare).toFixed(1)}% of its 2-rank step: the most that overlapping it with backward could save`);
  const bytes = allreduce['DenseNet-121'].bytes;
  const estimate = [];
  console.log(`\nring all-reduce estimate for DenseNet-121 (${(bytes / 1e6).toFixed(1)} MB), 2(W-1)/W x bytes / bandwidth + 2(W-1) x 50 us`);
  for (const world of [8, 64]) {
    for (const gbit of [10, 100]) {
      const s = ringSeconds(bytes, world, gbit);
      estimate.push({ machines: world, gbitPerSecond: gbit, seconds: s });
      console.log(`  ${String(world).padStart(2)} machines, ${String(gbit).padStart(3)} Gb/s: ${(s * 1000).toFixed(1)} ms per step`);
    }
  }
  writeResult('distributed', {
    ...machine(), date: new Date().toISOString(), steps,
    training: { singleProcess: single, twoRanks: ranks, ratio: ranks[0].imagesPerSecond / single.imagesPerSecond },
    allreduce, bc100AllreduceShareOfStep: bcShare, ringEstimate: estimate,
  });
}

if (flag('worker')) {
  worker(flag('worker')).catch((err) => {
    console.error(err.stack);
    process.exit(1);
  });
} else {
  (process.argv.includes('--netem') ? netemMain() : main()).catch((err) => {
    console.error(err.stack);
    process.exit(1);
  });
}
