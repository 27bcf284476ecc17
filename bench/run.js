#!/usr/bin/env node
// densetorch vs PyTorch (eager, torchvision's DenseNet, same LibTorch release), side by side,
// each case in its own process, same thread count. Prints a table with ratios and writes
// bench/results/<date>.json.
//   npm run bench                  # training and inference cases
//   npm run bench -- --scaling     # peak memory vs depth (CIFAR DenseNet-BC, k=12, batch 64)
//   THREADS=2 STEPS=5 npm run bench
//   npm run bench -- --only infer  # only the inference (or train) cases
//   npm run bench -- --repeat 5    # every row in 5 fresh processes: median, with [min-max] images/s
//   npm run bench -- --repeat 5 --torch-repeat 1   # PyTorch's rows in fewer processes than ours
//   npm run bench -- --compile     # also PyTorch's torch.compile (inductor), naive rows
//   npm run bench -- --isa avx2    # both sides held to AVX2 (oneDNN, ATen, MKL, norm_gemm): what a
//                                  # CPU without AVX-512 runs, on one that has it; fp32 rows only
//   npm run bench -- --bf16        # the bf16 rows also on a CPU without AVX-512 BF16 or AMX
//   npm run bench -- --device cuda # the GPU cases: larger batches, fp32 and fp16 (autocast, loss
//                                  # scaling), device memory from the caching allocator's peak
// Every row shows achieved GFLOP/s (from the model's convolution shapes), its fraction of the FMA
// peak (register-only FMAs on the same threads: the roofline's top line) and of the sgemm ceiling
// (4096² at::mm), and the step time over the conv-only floor, measured in the run (with --repeat
// N, in min(N, 3) fresh processes: the median reading).
//   npm run bench -- --serve [--soak]   # the HTTP server under load (bench/serve.js)
//   npm run bench -- --data        # streamed image folders: memory and data wait (bench/data-loader.js)
//   npm run bench -- --distributed # data-parallel training and all-reduce (bench/distributed.js)
//   npm run bench -- --onnx        # predict against onnxruntime-node on the exported model (bench/onnx.js)
//   npm run bench -- --guest       # training while the HTTP server answers 64 clients in the same
//                                  # process: event-loop delay, fs latency, requests/s (bench/guest.js)
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

// --isa avx2: every process (ours and PyTorch's) held to AVX2 kernels through the libraries' own
// switches. densetorch's memory-bound elementwise passes still pick their AVX-512 clones.
const isaAt = process.argv.indexOf('--isa');
const isa = isaAt > 0 ? process.argv[isaAt + 1] : undefined;
if (isa !== undefined && isa !== 'avx2') throw new Error(`--isa: only avx2 is supported, got ${isa}`);
const childEnv = isa === 'avx2'
  ? { ...process.env, ONEDNN_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2', MKL_ENABLE_INSTRUCTIONS: 'AVX2', DENSETORCH_CPU_CAPABILITY: 'avx2' }
  : process.env;

// bf16 in hardware: AVX-512 BF16 or AMX (Linux's /proc/cpuinfo flags).
const cpuFlags = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
const nativeBf16 = /\b(avx512_bf16|amx_bf16)\b/.test(cpuFlags);
const bf16Rows = nativeBf16 || process.argv.includes('--bf16');

const deviceAt = process.argv.indexOf('--device');
const device = deviceAt > 0 ? process.argv[deviceAt + 1] : 'cpu';
const onCuda = device !== 'cpu';

function cudaCases() {
  const train = [
    { name: 'DenseNet-BC L=100 k=12', ...bc100, batch: 64 },
    { name: 'DenseNet-121', ...dn121, batch: 64 },
  ].flatMap((c) => [false, true].map((memoryEfficient) => ({ ...c, mode: 'train', memoryEfficient, warmup: 3, steps: Math.max(steps, 10) })));
  const infer = [
    { name: 'DenseNet-BC L=100 k=12', ...bc100, batch: 1024 },
    { name: 'DenseNet-121', ...dn121, batch: 128 },
  ].map((c) => ({ ...c, mode: 'infer', memoryEfficient: false, warmup: 3, steps: Math.max(steps, 10) }));
  // float16 (autocast; loss scaling in training) for DenseNet-121, whose convolutions use the tensor cores
  const fp16 = [...train, ...infer].filter((c) => c.model === 'densenet121' && !c.memoryEfficient).map((c) => ({ ...c, precision: 'fp16' }));
  return [...train, ...infer, ...fp16].map((c) => ({ ...c, device }));
}

function cases(scaling) {
  if (onCuda) return cudaCases();
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
  // Opt-in bf16 (autocast on both sides): naive training and inference. Not with --isa avx2, nor
  // on a CPU without AVX-512 BF16 or AMX (unless --bf16): it emulates bf16, and fp32 is the
  // precision to use there.
  if (isa || !bf16Rows) return [...train, ...infer];
  const bf16 = [...train.filter((c) => !c.memoryEfficient), ...infer].map((c) => ({ ...c, precision: 'bf16' }));
  return [...train, ...infer, ...bf16];
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: path.join(__dirname, '..'), maxBuffer: 1 << 24, env: childEnv });
  if (r.status !== 0) {
    const lines = (r.stderr || r.error?.message || '').trim().split('\n');
    return { error: lines.find((l) => /Error\b/.test(l)) ?? lines.pop() };
  }
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

function hasTorch() {
  return spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
}

// Other benchmarks, each its own script: --serve (bench/serve.js), --data (bench/data-loader.js),
// --distributed (bench/distributed.js), --guest (bench/guest.js), --onnx (bench/onnx.js).
for (const [flag, script] of [['--serve', 'serve.js'], ['--data', 'data-loader.js'], ['--distributed', 'distributed.js'], ['--guest', 'guest.js'], ['--onnx', 'onnx.js']]) {
  if (process.argv.includes(flag)) {
    const rest = process.argv.slice(2).filter((a) => a !== flag);
    const r = spawnSync(process.execPath, ['--expose-gc', path.join(__dirname, script), ...rest], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
}

const scaling = process.argv.includes('--scaling');
const withTorch = hasTorch();
if (!onCuda && !scaling && !isa && !bf16Rows) console.log('(this CPU has neither AVX-512 BF16 nor AMX: bf16 rows skipped, --bf16 runs them)');
if (!withTorch) console.log(`(${python} cannot import torch: PyTorch columns skipped; pip install torch==2.13.0 torchvision to compare)`);
const rows = [];
const onlyAt = process.argv.indexOf('--only');
const only = onlyAt > 0 ? process.argv[onlyAt + 1] : undefined;
const repeatAt = process.argv.indexOf('--repeat');
const repeat = repeatAt > 0 ? Number(process.argv[repeatAt + 1]) : 1;
const torchRepeatAt = process.argv.indexOf('--torch-repeat');
const torchRepeat = torchRepeatAt > 0 ? Number(process.argv[torchRepeatAt + 1]) : repeat;
const withCompile = process.argv.includes('--compile');

/** The middle element of a list of numbers (the lower of the middle two for an even count). */
const lowerMedian = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

/** Runs a case `repeat` times, each in a fresh process: the median run, with min/median/max images/s. */
function runRepeated(cmd, args, times) {
  const runs = Array.from({ length: times }, () => run(cmd, args));
  const ok = runs.filter((r) => !r.error);
  if (ok.length === 0) return runs[0];
  const ips = ok.map((r) => r.imagesPerSecond).sort((a, b) => a - b);
  const median = ok.find((r) => r.imagesPerSecond === lowerMedian(ips));
  return { ...median, runs: ok.length, imagesPerSecondMin: ips[0], imagesPerSecondMax: ips[ips.length - 1] };
}

/**
 * The sgemm ceiling and conv-only floor of a case measured in `times` fresh processes (they move
 * by up to a third between processes on a shared machine): the median of each, with every reading.
 */
function limitsRepeated(c, times) {
  const readings = Array.from({ length: Math.max(1, times) }, () =>
    run(process.execPath, [path.join(__dirname, 'densetorch_case.js'), JSON.stringify({ ...c, threads, limits: true })]));
  const ok = readings.filter((r) => !r.error);
  if (ok.length === 0) return readings[0];
  const floors = ok.map((r) => r.floorSeconds), sgemms = ok.map((r) => r.sgemmGflops), peaks = ok.map((r) => r.peakGflops);
  return {
    ...ok[0], floorSeconds: lowerMedian(floors), sgemmGflops: lowerMedian(sgemms), peakGflops: lowerMedian(peaks),
    floorReadings: floors, sgemmReadings: sgemms, peakReadings: peaks,
  };
}

/**
 * Achieved GFLOP/s (the model's direct-convolution FLOPs over the step time, whatever algorithm
 * ran), fraction of the FMA peak and of the sgemm ceiling, and step time over the conv-only floor.
 */
function roofline(r, c, limits) {
  if (!r || r.error || !limits || limits.error) return {};
  // Training does the forward convolutions and both backward ones: about 3x the forward FLOPs.
  const flops = limits.forwardFlopsPerImage * c.batch * (c.mode === 'train' ? 3 : 1);
  const gflops = flops / r.stepSeconds / 1e9;
  return {
    gflops, peakFraction: gflops / limits.peakGflops, sgemmFraction: gflops / limits.sgemmGflops,
    floorRatio: r.stepSeconds / limits.floorSeconds,
  };
}

const fmtRun = (r) => {
  if (!r) return '-';
  if (r.error) return `error: ${r.error}`;
  const spread = r.runs > 1 ? ` [${r.imagesPerSecondMin.toFixed(1)}-${r.imagesPerSecondMax.toFixed(1)}]` : '';
  const roof = r.gflops ? ` ${r.gflops.toFixed(0)} GFLOP/s ${(100 * r.peakFraction).toFixed(0)}% peak ${(100 * r.sgemmFraction).toFixed(0)}% sgemm ${r.floorRatio.toFixed(2)}x floor` : '';
  const peak = r.peakCudaMiB !== undefined ? `device peak ${r.peakCudaMiB.toFixed(0).padStart(5)} MiB (reserved ${r.peakCudaReservedMiB.toFixed(0)})` : `peak ${r.peakRssMiB.toFixed(0).padStart(5)} MiB`;
  return `${r.stepSeconds.toFixed(3)} s/step ${r.imagesPerSecond.toFixed(1).padStart(6)} img/s${spread}${roof} ${peak}`;
};

for (const c of cases(scaling).filter((x) => !only || x.mode === only)) {
  const spec = JSON.stringify({ ...c, threads });
  const limits = scaling || onCuda ? null : limitsRepeated(c, Math.min(repeat, 3));
  const ours = runRepeated(process.execPath, [path.join(__dirname, 'densetorch_case.js'), spec], repeat);
  Object.assign(ours, roofline(ours, c, limits));
  const variants = withTorch ? [
    ['eager NCHW', { layout: 'nchw' }],
    ['eager channels-last', { layout: 'channels_last' }],
    ...(withCompile && !c.memoryEfficient ? [['torch.compile', { layout: 'channels_last', compile: true }]] : []),
  ] : [];
  const pytorch = {};
  for (const [name, extra] of variants) {
    const r = runRepeated(python, [path.join(__dirname, 'pytorch_reference.py'), JSON.stringify({ ...c, threads, ...extra })], torchRepeat);
    pytorch[name] = Object.assign(r, roofline(r, c, limits));
  }
  // The comparison is against PyTorch's faster eager layout (and torch.compile when measured).
  const best = Object.entries(pytorch).filter(([, r]) => r.imagesPerSecond).sort(([, a], [, b]) => b.imagesPerSecond - a.imagesPerSecond)[0];
  const row = { ...c, threads, limits, densetorch: ours, pytorch, best: best?.[0] };
  if (ours.imagesPerSecond && best) {
    row.throughputRatio = ours.imagesPerSecond / best[1].imagesPerSecond;
    row.memoryRatio = onCuda ? ours.peakCudaMiB / best[1].peakCudaMiB : ours.peakRssMiB / best[1].peakRssMiB;
  }
  rows.push(row);
  console.log(`${c.mode.padEnd(5)} ${c.name.padEnd(22)} b${String(c.batch).padEnd(3)} ${c.memoryEfficient ? 'efficient' : 'naive    '} ${c.precision ?? 'fp32'}` +
    (limits && !limits.error ? ` | FMA peak ${limits.peakGflops.toFixed(0)} GFLOP/s (${limits.peakIsa}), sgemm ${limits.sgemmGflops.toFixed(0)} GFLOP/s, floor ${limits.floorSeconds.toFixed(3)} s` +
      (limits.floorReadings?.length > 1 ? ` (median of ${limits.floorReadings.map((f) => f.toFixed(3)).join(', ')})` : '') : ''));
  console.log(`      densetorch            ${fmtRun(ours)}`);
  for (const [name, r] of Object.entries(pytorch)) console.log(`      pytorch ${name.padEnd(13)} ${fmtRun(r)}`);
  if (row.throughputRatio) console.log(`      speed x${row.throughputRatio.toFixed(2)} and memory x${row.memoryRatio.toFixed(2)} of pytorch ${row.best}`);
}
const out = path.join(__dirname, 'results', `${new Date().toISOString().slice(0, 10)}${onCuda ? '-cuda' : ''}${scaling ? '-scaling' : ''}${only ? `-${only}` : ''}${isa ? `-${isa}` : ''}${repeat > 1 ? `-repeat${repeat}` : ''}.json`);
fs.mkdirSync(path.dirname(out), { recursive: true });
const torchVersion = withTorch ? spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' }).stdout.trim() : null;
const gpu = onCuda ? spawnSync('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'], { encoding: 'utf8' }).stdout?.trim() ?? null : undefined;
const libtorch = require('..').versions.libtorch;
fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), device, gpu, isa: isa ?? 'native', threads, steps, cpu: os.cpus()[0].model, cores: os.cpus().length, nativeBf16, libtorch, pytorch: torchVersion, rows }, null, 2) + '\n');
console.log(`wrote ${path.relative(process.cwd(), out)}`);
