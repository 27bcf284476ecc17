'use strict';
const assert = require('node:assert/strict');
const dt = require('..');
const { randomImages } = require('./helpers');

/** max |a - b| / max |b| over a tensor (0 when both are zero). */
function relativeDifference(a, b) {
  const x = a.toArray();
  const y = b.toArray();
  assert.equal(x.length, y.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < x.length; i++) {
    diff = Math.max(diff, Math.abs(Number(x[i]) - Number(y[i])));
    scale = Math.max(scale, Math.abs(Number(y[i])));
  }
  return scale === 0 ? diff : diff / scale;
}

function compareModes(args, inputShape, { steps = 2, seed = 11 } = {}) {
  dt.manualSeed(seed);
  const naive = new dt.DenseNet({ ...args, memoryEfficient: false });
  const efficient = new dt.DenseNet({ ...args, memoryEfficient: true });
  efficient.loadStateDict(naive.stateDict());
  const [n, c, h, w] = inputShape;
  let worst = { what: '', value: 0 };
  const note = (what, value) => {
    if (value > worst.value) worst = { what, value };
    assert.ok(value <= 1e-5, `${what}: max relative difference ${value}`);
  };
  for (let step = 0; step < steps; step++) {
    const x = randomImages(n, c, h, w, 100 + step);
    const labels = dt.tensor(Array.from({ length: n }, (_, i) => (i * 7 + step) % args.numClasses), [n], { dtype: 'int64' });
    dt.manualSeed(1000 + step); // same dropout masks in both runs
    const a = naive.lossAndGrads(x, labels);
    dt.manualSeed(1000 + step);
    const b = efficient.lossAndGrads(x, labels);
    note(`step ${step} output`, relativeDifference(b.output, a.output));
    assert.ok(Math.abs(a.loss - b.loss) <= 1e-5 * Math.abs(a.loss), `loss ${a.loss} vs ${b.loss}`);
    assert.deepEqual(Object.keys(b.grads).sort(), Object.keys(a.grads).sort());
    for (const name of Object.keys(a.grads)) note(`step ${step} grad ${name}`, relativeDifference(b.grads[name], a.grads[name]));
  }
  const sa = naive.stateDict();
  const sb = efficient.stateDict();
  for (const name of Object.keys(sa)) {
    if (/running_|num_batches/.test(name)) note(`buffer ${name}`, relativeDifference(sb[name], sa[name]));
  }
  assert.equal(Number(sb['features.denseblock1.denselayer1.norm1.num_batches_tracked'].toArray()[0]), steps);
  return { worst, grads: Object.keys(sa).length };
}

describe('memory-efficient mode equals naive mode', () => {
  const cases = [
    ['DenseNet-BC, CIFAR stem', { growthRate: 6, blockConfig: [3, 3, 3], numInitFeatures: 12, stem: 'cifar', numClasses: 10 }, [4, 3, 16, 16]],
    ['plain layers (no bottleneck), no compression', { growthRate: 6, blockConfig: [4, 4], numInitFeatures: 16, bnSize: 0, compression: 1, stem: 'cifar', numClasses: 5 }, [3, 3, 12, 12]],
    ['ImageNet stem, 4 blocks', { growthRate: 8, blockConfig: [2, 3, 2, 2], numInitFeatures: 16, numClasses: 6 }, [2, 3, 64, 64]],
    ['with dropout', { growthRate: 6, blockConfig: [3, 3], numInitFeatures: 12, stem: 'cifar', numClasses: 4, dropRate: 0.2 }, [4, 3, 16, 16]],
  ];
  for (const [title, args, shape] of cases) {
    it(`${title}: outputs, every parameter gradient and BN statistics within 1e-5 (train mode, 2 steps)`, () => {
      const { worst } = compareModes(args, shape);
      console.log(`      worst: ${worst.what} = ${worst.value.toExponential(2)}`);
    });
  }

  it('eval-mode outputs are identical', () => {
    dt.manualSeed(3);
    const args = { growthRate: 6, blockConfig: [3, 3], numInitFeatures: 12, stem: 'cifar', numClasses: 4 };
    const naive = new dt.DenseNet(args).eval();
    const efficient = new dt.DenseNet({ ...args, memoryEfficient: true }).eval();
    efficient.loadStateDict(naive.stateDict());
    const x = randomImages(2, 3, 16, 16);
    assert.equal(relativeDifference(efficient.forward(x), naive.forward(x)), 0);
  });
});
