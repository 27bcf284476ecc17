'use strict';
const assert = require('node:assert/strict');
const dt = require('..');
const { randomImages } = require('./helpers');


describe('DenseNet: presets and parameter counts', () => {
  const torchvision = { densenet121: 7978856, densenet169: 14149480, densenet201: 20013928, densenet161: 28681000 };
  for (const [name, count] of Object.entries(torchvision)) {
    it(`${name} has torchvision's ${count.toLocaleString('en')} parameters`, () => {
      assert.equal(dt[name]().numParameters(), count);
    });
  }

  it('densenet264 follows the paper (k=32, blocks 6-12-64-48) with 1000 classes', () => {
    const m = dt.densenet264();
    assert.deepEqual(m.config.blockConfig, [6, 12, 64, 48]);
    assert.equal(m.config.growthRate, 32);
    assert.equal(m.numParameters(), 33337704);
  });

  const paper = [
    ['DenseNet (L=40, k=12)', { depth: 40, growthRate: 12, bottleneck: false, compression: 1 }, 1.0e6],
    ['DenseNet (L=100, k=12)', { depth: 100, growthRate: 12, bottleneck: false, compression: 1 }, 7.0e6],
    ['DenseNet (L=100, k=24)', { depth: 100, growthRate: 24, bottleneck: false, compression: 1 }, 27.2e6],
    ['DenseNet-BC (L=100, k=12)', { depth: 100, growthRate: 12 }, 0.8e6],
    ['DenseNet-BC (L=250, k=24)', { depth: 250, growthRate: 24 }, 15.3e6],
    ['DenseNet-BC (L=190, k=40)', { depth: 190, growthRate: 40 }, 25.6e6],
  ];
  for (const [title, args, expected] of paper) {
    it(`${title} is within 5% of the paper's ${expected / 1e6}M parameters`, () => {
      const n = dt.densenetCifar(args).numParameters();
      console.log(`      ${title}: ${n.toLocaleString('en')} parameters (paper ${expected / 1e6}M, ${((n / expected - 1) * 100).toFixed(1)}%)`);
      assert.ok(Math.abs(n / expected - 1) <= 0.05, `${n} vs ${expected}`);
    });
  }

  it('builds CIFAR layers per block from the depth: (L-4)/6 with bottleneck, (L-4)/3 without', () => {
    assert.deepEqual(dt.densenetCifar({ depth: 100, growthRate: 12 }).config.blockConfig, [16, 16, 16]);
    assert.deepEqual(dt.densenetCifar({ depth: 40, growthRate: 12, bottleneck: false }).config.blockConfig, [12, 12, 12]);
    assert.equal(dt.densenetCifar({ depth: 100, growthRate: 12 }).config.numInitFeatures, 24, 'BC: 2k initial channels');
    assert.equal(dt.densenetCifar({ depth: 40, growthRate: 12, bottleneck: false, compression: 1 }).config.numInitFeatures, 16);
    assert.equal(dt.densenetCifar({ depth: 40, growthRate: 12, bottleneck: false }).config.bnSize, 0);
  });

  it('rejects a CIFAR depth that does not fit the formula, listing valid depths', () => {
    assert.throws(() => dt.densenetCifar({ depth: 50, growthRate: 12 }), {
      name: 'RangeError',
      message: 'Expected depth to be 6n+4 (10, 16, 22, ..., 100, 190, 250) for a DenseNet with bottleneck layers but received 50',
    });
    assert.throws(() => dt.densenetCifar({ depth: 41, growthRate: 12, bottleneck: false }), {
      name: 'RangeError',
      message: /Expected depth to be 3n\+4 \(7, 10, 13, \.\.\., 40, 100\) for a DenseNet without bottleneck layers but received 41/,
    });
  });
});

describe('DenseNet: construction arguments', () => {
  const bad = [
    [{ growthRate: 0 }, RangeError, /Expected growthRate to be a positive integer but received 0/],
    [{ growthRate: 2.5 }, TypeError, /Expected growthRate to be a positive integer but received 2\.5 of type number/],
    [{ blockConfig: [] }, TypeError, /Expected blockConfig to be a non-empty array/],
    [{ blockConfig: [2, -1] }, RangeError, /Expected blockConfig\[1\] to be a positive integer but received -1/],
    [{ dropRate: -0.1 }, RangeError, /Expected dropRate to be a number in \[0, 1\) but received -0\.1/],
    [{ compression: 0 }, RangeError, /Expected compression to be a number in \(0, 1\] but received 0/],
    [{ bnSize: -1 }, RangeError, /Expected bnSize to be a non-negative integer but received -1/],
    [{ stem: 'resnet' }, TypeError, /Expected stem to be 'imagenet' or 'cifar' but received 'resnet' of type string/],
    [{ memoryEfficient: 'yes' }, TypeError, /Expected memoryEfficient to be a boolean but received 'yes' of type string/],
    [{ growthrate: 12 }, TypeError, /Unknown DenseNet option 'growthrate'/],
    [{ device: 'tpu' }, TypeError, /Expected device to be 'cpu', 'cuda' or 'cuda:N' but received 'tpu'/],
  ];
  for (const [args, ErrorClass, message] of bad) {
    it(`rejects ${JSON.stringify(args)} with a ${ErrorClass.name}`, () => {
      assert.throws(() => new dt.DenseNet({ blockConfig: [1], ...args }), (err) => err instanceof ErrorClass && message.test(err.message));
    });
  }

  it('rejects an unknown preset option', () => {
    assert.throws(() => dt.densenet121({ depth: 10 }), { name: 'TypeError', message: /Unknown densenet121 option 'depth'/ });
  });

  it('keeps its configuration with defaults filled in', () => {
    const m = new dt.DenseNet({ growthRate: 8, blockConfig: [2, 2], numInitFeatures: 16, stem: 'cifar', numClasses: 5 });
    assert.deepEqual({ ...m.config, blockConfig: [...m.config.blockConfig] }, {
      growthRate: 8, blockConfig: [2, 2], numInitFeatures: 16, bnSize: 4, compression: 0.5, dropRate: 0,
      numClasses: 5, inChannels: 3, stem: 'cifar', memoryEfficient: false,
    });
    assert.equal(m.device, 'cpu');
  });
});

describe('DenseNet: forward and predict', () => {
  const small = () => new dt.DenseNet({ growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, stem: 'cifar', numClasses: 7 });

  it('maps [N, C, H, W] to [N, numClasses] for both stems', () => {
    assert.deepEqual(small().forward(randomImages(3, 3, 16, 16)).shape, [3, 7]);
    const imagenet = new dt.DenseNet({ growthRate: 4, blockConfig: [1, 1], numInitFeatures: 8, numClasses: 2, inChannels: 1 });
    assert.deepEqual(imagenet.forward(randomImages(2, 1, 64, 64)).shape, [2, 2]);
  });

  it('switches between train and eval modes', () => {
    const m = small();
    assert.equal(m.training, true);
    assert.equal(m.eval().training, false);
    assert.equal(m.train().training, true);
  });

  it('predict() runs off the main thread in eval mode and equals an eval forward', async () => {
    const m = small();
    const x = randomImages(5, 3, 16, 16);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const p = await m.predict(x, { batchSize: 2 });
    clearInterval(timer);
    assert.ok(ticks > 0, 'the event loop ran timers while predict() computed');
    assert.equal(m.training, true, 'predict leaves the mode as it was');
    const f = m.eval().forward(x).toArray();
    const pa = p.toArray();
    assert.deepEqual(p.shape, [5, 7]);
    for (let i = 0; i < f.length; i++) assert.ok(Math.abs(f[i] - pa[i]) <= 1e-5 * (1 + Math.abs(f[i])));
  });

  it('predictions follow the weights: what evaluation keeps between calls (folded and packed weights, batch-norm affines) is redone after training and after loadStateDict', async () => {
    // k = 32: the bottleneck's 128 outputs run densetorch's own 1x1 kernel, whose packed weights are kept.
    const config = { depth: 16, growthRate: 32, numClasses: 4 };
    dt.manualSeed(5);
    const m = dt.densenetCifar(config);
    const x = randomImages(2, 3, 16, 16);
    const before = (await m.predict(x)).toArray();
    assert.deepEqual((await m.predict(x)).toArray(), before, 'the same weights give the same prediction');
    const labels = dt.tensor(new Int32Array(8).map((_, i) => i % 4), [8], { dtype: 'int32' });
    await m.fit(dt.datasets.fromTensors(randomImages(8, 3, 16, 16, 2), labels), { epochs: 1, batchSize: 4 });
    const after = (await m.predict(x)).toArray();
    const fresh = dt.densenetCifar(config);
    fresh.loadStateDict(m.stateDict());
    assert.deepEqual(after, (await fresh.predict(x)).toArray(), 'after fit: the prediction of a fresh model with the same weights');
    assert.notDeepEqual(after, before);
    dt.manualSeed(6);
    const other = dt.densenetCifar(config);
    m.loadStateDict(other.stateDict());
    assert.deepEqual((await m.predict(x)).toArray(), (await other.predict(x)).toArray(), 'after loadStateDict: the loaded weights');
  });

  it('inference folds norm2 into conv1 exactly: equal to the unfolded eval forward with autograd, with trained statistics', () => {
    const m = dt.densenetCifar({ depth: 10, growthRate: 6, numClasses: 4 });
    // Statistics and affine parameters far from their initial values.
    const sd = m.stateDict();
    let seed = 3;
    const noise = (t, lo, hi) => dt.tensor(new Float32Array(t.shape.reduce((a, b) => a * b, 1)).map(() => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return lo + (hi - lo) * (seed / 2147483648);
    }), t.shape);
    const changed = {};
    for (const [name, t] of Object.entries(sd)) {
      if (/norm2\.(running_var|weight)$/.test(name)) changed[name] = noise(t, 0.3, 2.5);
      else if (/norm2\.(running_mean|bias)$/.test(name)) changed[name] = noise(t, -1, 1);
    }
    assert.ok(Object.keys(changed).length >= 8);
    m.loadStateDict(changed, { strict: false });
    m.eval();
    const x = randomImages(3, 3, 16, 16);
    const labels = dt.tensor([0, 1, 2], [3], { dtype: 'int64' });
    const unfolded = m.lossAndGrads(x, labels).output.toArray(); // autograd on: the plain path
    const folded = m.forward(x).toArray();                         // no autograd: the folded path
    for (let i = 0; i < unfolded.length; i++) assert.ok(Math.abs(unfolded[i] - folded[i]) <= 1e-5 * (1 + Math.abs(unfolded[i])), `${unfolded[i]} vs ${folded[i]}`);
  });

  it('is reproducible under manualSeed', () => {
    dt.manualSeed(123);
    const a = small().stateDict()['features.conv0.weight'].toArray();
    dt.manualSeed(123);
    const b = small().stateDict()['features.conv0.weight'].toArray();
    assert.deepEqual(Array.from(a), Array.from(b));
  });

  it('initialises as torchvision: Kaiming-normal convs, BN weight 1 bias 0, classifier bias 0', () => {
    dt.manualSeed(7);
    const m = dt.densenet121();
    const sd = m.stateDict();
    const w = sd['features.denseblock3.denselayer5.conv1.weight'];
    const values = w.toArray();
    const fanIn = w.shape[1] * w.shape[2] * w.shape[3];
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
    assert.ok(Math.abs(std / Math.sqrt(2 / fanIn) - 1) < 0.05, `std ${std} vs ${Math.sqrt(2 / fanIn)}`);
    assert.ok(sd['features.norm5.weight'].toArray().every((v) => v === 1));
    assert.ok(sd['features.norm5.bias'].toArray().every((v) => v === 0));
    assert.ok(sd['classifier.bias'].toArray().every((v) => v === 0));
  });

  const inputErrors = [
    ['a rank-3 input', () => dt.tensor(new Float32Array(3 * 64), [3, 8, 8]), /input must have shape \[N, 3, H, W\], got a tensor of rank 3/],
    ['the wrong channel count', () => randomImages(1, 1, 8, 8), /input must have shape \[N, 3, H, W\], got 1 channels/],
    ['an integer input', () => dt.tensor(new Int32Array(3 * 64), [1, 3, 8, 8]), /input must have dtype Float \(as the model\), got Int/],
    ['an empty batch', () => dt.tensor(new Float32Array(0), [0, 3, 8, 8]), /input must hold at least one image/],
  ];
  for (const [title, make, message] of inputErrors) {
    it(`forward rejects ${title} with a clear message`, async () => {
      const m = small();
      const x = make();
      assert.throws(() => m.forward(x), (err) => (err instanceof TypeError || err instanceof RangeError) && message.test(err.message));
      await assert.rejects(m.predict(x), (err) => (err instanceof TypeError || err instanceof RangeError) && message.test(err.message));
    });
  }

  it('forward rejects a non-tensor and a disposed tensor', () => {
    const m = small();
    assert.throws(() => m.forward([1, 2]), { name: 'TypeError', message: /Expected x to be a Tensor but received an array of length 2/ });
    const x = randomImages(1, 3, 8, 8);
    x.dispose();
    assert.throws(() => m.forward(x), { name: 'TypeError', message: /Expected x to be a live tensor but it has been disposed/ });
  });

  it('refuses synchronous use while predict() runs (BusyError), then works again', async () => {
    const m = dt.densenetCifar({ depth: 40, growthRate: 12 });
    const x = randomImages(64, 3, 32, 32);
    const pending = m.predict(x);
    assert.throws(() => m.forward(x), { name: 'BusyError', message: /the model is busy/ });
    assert.throws(() => m.train(), (err) => {
      // Thrown by the addon itself as densetorch's class, with its code and this call's stack.
      assert.ok(err instanceof dt.BusyError && err instanceof dt.DensetorchError);
      assert.equal(err.code, 'DENSETORCH_BUSY');
      assert.match(err.stack, /04-densenet\.test\.js/);
      return true;
    });
    await pending;
    assert.deepEqual(m.forward(randomImages(1, 3, 32, 32)).shape, [1, 10]);
  });
});

