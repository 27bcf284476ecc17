#!/usr/bin/env node
// densetorch `predict` against onnxruntime-node running densetorch's own ONNX export of the same
// model (all graph optimisations), batch 1 (also through model.serve() at one client) and a large
// batch, same threads. Each measurement is a
// fresh process (one engine's thread pool at a time), engines alternating, `--rounds` rounds.
// Prints img/s and ms per batch (median over rounds, [min-max]), each engine's share of the FMA
// peak (register-only FMAs on the same threads, measured in the run), and the ratio; writes
// bench/results/onnx-<date>.json.
//   npm run bench -- --onnx [--rounds 3] [--only 'batch 1']   (--only: cases whose name contains it)
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { flag, machine, median, writeResult } = require('./common.js');
const { fmaPeak, forwardFlops } = require('./native/tools.js');

const threads = Number(process.env.THREADS || 2);
const CASES = [
  { name: 'DenseNet-BC-100, batch 1', model: 'bc100', size: 32, batch: 1, reps: 40 },
  { name: 'DenseNet-BC-100, batch 256', model: 'bc100', size: 32, batch: 256, reps: 4 },
  { name: 'DenseNet-121, batch 1', model: 'densenet121', size: 224, batch: 1, reps: 40 },
  { name: 'DenseNet-121, batch 32', model: 'densenet121', size: 224, batch: 32, reps: 3 },
  // One client awaiting each answer before its next request, through the dynamic batcher
  // (model.serve() with its defaults); onnxruntime-node's side is the same session.run.
  { name: 'DenseNet-BC-100, batch 1 through serve()', model: 'bc100', size: 32, batch: 1, reps: 40, serve: true },
  { name: 'DenseNet-121, batch 1 through serve()', model: 'densenet121', size: 224, batch: 1, reps: 40, serve: true },
];

/** In a child: times one engine on one case; prints { msPerBatch }. */
async function child(spec) {
  const { engine, dir, c } = spec;
  const x = Float32Array.from({ length: c.batch * 3 * c.size * c.size }, (_, i) => Math.sin(i));
  const times = [];
  let run;
  if (engine === 'densetorch') {
    const dt = require('..');
    dt.setNumThreads(threads);
    const model = (await dt.load(path.join(dir, `${c.model}.safetensors`))).eval();
    const input = dt.tensor(x, [c.batch, 3, c.size, c.size]);
    const server = c.serve ? model.serve() : null;
    run = async () => (await (server ? server.predict(input) : model.predict(input, { batchSize: c.batch }))).dispose();
  } else {
    const ort = require('onnxruntime-node');
    const session = await ort.InferenceSession.create(path.join(dir, `${c.model}.onnx`), {
      intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
    });
    const input = new ort.Tensor('float32', x, [c.batch, 3, c.size, c.size]);
    run = async () => session.run({ input });
  }
  for (let i = 0; i < 3; i++) await run();
  for (let i = 0; i < c.reps; i++) {
    const t = process.hrtime.bigint();
    await run();
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  console.log(JSON.stringify({ msPerBatch: median(times) }));
}

async function main() {
  const dt = require('..');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-onnx-bench-'));
  try {
    dt.manualSeed(0);
    const flops = {};
    for (const [name, model, size] of [['bc100', dt.densenetCifar({ depth: 100, growthRate: 12, numClasses: 10 }), 32], ['densenet121', dt.densenet121(), 224]]) {
      await model.save(path.join(dir, `${name}.safetensors`));
      await model.exportOnnx(path.join(dir, `${name}.onnx`));
      flops[name] = forwardFlops(model.config, size);
    }
    // The roofline's top line: register-only FMAs on the same number of threads, this run (the
    // higher of a reading before the cases and one after them: a core shared with another tenant
    // for a moment reads low).
    const before = fmaPeak(threads);
    const rounds = Number(flag('rounds', 3));
    const result = {
      date: new Date().toISOString(), ...machine(), threads, rounds, onnxruntimeNode: require('onnxruntime-node/package.json').version,
      forwardFlopsPerImage: flops, cases: {},
    };
    for (const c of CASES.filter((k) => !flag('only') || k.name.includes(flag('only')))) {
      const ms = { densetorch: [], onnxruntime: [] };
      for (let r = 0; r < rounds; r++) {
        for (const engine of r % 2 === 0 ? ['densetorch', 'onnxruntime'] : ['onnxruntime', 'densetorch']) {
          const out = execFileSync(process.execPath, [__filename, '--child', JSON.stringify({ engine, dir, c })], { encoding: 'utf8' });
          ms[engine].push(JSON.parse(out.trim().split('\n').pop()).msPerBatch);
        }
      }
      const dtMs = median(ms.densetorch), ortMs = median(ms.onnxruntime);
      // GFLOP/s of the model's direct-convolution FLOPs, and their share of the FMA peak.
      const gflops = (msPerBatch) => (flops[c.model] * c.batch) / (msPerBatch / 1000) / 1e9;
      const range = (xs) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
      result.cases[c.name] = {
        ms, densetorchMs: dtMs, onnxruntimeMs: ortMs, densetorchImgPerS: (1000 * c.batch) / dtMs, onnxruntimeImgPerS: (1000 * c.batch) / ortMs,
        densetorchGflops: gflops(dtMs), onnxruntimeGflops: gflops(ortMs), speedup: ortMs / dtMs,
      };
      console.log(`${c.name}: densetorch ${dtMs.toFixed(2)} ms [${range(ms.densetorch)}] (${((1000 * c.batch) / dtMs).toFixed(1)} img/s, ${gflops(dtMs).toFixed(0)} GFLOP/s), ` +
        `onnxruntime-node ${ortMs.toFixed(2)} ms [${range(ms.onnxruntime)}] (${((1000 * c.batch) / ortMs).toFixed(1)} img/s, ${gflops(ortMs).toFixed(0)} GFLOP/s): densetorch ${(ortMs / dtMs).toFixed(2)}x`);
    }
    const after = fmaPeak(threads);
    const peak = before.gflops >= after.gflops ? before : after;
    Object.assign(result, { peakGflops: peak.gflops, peakIsa: peak.isa, peakReadings: [before.gflops, after.gflops] });
    console.log(`FMA peak of ${threads} threads: ${peak.gflops.toFixed(0)} GFLOP/s (${peak.isa}; ${before.gflops.toFixed(0)} before the cases, ${after.gflops.toFixed(0)} after)`);
    for (const [name, r] of Object.entries(result.cases)) {
      Object.assign(r, { densetorchPeakFraction: r.densetorchGflops / peak.gflops, onnxruntimePeakFraction: r.onnxruntimeGflops / peak.gflops });
      console.log(`  ${name}: densetorch ${(100 * r.densetorchPeakFraction).toFixed(0)}% of peak, onnxruntime-node ${(100 * r.onnxruntimePeakFraction).toFixed(0)}%`);
    }
    writeResult(flag('only') ? `onnx-${flag('only').replace(/[^a-z0-9]+/gi, '-')}` : 'onnx', result);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  child(JSON.parse(process.argv[3])).catch((err) => { console.error(err); process.exit(1); });
} else {
  main().catch((err) => { console.error(err); process.exit(1); });
}
