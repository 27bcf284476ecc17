'use strict';
// Serving: concurrent inference calls on one model queue instead of failing; the dynamic batcher.
const assert = require('node:assert/strict');
const dt = require('..');
const { maxAbsDiff } = require('./helpers');

function tiny() {
  dt.manualSeed(3);
  return new dt.DenseNet({
    growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, bnSize: 2, compression: 0.5, dropRate: 0,
    numClasses: 5, inChannels: 3, stem: 'cifar', memoryEfficient: false,
  });
}

function image(seed, n = 1, size = 8) {
  const data = new Float32Array(n * 3 * size * size);
  let s = seed * 7919 + 1;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    data[i] = s / 2147483648 - 0.5;
  }
  return dt.tensor(data, [n, 3, size, size]);
}

/** A model whose inference takes a while (so that calls pile up behind it). */
function slowModel() {
  dt.manualSeed(4);
  return dt.densenetCifar({ depth: 40, growthRate: 12 });
}

function quadrants(n) {
  const images = new Float32Array(n * 3 * 8 * 8);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) labels[i] = i % 5;
  return dt.datasets.fromTensors(dt.tensor(images, [n, 3, 8, 8]), dt.tensor(labels, [n], { dtype: 'int32' }));
}

describe('concurrent inference on one model', () => {
  it('50 concurrent predict() calls all fulfil, in order, each equal to its one-at-a-time result', async () => {
    const m = tiny().eval();
    const inputs = Array.from({ length: 50 }, (_, i) => image(i, 1 + (i % 3)));
    const alone = [];
    for (const x of inputs) alone.push(await m.predict(x));
    const settled = [];
    const together = await Promise.all(inputs.map((x, i) => m.predict(x).then((out) => {
      settled.push(i);
      return out;
    })));
    assert.deepEqual(settled, inputs.map((_, i) => i), 'settled in call order');
    together.forEach((out, i) => {
      assert.deepEqual(out.shape, [1 + (i % 3), 5]);
      assert.ok(maxAbsDiff(out, alone[i]) <= 1e-5, `call ${i}`);
    });
  });

  it('evaluate() and save() wait in the same queue as predict()', async () => {
    const m = tiny().eval();
    const data = quadrants(20);
    const results = await Promise.all([m.predict(image(1)), m.evaluate(data), m.predict(image(2)), m.evaluate(data)]);
    assert.deepEqual(results[0].shape, [1, 5]);
    assert.equal(typeof results[1].loss, 'number');
    assert.deepEqual(results[1], results[3]);
  });

  it('keeps training mode while a predict() runs (isTraining answers without racing the worker)', async () => {
    const m = slowModel().train();
    const pending = m.predict(image(1, 16, 32));
    for (let i = 0; i < 200; i++) assert.equal(m.training, true);
    await pending;
    assert.equal(m.training, true);
  });

  it('fit() while inference calls are queued is a BusyError; predict() while fit runs is a BusyError', async () => {
    const m = slowModel();
    const calls = [m.predict(image(1, 8, 32)), m.predict(image(2, 8, 32))];
    await assert.rejects(m.fit(quadrants(8), { epochs: 1 }), { name: 'BusyError', message: /2 predict\/evaluate\/save call\(s\) are queued or running/ });
    await Promise.all(calls);
    const small = tiny();
    const fitting = small.fit(quadrants(64), { epochs: 1, batchSize: 8 });
    await assert.rejects(small.predict(image(3)), { name: 'BusyError', message: /predict\(\) refused: the model is busy with a running fit/ });
    await fitting;
    assert.deepEqual((await small.predict(image(3))).shape, [1, 5]);
  });

  it('refuses a call past maxQueue waiting calls with a QueueFullError', async () => {
    const m = slowModel();
    const x = image(1, 8, 32);
    const first = m.predict(x, { maxQueue: 2 }); // runs
    const second = m.predict(x, { maxQueue: 2 }); // waits (1)
    const third = m.predict(x, { maxQueue: 2 }); // waits (2)
    await assert.rejects(m.predict(x, { maxQueue: 2 }), (err) => {
      assert.ok(err instanceof dt.QueueFullError);
      assert.ok(err instanceof dt.DensetorchError);
      assert.equal(err.maxQueue, 2);
      assert.match(err.message, /predict\(\) refused: 2 requests are already waiting for this model \(maxQueue 2\)/);
      return true;
    });
    await Promise.all([first, second, third]);
  });

  it('an aborted waiting call is removed from the queue; the others fulfil', async () => {
    const m = slowModel();
    const x = image(1, 8, 32);
    const controller = new AbortController();
    const first = m.predict(x);
    const second = m.predict(x, { signal: controller.signal });
    const third = m.predict(x);
    controller.abort();
    await assert.rejects(second, { name: 'RequestAbortedError', message: 'predict() was aborted before it ran' });
    const [a, c] = await Promise.all([first, third]);
    assert.equal(maxAbsDiff(a, c), 0);
    await assert.rejects(m.predict(x, { signal: AbortSignal.abort() }), { name: 'RequestAbortedError' });
  });

  it('checks predict() options: unknown keys, signal and maxQueue', async () => {
    const m = tiny();
    await assert.rejects(m.predict(image(1), { batchsize: 2 }), { name: 'TypeError', message: /Unknown option 'batchsize' of predict\(\)/ });
    await assert.rejects(m.predict(image(1), { signal: 'stop' }), { name: 'TypeError', message: /Expected options.signal to be an AbortSignal but received 'stop' of type string/ });
    await assert.rejects(m.predict(image(1), { maxQueue: 0 }), { name: 'RangeError', message: /options.maxQueue/ });
  });
});

describe('dynamic batching (model.serve)', () => {
  it('merges concurrent requests (40 queued at once: 5 batches of maxBatch 8) and matches one-at-a-time results within 1e-5', async () => {
    const m = tiny().eval();
    const inputs = Array.from({ length: 40 }, (_, i) => image(100 + i));
    const alone = [];
    for (const x of inputs) alone.push(await m.predict(x));
    const server = m.serve({ maxBatch: 8, maxDelayMs: 20 });
    const outs = await Promise.all(inputs.map((x) => server.predict(x)));
    outs.forEach((out, i) => {
      assert.deepEqual(out.shape, [1, 5]);
      assert.ok(maxAbsDiff(out, alone[i]) <= 1e-5, `request ${i}: ${maxAbsDiff(out, alone[i])}`);
    });
    const stats = server.stats();
    console.log(`      40 requests in ${stats.batches} batches (mean ${stats.meanBatchSize.toFixed(1)}), p50 ${stats.p50Ms.toFixed(1)} ms, p99 ${stats.p99Ms.toFixed(1)} ms`);
    assert.equal(stats.requests, 40);
    // All 40 were queued before the first batch could start (the flush runs from a timer, after this
    // synchronous loop), and each batch takes the next 8 as soon as the one before it ends.
    assert.equal(stats.batches, 5, 'five full batches of maxBatch = 8');
    assert.equal(stats.meanBatchSize, 8);
    assert.equal(stats.queueDepth, 0);
    assert.ok(stats.p99Ms >= stats.p50Ms && stats.p50Ms > 0);
    await server.close();
  });

  it('by default (maxDelayMs 0) a lone request runs at once, requests of one turn are merged, and those arriving while a batch runs form the next', async () => {
    const m = tiny().eval();
    const server = m.serve({ maxBatch: 8 });
    await server.predict(image(1));
    assert.deepEqual([server.stats().batches, server.stats().requests], [1, 1], 'a lone request is its own batch');
    await Promise.all(Array.from({ length: 5 }, (_, i) => server.predict(image(10 + i))));
    assert.deepEqual([server.stats().batches, server.stats().requests], [2, 6], 'five requests of one turn: one batch');
    // One request starts a batch (on the next turn); four sent while it runs wait for the model.
    const first = server.predict(image(20));
    await new Promise((resolve) => setImmediate(resolve));
    const later = Array.from({ length: 4 }, (_, i) => server.predict(image(30 + i)));
    assert.equal(server.stats().queueDepth, 4, 'the four wait while the first batch runs');
    await Promise.all([first, ...later]);
    assert.deepEqual([server.stats().batches, server.stats().requests], [4, 11], 'then run as one batch of four');
    await server.close();
  });

  it('a bad request is refused on its own; the rest of the batch is answered', async () => {
    const m = tiny().eval();
    const server = m.serve({ maxBatch: 4, maxDelayMs: 10 });
    const good = [server.predict(image(1)), server.predict(image(2))];
    await assert.rejects(server.predict(dt.tensor(new Float32Array(2 * 8 * 8), [1, 2, 8, 8])), /2 channels/);
    await assert.rejects(server.predict('pixels'), { name: 'TypeError', message: /Expected x to be a Tensor/ });
    const outs = await Promise.all(good);
    assert.deepEqual(outs.map((o) => o.shape), [[1, 5], [1, 5]]);
  });

  it('does not merge images of different sizes; each gets its own logits', async () => {
    const m = tiny().eval();
    const server = m.serve({ maxBatch: 16, maxDelayMs: 10 });
    const a = image(1, 1, 8);
    const b = image(2, 1, 16);
    const [ra, rb] = await Promise.all([server.predict(a), server.predict(b)]);
    assert.ok(maxAbsDiff(ra, await m.predict(a)) <= 1e-5);
    assert.ok(maxAbsDiff(rb, await m.predict(b)) <= 1e-5);
    assert.equal(server.stats().batches, 2);
  });

  it('close() answers every waiting request, then refuses new ones; abort and maxQueue apply', async () => {
    const m = tiny().eval();
    const server = m.serve({ maxBatch: 2, maxDelayMs: 1000, maxQueue: 3 });
    const controller = new AbortController();
    const waiting = [server.predict(image(1)), server.predict(image(2), { signal: controller.signal }), server.predict(image(3))];
    await assert.rejects(server.predict(image(4)), { name: 'QueueFullError', message: /maxQueue 3/ });
    controller.abort();
    await assert.rejects(waiting[1], { name: 'RequestAbortedError' });
    await server.close();
    const outs = await Promise.all([waiting[0], waiting[2]]);
    assert.deepEqual(outs.map((o) => o.shape), [[1, 5], [1, 5]]);
    await assert.rejects(server.predict(image(5)), { name: 'RequestAbortedError', message: /the predictor is closed/ });
    assert.throws(() => m.serve({ maxBatch: 0 }), { name: 'RangeError', message: /options.maxBatch/ });
    assert.throws(() => m.serve({ batch: 2 }), { name: 'TypeError', message: /Unknown option 'batch' of serve\(\)/ });
  });
});
