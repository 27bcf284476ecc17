'use strict';
// The model file knows its input: fit records the spec of its data, save/load carry it, and every
// reader of pictures (image.read with a model, classify, the CLI's predict and serve) uses it.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const sharp = require('sharp');
const dt = require('..');
const { maxAbsDiff, startServer } = require('./helpers');

const CLI = path.join(__dirname, '..', 'dist', 'cli.js');
const MNIST_SPEC = { channels: 1, height: 28, width: 28, resize: 'stretch', channelOrder: 'gray', valueRange: [0, 1], mean: [0.1307], std: [0.3081] };

function cli(args) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

/** Image i of an in-memory uint8 data set as a PNG (lossless: the same pixels). */
async function pngOf(data, i) {
  const [c, h, w] = data.imageShape;
  const chw = data.images.toArray().subarray(i * c * h * w, (i + 1) * c * h * w);
  const hwc = new Uint8Array(c * h * w);
  for (let k = 0; k < c; k++) for (let p = 0; p < h * w; p++) hwc[p * c + k] = chw[k * h * w + p];
  return sharp(Buffer.from(hwc), { raw: { width: w, height: h, channels: c } }).png().toBuffer();
}

/** Image i of a data set as the model sees it in training: (pixel / 255 - mean) / std. */
function normalised(data, i) {
  const [c, h, w] = data.imageShape;
  const chw = data.images.toArray().subarray(i * c * h * w, (i + 1) * c * h * w);
  const out = new Float32Array(c * h * w);
  for (let k = 0; k < c; k++) for (let p = 0; p < h * w; p++) out[k * h * w + p] = (chw[k * h * w + p] / 255 - data.normalize.mean[k]) / data.normalize.std[k];
  return dt.tensor(out, [1, c, h, w]);
}

const argmax = (t) => {
  const a = Array.from(t.toArray());
  return a.indexOf(Math.max(...a));
};

describe('the input spec in the model file', () => {
  let dir;
  let test;
  let model;
  let file;
  before(async function () {
    this.timeout(300000);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-input-'));
    dt.manualSeed(0);
    test = dt.datasets.mnist({ split: 'test', limit: 100 });
    model = dt.densenetCifar({ depth: 10, growthRate: 6, inChannels: 1, numClasses: 10 });
    await model.fit(dt.datasets.mnist({ limit: 300 }), { epochs: 2, batchSize: 32 });
    file = path.join(dir, 'mnist.safetensors');
    await model.save(file);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('fit records what its data gives the model (MNIST: 1 x 28 x 28 grey, scaled to [0, 1], its mean and std); save and load carry it; info shows it', async () => {
    assert.deepEqual(JSON.parse(JSON.stringify(model.input)), MNIST_SPEC);
    const again = await dt.load(file);
    assert.deepEqual(again.input, model.input);
    const info = cli(['info', file]);
    assert.equal(info.status, 0, info.err);
    assert.match(info.out, /input: 1 x 28 x 28 gray, stretch, pixels scaled to \[0, 1\], mean \[0\.1307\] std \[0\.3081\]/);
    assert.doesNotMatch(info.out, /densetorch\.input:/, 'shown once, as the input line');
  });

  it('dt.image.read(png, { model }) gives the tensor training saw (within 1e-6), and classify answers as predict does', async () => {
    for (const i of [0, 37, 99]) {
      const png = await pngOf(test, i);
      const x = await dt.image.read(png, { model });
      const want = normalised(test, i);
      assert.deepEqual(x.shape, [1, 1, 28, 28]);
      assert.ok(maxAbsDiff(x, want) <= 1e-6, `image ${i}: ${maxAbsDiff(x, want)}`);
      const [c] = await model.classify(png, { topK: 3 });
      assert.equal(c.top[0].label, argmax(await model.predict(want)));
      assert.equal(c.top[0].className, String(c.top[0].label));
    }
    await assert.rejects(dt.image.read(await pngOf(test, 0), { model, size: 32 }), { name: 'TypeError', message: /options.model decides size, transform and normalize/ });
  });

  it('a picture of another size and in colour is brought to the spec (grey, 28 x 28)', async () => {
    const big = await sharp({ create: { width: 90, height: 60, channels: 3, background: { r: 250, g: 250, b: 250 } } }).jpeg().toBuffer();
    const x = await dt.image.read(big, { model });
    assert.deepEqual(x.shape, [1, 1, 28, 28]);
    const v = (250 / 255 - 0.1307) / 0.3081;
    assert.ok(Array.from(x.toArray()).every((p) => Math.abs(p - v) < 0.05), 'a light grey picture reads light grey everywhere');
  });

  it('right after training, `densetorch predict model digit.png` answers a digit, and `densetorch serve` answers an uploaded image', async function () {
    this.timeout(120000);
    const png = path.join(dir, 'digit.png');
    fs.writeFileSync(png, await pngOf(test, 5));
    const want = argmax(await model.predict(normalised(test, 5)));
    const r = cli(['predict', file, png, '--json', '--top', '3']);
    assert.equal(r.status, 0, r.err);
    assert.doesNotMatch(r.err, /no input spec/);
    const [answer] = JSON.parse(r.out);
    assert.equal(answer.top[0].label, want);
    assert.match(answer.top[0].className, /^\d$/);

    const { child, url } = await startServer(file);
    try {
      const res = await fetch(`${url}/predict`, { method: 'POST', headers: { 'Content-Type': 'image/png' }, body: fs.readFileSync(png) });
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.predictions[0].top[0].label, want);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('a model without a spec (weights saved before densetorch recorded one) reads pictures by the old guess, with a warning', async () => {
    const bare = dt.densenetCifar({ depth: 10, growthRate: 4, numClasses: 3 });
    assert.equal(bare.input, undefined);
    const warnings = [];
    const onWarning = (w) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 10, g: 200, b: 30 } } }).png().toBuffer();
      const x = await dt.image.read(png, { model: bare });
      assert.deepEqual(x.shape, [1, 3, 32, 32]);
      await bare.classify(png);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    assert.equal(warnings.filter((w) => w.name === 'DensetorchWarning').length, 1, 'warned once for the model');
    assert.match(warnings[0].message, /no input spec.*3 x 32 x 32 rgb/);
  });

  it('every data source fills it: tensors (uint8, or float32 with a normalize option), image folders (torchvision\'s eval transform); custom sources do not', () => {
    const u8 = dt.datasets.fromTensors(dt.tensor(new Uint8Array(2 * 3 * 20 * 24), [2, 3, 20, 24]), dt.tensor([0, 1], [2], { dtype: 'int64' }));
    assert.deepEqual(JSON.parse(JSON.stringify(u8.input)), { channels: 3, height: 20, width: 24, resize: 'stretch', channelOrder: 'rgb', valueRange: [0, 1], mean: [0, 0, 0], std: [1, 1, 1] });
    const f32 = (normalize) => dt.datasets.fromTensors(dt.tensor(new Float32Array(2 * 16), [2, 1, 4, 4]), dt.tensor([0, 1], [2], { dtype: 'int64' }), normalize ? { normalize } : {});
    assert.equal(f32().input, undefined, 'float32 pixels without a normalize option: unknown');
    assert.deepEqual([...f32({ mean: [0.5], std: [0.25] }).input.mean], [0.5]);
    const folder = fs.mkdtempSync(path.join(dir, 'folder-'));
    fs.mkdirSync(path.join(folder, 'a'));
    fs.writeFileSync(path.join(folder, 'a', 'x.png'), '');
    const spec = dt.datasets.imageFolder(folder, { size: 64 }).input;
    assert.equal(spec.resize, 'center-crop');
    assert.equal(spec.resizeShorterEdge, 73);
    assert.deepEqual([spec.channels, spec.height, spec.width], [3, 64, 64]);
    assert.equal(dt.datasets.fromAsyncIterable(async function* () {}).input, undefined);
  });

  it('model.setInput states it (validated against the model), and a fit on data that cannot tell keeps it', async () => {
    const m = dt.densenetCifar({ depth: 10, growthRate: 4, numClasses: 2 });
    assert.throws(() => m.setInput({ ...MNIST_SPEC }), { name: 'RangeError', message: /spec.channels is 1 but the model takes 3 channels/ });
    assert.throws(() => m.setInput({ channels: 3, height: 32, width: 40, resize: 'center-crop' }), { name: 'RangeError', message: /'center-crop' needs a square input/ });
    assert.throws(() => m.setInput({ channels: 3, height: 32, width: 32, colour: 'rgb' }), { name: 'TypeError', message: /Unknown option 'colour'/ });
    assert.throws(() => m.setInput({ channels: 3, height: 32, width: 32, std: [1, 0, 1] }), { name: 'TypeError', message: /spec.std to be 3 positive number/ });
    m.setInput({ channels: 3, height: 32, width: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    const stream = dt.datasets.fromAsyncIterable(async function* () {
      yield { images: dt.tensor(new Float32Array(4 * 3 * 32 * 32), [4, 3, 32, 32]), labels: dt.tensor([0, 1, 0, 1], [4], { dtype: 'int64' }) };
    }, { length: 4 });
    await m.fit(stream, { epochs: 1, batchSize: 4 });
    assert.deepEqual([...m.input.mean], [0.5, 0.5, 0.5]);
    const saved = path.join(dir, 'stated.safetensors');
    await m.save(saved);
    assert.deepEqual((await dt.load(saved)).input, m.input);
  });
});
