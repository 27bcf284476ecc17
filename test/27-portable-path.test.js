'use strict';
// The path a CPU without AVX2 takes: every hand-written kernel off (DENSETORCH_CPU_CAPABILITY=
// default), so the model runs LibTorch's convolutions and the per-pixel passes' baseline code.
// The model tests run a second time so, in a child mocha process.
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { ROOT } = require('./helpers');

const PORTABLE = { ...process.env, DENSETORCH_CPU_CAPABILITY: 'default' };
const MODEL_TESTS = ['test/04-densenet.test.js', 'test/05-memory-efficient.test.js', 'test/06-weights.test.js', 'test/07-training.test.js', 'test/15-serving.test.js'];

describe('the portable path (no hand-written kernel)', () => {
  it('DENSETORCH_CPU_CAPABILITY=default selects no ISA kernel: every convolution is LibTorch\'s', function () {
    this.timeout(60000);
    const r = spawnSync(process.execPath, ['-e', "console.log(JSON.stringify(require('./dist/native').addon().kernels()))"],
      { cwd: ROOT, env: PORTABLE, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const k = JSON.parse(r.stdout.trim().split('\n').pop());
    assert.deepEqual({ capability: k.capability, normGemm: k.normGemm, winograd: k.winograd, conv3x3WeightGrad: k.conv3x3WeightGrad },
      { capability: 'default', normGemm: 'libtorch', winograd: 'libtorch', conv3x3WeightGrad: 'libtorch' });
    console.log(`      this CPU: ${k.cpu}; under the portable path: ${JSON.stringify(k)}`);
  });

  it(`the model tests pass on the portable path (${MODEL_TESTS.map((f) => path.basename(f)).join(', ')})`, function () {
    this.timeout(1200000);
    const mocha = path.join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js');
    const r = spawnSync(process.execPath, [mocha, '--no-config', '--timeout', '300000', '--node-option', 'expose-gc', '--reporter', 'dot', ...MODEL_TESTS],
      { cwd: ROOT, env: PORTABLE, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    const summary = (r.stdout.match(/\d+ passing[^\n]*(\n\s*\d+ (pending|failing)[^\n]*)*/) || [''])[0].replace(/\s+/g, ' ');
    assert.equal(r.status, 0, `${r.stdout.slice(-6000)}\n${r.stderr.slice(-3000)}`);
    console.log(`      ${summary}`);
  });
});
