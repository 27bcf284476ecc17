'use strict';
// IDX files (MNIST, Fashion-MNIST, EMNIST, KMNIST), and Fashion-MNIST from Debian's package.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { spawnSync } = require('node:child_process');
const { ROOT } = require('./helpers');
const dt = require('..');

function idxBytes(shape, values) {
  const header = Buffer.alloc(4 + 4 * shape.length);
  header[2] = 0x08;
  header[3] = shape.length;
  shape.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(values)]);
}

describe('IDX data sets', () => {
  let dir;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-idx-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads images and labels, plain or gzip, into uint8 [N, 1, rows, cols] with labels and class names', () => {
    const pixels = Array.from({ length: 3 * 4 * 5 }, (_, i) => i);
    fs.writeFileSync(path.join(dir, 'images'), idxBytes([3, 4, 5], pixels));
    fs.writeFileSync(path.join(dir, 'labels.gz'), zlib.gzipSync(idxBytes([3], [2, 0, 1])));
    const data = dt.datasets.idx(path.join(dir, 'images'), path.join(dir, 'labels.gz'), { classes: ['a', 'b', 'c'] });
    assert.equal(data.length, 3);
    assert.deepEqual(data.images.shape, [3, 1, 4, 5]);
    assert.equal(data.images.dtype, 'uint8');
    assert.deepEqual([...data.images.toArray()], pixels);
    assert.deepEqual([...data.labels.toArray()].map(Number), [2, 0, 1]);
    assert.deepEqual(data.classes, ['a', 'b', 'c']);
    assert.equal(dt.datasets.idx(path.join(dir, 'images'), path.join(dir, 'labels.gz'), { limit: 2 }).length, 2);
  });

  it('rejects files that are not IDX, truncated, of another type, or whose counts differ', () => {
    const write = (name, bytes) => {
      fs.writeFileSync(path.join(dir, name), bytes);
      return path.join(dir, name);
    };
    const labels = write('l', idxBytes([2], [0, 1]));
    const cases = [
      [write('magic', Buffer.from([1, 2, 3, 4, 5])), /is not an IDX file \(bad magic number\)/],
      [write('short', idxBytes([2, 2, 2], [1, 2, 3])), /has 3 bytes of data but its shape \[2, 2, 2\] needs 8/],
      [write('float', Buffer.from([0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0])), /only unsigned bytes \(0x08\)/],
      [write('count', idxBytes([3, 1, 1], [1, 2, 3])), /holds 3 images but 'l' 2 labels/],
      [write('gz', Buffer.from([0x1f, 0x8b, 1, 2])), /looks gzip-compressed but does not decompress/],
      [path.join(dir, 'missing'), /cannot read IDX file/],
    ];
    for (const [file, message] of cases) assert.throws(() => dt.datasets.idx(file, labels), { name: 'DataError', message });
    assert.throws(() => dt.datasets.idx(labels, labels), { name: 'DataError', message: /images need \[N, rows, cols\]/ });
    assert.throws(() => dt.datasets.idx(42, labels), { name: 'TypeError', message: /Expected imagesFile to be a file path but received 42 of type number/ });
  });

  it("Fashion-MNIST: a clear error when its files are missing, saying how to get them", () => {
    assert.throws(() => dt.datasets.fashionMnist({ dir: path.join(dir, 'nowhere') }), {
      name: 'DataError', message: /Fashion-MNIST's train images are not in .*apt-get install dataset-fashion-mnist/,
    });
  });

  it("Fashion-MNIST from Debian's dataset-fashion-mnist: 60,000 + 10,000 images, 10 named classes; `densetorch train --dataset fashion-mnist` learns", function () {
    this.timeout(300000);
    if (!fs.existsSync(path.join(dt.datasets.FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz'))) {
      console.log(`      (skipped: ${dt.datasets.FASHION_MNIST_DIR} is empty; apt-get install dataset-fashion-mnist)`);
      this.skip();
    }
    const train = dt.datasets.fashionMnist();
    const test = dt.datasets.fashionMnist({ split: 'test' });
    assert.equal(train.length, 60000);
    assert.equal(test.length, 10000);
    assert.deepEqual(train.images.shape, [60000, 1, 28, 28]);
    assert.equal(train.classes[9], 'Ankle boot');
    const counts = new Array(10).fill(0);
    for (const l of test.labels.toArray()) counts[Number(l)] += 1;
    assert.deepEqual(counts, new Array(10).fill(1000));
    const out = path.join(dir, 'fashion.safetensors');
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'train', '--dataset', 'fashion-mnist', '--limit', '4000',
      '--epochs', '3', '--depth', '16', '--growth-rate', '12', '--batch-size', '32', '--out', out], { encoding: 'utf8', timeout: 280000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const accuracy = Number(/test accuracy ([\d.]+)/.exec(r.stdout)[1]);
    console.log(`      3 epochs on 4,000 images: test accuracy ${accuracy} (on the first 4,000 test images)`);
    assert.ok(accuracy > 0.7, `accuracy ${accuracy} (10 classes: chance is 0.1)`);
    const info = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'info', out], { encoding: 'utf8' });
    assert.match(info.stdout, /classes \(10\): T-shirt\/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot/);
  });

  it('`densetorch train --recipe fashion`, shortened (4,000 images, 3 epochs): the recipe\'s options apply, the weight average is evaluated and saved, and it learns', function () {
    this.timeout(300000);
    if (!fs.existsSync(path.join(dt.datasets.FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz'))) {
      console.log(`      (skipped: ${dt.datasets.FASHION_MNIST_DIR} is empty; apt-get install dataset-fashion-mnist)`);
      this.skip();
    }
    const out = path.join(dir, 'recipe.safetensors');
    const started = Date.now();
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'train', '--recipe', 'fashion', '--limit', '4000', '--epochs', '3',
      '--ema-decay', '0.99', '--out', out], { encoding: 'utf8', timeout: 280000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /DenseNet-BC \(L=40, k=12\)/);
    assert.match(r.stdout, /3 epochs of batch 64, sgd lr 0\.1, cosine schedule/);
    const [, raw, ema] = /test accuracy ([\d.]+); weight average ([\d.]+) \(saved\)/.exec(r.stdout);
    console.log(`      3 epochs on 4,000 images in ${((Date.now() - started) / 1000).toFixed(0)} s: test accuracy ${raw}, weight average ${ema} (first 4,000 test images)`);
    assert.ok(Number(raw) > 0.7 && Number(ema) > 0.7, `accuracy ${raw}, weight average ${ema} (chance is 0.1)`);
    const evaluated = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'evaluate', out, '--dataset', 'fashion-mnist', '--limit', '4000'], { encoding: 'utf8' });
    assert.equal(evaluated.status, 0, evaluated.stderr);
    assert.match(evaluated.stdout, new RegExp(`accuracy ${ema}`), 'the saved weights are the average');
  });
});
