#!/usr/bin/env node
// Which 3x3 convolutions a CPU should run: densetorch's own kernels (Winograd's F(2x2, 3x3)
// forward and input gradient, Winograd's or the nine taps' weight gradient: AVX2 variants) or
// LibTorch's (oneDNN, which on an AVX-512 CPU runs its AVX-512 convolutions). The same build in
// alternating fresh processes with DENSETORCH_WINOGRAD=1 (own) and =0 (LibTorch), whole models
// (the 1x1 convolutions run densetorch's best variant either way). On AVX2 CPUs the own kernels
// are the default (measured there, native/core/convolutions.cpp); on AVX-512 CPUs this decides
// kOwnConv3x3OnAvx512. Prints each pair and the median ratio with a distribution-free 95%
// interval; writes bench/results/conv3x3-isa-<date>.json.
//   node bench/conv3x3-isa.js [--pairs 4] [--only train|infer]
'use strict';
const { abCases, flag, machine, writeResult } = require('./common.js');

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

const result = { date: new Date().toISOString(), ...machine(), threads, pairs };
result.cases = abCases(CASES, { threads, pairs, a: { name: 'own', env: { DENSETORCH_WINOGRAD: '1' } }, b: { name: 'libtorch', env: { DENSETORCH_WINOGRAD: '0' } } });
writeResult('conv3x3-isa', result);
