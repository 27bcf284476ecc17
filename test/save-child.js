'use strict';
/**
 * Child of the kill-mid-save test (test/13-robustness.test.js). Saves without pause until killed:
 *   node test/save-child.js weights <file>      model.save() of versions 1, 2, 3, ...: version k has
 *                                              classifier.bias[0] = k; prints "saved k" after each
 *   node test/save-child.js checkpoint <file>   fit() with a checkpoint after every epoch; prints
 *                                              "epoch k" after each (the checkpoint of epoch k is
 *                                              written before the report)
 * The model is DenseNet-121 (10 classes): a 32 MB weight file, a 64 MB checkpoint with the
 * optimizer state, so most of the child's time is spent writing.
 */
const dt = require('..');

const [mode, file] = process.argv.slice(2);
dt.setNumThreads(1);
const model = dt.densenet121({ numClasses: 10 });

async function saveVersions() {
  for (let k = 1; ; k++) {
    const values = new Float32Array(10);
    values[0] = k;
    model.loadStateDict({ 'classifier.bias': dt.tensor(values, [10]) }, { strict: false });
    await model.save(file);
    process.stdout.write(`saved ${k}\n`);
  }
}

async function checkpointEpochs() {
  const images = dt.tensor(Float32Array.from({ length: 2 * 3 * 32 * 32 }, (_, i) => ((i * 7919) % 255) / 255), [2, 3, 32, 32]);
  const labels = dt.tensor([0, 1], [2], { dtype: 'int64' });
  const data = dt.datasets.fromTensors(images, labels);
  await model.fit(data, {
    epochs: 1000000,
    batchSize: 2,
    optimizer: { type: 'sgd', lr: 0.01 },
    checkpoint: { path: file },
    onEpochEnd: (e) => process.stdout.write(`epoch ${e.epoch}\n`),
  });
}

(mode === 'weights' ? saveVersions() : checkpointEpochs()).catch((err) => {
  console.error(err);
  process.exit(1);
});
