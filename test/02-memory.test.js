'use strict';
const assert = require('node:assert/strict');
const dt = require('..');
const { rssMiB, collectGarbage, assertBoundedGrowth } = require('./helpers');

describe('tensors: memory', () => {
  it('creating and disposing 10,000 tensors of 1 MB grows RSS by less than 50 MB', async () => {
    const data = new Float32Array(256 * 1024); // 1 MiB
    for (let i = 0; i < 50; i++) dt.tensor(data, [256, 1024]).dispose(); // warm up allocator
    await collectGarbage();
    const before = rssMiB();
    for (let i = 0; i < 10000; i++) {
      const t = dt.tensor(data, [256, 1024]);
      t.dispose();
    }
    await collectGarbage();
    const growth = rssMiB() - before;
    console.log(`      RSS growth after 10,000 x 1 MB create/dispose: ${growth.toFixed(1)} MB`);
    assertBoundedGrowth(growth, 50);
  });

  it('frees tensors that are only dropped (no dispose) when they are garbage collected', async () => {
    const { addon } = require('../dist/native.js');
    const data = new Float32Array(256 * 1024);
    await collectGarbage();
    const reportedBefore = addon().externalMemory();
    let rssAfterWarmup = 0;
    for (let round = 0; round < 20; round++) {
      let kept = [];
      for (let i = 0; i < 100; i++) kept.push(dt.tensor(data, [256, 1024])); // 100 MB alive at once
      kept = null;
      await collectGarbage(2);
      if (round === 1) rssAfterWarmup = rssMiB();
    }
    await collectGarbage();
    const reportedAfter = addon().externalMemory();
    const growth = rssMiB() - rssAfterWarmup;
    console.log(`      2,000 x 1 MB dropped tensors: reported native memory ${((reportedAfter - reportedBefore) / 1048576).toFixed(1)} MiB left after GC; RSS growth over rounds 2-20: ${growth.toFixed(1)} MB`);
    assert.equal(reportedAfter, reportedBefore, 'every finalizer ran and released its tensor');
    assertBoundedGrowth(growth, 50);
  });

  it('reports tensor memory to V8 as external memory, and uncounts it on dispose', () => {
    const { addon } = require('../dist/native.js');
    const data = new Float32Array(4 * 1024 * 1024); // 16 MiB
    const before = addon().externalMemory();
    const t = dt.tensor(data, [4, 1024, 1024]);
    const during = addon().externalMemory();
    t.dispose();
    const after = addon().externalMemory();
    const mib = (x) => (x / 1048576).toFixed(1);
    console.log(`      reported external memory: before ${mib(before)} MiB, with tensor ${mib(during)} MiB, after dispose ${mib(after)} MiB`);
    assert.equal(during - before, 16 * 1048576);
    assert.equal(after, before);
  });

  it('fit reuses a step\'s memory: from the third step on a step faults in under 2% of the 4 KiB pages its memory spans, and the memory goes back when fit returns', async function () {
    this.timeout(120000);
    const model = dt.densenetCifar({ depth: 40, growthRate: 12, numClasses: 10 });
    const n = 32;
    const images = dt.tensor(new Float32Array(n * 3 * 32 * 32).map(() => Math.random() - 0.5), [n, 3, 32, 32]);
    const labels = dt.tensor(Array.from({ length: n }, (_, i) => i % 10), [n], { dtype: 'int64' });
    const faults = [];
    let last = process.resourceUsage().minorPageFault;
    const before = rssMiB();
    let peak = before;
    await model.fit(dt.datasets.fromTensors(images, labels), {
      epochs: 6, batchSize: n, shuffle: false,
      onBatchEnd: () => {
        const now = process.resourceUsage().minorPageFault;
        faults.push(now - last);
        last = now;
        peak = Math.max(peak, rssMiB());
      },
    });
    const after = rssMiB();
    console.log(`      page faults per step: ${faults.join(', ')}; RSS before ${before.toFixed(0)}, peak ${peak.toFixed(0)}, after fit ${after.toFixed(0)} MiB`);
    // Measured against the pages the run's memory spans, not against the first step's faults: those
    // count huge pages once each where the kernel grants them (a step that maps its activations
    // afresh faults thousands of times: 8,000-17,000 per step before densetorch's own heap).
    const pages = ((peak - before) * 1048576) / 4096;
    for (const f of faults.slice(2)) assert.ok(f < 0.02 * pages, `a later step faulted ${f} times (the run spans ${pages.toFixed(0)} pages; the first step faulted ${faults[0]})`);
    assert.ok(after - before < 0.5 * (peak - before), `RSS after fit ${after.toFixed(0)} MiB: the run's memory was not given back`);
    images.dispose();
    labels.dispose();
  });
});
