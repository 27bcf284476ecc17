#!/usr/bin/env node
// Which implementation an op should run on this CPU, by whole models in alternating fresh
// processes of the same build (the sides differ by environment only). Prints each pair and the
// median ratio with a distribution-free 95% interval; writes bench/results/kernel-isa-<op>-<date>.json.
//   node bench/kernel-isa.js --op 3x3 [--pairs 4] [--only train|infer]
//     densetorch's own 3x3 kernels (Winograd's F(2x2, 3x3) forward and input gradient, Winograd's
//     or the nine taps' weight gradient: AVX2 variants) against LibTorch's (oneDNN), with
//     DENSETORCH_WINOGRAD=1 and =0 (the 1x1 convolutions run densetorch's best variant either
//     way). On AVX2 CPUs the own kernels are the default; on AVX-512 CPUs this decides
//     kOwnConv3x3OnAvx512 (native/core/convolutions.cpp).
//   node bench/kernel-isa.js --op 1x1
//     the 1x1 convolution with batch norm + ReLU inside (norm_gemm) on an AVX-512 CPU: its
//     AVX-512 variant against its AVX2 variant (DENSETORCH_CPU_CAPABILITY=avx2) and against
//     LibTorch's (=default), with the 3x3 convolutions on LibTorch throughout.
'use strict';
const { abCases, flag, machine, writeResult } = require('./common.js');

const op = flag('op', '3x3');
const pairs = Number(flag('pairs', 4));
const only = flag('only', '');
const threads = Number(process.env.THREADS || 2);
const CASES = [
  { name: 'DenseNet-BC-100 train b64 naive', model: 'cifar', depth: 100, growthRate: 12, size: 32, classes: 10, batch: 64, mode: 'train', memoryEfficient: false, warmup: 2, steps: 5 },
  { name: 'DenseNet-121 train b16 naive', model: 'densenet121', size: 224, classes: 1000, batch: 16, mode: 'train', memoryEfficient: false, warmup: 2, steps: 4 },
  { name: 'DenseNet-BC-100 infer b256', model: 'cifar', depth: 100, growthRate: 12, size: 32, classes: 10, batch: 256, mode: 'infer', memoryEfficient: false, warmup: 2, steps: 5 },
  { name: 'DenseNet-121 infer b32', model: 'densenet121', size: 224, classes: 1000, batch: 32, mode: 'infer', memoryEfficient: false, warmup: 2, steps: 5 },
  { name: 'DenseNet-121 infer b1', model: 'densenet121', size: 224, classes: 1000, batch: 1, mode: 'infer', memoryEfficient: false, warmup: 5, steps: 20 },
].filter((c) => !only || c.mode === only);

const result = { date: new Date().toISOString(), ...machine(), threads, pairs, op };
if (op === '3x3') {
  result.cases = abCases(CASES, { threads, pairs, a: { name: 'own', env: { DENSETORCH_WINOGRAD: '1' } }, b: { name: 'libtorch', env: { DENSETORCH_WINOGRAD: '0' } } });
} else if (op === '1x1') {
  const avx512 = { name: 'avx512', env: { DENSETORCH_WINOGRAD: '0' } };
  result.againstAvx2 = abCases(CASES, { threads, pairs, a: avx512, b: { name: 'avx2', env: { DENSETORCH_CPU_CAPABILITY: 'avx2', DENSETORCH_WINOGRAD: '0' } } });
  result.againstLibtorch = abCases(CASES, { threads, pairs, a: avx512, b: { name: 'libtorch', env: { DENSETORCH_CPU_CAPABILITY: 'default' } } });
} else {
  throw new Error(`--op must be 3x3 or 1x1, got '${op}'`);
}
writeResult(`kernel-isa-${op}`, result);
