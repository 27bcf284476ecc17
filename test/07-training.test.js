'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const dt = require('..');

/** 4 classes of 8x8 grey images: class c lights quadrant c, plus noise. Linearly separable. */
function quadrants(n, seed = 1) {
  let s = seed;
  const rand = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const images = new Float32Array(n * 64);
  const labels = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 4;
    labels[i] = BigInt(c);
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        const q = (y < 4 ? 0 : 2) + (x < 4 ? 0 : 1);
        images[i * 64 + y * 8 + x] = (q === c ? 1 : 0) + 0.3 * (rand() - 0.5);
      }
    }
  }
  return dt.datasets.fromTensors(dt.tensor(images, [n, 1, 8, 8]), dt.tensor(labels, [n]));
}

const tiny = (extra = {}) => new dt.DenseNet({ growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, stem: 'cifar', inChannels: 1, numClasses: 4, ...extra });

function weightsOf(model) {
  return Object.fromEntries(Object.entries(model.stateDict()).map(([k, t]) => [k, Array.from(t.toArray(), Number)]));
}

function tmp(name) {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-fit-')), name);
}

describe('training: fit and evaluate', () => {
  it('learns a small separable data set to >= 99% training accuracy', async () => {
    dt.manualSeed(0);
    const model = tiny();
    const data = quadrants(256);
    const history = await model.fit(data, { epochs: 8, batchSize: 32, optimizer: { type: 'adam', lr: 0.01 }, seed: 1 });
    const { loss, accuracy } = await model.evaluate(data);
    console.log(`      after 8 epochs: train accuracy ${accuracy}, loss ${loss.toFixed(4)}; per-epoch loss ${history.loss.map((l) => l.toFixed(3)).join(' ')}`);
    assert.ok(accuracy >= 0.99, `accuracy ${accuracy}`);
    assert.equal(history.epochs.length, 8);
    assert.ok(history.loss[7] < history.loss[0]);
  });

  for (const memoryEfficient of [false, true]) {
    it(`trains in bf16 (autocast)${memoryEfficient ? ', memory-efficient,' : ''} as well as in fp32, and predicts in bf16 close to fp32`, async () => {
      const data = quadrants(256);
      const results = {};
      for (const precision of ['fp32', 'bf16']) {
        dt.manualSeed(0);
        const model = tiny({ memoryEfficient });
        const history = await model.fit(data, { epochs: 8, batchSize: 32, optimizer: { type: 'adam', lr: 0.01 }, seed: 1, precision });
        results[precision] = { model, history, eval: await model.evaluate(data, { precision }) };
      }
      const { fp32, bf16 } = results;
      console.log(`      final loss fp32 ${fp32.history.loss[7].toFixed(4)} bf16 ${bf16.history.loss[7].toFixed(4)}; accuracy fp32 ${fp32.eval.accuracy} bf16 ${bf16.eval.accuracy}`);
      assert.ok(bf16.eval.accuracy >= 0.99, `bf16 accuracy ${bf16.eval.accuracy}`);
      assert.ok(Math.abs(bf16.history.loss[0] - fp32.history.loss[0]) < 0.05, 'the first epoch matches fp32 to bf16 rounding');
      for (const [name, w] of Object.entries(bf16.model.stateDict())) assert.ok(['float32', 'int64'].includes(w.dtype), `${name} stays ${w.dtype}`);
      const x = data.images;
      const a = (await fp32.model.predict(x)).toArray();
      const b = await fp32.model.predict(x, { precision: 'bf16' });
      assert.equal(b.dtype, 'float32');
      let worst = 0;
      let scale = 0;
      const bv = b.toArray();
      for (let i = 0; i < a.length; i++) {
        worst = Math.max(worst, Math.abs(a[i] - bv[i]));
        scale = Math.max(scale, Math.abs(a[i]));
      }
      console.log(`      predict bf16 vs fp32: max |difference| ${worst.toExponential(2)} (largest logit ${scale.toFixed(2)})`);
      assert.ok(worst <= 0.05 * scale, `bf16 logits differ by ${worst}`);
    });
  }

  it('evaluates and predicts in bf16 with the weights of the moment: loading new weights between calls gives what a fresh model with them gives', async () => {
    const data = quadrants(64);
    dt.manualSeed(0);
    const model = tiny();
    dt.manualSeed(1);
    const other = tiny();
    const before = await model.evaluate(data, { precision: 'bf16' });
    model.loadStateDict(other.stateDict());
    const after = await model.evaluate(data, { precision: 'bf16' });
    const expected = await other.evaluate(data, { precision: 'bf16' });
    assert.notEqual(before.loss, expected.loss, 'the two models differ');
    assert.equal(after.loss, expected.loss);
    // Training changes the weights in place (the same tensors): evaluation afterwards sees them.
    await model.fit(data, { epochs: 1, batchSize: 32, optimizer: { type: 'sgd', lr: 0.5 } });
    const trained = tiny();
    trained.loadStateDict(model.stateDict());
    assert.equal((await model.evaluate(data, { precision: 'bf16' })).loss, (await trained.evaluate(data, { precision: 'bf16' })).loss);
    assert.deepEqual((await model.predict(data.images, { precision: 'bf16' })).toArray(), (await trained.predict(data.images, { precision: 'bf16' })).toArray());
  });

  it('reports batches and epochs with loss, accuracy, lr and images per second; History has per-epoch columns', async () => {
    dt.manualSeed(0);
    const model = tiny();
    const batches = [];
    const epochs = [];
    const history = await model.fit(quadrants(64), {
      epochs: 2, batchSize: 16, schedule: { type: 'multistep', milestones: [0.5], gamma: 0.1 }, validationData: quadrants(32, 9),
      onBatchEnd: (b) => batches.push(b), onEpochEnd: (e) => epochs.push(e),
    });
    assert.equal(batches.length, 8);
    assert.deepEqual(batches.slice(0, 4).map((b) => [b.epoch, b.batch, b.batches]), [[1, 1, 4], [1, 2, 4], [1, 3, 4], [1, 4, 4]]);
    for (const b of batches) assert.ok(b.loss > 0 && b.accuracy >= 0 && b.accuracy <= 1 && b.imagesPerSecond > 0);
    assert.deepEqual(history.lr.map((x) => +x.toPrecision(6)), [0.1, 0.01], 'multistep at 50% of the run');
    assert.equal(epochs.length, 2);
    assert.deepEqual(history.epochs, epochs);
    for (const e of epochs) assert.ok(e.valLoss > 0 && e.valAccuracy >= 0 && e.seconds > 0);
    assert.deepEqual(Object.keys(history).sort(), ['accuracy', 'epochs', 'loss', 'lr', 'seconds', 'valAccuracy', 'valLoss']);
  });

  it('SGD with momentum, Nesterov and weight decay updates every parameter by PyTorch\'s formula over two steps', async () => {
    // Two batches of the same 16 images: the second step's gradient is the one-step model's.
    const one = quadrants(16);
    const both = dt.datasets.fromTensors(dt.tensor(new Float32Array([...one.images.toArray(), ...one.images.toArray()]), [32, 1, 8, 8]),
      dt.tensor(new BigInt64Array([...one.labels.toArray(), ...one.labels.toArray()]), [32]));
    const [lr, momentum, wd] = [0.1, 0.9, 1e-2];
    const optimizer = { type: 'sgd', lr, momentum, nesterov: true, weightDecay: wd };
    const options = { epochs: 1, batchSize: 16, shuffle: false, optimizer };
    dt.manualSeed(3);
    const a = tiny();
    const w0 = weightsOf(a);
    const b = tiny();
    b.loadStateDict(a.stateDict());
    const g0 = b.lossAndGrads(one.images, one.labels).grads;
    await b.fit(one, options); // one step: w1
    const w1 = weightsOf(b);
    const g1 = b.lossAndGrads(one.images, one.labels).grads;
    await a.fit(both, options); // two steps: w2
    const w2 = weightsOf(a);
    let worst = 0;
    for (const [name, grad0] of Object.entries(g0)) {
      const x0 = w0[name];
      const x1 = w1[name];
      const x2 = w2[name];
      const d0 = Array.from(grad0.toArray(), (g, i) => g + wd * x0[i]);
      const buf0 = d0;
      const d1 = Array.from(g1[name].toArray(), (g, i) => g + wd * x1[i]);
      const buf1 = buf0.map((v, i) => momentum * v + d1[i]);
      for (let i = 0; i < x0.length; i++) {
        const step1 = x0[i] - lr * (d0[i] + momentum * buf0[i]);
        const step2 = x1[i] - lr * (d1[i] + momentum * buf1[i]);
        worst = Math.max(worst, Math.abs(step1 - x1[i]), Math.abs(step2 - x2[i]));
      }
    }
    assert.ok(Object.keys(g0).length > 10);
    assert.ok(worst < 1e-5, `largest difference from the formula ${worst}`);
  });

  it('uses the cosine schedule', async () => {
    const h = await tiny().fit(quadrants(16), { epochs: 4, batchSize: 16, schedule: { type: 'cosine' }, optimizer: { type: 'sgd', lr: 0.2 } });
    assert.deepEqual(h.lr.map((x) => +x.toFixed(6)), [0.2, 0.170711, 0.1, 0.029289]);
  });

  it('is deterministic: same seed, data and thread count give identical weights', async () => {
    const run = async () => {
      dt.manualSeed(42);
      const m = tiny({ dropRate: 0.1 });
      await m.fit(quadrants(64), { epochs: 2, batchSize: 16, seed: 7 });
      return weightsOf(m);
    };
    assert.deepEqual(await run(), await run());
  });

  it('keeps the event loop free: a data source that needs a timer per batch lets fit finish', async () => {
    // Each batch is made only after a timer fired on the JS thread: were fit to block the event
    // loop, it would wait for its data forever (the test's timeout), not pass.
    dt.manualSeed(0);
    const m = new dt.DenseNet({ growthRate: 8, blockConfig: [3, 3], numInitFeatures: 16, stem: 'cifar', inChannels: 1, numClasses: 4 });
    const batch = (b) => {
      const labels = BigInt64Array.from({ length: 32 }, (_, i) => BigInt((b + i) % 4));
      const images = Float32Array.from({ length: 32 * 64 }, (_, j) => Math.sin(j + b));
      return { images: dt.tensor(images, [32, 1, 8, 8]), labels: dt.tensor(labels, [32]) };
    };
    let ticks = 0;
    const source = dt.datasets.fromAsyncIterable(async function* () {
      for (let b = 0; b < 8; b++) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        ticks += 1;
        yield batch(b);
      }
    }, { length: 256 });
    const history = await m.fit(source, { epochs: 1, batchSize: 32 });
    assert.equal(ticks, 8);
    assert.equal(history.loss.length, 1);
  });

  it('an AbortSignal stops training within one batch; the model stays usable', async () => {
    dt.manualSeed(0);
    const m = tiny();
    const controller = new AbortController();
    let afterAbort = 0;
    let aborted = false;
    const p = m.fit(quadrants(256), {
      epochs: 5, batchSize: 8, signal: controller.signal,
      onBatchEnd: (b) => {
        if (aborted) afterAbort++;
        if (b.epoch === 1 && b.batch === 5) {
          aborted = true;
          controller.abort();
        }
      },
    });
    await assert.rejects(p, (err) => err instanceof dt.AbortError && err.history.epochs.length === 0 && /aborted after 0 complete epoch/.test(err.message));
    assert.ok(afterAbort <= 2, `${afterAbort} batches ran after the abort`);
    assert.deepEqual(m.forward(quadrants(4).images).shape, [4, 4]);
    const again = await m.fit(quadrants(32), { epochs: 1, batchSize: 16 });
    assert.equal(again.epochs.length, 1);
  });

  it('rejects a second fit while one is running (BusyError), not a crash', async () => {
    const m = tiny();
    const first = m.fit(quadrants(128), { epochs: 1, batchSize: 8 });
    await assert.rejects(m.fit(quadrants(16), { epochs: 1 }), { name: 'BusyError', message: /the model is busy/ });
    await first;
  });

  it('trains two models at once in one process', async () => {
    dt.manualSeed(0);
    const a = tiny();
    const b = tiny();
    const [ha, hb] = await Promise.all([a.fit(quadrants(64), { epochs: 1, batchSize: 16 }), b.fit(quadrants(64), { epochs: 1, batchSize: 16 })]);
    assert.equal(ha.epochs.length + hb.epochs.length, 2);
  });

  it('stops with a TrainingError naming the epoch and batch when the loss becomes NaN', async () => {
    const images = new Float32Array(64 * 64).fill(0.5);
    images.fill(NaN, 40 * 64, 41 * 64); // sample 40 -> batch 3 of 16
    const data = dt.datasets.fromTensors(dt.tensor(images, [64, 1, 8, 8]), dt.tensor(Array.from({ length: 64 }, (_, i) => i % 4), [64], { dtype: 'int64' }));
    await assert.rejects(tiny().fit(data, { epochs: 2, batchSize: 16, shuffle: false }), {
      name: 'TrainingError',
      message: 'loss became NaN at epoch 1, batch 3 (try a lower learning rate)',
    });
  });

  it('an interrupted run resumed from its checkpoint ends with the same weights as an uninterrupted one', async () => {
    const data = quadrants(96);
    const options = { epochs: 4, batchSize: 16, seed: 3, schedule: { type: 'multistep' } };
    dt.manualSeed(11);
    const straight = tiny({ dropRate: 0.1 });
    await straight.fit(data, { ...options, checkpoint: { path: tmp('a.ckpt') } });

    dt.manualSeed(11);
    const interrupted = tiny({ dropRate: 0.1 });
    const file = tmp('b.ckpt');
    const controller = new AbortController();
    await assert.rejects(interrupted.fit(data, {
      ...options, checkpoint: { path: file }, signal: controller.signal,
      onBatchEnd: (b) => { if (b.epoch === 3 && b.batch === 2) controller.abort(); },
    }), dt.AbortError);
    const resumed = await interrupted.fit(data, { ...options, checkpoint: { path: file }, resumeFrom: file });
    assert.deepEqual(resumed.epochs.map((e) => e.epoch), [3, 4]);
    assert.deepEqual(weightsOf(interrupted), weightsOf(straight));
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['b.ckpt'], 'no temporary checkpoint left behind');
  });

  it("a run resumed inside an epoch (checkpoint.everySteps, resumeFrom 'auto') ends with the weights and epoch figures of an uninterrupted one", async () => {
    const data = quadrants(96);
    // Shuffled order, dropout and mixup: every generator the checkpoint must restore is in play.
    const options = { epochs: 4, batchSize: 16, seed: 3, mixup: { alpha: 0.4 }, schedule: { type: 'cosine', warmupEpochs: 1 } };
    dt.manualSeed(11);
    const straight = tiny({ dropRate: 0.1 });
    const expected = await straight.fit(data, options);

    dt.manualSeed(11);
    const interrupted = tiny({ dropRate: 0.1 });
    const file = tmp('steps.ckpt');
    const controller = new AbortController();
    let saved = 0;
    await assert.rejects(interrupted.fit(data, {
      ...options, checkpoint: { path: file, everySteps: 2 }, resumeFrom: 'auto', signal: controller.signal,
      onBatchEnd: (b) => {
        if (b.epoch === 3 && b.batch === 3) saved = fs.statSync(file).mtimeMs; // written after batch 2 (step 14)
        if (b.epoch === 3 && b.batch === 5) controller.abort();
      },
    }), dt.AbortError);
    assert.ok(saved > 0);
    const batchesSeen = [];
    const resumed = await interrupted.fit(data, {
      ...options, checkpoint: { path: file, everySteps: 2 }, resumeFrom: 'auto', onBatchEnd: (b) => batchesSeen.push(`${b.epoch}.${b.batch}`),
    });
    assert.equal(batchesSeen[0], '3.5', 'continues after the last checkpoint (epoch 3, batch 4)');
    assert.deepEqual(resumed.epochs.map((e) => e.epoch), [3, 4]);
    assert.deepEqual(weightsOf(interrupted), weightsOf(straight));
    for (const key of ['loss', 'accuracy']) assert.equal(resumed.epochs[0][key], expected.epochs[2][key], `epoch 3's ${key} counts the batches before the checkpoint`);
  });

  it('rejects a missing checkpoint with a TrainingError', async () => {
    await assert.rejects(tiny().fit(quadrants(16), { resumeFrom: '/nonexistent/x.ckpt' }), { name: 'TrainingError', message: /checkpoint \/nonexistent\/x\.ckpt does not exist/ });
  });

  const badOptions = [
    [{ batchSize: 0 }, RangeError, /Expected batchSize to be a positive integer but received 0/],
    [{ epochs: -1 }, RangeError, /Expected epochs to be a positive integer but received -1/],
    [{ optimizer: { type: 'rmsprop' } }, TypeError, /Expected optimizer\.type to be 'sgd', 'adam' or 'adamw' but received 'rmsprop'/],
    [{ optimizer: { type: 'sgd', lr: -1 } }, RangeError, /Expected optimizer\.lr to be a number > 0 but received -1/],
    [{ schedule: { type: 'multistep', milestones: [1.5] } }, RangeError, /Expected schedule\.milestones\[0\] to be a number in \(0, 1\)/],
    [{ schedule: 'linear' }, TypeError, /Expected schedule to be 'constant'/],
    [{ signal: {} }, TypeError, /Expected signal to be an AbortSignal but received an object of type Object/],
    [{ onBatchEnd: 3 }, TypeError, /Expected onBatchEnd to be a function/],
    [{ epoch: 3 }, TypeError, /Unknown fit option 'epoch'/],
    [{ validationData: [1] }, TypeError, /Expected validationData to be a Dataset/],
  ];
  for (const [options, ErrorClass, message] of badOptions) {
    it(`rejects fit options ${JSON.stringify(options)} with a ${ErrorClass.name}`, async () => {
      await assert.rejects(tiny().fit(quadrants(8), options), (err) => err instanceof ErrorClass && message.test(err.message));
    });
  }
});

describe('training: data sets', () => {
  it('rejects labels outside the model\'s classes', async () => {
    const data = dt.datasets.fromTensors(dt.tensor(new Float32Array(2 * 64), [2, 1, 8, 8]), dt.tensor([0, 7], [2], { dtype: 'int64' }));
    await assert.rejects(tiny().fit(data), { name: 'RangeError', message: 'labels must be in [0, 3] for a model with 4 classes, got labels from 0 to 7' });
  });

  const bad = [
    ['a length mismatch', () => dt.datasets.fromTensors(dt.tensor(new Float32Array(2 * 64), [2, 1, 8, 8]), dt.tensor([0, 1, 2], [3], { dtype: 'int64' })), RangeError, /Expected labels to have one entry per image \(2\) but received 3/],
    ['non-integer labels', () => dt.datasets.fromTensors(dt.tensor(new Float32Array(2 * 64), [2, 1, 8, 8]), dt.tensor([0, 1.5], [2])), TypeError, /Expected labels to be integers \(int64, int32 or uint8\) but received float32/],
    ['negative labels', () => dt.datasets.fromTensors(dt.tensor(new Float32Array(2 * 64), [2, 1, 8, 8]), dt.tensor([0, -1], [2], { dtype: 'int32' })), RangeError, /labels\[1\] is -1/],
    ['rank-3 images', () => dt.datasets.fromTensors(dt.tensor(new Float32Array(64), [1, 8, 8]), dt.tensor([0], [1], { dtype: 'int64' })), RangeError, /Expected images to have shape \[N, C, H, W\]/],
    ['a bad normalize', () => dt.datasets.fromTensors(dt.tensor(new Float32Array(64), [1, 1, 8, 8]), dt.tensor([0], [1], { dtype: 'int64' }), { normalize: { mean: [0, 0], std: [1, 1] } }), TypeError, /Expected options\.normalize\.mean to be 1 finite numbers \(one per channel\)/],
    ['an unknown augmentation', () => dt.datasets.fromTensors(dt.tensor(new Float32Array(64), [1, 1, 8, 8]), dt.tensor([0], [1], { dtype: 'int64' }), { augment: 'mixup' }), TypeError, /Expected options\.augment to be 'none', 'cifar', 'trivialaugment', 'randaugment' but received 'mixup'/],
  ];
  for (const [title, make, ErrorClass, message] of bad) {
    it(`fromTensors rejects ${title}`, () => {
      assert.throws(make, (err) => err instanceof ErrorClass && message.test(err.message));
    });
  }

  it('mnist(): the real digits of the mnist package, split 8,000 train / 2,000 test', () => {
    const train = dt.datasets.mnist();
    const test = dt.datasets.mnist({ split: 'test' });
    assert.equal(train.length, 8000);
    assert.equal(test.length, 2000);
    assert.deepEqual(train.imageShape, [1, 28, 28]);
    assert.equal(train.images.dtype, 'uint8');
    const counts = new Array(10).fill(0);
    for (const l of test.labels.toArray()) counts[Number(l)]++;
    const perDigit = Array.from({ length: 10 }, (_, d) => require(`mnist/src/digits/${d}.json`).data.length / 784);
    assert.deepEqual(counts, perDigit.map((n) => n - Math.round(n * 0.8)), 'the last 20% of every digit is test');
  });

  it('cifar10(dir) reads the binary format, and names the missing or malformed file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cifar-'));
    const record = (label, value) => Buffer.concat([Buffer.from([label]), Buffer.alloc(3072, value)]);
    for (let i = 1; i <= 5; i++) fs.writeFileSync(path.join(dir, `data_batch_${i}.bin`), Buffer.concat([record(i, 10 * i), record(9, 1)]));
    assert.throws(() => dt.datasets.cifar10(dir, { split: 'test' }), { name: 'DatasetError', message: new RegExp(`CIFAR-10 file ${dir}/test_batch\\.bin is missing`) });
    fs.writeFileSync(path.join(dir, 'test_batch.bin'), Buffer.alloc(100));
    assert.throws(() => dt.datasets.cifar10(dir, { split: 'test' }), { name: 'DatasetError', message: /has 100 bytes, not a multiple of 3073/ });
    const train = dt.datasets.cifar10(dir);
    assert.equal(train.length, 10);
    assert.equal(train.augment, 'cifar');
    assert.deepEqual(Array.from(train.labels.toArray(), Number), [1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
    assert.equal(train.images.toArray()[3072 * 2], 20);
    assert.throws(() => dt.datasets.cifar10(path.join(dir, 'nope')), { name: 'DatasetError', message: /does not exist; expected the binary version/ });
  });

  it("trains with the paper's CIFAR augmentation (random crop + flip) on the training thread", async () => {
    const n = 32;
    const images = new Uint8Array(n * 3 * 32 * 32).map((_, i) => i % 251);
    const data = dt.datasets.fromTensors(dt.tensor(images, [n, 3, 32, 32]), dt.tensor(Array.from({ length: n }, (_, i) => i % 10), [n], { dtype: 'int64' }), { augment: 'cifar', normalize: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] } });
    const h = await dt.densenetCifar({ depth: 10, growthRate: 4 }).fit(data, { epochs: 1, batchSize: 8 });
    assert.ok(Number.isFinite(h.loss[0]));
  });
});
