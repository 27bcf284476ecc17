'use strict';
// Streamed data keeps memory flat: one epoch over an image folder of 20,000 files peaks within
// 50 MB of one over 2,000 (small images, so the test stays fast). Each run in its own process,
// peak RSS = VmHWM.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const sharp = require('sharp');
const { ROOT } = require('./helpers');

const RUN = `
const dt = require(${JSON.stringify(ROOT)});
(async () => {
  dt.manualSeed(0);
  const data = dt.datasets.imageFolder(process.argv[1], { size: 16, transform: 'train' });
  const model = new dt.DenseNet({ growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, bnSize: 2, compression: 0.5,
    dropRate: 0, numClasses: 2, inChannels: 3, stem: 'cifar', memoryEfficient: false });
  const history = await model.fit(data, { epochs: 1, batchSize: 256 });
  const hwm = Number(/VmHWM:\\s+(\\d+) kB/.exec(require('node:fs').readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
  console.log(JSON.stringify({ files: data.length, peakMiB: hwm, images: Math.round(history.epochs[0].imagesPerSecond * history.epochs[0].seconds) }));
})().catch((err) => { console.error(err); process.exit(1); });
`;

describe('streamed data: memory does not grow with the number of files', () => {
  let dir;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-many-'));
  });
  after(function () {
    this.timeout(120000); // removing 22,000 files
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('one epoch over 20,000 files peaks within 50 MB of one over 2,000', async function () {
    this.timeout(600000);
    const pngs = await Promise.all([[200, 40, 40], [40, 40, 200]].map(([r, g, b]) =>
      sharp({ create: { width: 24, height: 20, channels: 3, background: { r, g, b }, noise: { type: 'gaussian', mean: 128, sigma: 30 } } }).png().toBuffer()));
    const peaks = {};
    for (const n of [2000, 20000]) {
      const folder = path.join(dir, `n${n}`);
      for (const c of [0, 1]) fs.mkdirSync(path.join(folder, `class${c}`), { recursive: true });
      for (let i = 0; i < n; i++) fs.writeFileSync(path.join(folder, `class${i % 2}`, `img${String(i).padStart(5, '0')}.png`), pngs[i % 2]);
      const r = spawnSync(process.execPath, ['-e', RUN, folder], { encoding: 'utf8', timeout: 500000 });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const out = JSON.parse(r.stdout.trim().split('\n').pop());
      assert.equal(out.files, n);
      assert.equal(out.images, n);
      peaks[n] = out.peakMiB;
    }
    console.log(`      peak RSS: ${peaks[2000].toFixed(0)} MiB over 2,000 files, ${peaks[20000].toFixed(0)} MiB over 20,000`);
    assert.ok(peaks[20000] - peaks[2000] < 50, `grew by ${(peaks[20000] - peaks[2000]).toFixed(1)} MB`);
  });
});
