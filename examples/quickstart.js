// densetorch in one page: build a DenseNet-BC, run it, take a training step, save and reload it.
// Run: node examples/quickstart.js
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const dt = require('..');

async function main() {
  console.log(`densetorch ${dt.versions.densetorch} on LibTorch ${dt.versions.libtorch} (CUDA ${dt.versions.cudaAvailable ? 'available' : 'not available'}), ${dt.getNumThreads()} threads`);
  dt.manualSeed(0);

  const model = dt.densenetCifar({ depth: 100, growthRate: 12, memoryEfficient: true });
  console.log(`[1/4] built DenseNet-BC (L=100, k=12), memory-efficient: ${model.numParameters().toLocaleString('en')} parameters`);

  const batch = 16;
  const images = dt.tensor(new Float32Array(batch * 3 * 32 * 32).map(() => Math.random() - 0.5), [batch, 3, 32, 32]);
  const labels = dt.tensor(Array.from({ length: batch }, (_, i) => i % 10), [batch], { dtype: 'int64' });
  let t = Date.now();
  const { loss } = model.lossAndGrads(images, labels);
  console.log(`[2/4] one forward/backward pass on ${batch} images: loss ${loss.toFixed(3)} in ${Date.now() - t} ms`);

  t = Date.now();
  const logits = await model.predict(images);
  console.log(`[3/4] predict(): ${String(logits)} in ${Date.now() - t} ms (off the main thread)`);

  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-')), 'densenet-bc-100.safetensors');
  await model.save(file);
  const again = await dt.load(file);
  const same = (await again.predict(images)).toArray().every((v, i) => v === logits.toArray()[i]);
  console.log(`[4/4] saved ${(fs.statSync(file).size / 1e6).toFixed(1)} MB to ${file}; reloaded model gives ${same ? 'identical' : 'DIFFERENT'} outputs`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
