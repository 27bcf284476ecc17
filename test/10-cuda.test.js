'use strict';
// The CUDA path on a real GPU: these tests skip (with the reason printed) where
// dt.versions.cudaAvailable is false. Gradients are compared with TF32 off (IEEE float32): with
// it on (cuDNN's default) the gradients of batch-norm biases, sums that nearly cancel because
// every consumer of a feature is a training-mode batch norm, differ from the CPU's by 10-25%.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const dt = require('..');
const { randomImages } = require('./helpers');

const MiB = 2 ** 20;

/** ||a - b|| / ||a|| over two tensors of the same size (any devices). */
function relativeError(a, b) {
  const x = a.toArray();
  const y = b.toArray();
  assert.equal(x.length, y.length);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < x.length; i++) {
    diff += (x[i] - y[i]) ** 2;
    norm += x[i] ** 2;
  }
  return Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-12);
}

/** Runs `body` with TF32 off, then restores the setting. */
function ieee(body) {
  const was = dt.cuda.allowTF32();
  dt.cuda.allowTF32(false);
  try {
    return body();
  } finally {
    dt.cuda.allowTF32(was);
  }
}

/** The same model (weights and statistics) on `device`. */
function copyTo(model, device, args) {
  const copy = args.preset ? dt[args.preset]({ ...args.options, device }) : dt.densenetCifar({ ...args.options, device });
  copy.loadStateDict(Object.fromEntries(Object.entries(model.stateDict()).map(([k, v]) => [k, v.to(device)])));
  return copy;
}

/** A task a small DenseNet learns in a few epochs: the class is which half of the image is bright. */
function halvesTask(n, size) {
  const images = new Float32Array(n * 3 * size * size);
  const labels = [];
  let s = 7;
  for (let i = 0; i < n; i++) {
    const label = i % 2;
    labels.push(label);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          s = (s * 1103515245 + 12345) % 2147483648;
          const bright = (y < size / 2) === (label === 0);
          images[((i * 3 + c) * size + y) * size + x] = (bright ? 0.5 : -0.5) + 0.3 * (s / 2147483648 - 0.5);
        }
      }
    }
  }
  return dt.datasets.fromTensors(dt.tensor(images, [n, 3, size, size]), dt.tensor(labels, [n], { dtype: 'int64' }));
}

describe('CUDA (needs a GPU and a CUDA LibTorch)', function () {
  this.timeout(300000);

  before(function () {
    if (!dt.versions.cudaAvailable) {
      console.log('      skipped: dt.versions.cudaAvailable is false (no CUDA LibTorch or no GPU)');
      this.skip();
    }
  });

  it('moves tensors to cuda and back with the same values', () => {
    const t = dt.tensor([1, 2, 3, 4], [2, 2], { device: 'cuda' });
    assert.equal(t.device, 'cuda:0');
    assert.deepEqual(Array.from(t.toArray()), [1, 2, 3, 4]);
    assert.equal(t.to('cpu').device, 'cpu');
  });

  it('counts device memory: a tensor raises allocated and peak, dispose gives it back, emptyCache returns the cache', () => {
    dt.cuda.synchronize();
    dt.cuda.resetPeakMemoryStats();
    const before = dt.cuda.memoryStats();
    const t = dt.tensor(new Float32Array(16 * MiB), [16 * MiB], { device: 'cuda' });
    const held = dt.cuda.memoryStats();
    assert.ok(held.allocated >= before.allocated + 64 * MiB, `allocated ${held.allocated} after a 64 MiB tensor (before ${before.allocated})`);
    assert.ok(held.peakAllocated >= held.allocated);
    assert.ok(held.reserved >= held.allocated);
    t.dispose();
    const after = dt.cuda.memoryStats();
    assert.ok(after.allocated <= before.allocated, `allocated ${after.allocated} after dispose (before ${before.allocated})`);
    assert.ok(after.peakAllocated >= before.allocated + 64 * MiB, 'the peak remembers the tensor');
    dt.cuda.emptyCache();
    assert.ok(dt.cuda.memoryStats().reserved <= after.reserved);
    assert.throws(() => dt.cuda.memoryStats(1e6), RangeError);
  });

  it('allowTF32 reads and sets whether float32 convolutions may use TF32 (on by default, as in PyTorch)', () => {
    assert.equal(dt.cuda.allowTF32(), true);
    assert.equal(dt.cuda.allowTF32(false), false);
    assert.equal(dt.cuda.allowTF32(), false);
    assert.equal(dt.cuda.allowTF32(true), true);
    assert.throws(() => dt.cuda.allowTF32('no'), TypeError);
  });

  it('runs forward and predict on cuda and matches the CPU model', async () => {
    dt.manualSeed(0);
    const cpu = dt.densenetCifar({ depth: 16, growthRate: 6 }).eval();
    const gpu = copyTo(cpu, 'cuda', { options: { depth: 16, growthRate: 6 } }).eval();
    const x = randomImages(4, 3, 32, 32);
    const a = cpu.forward(x);
    const b = await gpu.predict(x.to('cuda'));
    assert.equal(b.device, 'cuda:0');
    const err = relativeError(a, b);
    console.log(`      CPU vs CUDA logits: relative error ${err.toExponential(2)}`);
    assert.ok(err < 1e-2, `relative error ${err}`);
  });

  for (const memoryEfficient of [false, true]) {
    for (const args of [
      { name: 'DenseNet-BC (L=22, k=6, 32x32)', options: { depth: 22, growthRate: 6, memoryEfficient }, input: [8, 3, 32, 32] },
      { name: 'DenseNet-121 (64x64)', preset: 'densenet121', options: { memoryEfficient, numClasses: 10 }, input: [4, 3, 64, 64] },
    ]) {
      it(`${memoryEfficient ? 'memory-efficient' : 'naive'} ${args.name}: loss and every gradient on cuda match the CPU`, () => {
        dt.manualSeed(1);
        const cpu = args.preset ? dt[args.preset](args.options) : dt.densenetCifar(args.options);
        const gpu = copyTo(cpu, 'cuda', args);
        const x = randomImages(...args.input, 3);
        const labels = dt.tensor(Array.from({ length: args.input[0] }, (_, i) => i % 10), [args.input[0]], { dtype: 'int64' });
        const a = cpu.lossAndGrads(x, labels);
        const b = ieee(() => gpu.lossAndGrads(x.to('cuda'), labels.to('cuda')));
        assert.ok(Math.abs(a.loss - b.loss) <= 1e-3 * Math.abs(a.loss), `loss ${a.loss} vs ${b.loss}`);
        // Each gradient's error relative to its own norm, but at least to a thousandth of the
        // median gradient norm: some gradients are zero up to rounding, such as norm0.weight's of
        // the ImageNet stem (norm0 -> ReLU -> max pool feeds only training-mode batch norms, which
        // make the pooled features' gradient orthogonal to them), and rounding has no relative size.
        const normOf = Object.fromEntries(Object.entries(a.grads).map(([name, g]) => [name, Math.sqrt(g.toArray().reduce((t, v) => t + v * v, 0))]));
        const norms = Object.values(normOf).sort((p, q) => p - q);
        const floor = 1e-3 * norms[Math.floor(norms.length / 2)];
        let worst = 0;
        let where = '';
        for (const [name, g] of Object.entries(a.grads)) {
          assert.equal(b.grads[name].device, 'cuda:0');
          const norm = normOf[name];
          const err = relativeError(g, b.grads[name]) * norm / Math.max(norm, floor);
          if (err > worst) [worst, where] = [err, name];
        }
        console.log(`      ${Object.keys(a.grads).length} gradients, worst relative error ${worst.toExponential(2)} (${where}); smallest gradient norm ${norms[0].toExponential(2)}, median ${norms[Math.floor(norms.length / 2)].toExponential(2)}`);
        assert.ok(worst < 1e-2, `${where}: relative error ${worst}`);
      });
    }
  }

  it('memory-efficient DenseNet-BC-100 (k=12, batch 64): the same gradients as naive on cuda with a lower peak', () => {
    const args = { options: { depth: 100, growthRate: 12 } };
    dt.manualSeed(2);
    const naive = dt.densenetCifar({ ...args.options, device: 'cuda' });
    const efficient = copyTo(naive, 'cuda', { options: { ...args.options, memoryEfficient: true } });
    const x = randomImages(64, 3, 32, 32, 5).to('cuda');
    const labels = dt.tensor(Array.from({ length: 64 }, (_, i) => i % 10), [64], { dtype: 'int64' }).to('cuda');
    const peak = (model) => {
      model.lossAndGrads(x, labels); // warm-up: cuDNN's algorithm choice and workspaces
      dt.cuda.synchronize();
      dt.cuda.resetPeakMemoryStats();
      const base = dt.cuda.memoryStats().allocated;
      const r = model.lossAndGrads(x, labels);
      dt.cuda.synchronize();
      return { r, mib: (dt.cuda.memoryStats().peakAllocated - base) / MiB };
    };
    const n = ieee(() => peak(naive));
    const e = ieee(() => peak(efficient));
    let worst = 0;
    for (const [name, g] of Object.entries(n.r.grads)) worst = Math.max(worst, relativeError(g, e.r.grads[name]));
    console.log(`      peak above the model: naive ${n.mib.toFixed(0)} MiB, memory-efficient ${e.mib.toFixed(0)} MiB (${(e.mib / n.mib).toFixed(2)}x); worst gradient relative error ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-2, `gradients differ: ${worst}`);
    assert.ok(e.mib < 0.8 * n.mib, `memory-efficient peak ${e.mib} MiB vs naive ${n.mib} MiB`);
  });

  for (const [precision, memoryEfficient] of [['fp32', false], ['fp16', false], ['fp16', true], ['bf16', true]]) {
    it(`fit on cuda learns a simple task (${precision}${memoryEfficient ? ', memory-efficient' : ''}): the loss falls, the model classifies`, async () => {
      dt.manualSeed(3);
      const model = dt.densenetCifar({ depth: 16, growthRate: 6, numClasses: 2, memoryEfficient, device: 'cuda' });
      const data = halvesTask(128, 16);
      const h = await model.fit(data, { epochs: 6, batchSize: 16, precision, optimizer: { type: 'sgd', lr: 0.05 } });
      const { accuracy } = await model.evaluate(data, { precision });
      console.log(`      loss by epoch ${h.loss.map((l) => l.toFixed(3)).join(' ')}; accuracy ${accuracy.toFixed(3)}`);
      assert.ok(h.loss.every(Number.isFinite));
      assert.ok(h.loss[h.loss.length - 1] < 0.5 * h.loss[0], `loss ${h.loss.join(', ')}`);
      assert.ok(accuracy >= 0.9, `accuracy ${accuracy}`);
    });
  }

  it('trains on cuda (memory-efficient) and saves from CPU copies; the file loads on the CPU with the same outputs', async () => {
    const m = dt.densenetCifar({ depth: 16, growthRate: 6, memoryEfficient: true, device: 'cuda' });
    const n = 32;
    const data = dt.datasets.fromTensors(dt.tensor(new Uint8Array(n * 3 * 32 * 32).map((_, i) => i % 251), [n, 3, 32, 32]),
      dt.tensor(Array.from({ length: n }, (_, i) => i % 10), [n], { dtype: 'int64' }), { augment: 'cifar' });
    const h = await m.fit(data, { epochs: 2, batchSize: 8 });
    assert.equal(h.epochs.length, 2);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-cuda-')), 'm.safetensors');
    await m.save(file);
    const back = await dt.load(file, { device: 'cuda' });
    assert.equal(back.device, 'cuda:0');
    const onCpu = await dt.load(file);
    assert.equal(onCpu.device, 'cpu');
    const x = randomImages(4, 3, 32, 32, 9);
    const err = relativeError(onCpu.eval().forward(x), await m.predict(x.to('cuda')));
    assert.ok(err < 1e-2, `relative error ${err}`);
  });

  it('model.to moves a model between cpu and cuda and keeps its outputs', async () => {
    dt.manualSeed(4);
    const m = dt.densenetCifar({ depth: 16, growthRate: 6 }).eval();
    const x = randomImages(2, 3, 32, 32, 11);
    const cpu = m.forward(x);
    m.to('cuda');
    assert.equal(m.device, 'cuda:0');
    const gpu = await m.predict(x.to('cuda'));
    m.to('cpu');
    assert.equal(m.device, 'cpu');
    assert.ok(relativeError(cpu, gpu) < 1e-2);
    assert.ok(relativeError(cpu, m.forward(x)) < 1e-6);
  });

  it('predict in small batches, evaluate, and concurrent requests to a served cuda model give the one-shot answers', async () => {
    dt.manualSeed(5);
    const m = dt.densenetCifar({ depth: 22, growthRate: 6, device: 'cuda' }).eval();
    const x = randomImages(12, 3, 32, 32, 13);
    const whole = m.forward(x.to('cuda'));
    assert.ok(relativeError(whole, await m.predict(x.to('cuda'), { batchSize: 5 })) < 1e-3);
    const server = m.serve({ maxBatch: 4, maxDelayMs: 2 });
    const images = Array.from({ length: 12 }, (_, i) => randomImages(1, 3, 32, 32, 100 + i).to('cuda'));
    const answers = await Promise.all(images.map((img) => server.predict(img)));
    for (let i = 0; i < images.length; i++) assert.ok(relativeError(m.forward(images[i]), answers[i]) < 1e-3, `request ${i}`);
    assert.ok(server.stats().batches < images.length, `requests merged into ${server.stats().batches} batches`);
    await server.close();
    const labels = dt.tensor(Array.from({ length: 12 }, (_, i) => i % 10), [12], { dtype: 'int64' });
    const r = await m.evaluate(dt.datasets.fromTensors(x, labels), { batchSize: 5 });
    assert.ok(Number.isFinite(r.loss) && r.accuracy >= 0 && r.accuracy <= 1);
  });

  it('a CUDA out-of-memory error is a JS error, and the model runs again afterwards', async () => {
    dt.manualSeed(6);
    const m = dt.densenetCifar({ depth: 100, growthRate: 12, device: 'cuda' });
    // Training on 8192 images at once keeps about 200 GB of activations: more than any one GPU has
    // (each tensor stays under 2^31 elements, so it is the memory that runs out, not an index).
    const n = 8192;
    const x = dt.tensor(new Float32Array(n * 3 * 32 * 32), [n, 3, 32, 32], { device: 'cuda' });
    const labels = dt.tensor(new Array(n).fill(0), [n], { dtype: 'int64', device: 'cuda' });
    assert.throws(() => m.lossAndGrads(x, labels), (err) => {
      assert.ok(err instanceof Error);
      assert.match(err.message, /out of memory/i);
      console.log(`      ${err.constructor.name}: ${err.message.split('\n')[0].slice(0, 120)}`);
      return true;
    });
    x.dispose();
    labels.dispose();
    assert.ok(dt.cuda.memoryStats().ooms >= 1);
    const small = await m.eval().predict(randomImages(2, 3, 32, 32).to('cuda'));
    assert.deepEqual(small.shape, [2, 10]);
  });
});
