'use strict';
// Real data: torchvision's transform geometry, image folders streamed into fit, async sources.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const sharp = require('sharp');
const { spawnSync } = require('node:child_process');
const { ROOT } = require('./helpers');
const dt = require('..');
const transforms = require('../dist/data/transforms.js');

/** A Random that returns the given draws in turn. */
function scripted(draws) {
  let i = 0;
  return () => {
    assert.ok(i < draws.length, 'more draws than scripted');
    return draws[i++];
  };
}

/** An RGB image whose red channel is 4·x and green 5·y (so positions can be read back). */
async function gradientPng(file, width, height) {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      raw[(y * width + x) * 3] = Math.min(255, 4 * x);
      raw[(y * width + x) * 3 + 1] = Math.min(255, 5 * y);
    }
  }
  await sharp(raw, { raw: { width, height, channels: 3 } }).png().toFile(file);
}

const COLOURS = { blue: [20, 40, 220], green: [30, 200, 40], red: [220, 30, 30] };

/** An image folder of three colour classes, `perClass` JPEGs each, of varied sizes. */
async function colourFolder(dir, perClass) {
  for (const [name, [r, g, b]] of Object.entries(COLOURS)) {
    fs.mkdirSync(path.join(dir, name), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const width = 40 + ((i * 13) % 30);
      const height = 30 + ((i * 7) % 25);
      await sharp({ create: { width, height, channels: 3, background: { r: (r + i * 3) % 256, g, b } } })
        .jpeg().toFile(path.join(dir, name, `img${String(i).padStart(3, '0')}.jpg`));
    }
  }
}

function tinyModel(numClasses) {
  dt.manualSeed(0);
  return new dt.DenseNet({
    growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, bnSize: 2, compression: 0.5, dropRate: 0,
    numClasses, inChannels: 3, stem: 'cifar', memoryEfficient: false,
  });
}

describe('transforms: torchvision geometry', () => {
  it('RandomResizedCrop: area and log-uniform ratio from the draws, box position from the next two', () => {
    // area 100·80 · (0.08 + 0.5·0.92) = 4320; ratio exp(0) = 1; side round(√4320) = 66
    const box = transforms.randomResizedCropBox(100, 80, scripted([0.5, 0.5, 0.3, 0.7]));
    assert.deepEqual(box, { top: Math.floor(0.3 * (80 - 66 + 1)), left: Math.floor(0.7 * (100 - 66 + 1)), height: 66, width: 66 });
  });

  it('RandomResizedCrop: after 10 failed tries, the central crop clamped to the ratio range', () => {
    const tall = transforms.randomResizedCropBox(10, 100, () => 0.99);
    assert.deepEqual(tall, { top: Math.floor((100 - 13) / 2), left: 0, height: 13, width: 10 }); // h = round(10 / (3/4))
    const wide = transforms.randomResizedCropBox(100, 10, () => 0.99);
    assert.deepEqual(wide, { top: 0, left: Math.floor((100 - 13) / 2), height: 10, width: 13 }); // w = round(10 · 4/3)
  });

  it('Resize(size·256/224) keeps the aspect ratio on the shorter edge; CenterCrop rounds halves to even as Python', () => {
    assert.equal(transforms.evalResizeFor(224), 256);
    assert.deepEqual(transforms.resizeShorterEdge(500, 375, 256), { width: 341, height: 256 });
    assert.deepEqual(transforms.resizeShorterEdge(375, 500, 256), { width: 256, height: 341 });
    assert.deepEqual(transforms.centerCropBox(341, 256, 224), { top: 16, left: 58, height: 224, width: 224 }); // round(58.5) = 58
    assert.deepEqual([0.5, 1.5, 2.5, 2.6, 3.49].map(transforms.pyRound), [0, 2, 2, 3, 3]);
  });

  it('per-sample draws depend only on (seed, epoch, index); permutations are seeded', () => {
    const a = transforms.sampleRandom(7, 2, 5);
    const b = transforms.sampleRandom(7, 2, 5);
    const c = transforms.sampleRandom(7, 3, 5);
    const da = [a(), a(), a()];
    assert.deepEqual(da, [b(), b(), b()]);
    assert.notDeepEqual(da, [c(), c(), c()]);
    assert.ok(da.every((x) => x >= 0 && x < 1));
    const p = transforms.permutation(50, transforms.sampleRandom(1, 0, 0));
    assert.deepEqual([...p].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
    assert.deepEqual(p, transforms.permutation(50, transforms.sampleRandom(1, 0, 0)));
  });

  it('decodes pixels from the planned boxes: eval center crop, and train crop then horizontal flip', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-geom-'));
    const file = path.join(dir, 'gradient.png');
    await gradientPng(file, 64, 48);
    const { decodeImage } = require('../dist/image.js');
    // eval, size 32: shorter edge 48 -> 36 (36 = 32·256/224), 64 -> 48; center crop top 2, left 8
    const evalPixels = await decodeImage(file, 32, 'eval', () => 0.5);
    const scale = 64 / 48; // source pixels per resized pixel
    const expectRed = (col) => 4 * ((8 + col + 0.5) * scale - 0.5);
    assert.ok(Math.abs(evalPixels[0] - expectRed(0)) <= 6, `red at column 0: ${evalPixels[0]} vs ${expectRed(0)}`);
    assert.ok(Math.abs(evalPixels[31 * 3] - expectRed(31)) <= 6, `red at column 31: ${evalPixels[31 * 3]} vs ${expectRed(31)}`);
    // train: crop box from the draws (area 0.5·... ), then the flip draw (0.1 < 0.5: flip)
    const draws = [0.2, 0.5, 0.5, 0.5, 0.1];
    const box = transforms.randomResizedCropBox(64, 48, scripted(draws.slice(0, 4)));
    const trainPixels = await decodeImage(file, 32, 'train', scripted(draws));
    const left = 4 * box.left;
    const right = 4 * (box.left + box.width - 1);
    assert.ok(trainPixels[0] > trainPixels[31 * 3], 'flipped: red decreases from left to right');
    assert.ok(Math.abs(trainPixels[0] - right) <= 8, `column 0 shows the crop's right edge: ${trainPixels[0]} vs ${right}`);
    assert.ok(Math.abs(trainPixels[31 * 3] - left) <= 8, `column 31 shows the crop's left edge: ${trainPixels[31 * 3]} vs ${left}`);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('decoding images of every kind', () => {
  it('grey, RGBA and 16-bit PNGs become 3 channels; a huge or corrupt image is a DataError naming it', async function () {
    this.timeout(60000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-kinds-'));
    try {
      const grey = path.join(dir, 'grey.png');
      await sharp({ create: { width: 30, height: 20, channels: 3, background: { r: 100, g: 100, b: 100 } } }).toColourspace('b-w').png().toFile(grey);
      const rgba = path.join(dir, 'rgba.png');
      await sharp({ create: { width: 30, height: 20, channels: 4, background: { r: 0, g: 0, b: 255, alpha: 0.5 } } }).png().toFile(rgba);
      const deep = path.join(dir, 'deep.png');
      const raw16 = new Uint16Array(30 * 20 * 3).fill(65535);
      await sharp(Buffer.from(raw16.buffer), { raw: { width: 30, height: 20, channels: 3 } }).toColourspace('rgb16').png().toFile(deep);
      assert.equal((await sharp(grey).metadata()).channels, 1);
      assert.equal((await sharp(deep).metadata()).depth, 'ushort');
      for (const file of [grey, rgba, deep]) {
        const x = await dt.image.read(file, { size: 16, normalize: false });
        assert.deepEqual(x.shape, [1, 3, 16, 16]);
        const v = x.toArray();
        assert.ok(v.every((p) => p >= 0 && p <= 1), file);
      }
      assert.ok((await dt.image.read(deep, { size: 8, normalize: false })).toArray().every((p) => p === 1), '16-bit white stays white');
      // A PNG whose header claims 100,000 x 100,000 pixels (libvips refuses it before decoding).
      const huge = path.join(dir, 'huge.png');
      const header = Buffer.from(await sharp({ create: { width: 1, height: 1, channels: 3, background: 'black' } }).png().toBuffer());
      header.writeUInt32BE(100000, 16);
      header.writeUInt32BE(100000, 20);
      fs.writeFileSync(huge, header);
      await assert.rejects(dt.image.read(huge), { name: 'DataError', message: /huge\.png/ });
      const text = path.join(dir, 'notes.jpg');
      fs.writeFileSync(text, 'these are not pixels');
      await assert.rejects(dt.image.read(text), { name: 'DataError', message: /cannot decode image '.*notes\.jpg'/ });
      await assert.rejects(dt.image.read(path.join(dir, 'missing.jpg')), { name: 'DataError', message: /cannot read image '.*missing\.jpg'/ });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('image folders and streamed training', () => {
  let dir;
  before(async function () {
    this.timeout(60000);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-folder-'));
    await colourFolder(path.join(dir, 'train'), 16);
    await colourFolder(path.join(dir, 'val'), 6);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('lists classes (sorted subfolders) and samples as torchvision does; limit and extensions', () => {
    fs.writeFileSync(path.join(dir, 'train', 'red', 'notes.txt'), 'not an image: left out by its extension');
    const data = dt.datasets.imageFolder(path.join(dir, 'train'), { size: 32 });
    assert.deepEqual(data.classes, ['blue', 'green', 'red']);
    assert.equal(data.length, 48);
    assert.deepEqual(data.samples.slice(0, 2).map((s) => [path.basename(s.file), s.label]), [['img000.jpg', 0], ['img001.jpg', 0]]);
    assert.equal(data.samples[47].label, 2);
    const limited = dt.datasets.imageFolder(path.join(dir, 'train'), { size: 32, limit: 9 });
    assert.deepEqual(limited.samples.map((s) => s.label), [0, 0, 0, 1, 1, 1, 2, 2, 2]);
    assert.throws(() => dt.datasets.imageFolder(path.join(dir, 'train'), { extensions: ['.png'] }), { name: 'DataError', message: /no images with extensions \.png/ });
    assert.throws(() => dt.datasets.imageFolder(path.join(dir, 'missing')), { name: 'DataError', message: /cannot read the image folder/ });
    assert.throws(() => dt.datasets.imageFolder(path.join(dir, 'train', 'red')), { name: 'DataError', message: /has no class folders/ });
    assert.throws(() => dt.datasets.imageFolder(dir, { sizes: 3 }), { name: 'TypeError', message: /Unknown option 'sizes' of imageFolder/ });
    assert.throws(() => dt.datasets.imageFolder(dir, { transform: 'random' }), { name: 'TypeError', message: /options.transform/ });
    assert.throws(() => dt.datasets.imageFolder(dir, { limit: 0 }), { name: 'RangeError', message: /options.limit/ });
  });

  it('fit streams an image folder (train transform), learns the classes, reports dataWaitShare, and repeats exactly with the same seed', async function () {
    this.timeout(120000);
    const train = dt.datasets.imageFolder(path.join(dir, 'train'), { size: 32, transform: 'train' });
    const val = dt.datasets.imageFolder(path.join(dir, 'val'), { size: 32, transform: 'eval' });
    const run = async () => {
      const model = tinyModel(3);
      const history = await model.fit(train, { epochs: 5, batchSize: 8, seed: 3, validationData: val, optimizer: { type: 'adam', lr: 0.01 } });
      return { model, history };
    };
    const a = await run();
    const b = await run();
    console.log(`      accuracy by epoch ${a.history.accuracy.map((x) => x.toFixed(2)).join(' ')}; val ${a.history.valAccuracy.map((x) => x.toFixed(2)).join(' ')}; data wait ${a.history.epochs.map((e) => e.dataWaitShare.toFixed(2)).join(' ')}`);
    assert.ok(a.history.valAccuracy[4] >= 0.95, `held-out accuracy ${a.history.valAccuracy[4]}`);
    for (const e of a.history.epochs) assert.ok(e.dataWaitShare >= 0 && e.dataWaitShare <= 1);
    assert.deepEqual(a.history.loss, b.history.loss, 'same seed, same draws, same losses');
    const r = await a.model.evaluate(val);
    assert.equal(r.accuracy, a.history.valAccuracy[4]);
  });

  it("transform 'trivialaugment' / 'randaugment' and randomErasing on an image folder: seeded, on top of the train geometry, erased boxes are zero in every channel, fit trains with them", async function () {
    this.timeout(120000);
    const first = async (options, seed = 3) => {
      const data = dt.datasets.imageFolder(path.join(dir, 'train'), { size: 32, normalize: false, ...options });
      const it = data.batches({ epoch: 0, batchSize: 12, train: true, shuffle: false, seed });
      const { value } = await it.next();
      await it.return();
      return value.images.toArray();
    };
    const plain = await first({ transform: 'train' });
    for (const transform of ['trivialaugment', 'randaugment']) {
      const a = await first({ transform });
      assert.deepEqual(a, await first({ transform }), `${transform}: the same seed gives the same pixels`);
      assert.notDeepEqual(a, plain, `${transform}: the policy changes the train transform's pixels`);
      assert.notDeepEqual(a, await first({ transform }, 4), `${transform}: another seed, other draws`);
    }
    const erased = await first({ transform: 'train', randomErasing: 1 });
    const pixels = 32 * 32;
    for (let k = 0; k < 12; k++) {
      let zeros = 0;
      for (let p = 0; p < pixels; p++) if ([0, 1, 2].every((c) => erased[(k * 3 + c) * pixels + p] === 0)) zeros += 1;
      assert.ok(zeros >= 0.02 * pixels * 0.5, `image ${k}: an erased box (${zeros} pixels zero in every channel)`);
    }
    assert.throws(() => dt.datasets.imageFolder(dir, { randomErasing: 2 }), { name: 'RangeError', message: /options.randomErasing to be a probability/ });
    const model = tinyModel(3);
    const train = dt.datasets.imageFolder(path.join(dir, 'train'), { size: 32, transform: 'randaugment', randomErasing: 0.25 });
    const history = await model.fit(train, { epochs: 1, batchSize: 8, seed: 3, optimizer: { type: 'adam', lr: 0.01 } });
    assert.ok(Number.isFinite(history.loss[0]));
  });

  it('an in-memory data set with augment trivialaugment / randaugment and randomErasing: seeded, needs 8-bit images', async function () {
    this.timeout(60000);
    const n = 16;
    const images = dt.tensor(new Uint8Array(n * 3 * 12 * 12).map((_, i) => (i * 29) % 256), [n, 3, 12, 12]);
    const labels = dt.tensor(new Int32Array(n).map((_, i) => i % 3), [n], { dtype: 'int32' });
    const base = dt.datasets.fromTensors(images, labels);
    const run = async (data, seed = 1) => {
      const model = tinyModel(3);
      await model.fit(data, { epochs: 1, batchSize: 8, shuffle: false, seed, optimizer: { type: 'sgd', lr: 0.1 } });
      return Array.from(model.stateDict()['classifier.weight'].toArray());
    };
    const plain = await run(base);
    for (const augment of ['trivialaugment', 'randaugment']) {
      const data = base.withAugmentation({ augment, randomErasing: 0.5 });
      assert.equal(data.augment, augment);
      assert.equal(data.randomErasing, 0.5);
      assert.equal(data.images, base.images, 'the images are shared, not copied');
      const a = await run(data);
      assert.deepEqual(a, await run(data), `${augment}: same seed, same training`);
      assert.notDeepEqual(a, plain, `${augment}: augmentation changes training`);
    }
    const floats = dt.datasets.fromTensors(dt.tensor(new Float32Array(n * 3 * 12 * 12), [n, 3, 12, 12]), labels);
    assert.throws(() => floats.withAugmentation({ augment: 'randaugment' }), { name: 'TypeError', message: /uint8 images with 1 or 3 channels/ });
    assert.throws(() => base.withAugmentation({ augment: 'autoaugment' }), { name: 'TypeError', message: /options.augment to be 'none', 'cifar', 'trivialaugment', 'randaugment'/ });
    assert.throws(() => base.withAugmentation({ randomErasing: -0.1 }), { name: 'RangeError', message: /randomErasing/ });
  });

  it('class names travel with the model: fit takes them from the folder, save/load keep them, classify and `densetorch predict` name them', async function () {
    this.timeout(120000);
    const train = dt.datasets.imageFolder(path.join(dir, 'train'), { size: 32, transform: 'train' });
    const model = tinyModel(3);
    assert.equal(model.classes, undefined);
    await model.fit(train, { epochs: 5, batchSize: 8, seed: 3, optimizer: { type: 'adam', lr: 0.01 } });
    assert.deepEqual(model.classes, ['blue', 'green', 'red']);
    const file = path.join(dir, 'colours.safetensors');
    await model.save(file);
    const loaded = await dt.load(file);
    assert.deepEqual(loaded.classes, ['blue', 'green', 'red']);
    const files = ['blue', 'green', 'red'].map((c) => path.join(dir, 'val', c, 'img002.jpg'));
    const results = await loaded.classify(files, { topK: 2 });
    assert.deepEqual(results.map((r) => r.file), files);
    assert.deepEqual(results.map((r) => r.top[0].className), ['blue', 'green', 'red']);
    for (const r of results) {
      assert.equal(r.top.length, 2);
      assert.ok(r.top[0].probability >= r.top[1].probability && r.top[0].probability <= 1);
    }
    const fromTensor = await loaded.classify(await dt.image.read(files[1], { size: 32 }), { topK: 1 });
    assert.equal(fromTensor.length, 1);
    assert.equal(fromTensor[0].file, undefined);
    assert.equal(fromTensor[0].top[0].className, 'green');
    assert.ok(Math.abs(fromTensor[0].top[0].probability - results[1].top[0].probability) < 1e-6);
    assert.throws(() => { loaded.classes = ['a', 'b']; }, { name: 'RangeError', message: /name 3 classes/ });
    const cli = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'predict', file, ...files, '--top', '1', '--json'], { encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
    assert.deepEqual(JSON.parse(cli.stdout).map((r) => r.top[0].className), ['blue', 'green', 'red']);
    const info = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'info', file], { encoding: 'utf8' });
    assert.match(info.stdout, /classes \(3\): blue, green, red/);
  });

  it('a corrupt file is a DataError naming it, or with onBadImage: skip is left out and counted', async function () {
    this.timeout(60000);
    const bad = path.join(dir, 'bad');
    fs.cpSync(path.join(dir, 'val'), bad, { recursive: true });
    fs.writeFileSync(path.join(bad, 'red', 'zzz-broken.jpg'), 'not a jpeg');
    const model = tinyModel(3);
    await assert.rejects(model.evaluate(dt.datasets.imageFolder(bad, { size: 32 })), { name: 'DataError', message: /cannot decode image '.*zzz-broken\.jpg'/ });
    await assert.rejects(model.fit(dt.datasets.imageFolder(bad, { size: 32 }), { epochs: 1, batchSize: 4 }), { name: 'DataError', message: /zzz-broken\.jpg/ });
    const skipping = dt.datasets.imageFolder(bad, { size: 32, onBadImage: 'skip' });
    const history = await model.fit(skipping, { epochs: 1, batchSize: 4 });
    assert.equal(history.epochs.length, 1);
    assert.deepEqual(skipping.skipped.map((f) => path.basename(f)), ['zzz-broken.jpg']);
    assert.deepEqual((await model.predict(await dt.image.read(path.join(bad, 'red', 'img000.jpg'), { size: 32 }))).shape, [1, 3]);
    await assert.rejects(dt.image.read(path.join(bad, 'red', 'zzz-broken.jpg')), { name: 'DataError', message: /zzz-broken\.jpg/ });
  });
});

describe('streamed sources (fromAsyncIterable)', () => {
  function batch(n, offset) {
    const images = new Float32Array(n * 3 * 8 * 8);
    const labels = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      labels[i] = (i + offset) % 2;
      images.fill(labels[i] ? 0.8 : -0.8, i * 192, (i + 1) * 192);
    }
    return { images: dt.tensor(images, [n, 3, 8, 8]), labels: dt.tensor(labels, [n], { dtype: 'int32' }) };
  }

  it('a producer that awaits another model\'s predict() for each batch (distillation) trains: the run serves the prediction while it waits for data', async function () {
    this.timeout(60000);
    const teacher = tinyModel(2).eval();
    let asked = 0;
    const data = dt.datasets.fromAsyncIterable(async function* () {
      for (let b = 0; b < 6; b++) {
        const { images, labels } = batch(8, b);
        const logits = await teacher.predict(images); // soft targets would come from these
        assert.deepEqual(logits.shape, [8, 2]);
        asked += 1;
        yield { images, labels };
      }
    }, { length: 48, prefetch: 1 });
    const history = await tinyModel(2).fit(data, { epochs: 2, batchSize: 8 });
    assert.equal(asked, 12);
    assert.equal(history.epochs.length, 2);
  });

  it('trains from a function of the epoch; the producer stays at most a few batches ahead of training', async function () {
    this.timeout(60000);
    const epochsAsked = [];
    let produced = 0;
    let ahead = 0;
    const data = dt.datasets.fromAsyncIterable(async function* (epoch) {
      epochsAsked.push(epoch);
      for (let b = 0; b < 12; b++) {
        produced += 1;
        yield batch(8, b);
      }
    }, { length: 96, prefetch: 2 });
    let trained = 0;
    const model = tinyModel(2);
    const history = await model.fit(data, {
      epochs: 3, batchSize: 8, optimizer: { type: 'adam', lr: 0.01 },
      onBatchEnd: (logs) => {
        trained += 1;
        ahead = Math.max(ahead, produced - trained);
        assert.equal(logs.batches, 12);
      },
    });
    assert.deepEqual(epochsAsked, [0, 1, 2]);
    assert.ok(ahead <= 2 + 2, `the producer ran ${ahead} batches ahead (prefetch 2)`);
    assert.ok(history.accuracy[2] >= 0.95, `accuracy ${history.accuracy[2]}`);
  });

  it('a failing source, bad labels and bad batches reject fit with a DataError; bad sources are TypeErrors', async function () {
    this.timeout(60000);
    const model = tinyModel(2);
    const failing = dt.datasets.fromAsyncIterable(async function* () {
      yield batch(4, 0);
      throw new Error('disk on fire');
    });
    await assert.rejects(model.fit(failing, { epochs: 1 }), { name: 'DataError', message: 'disk on fire' });
    const outOfRange = dt.datasets.fromAsyncIterable(async function* () {
      yield { images: dt.tensor(new Float32Array(2 * 192), [2, 3, 8, 8]), labels: dt.tensor([0, 5], [2], { dtype: 'int32' }) };
    });
    await assert.rejects(model.fit(outOfRange, { epochs: 1 }), { name: 'DataError', message: /labels must be in \[0, 1\] for a model with 2 classes, got a batch with labels from 0 to 5/ });
    const wrongKind = dt.datasets.fromAsyncIterable(async function* () {
      yield { images: dt.tensor(new Uint8Array(192), [1, 3, 8, 8]), labels: dt.tensor([0], [1], { dtype: 'int32' }) };
    });
    await assert.rejects(model.fit(wrongKind, { epochs: 1 }), { name: 'DataError', message: /Expected batch.images to be float32/ });
    const empty = dt.datasets.fromAsyncIterable(async function* () {});
    await assert.rejects(model.fit(empty, { epochs: 1 }), { name: 'DataError', message: /delivered no batch in epoch 1/ });
    assert.throws(() => dt.datasets.fromAsyncIterable([1, 2]), { name: 'TypeError', message: /Expected source to be an async iterable/ });
    assert.throws(() => dt.datasets.fromAsyncIterable(async function* () {}, { size: 3 }), { name: 'TypeError', message: /Unknown option 'size'/ });
    // the model is still usable
    assert.equal((await model.fit(dt.datasets.fromAsyncIterable(async function* () { yield batch(4, 0); }), { epochs: 1 })).epochs.length, 1);
  });

  it('aborting fit while the source is slow stops within the wait, not after the source', async function () {
    this.timeout(60000);
    const model = tinyModel(2);
    const slow = dt.datasets.fromAsyncIterable(async function* () {
      yield batch(4, 0);
      await new Promise((resolve) => setTimeout(resolve, 20000));
      yield batch(4, 1);
    });
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 300);
    await assert.rejects(model.fit(slow, { epochs: 1, signal: controller.signal }), { name: 'AbortError' });
    assert.ok(Date.now() - started < 10000, 'did not wait for the slow source');
  });
});
