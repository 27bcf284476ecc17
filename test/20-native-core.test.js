'use strict';
// C++ tests of native/core (plain C++20 + LibTorch, no N-API), compiled against the LibTorch
// the addon uses and run as programs.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { ROOT } = require('./helpers');
const nativeConfig = require('../scripts/native-config.js');

/** The instruction sets this CPU offers densetorch's kernels ('avx2' means AVX2 with FMA). */
function cpuIsas() {
  let flags = '';
  try {
    flags = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) || '';
  } catch { /* not Linux: no ISA variant is assumed */ }
  const has = (f) => new RegExp(`\\b${f}\\b`).test(flags);
  return { avx2: has('avx2') && has('fma'), avx512: has('avx512f') };
}

/**
 * The environments a kernel test runs in: the CPU's best variant, the AVX2 one (on an AVX-512
 * CPU), and the portable one (DENSETORCH_CPU_CAPABILITY=default). Variants this CPU cannot run
 * are left out with the reason printed.
 */
function variantEnvs(extra = []) {
  const isas = cpuIsas();
  const envs = [{}, { DENSETORCH_CPU_CAPABILITY: 'default' }];
  if (isas.avx2) envs.push(...extra);
  if (isas.avx512) envs.push({ DENSETORCH_CPU_CAPABILITY: 'avx2' });
  else console.log(`      (the AVX2 variant on an AVX-512 CPU is not run: this CPU has ${isas.avx2 ? 'AVX2 only' : 'neither AVX2 + FMA nor AVX-512, so only the portable variant runs'})`);
  return envs;
}

/** Compiles a C++ test and runs it once per entry of `envs` (extra environment variables). */
function compileAndRun(source, envs = [{}]) {
  const lt = nativeConfig.libtorch();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-cpp-'));
  const exe = path.join(dir, path.basename(source, '.cpp'));
  try {
    const compile = spawnSync(process.env.CXX || 'g++', nativeConfig.programArgs(lt, [path.join(ROOT, source)], exe, { opt: '-O1' }), { encoding: 'utf8' });
    assert.equal(compile.status, 0, compile.stderr);
    const runs = envs.map((env) => spawnSync(exe, [], { encoding: 'utf8', timeout: 60000, env: { ...process.env, ...env } }));
    return envs.length === 1 ? runs[0] : runs;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Compiles and runs a C++ test that must exit 0 and print "ok" (once per env); returns its result(s). */
function runPassing(source, envs) {
  const results = [compileAndRun(source, envs)].flat();
  for (const r of results) {
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^ok$/m);
  }
  return results.length === 1 ? results[0] : results;
}

describe('native core (C++ tests)', () => {
  it('the memory-efficient bottleneck layer uses norm1\'s and norm2\'s own eps (1e-5 and 0.5): equal to the naive layer', function () {
    this.timeout(300000); // compiling against LibTorch's headers takes about a minute on 2 cores
    const r = runPassing('test/native/bottleneck_eps.cpp');
    console.log(`      ${r.stdout.trim().split('\n')[0]}`);
  });

  it('the compute thread: tasks from any thread run on one thread (in place when nested), with the caller\'s grad mode and autocast state, their exceptions and results, and set_compute_threads; a training run serves the short tasks queued behind it, not another run; threads kept serial start no OpenMP pool (one pool per process); a posted task runs without its caller waiting, with its grad mode, and a throw from it is dropped; the idle hook runs once after work', function () {
    this.timeout(300000);
    runPassing('test/native/compute_thread.cpp');
  });

  it('the fused dense block equals the layer-by-layer path: outputs, input and parameter gradients, BN statistics (bottleneck and plain, naive and memory-efficient, two stems, training and evaluation; every kernel variant (the CPU\'s best, AVX2, portable), with and without the Winograd 3x3 convolutions, channel counts that are not whole vectors), and the 3x3 convolution\'s weight gradient through norm_gemm and Winograd equals LibTorch\'s', function () {
    this.timeout(300000);
    const runs = runPassing('test/native/fused_block.cpp', [...variantEnvs([{ DENSETORCH_CPU_CAPABILITY: 'avx2', DENSETORCH_WINOGRAD: '0' }]), { DENSETORCH_WINOGRAD: '1' }]);
    for (const r of [runs].flat()) console.log(`      ${r.stdout.trim().split('\n').filter((l) => !l.startsWith('ok')).join('\n      ')}`);
  });

  it('the 1x1 convolution with batch norm + ReLU as its prologue (norm_gemm) and its backward (weight gradient, input gradient through the ReLU, batch-norm sums) equal double-precision formulas: every panel width, odd row and channel counts, strided rows, bias, ReLU, NaN; and the Winograd 3x3 convolution equals conv2d (odd sizes, batch norm + ReLU inside, strided rows); every variant: the CPU\'s best, AVX2, portable', function () {
    this.timeout(300000);
    const runs = runPassing('test/native/norm_gemm.cpp', variantEnvs());
    for (const r of [runs].flat()) console.log(`      ${r.stdout.trim().split('\n').filter((l) => l !== 'ok').join('; ')}`);
  });

  it('float16 training\'s loss scaling: unscaled gradients equal plain ones, an overflowing step is refused and halves the scale, clean steps double it', function () {
    this.timeout(300000);
    const r = runPassing('test/native/loss_scaler.cpp');
    console.log(`      ${r.stdout.trim().split('\n')[0]}`);
  });

  it('training recipes: MixUp and CutMix equal torchvision\'s formulas (draws replayed), both set picks one per batch, lambda has Beta(alpha, alpha)\'s moments; the weight average follows avg = decay * avg + (1 - decay) * w after a copying first update, swaps back exactly, saves and loads', function () {
    this.timeout(300000);
    const r = runPassing('test/native/recipes.cpp');
    console.log(`      ${r.stdout.trim().split('\n').filter((l) => !l.startsWith('ok')).join('\n      ')}`);
  });

  it('image augmentation: the 14 operations of TrivialAugmentWide and RandAugment equal torchvision\'s formulas (uint8, nearest, zero fill), both policies draw op, magnitude bin and sign in torchvision\'s order from its tables, RandomErasing erases torchvision\'s box', function () {
    this.timeout(300000);
    const r = runPassing('test/native/augment.cpp');
    console.log(`      ${r.stdout.trim().split('\n').filter((l) => !l.startsWith('ok')).join('\n      ')}`);
  });

  it('the CPU allocator: in a training run large blocks are reused at the same address, freed neighbours merge, contents survive churn from 4 threads, memory goes back after the run', function () {
    this.timeout(120000);
    const r = runPassing('test/native/allocator.cpp');
    console.log(`      ${r.stdout.trim().split('\n')[0]}`);
  });

  it('the job token: HMAC-SHA1 equals RFC 2202\'s vectors; the gate relays a process with the right token to the store both ways and refuses a wrong one without echoing either', function () {
    this.timeout(300000);
    runPassing('test/native/store_net.cpp');
  });

  it('without gloo\'s headers the distributed part still compiles: available() explains what to install, init throws DistributedError', function () {
    this.timeout(300000);
    const r = runPassing('test/native/distributed_unavailable.cpp');
    assert.match(r.stdout, /^init: this densetorch addon was built without distributed support/m);
  });
});
