#!/usr/bin/env node
// densetorch vs PyTorch (eager, torchvision's DenseNet, same LibTorch release), side by side,
// each case in its own process, same thread count. Prints a table with ratios and writes
// bench/results/<date>.json.
//   npm run bench                  # training and inference cases
//   npm run bench -- --scaling     # peak memory vs depth (CIFAR DenseNet-BC, k=12, batch 64)
//   THREADS=2 STEPS=5 npm run bench
//   npm run bench -- --only infer  # only the inference (or train) cases
//   npm run bench -- --serve [--soak]   # the HTTP server under load (bench/serve.js)
//   npm run bench -- --data        # streamed image folders: memory and data wait (bench/data-loader.js)
//   npm run bench -- --distributed # data-parallel training and all-reduce (bench/distributed.js)
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const threads = Number(process.env.THREADS || 2);
const steps = Number(process.env.STEPS || 5);
const python = process.env.PYTHON || 'python3';
const bc100 = { model: 'cifar', depth: 100, growthRate: 12, size: 32, classes: 10 };
const dn121 = { model: 'densenet121', size: 224, classes: 1000 };

function cases(scaling) {
  if (scaling) {
    return [40, 100, 190, 250].flatMap((depth) => [false, true].map((memoryEfficient) => ({
      name: `DenseNet-BC L=${depth} k=12`, ...bc100, depth, batch: 64, mode: 'train', memoryEfficient, warmup: 0, steps: 1,
    })));
  }
  const train = [
    { name: 'DenseNet-BC L=100 k=12', ...bc100, batch: 64 },
    { name: 'DenseNet-121', ...dn121, batch: 16 },
  ].flatMap((c) => [false, true].map((memoryEfficient) => ({ ...c, mode: 'train', memoryEfficient, warmup: 2, steps })));
  const infer = [
    { name: 'DenseNet-BC L=100 k=12', ...bc100, batch: 256 },
    { name: 'DenseNet-121', ...dn121, batch: 32 },
  ].map((c) => ({ ...c, mode: 'infer', memoryEfficient: false, warmup: 1, steps }));
  // Opt-in bf16 (autocast on both sides): naive training and inference.
  const bf16 = [...train.filter((c) => !c.memoryEfficient), ...infer].map((c) => ({ ...c, precision: 'bf16' }));
  return [...train, ...infer, ...bf16];
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: path.join(__dirname, '..'), maxBuffer: 1 << 24 });
  if (r.status !== 0) return { error: (r.stderr || r.error?.message || '').trim().split('\n').pop() };
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

function hasTorch() {
  return spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
}

// Other benchmarks, each its own script: --serve (bench/serve.js), --data (bench/data-loader.js),
// --distributed (bench/distributed.js).
for (const [flag, script] of [['--serve', 'serve.js'], ['--data', 'data-loader.js'], ['--distributed', 'distributed.js']]) {
  if (process.argv.includes(flag)) {
    const rest = process.argv.slice(2).filter((a) => a !== flag);
    const r = spawnSync(process.execPath, ['--expose-gc', path.join(__dirname, script), ...rest], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
}

const scaling = process.argv.includes('--scaling');
const withTorch = hasTorch();
if (!withTorch) console.log(`(${python} cannot import torch: PyTorch columns skipped; pip install torch==2.13.0 torchvision to compare)`);
const rows = [];
const onlyAt = process.argv.indexOf('--only');
const only = onlyAt > 0 ? process.argv[onlyAt + 1] : undefined;
for (const c of cases(scaling).filter((x) => !only || x.mode === only)) {
  const spec = JSON.stringify({ ...c, threads });
  const ours = run(process.execPath, [path.join(__dirname, 'densetorch_case.js'), spec]);
  const theirs = withTorch ? run(python, [path.join(__dirname, 'pytorch_reference.py'), spec]) : null;
  const row = { ...c, threads, densetorch: ours, pytorch: theirs };
  if (ours.imagesPerSecond && theirs?.imagesPerSecond) {
    row.throughputRatio = ours.imagesPerSecond / theirs.imagesPerSecond;
    row.memoryRatio = ours.peakRssMiB / theirs.peakRssMiB;
  }
  rows.push(row);
  const fmt = (r) => (r?.error ? `error: ${r.error}` : r ? `${r.stepSeconds.toFixed(3)} s/step ${r.imagesPerSecond.toFixed(1).padStart(6)} img/s peak ${r.peakRssMiB.toFixed(0).padStart(5)} MiB` : '-');
  console.log(`${c.mode.padEnd(5)} ${c.name.padEnd(22)} b${String(c.batch).padEnd(3)} ${c.memoryEfficient ? 'efficient' : 'naive    '} ${c.precision ?? 'fp32'} | densetorch ${fmt(ours)} | pytorch ${fmt(theirs)}` +
    (row.throughputRatio ? ` | speed x${row.throughputRatio.toFixed(2)} memory x${row.memoryRatio.toFixed(2)}` : ''));
}
const out = path.join(__dirname, 'results', `${new Date().toISOString().slice(0, 10)}${scaling ? '-scaling' : ''}${only ? `-${only}` : ''}.json`);
fs.mkdirSync(path.dirname(out), { recursive: true });
const torchVersion = withTorch ? spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' }).stdout.trim() : null;
fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), threads, steps, cpu: os.cpus()[0].model, cores: os.cpus().length, pytorch: torchVersion, rows }, null, 2) + '\n');
console.log(`wrote ${path.relative(process.cwd(), out)}`);
