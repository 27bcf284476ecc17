'use strict';
// Training-recipe options, each against its formula: label smoothing (torch.nn.CrossEntropyLoss's
// label_smoothing), total-norm gradient clipping (torch.nn.utils.clip_grad_norm_), linear warm-up
// per step (torchvision's LinearLR), the weight average (torchvision's ExponentialMovingAverage),
// gradient accumulation, and MixUp / CutMix inside fit (their batch formulas: test/native/recipes.cpp).
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

/** The first `n` samples of the batch as a data set. */
function firstSamples(images, labels, n) {
  return dt.datasets.fromTensors(dt.tensor(images.toArray().slice(0, n * 64), [n, 1, 8, 8]),
    dt.tensor(Array.from(labels.toArray(), Number).slice(0, n), [n], { dtype: 'int64' }));
}

/** Copies of every state-dict entry (the state dict's tensors share the model's memory). */
function snapshot(m) {
  return Object.fromEntries(Object.entries(m.stateDict()).map(([k, t]) => [k, Array.from(t.toArray(), Number)]));
}

const PLAIN_SGD = { type: 'sgd', lr: 0.1, momentum: 0, nesterov: false, weightDecay: 0 };

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

  it('ema: the first update copies the weights, then avg = decay * avg + (1 - decay) * w (parameters and statistics; counters copied); evaluated beside the raw weights; the model ends with the average or, with weights: raw, without it', async () => {
    const { images, labels, data } = batch();
    const half = N / 2;
    const opts = { epochs: 1, batchSize: half, shuffle: false, optimizer: PLAIN_SGD };
    const one = model();
    await one.fit(firstSamples(images, labels, half), opts); // the weights after the first step
    const w1 = snapshot(one);
    const raw = model();
    await raw.fit(data, { ...opts, ema: { decay: 0.5, weights: 'raw' } });
    const w2 = snapshot(raw);
    const averaged = model();
    let logs;
    await averaged.fit(data, { ...opts, ema: { decay: 0.5 }, validationData: data, onEpochEnd: (e) => { logs = e; } });
    const got = snapshot(averaged);
    let worst = 0;
    for (const [name, v1] of Object.entries(w1)) {
      const integer = name.endsWith('num_batches_tracked');
      for (let i = 0; i < v1.length; i++) {
        const want = integer ? w2[name][i] : 0.5 * v1[i] + 0.5 * w2[name][i];
        worst = Math.max(worst, Math.abs(got[name][i] - want));
      }
    }
    assert.ok(worst <= 1e-6, `the average differs from the formula by ${worst}`);
    assert.ok(Object.keys(w1).some((k) => w1[k].some((v, i) => Math.abs(v - w2[k][i]) > 1e-4)), 'the two steps moved the weights');
    assert.equal(typeof logs.emaValAccuracy, 'number');
    assert.equal(typeof logs.emaValLoss, 'number');
    const evalAvg = await averaged.evaluate(data);
    assert.ok(Math.abs(evalAvg.loss - logs.emaValLoss) <= 1e-6, `the logged EMA loss ${logs.emaValLoss} is the final model's ${evalAvg.loss}`);
    await assert.rejects(model().fit(data, { ema: { decay: 1 } }), { name: 'RangeError', message: /ema.decay to be a number in \(0, 1\)/ });
    await assert.rejects(model().fit(data, { ema: { decay: 0.9, weights: 'best' } }), { name: 'TypeError', message: /ema.weights to be 'ema' or 'raw'/ });
  });

  it('accumulateSteps: one update with the mean of the batches\' gradients (each batch normalised on its own), reported once per update', async () => {
    const { images, labels, data } = batch();
    const half = N / 2;
    const reference = model().train();
    const a = firstSamples(images, labels, half);
    const x = images.toArray();
    const y = Array.from(labels.toArray(), Number);
    const second = {
      images: dt.tensor(x.slice(half * 64), [half, 1, 8, 8]), labels: dt.tensor(y.slice(half), [half], { dtype: 'int64' }),
    };
    const g1 = reference.lossAndGrads(a.images, a.labels).grads;
    const g2 = reference.lossAndGrads(second.images, second.labels).grads;
    const m = model();
    const before = snapshot(m);
    const reports = [];
    await m.fit(data, { epochs: 1, batchSize: half, shuffle: false, accumulateSteps: 2, optimizer: PLAIN_SGD, onBatchEnd: (b) => reports.push(b) });
    const after = snapshot(m);
    let worst = 0;
    for (const name of Object.keys(g1)) {
      const a1 = g1[name].toArray(), a2 = g2[name].toArray();
      for (let i = 0; i < a1.length; i++) worst = Math.max(worst, Math.abs(after[name][i] - (before[name][i] - 0.1 * (a1[i] + a2[i]) / 2)));
    }
    assert.ok(worst <= 1e-6, `weights differ from w - lr * (g1 + g2) / 2 by ${worst}`);
    assert.equal(reports.length, 1, 'one report per update');
    assert.equal(reports[0].batch, 2);
    await assert.rejects(model().fit(data, { accumulateSteps: 0 }), { name: 'RangeError', message: /accumulateSteps/ });
  });

  it('mixup and cutmix in fit: seeded (the same seed gives the same weights, another seed other draws), they change training, and bad alphas are refused', async () => {
    const { data } = batch();
    const run = async (options) => {
      const m = model();
      await m.fit(data, { epochs: 2, batchSize: N / 2, shuffle: false, optimizer: PLAIN_SGD, ...options });
      return snapshot(m)['classifier.weight'];
    };
    const plain = await run({ seed: 1 });
    for (const mix of [{ mixup: { alpha: 0.2 } }, { cutmix: { alpha: 1 } }, { mixup: { alpha: 0.2 }, cutmix: { alpha: 1 } }]) {
      const a = await run({ seed: 1, ...mix });
      const b = await run({ seed: 1, ...mix });
      const c = await run({ seed: 2, ...mix });
      assert.deepEqual(a, b, `${JSON.stringify(mix)}: same seed, same weights`);
      assert.notDeepEqual(a, plain, `${JSON.stringify(mix)}: mixing changes training`);
      assert.notDeepEqual(a, c, `${JSON.stringify(mix)}: another seed, other draws`);
      assert.ok(a.every(Number.isFinite));
    }
    await assert.rejects(model().fit(data, { mixup: { alpha: 0 } }), { name: 'RangeError', message: /mixup.alpha to be a number > 0/ });
    await assert.rejects(model().fit(data, { cutmix: { beta: 1 } }), { name: 'TypeError', message: /Unknown option 'beta'/ });
  });
});
