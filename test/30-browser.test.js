'use strict';
// The browser demo (examples/browser): a model exported by densetorch, served by a local static
// server, classified in Debian's chromium (headless, driven by puppeteer-core) with
// onnxruntime-web; the page's top classes and probabilities equal model.classify's on the same
// file. Skips, saying why, where no chromium is installed.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const sharp = require('sharp');
const dt = require('..');

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((f) => fs.existsSync(f));

describe('the browser demo (onnxruntime-web in headless chromium)', function () {
  this.timeout(300000);
  let dir;
  before(function () {
    if (!CHROMIUM) {
      console.log('      skipped: no chromium (Debian: apt-get install chromium; .ci/run installs it where apt-get can)');
      this.skip();
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-browser-'));
  });
  after(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

  it('classifies an image file with the exported model: top-5 class names and probabilities equal model.classify\'s (<= 1e-3)', async () => {
    // A small RGB model trained on 32 x 32 uint8 images with named classes: the file carries
    // the input spec (3 x 32 x 32, stretch, its normalisation) and the names.
    dt.manualSeed(0);
    const n = 24;
    const pixels = Uint8Array.from({ length: n * 3 * 32 * 32 }, (_, i) => (i * 37 + (i >> 10) * 91) % 256);
    const data = dt.datasets.fromTensors(dt.tensor(pixels, [n, 3, 32, 32]), dt.tensor(Array.from({ length: n }, (_, i) => i % 6), [n], { dtype: 'int64' }), {
      normalize: { mean: [0.5, 0.45, 0.4], std: [0.25, 0.24, 0.26] }, classes: ['ant', 'bee', 'cat', 'dog', 'eel', 'fox'],
    });
    const model = dt.densenetCifar({ depth: 16, growthRate: 6, numClasses: 6 });
    await model.fit(data, { epochs: 2, batchSize: 8, optimizer: { type: 'sgd', lr: 0.01 } });
    const onnxFile = path.join(dir, 'model.onnx');
    await model.exportOnnx(onnxFile);
    // The picture: 32 x 32 (the trained size, so no resizing: the same pixels on both sides), PNG.
    const picture = path.join(dir, 'picture.png');
    const rgb = Buffer.from(Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 53 + 17) % 256));
    await sharp(rgb, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(picture);
    const [want] = await model.classify(picture, { topK: 6 });
    const wantByLabel = new Map(want.top.map((t) => [t.label, t.probability]));

    const { start } = require('../examples/browser/serve.js');
    const { server, url } = await start(onnxFile, { files: { '/picture.png': picture } });
    const puppeteer = require('puppeteer-core');
    const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    try {
      const page = await browser.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${url}/index.html`, { waitUntil: 'load' });
      const { got, probabilities } = await page.evaluate(async () => {
        await window.densetorchDemo.loaded;
        const top = await window.densetorchDemo.classifyUrl('picture.png');
        return { got: top, probabilities: window.densetorchDemo.probabilities };
      });
      const status = await page.$eval('#status', (e) => e.textContent);
      const rows = await page.$$eval('#top tr', (trs) => trs.length);
      const worst = Math.max(...probabilities.map((p, label) => Math.abs(p - wantByLabel.get(label))));
      console.log(`      page: "${status}"; top-1 ${got[0].className} ${(100 * got[0].probability).toFixed(2)}% (model.classify: ${want.top[0].className} ${(100 * want.top[0].probability).toFixed(2)}%); largest probability difference ${worst.toExponential(2)}`);
      assert.deepEqual(errors, []);
      assert.match(status, /3 x 32 x 32, 6 classes/);
      assert.equal(rows, 5);
      assert.equal(got[0].className, want.top[0].className, 'the same top-1 class');
      assert.equal(probabilities.length, 6);
      probabilities.forEach((p, label) => assert.ok(Math.abs(p - wantByLabel.get(label)) <= 1e-3, `class ${label}: page ${p}, model.classify ${wantByLabel.get(label)}`));
    } finally {
      await browser.close();
      server.close();
    }
  });
});
