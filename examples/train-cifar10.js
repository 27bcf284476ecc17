// The paper's CIFAR-10 recipe for DenseNet-BC (L=100, k=12): SGD lr 0.1, Nesterov momentum 0.9,
// weight decay 1e-4, batch 64, 300 epochs, lr divided by 10 at 50% and 75% of training,
// random crop + flip augmentation. Needs the binary CIFAR-10 files (cifar-10-batches-bin).
// Run: node examples/train-cifar10.js /path/to/cifar-10-batches-bin [epochs]
'use strict';
const dt = require('..');

async function main() {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: node examples/train-cifar10.js <cifar-10-batches-bin folder> [epochs]');
  const epochs = Number(process.argv[3] || 300);
  const train = dt.datasets.cifar10(dir, { split: 'train' }); // augment: 'cifar'
  const test = dt.datasets.cifar10(dir, { split: 'test' });
  dt.manualSeed(0);
  const model = dt.densenetCifar({ depth: 100, growthRate: 12, memoryEfficient: true });
  await model.fit(train, {
    epochs,
    batchSize: 64,
    optimizer: { type: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-4 },
    schedule: { type: 'multistep', milestones: [0.5, 0.75], gamma: 0.1 },
    validationData: test,
    checkpoint: { path: 'cifar10-bc100.ckpt', everyEpochs: 1 },
    onEpochEnd: (e) => console.log(`epoch ${e.epoch}/${epochs}: loss ${e.loss.toFixed(4)} acc ${e.accuracy.toFixed(4)} | test error ${(100 * (1 - e.valAccuracy)).toFixed(2)}% | lr ${e.lr} | ${e.seconds.toFixed(0)} s`),
  });
  await model.save('cifar10-densenet-bc100.safetensors');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
