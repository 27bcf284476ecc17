// Fine-tune a torchvision DenseNet-121 checkpoint (.pth state dict, e.g. torchvision's
// densenet121-a639ec97.pth, or any torch.save(model.state_dict(), path)) on a new task.
// The classifier is replaced for the new number of classes; the features keep their weights.
// Run: node examples/finetune-torchvision.js densenet121.pth
'use strict';
const dt = require('..');

async function main() {
  const file = process.argv[2];
  if (!file) throw new Error('usage: node examples/finetune-torchvision.js <densenet121 .pth or .safetensors>');
  const pretrained = dt.densenet121(); // 1000 ImageNet classes, as the file
  await pretrained.loadWeights(file); // torchvision's legacy 'norm.1' key names are handled

  const model = dt.densenet121({ numClasses: 10, inChannels: 3, memoryEfficient: true });
  const features = Object.fromEntries(Object.entries(pretrained.stateDict()).filter(([k]) => k.startsWith('features.')));
  model.loadStateDict(features, { strict: false }); // keep the new classifier

  // A stand-in data set of 64x64 images; use dt.datasets.fromTensors with your own data.
  const n = 64;
  const images = dt.tensor(new Uint8Array(n * 3 * 64 * 64).map(() => Math.random() * 255), [n, 3, 64, 64]);
  const labels = dt.tensor(Array.from({ length: n }, (_, i) => i % 10), [n], { dtype: 'int64' });
  const data = dt.datasets.fromTensors(images, labels, { normalize: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } });
  await model.fit(data, {
    epochs: 1,
    batchSize: 16,
    optimizer: { type: 'sgd', lr: 0.01, momentum: 0.9, nesterov: true, weightDecay: 1e-4 },
    onBatchEnd: (b) => console.log(`batch ${b.batch}/${b.batches}: loss ${b.loss.toFixed(4)}`),
  });
  await model.save('finetuned-densenet121.safetensors');
  console.log('saved finetuned-densenet121.safetensors');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
