'use strict';
// densetorch's run-time switches (docs/configuration.md): a value that is not understood is
// reported once on stderr and the default applies; understood values take effect.
const assert = require('node:assert/strict');
const { runNode } = require('./helpers');

/** Logits of a fixed input through a small CIFAR DenseNet-BC, in a child with `env`. */
function logitsWith(env) {
  const r = runNode(`
    const dt = require('.');
    dt.manualSeed(3);
    const m = dt.densenetCifar({ depth: 16, growthRate: 16, numClasses: 4 }).eval();
    const x = dt.tensor(Array.from({ length: 2 * 3 * 16 * 16 }, (_, i) => Math.sin(i)), [2, 3, 16, 16]);
    console.log(JSON.stringify(Array.from(m.forward(x).toArray())));
  `, { env });
  assert.equal(r.status, 0, r.stderr);
  return { logits: JSON.parse(r.stdout.trim().split('\n').pop()), stderr: r.stderr };
}

describe('environment switches', () => {
  it('an unknown DENSETORCH_CPU_CAPABILITY, DENSETORCH_WINOGRAD or DENSETORCH_FUSED value is reported on stderr and the default runs (same logits)', function () {
    this.timeout(120000);
    const plain = logitsWith({});
    assert.doesNotMatch(plain.stderr, /densetorch: ignoring/);
    const bad = logitsWith({ DENSETORCH_CPU_CAPABILITY: 'avx1024', DENSETORCH_WINOGRAD: 'sometimes', DENSETORCH_FUSED: 'maybe' });
    assert.match(bad.stderr, /densetorch: ignoring DENSETORCH_CPU_CAPABILITY='avx1024' \(expected one of default, avx2, avx512\)/);
    assert.match(bad.stderr, /densetorch: ignoring DENSETORCH_WINOGRAD='sometimes' \(expected one of auto, 1, 0/);
    assert.match(bad.stderr, /densetorch: ignoring DENSETORCH_FUSED='maybe' \(expected 1 or 0\); using 1/);
    assert.deepEqual(bad.logits, plain.logits);
  });

  it('understood values take effect quietly: DENSETORCH_FUSED=0 runs the layer-by-layer blocks (same logits within 1e-5), DENSETORCH_NO_THP=0 and =1 are both understood', function () {
    this.timeout(120000);
    const plain = logitsWith({});
    const layered = logitsWith({ DENSETORCH_FUSED: 'off', DENSETORCH_NO_THP: '0' });
    assert.doesNotMatch(layered.stderr, /densetorch: ignoring/);
    assert.equal(layered.logits.length, plain.logits.length);
    for (let i = 0; i < plain.logits.length; i++) assert.ok(Math.abs(layered.logits[i] - plain.logits[i]) <= 1e-5 * Math.max(1, Math.abs(plain.logits[i])), `logit ${i}`);
    assert.doesNotMatch(logitsWith({ DENSETORCH_NO_THP: '1', DENSETORCH_SYSTEM_MALLOC: 'no' }).stderr, /densetorch: ignoring/);
  });
});
