'use strict';
// Training-recipe options, each against its formula: label smoothing (torch.nn.CrossEntropyLoss's
// label_smoothing), total-norm gradient clipping (torch.nn.utils.clip_grad_norm_) and linear
// warm-up per step (torchvision's LinearLR).
const assert = require('node:assert/strict');
const dt = require('..');

const N = 8;
const K = 4;

/** A batch of N images (1 x 8 x 8) and labels, and a data set holding exactly it. */
function batch() {
  const images = dt.tensor(Float32Array.from({ length: N * 64 }, (_, i) => Math.sin(i * 0.7) + 0.2 * Math.cos(i * 0.05)), [N, 1, 8, 8]);
  const labels = dt.tensor(Array.from({ length: N }, (_, i) => i % K), [N], { dtype: 'int64' });
  return { images, labels, data: dt.datasets.fromTensors(images, labels) };
}

function model() {
  dt.manualSeed(3);
  return new dt.DenseNet({ growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, stem: 'cifar', inChannels: 1, numClasses: K });
}

/** The batch's mean cross-entropy against (1 - e) * onehot + e / K, from logits [N, K]. */
function smoothedLoss(logits, labels, e) {
  let total = 0;
  for (let n = 0; n < N; n++) {
    const row = Array.from(logits.subarray(n * K, (n + 1) * K));
    const m = Math.max(...row);
    const logZ = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    const logp = row.map((v) => v - logZ);
    total += -(1 - e) * logp[labels[n]] - (e / K) * logp.reduce((s, v) => s + v, 0);
  }
  return total / N;
}

describe('training recipes (each option against its formula)', () => {
  it('labelSmoothing: the reported loss is cross-entropy against (1 - e) * onehot + e / K (e = 0.1 and 0)', async () => {
    const { images, labels, data } = batch();
    const y = Array.from(labels.toArray(), Number);
    for (const e of [0.1, 0]) {
      const m = model();
      // fit's first forward: training mode, batch statistics, the same weights and batch.
      const logits = m.train().forward(images).toArray();
      let reported;
      await m.fit(data, { epochs: 1, batchSize: N, shuffle: false, labelSmoothing: e, optimizer: { type: 'sgd', lr: 0.01 }, onBatchEnd: (b) => { reported = b.loss; } });
      const want = smoothedLoss(logits, y, e);
      assert.ok(Math.abs(reported - want) <= 1e-5 * Math.max(1, want), `e = ${e}: reported ${reported}, formula ${want}`);
    }
    await assert.rejects(model().fit(data, { labelSmoothing: 1 }), { name: 'RangeError', message: /labelSmoothing to be a number in \[0, 1\)/ });
  });

  it('clipGradNorm: one plain SGD step moves the weights by -lr * g * min(1, max / |g|), |g| over all parameters', async () => {
    const { images, labels, data } = batch();
    const lr = 0.1;
    const reference = model();
    const { grads } = reference.train().lossAndGrads(images, labels);
    let sq = 0;
    for (const g of Object.values(grads)) for (const v of g.toArray()) sq += v * v;
    const norm = Math.sqrt(sq);
    for (const max of [norm / 4, norm * 4]) {
      const m = model();
      // Copies: the state dict's tensors share the parameters' memory.
      const before = Object.fromEntries(Object.keys(grads).map((k) => [k, Float32Array.from(m.stateDict()[k].toArray())]));
      await m.fit(data, { epochs: 1, batchSize: N, shuffle: false, clipGradNorm: max, optimizer: { type: 'sgd', lr, momentum: 0, nesterov: false, weightDecay: 0 } });
      const after = m.stateDict();
      const scale = Math.min(1, max / (norm + 1e-6));
      let worst = 0;
      for (const [name, g] of Object.entries(grads)) {
        const w0 = before[name], w1 = after[name].toArray(), gv = g.toArray();
        for (let i = 0; i < gv.length; i++) worst = Math.max(worst, Math.abs(w1[i] - (w0[i] - lr * scale * gv[i])));
      }
      assert.ok(worst <= 1e-6, `max ${max.toFixed(4)} (|g| ${norm.toFixed(4)}): weights differ from the formula by ${worst}`);
    }
    await assert.rejects(model().fit(data, { clipGradNorm: 0 }), { name: 'RangeError', message: /clipGradNorm to be a number > 0/ });
  });

  it('schedule warm-up: the rate rises linearly per step from warmupStartFactor to the schedule\'s over warmupEpochs, then follows it', async () => {
    const { data } = batch();
    const m = model();
    const lrs = [];
    // 2 batches per epoch, 3 epochs, cosine from 0.1 after a 1.5-epoch warm-up from 0.2 of it.
    await m.fit(data, {
      epochs: 3, batchSize: N / 2, shuffle: false, optimizer: { type: 'sgd', lr: 0.1 },
      schedule: { type: 'cosine', warmupEpochs: 1.5, warmupStartFactor: 0.2 }, onBatchEnd: (b) => lrs.push(b.lr),
    });
    const want = [];
    for (let epoch = 0; epoch < 3; epoch++) {
      const cosine = 0.1 * 0.5 * (1 + Math.cos((Math.PI * epoch) / 3));
      for (let b = 0; b < 2; b++) {
        const t = epoch * 2 + b;
        want.push(cosine * (t < 3 ? 0.2 + (0.8 * t) / 3 : 1));
      }
    }
    assert.equal(lrs.length, 6);
    lrs.forEach((lr, i) => assert.ok(Math.abs(lr - want[i]) <= 1e-12, `step ${i}: ${lr} vs ${want[i]}`));
    await assert.rejects(model().fit(data, { schedule: { type: 'constant', warmupStartFactor: 0 } }), { name: 'RangeError', message: /warmupStartFactor to be a number in \(0, 1\]/ });
  });
});
