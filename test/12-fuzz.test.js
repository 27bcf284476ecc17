'use strict';
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { ROOT } = require('./helpers');

describe('fuzzing the weight-file readers', () => {
  it('10,000 mutated .safetensors and .pth files: each loads or raises a WeightsError; no crash, no hang', function () {
    this.timeout(420000); // about 3 minutes on a 2-core AMD EPYC
    // A child process, so that a crash is a failed test with the input left on disk.
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'fuzz-weights.js'), '--cases', '10000', '--seconds', '300', '--seed', '7'], {
      cwd: ROOT, encoding: 'utf8', timeout: 400000,
    });
    assert.equal(r.signal, null, `fuzzer killed by ${r.signal}\n${r.stdout}\n${r.stderr}`);
    const summary = r.stdout.split('\n').find((l) => l.startsWith('fuzzed '));
    console.log(`      ${summary}`);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(summary, /^fuzzed 10000 weight files in [\d.]+ s: \d+ loaded, \d+ rejected with WeightsError, 0 finding\(s\)$/);
  });
});
