'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const dt = require('..');

describe('CUDA (needs a GPU and a CUDA LibTorch)', function () {
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

  it('runs forward and predict on cuda and matches the CPU model', async () => {
    dt.manualSeed(0);
    const cpu = dt.densenetCifar({ depth: 16, growthRate: 6 }).eval();
    const gpu = dt.densenetCifar({ depth: 16, growthRate: 6, device: 'cuda' }).eval();
    gpu.loadStateDict(Object.fromEntries(Object.entries(cpu.stateDict()).map(([k, v]) => [k, v.to('cuda')])));
    const x = dt.tensor(new Float32Array(4 * 3 * 32 * 32).map((_, i) => Math.sin(i)), [4, 3, 32, 32]);
    const a = cpu.forward(x).toArray();
    const b = (await gpu.predict(x.to('cuda'))).toArray();
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-3, `${a[i]} vs ${b[i]}`);
  });

  it('trains on cuda (memory-efficient) and saves from CPU copies', async () => {
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
  });
});
