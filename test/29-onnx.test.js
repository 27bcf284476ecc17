'use strict';
// ONNX export, proven with the runtime people deploy on: onnxruntime-node runs the exported file
// and its logits equal model.predict's (max abs difference <= 1e-4) after training steps (so the
// batch-norm statistics are not the initial ones), batch sizes 1 and 5.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { onnx } = require('onnx-proto');
const ort = require('onnxruntime-node');
const dt = require('..');

const CLI = path.join(__dirname, '..', 'dist', 'cli.js');
const STANDARD_OPS = new Set(['Conv', 'BatchNormalization', 'Relu', 'Concat', 'AveragePool', 'MaxPool', 'GlobalAveragePool', 'Flatten', 'Gemm']);

/** `n` deterministic images of `size` pixels. */
function images(n, channels, size, seed = 0) {
  return dt.tensor(Float32Array.from({ length: n * channels * size * size }, (_, i) => Math.sin(i * 0.37 + seed) + 0.3 * Math.cos(i * 0.011)), [n, channels, size, size]);
}

/**
 * A few SGD steps on random images, so that the running statistics move away from 0 and 1 (a small
 * rate keeps the logits of order 1, where 1e-4 is a meaningful absolute bound).
 */
async function trainBriefly(model, channels, size) {
  const n = 8;
  const data = dt.datasets.fromTensors(images(n, channels, size, 5), dt.tensor(Array.from({ length: n }, (_, i) => i % model.config.numClasses), [n], { dtype: 'int64' }));
  await model.fit(data, { epochs: 2, batchSize: 4, optimizer: { type: 'sgd', lr: 0.01 } });
}

/** Max abs difference between onnxruntime's logits for `x` and model.predict's. */
async function difference(session, model, x) {
  const out = await session.run({ input: new ort.Tensor('float32', x.toArray(), x.shape) });
  const want = (await model.predict(x)).toArray();
  assert.deepEqual(out.logits.dims, [x.shape[0], model.config.numClasses]);
  let worst = 0;
  out.logits.data.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - want[i])); });
  assert.ok(want.some((v) => Math.abs(v) > 0.1), 'logits of order 1, not all near zero');
  return worst;
}

describe('ONNX export (checked with onnxruntime-node)', () => {
  let dir;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-onnx-'));
    dt.manualSeed(0);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const CASES = [
    { name: 'DenseNet-BC-100 (CIFAR stem)', build: () => dt.densenetCifar({ depth: 100, growthRate: 12, numClasses: 10 }), size: 32 },
    { name: 'DenseNet (L=40, k=12) without bottlenecks', build: () => dt.densenetCifar({ depth: 40, growthRate: 12, numClasses: 10, bottleneck: false, compression: 1 }), size: 32 },
    { name: 'DenseNet-121 (ImageNet stem), at 64 x 64', build: () => dt.densenet121({ numClasses: 20 }), size: 64 },
  ];
  for (const c of CASES) {
    it(`${c.name}: onnxruntime-node's logits equal predict's within 1e-4 (batch 1 and 5; batch norm folded and not)`, async function () {
      this.timeout(300000);
      const model = c.build();
      await trainBriefly(model, 3, c.size);
      const results = [];
      for (const foldBatchNorm of [true, false]) {
        const file = path.join(dir, `m-${foldBatchNorm}.onnx`);
        await model.exportOnnx(file, { foldBatchNorm });
        const proto = onnx.ModelProto.decode(fs.readFileSync(file));
        const ops = new Set(proto.graph.node.map((n) => n.opType));
        assert.deepEqual([...ops].filter((op) => !STANDARD_OPS.has(op)), [], 'standard operators only');
        const norms = proto.graph.node.filter((n) => n.opType === 'BatchNormalization').length;
        results.push(`${foldBatchNorm ? 'folded' : 'unfolded'}: ${proto.graph.node.length} nodes, ${norms} BatchNormalization`);
        const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 2 });
        for (const n of [1, 5]) {
          const d = await difference(session, model, images(n, 3, c.size, n));
          assert.ok(d <= 1e-4, `${foldBatchNorm ? 'folded' : 'unfolded'}, batch ${n}: max abs difference ${d}`);
          results.push(`batch ${n} max |diff| ${d.toExponential(2)}`);
        }
      }
      console.log(`      ${results.join('; ')}`);
    });
  }

  it('the file carries the config, the class names and the input spec; the batch dimension is symbolic unless asked otherwise; the CLI exports a saved model', async function () {
    this.timeout(300000);
    const model = dt.densenetCifar({ depth: 10, growthRate: 4, inChannels: 1, numClasses: 10 });
    await model.fit(dt.datasets.mnist({ limit: 100 }), { epochs: 1, batchSize: 50 });
    const saved = path.join(dir, 'mnist.safetensors');
    await model.save(saved);
    const file = path.join(dir, 'mnist.onnx');
    const r = spawnSync(process.execPath, [CLI, 'export', saved, '--onnx', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /wrote .*mnist\.onnx \([\d.]+ MB, opset 17, input 1 x 28 x 28 gray/);
    const proto = onnx.ModelProto.decode(fs.readFileSync(file));
    const meta = Object.fromEntries(proto.metadataProps.map((p) => [p.key, p.value]));
    assert.deepEqual(JSON.parse(meta['densetorch.classes']), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    assert.deepEqual(JSON.parse(meta['densetorch.input']), JSON.parse(JSON.stringify(model.input)));
    assert.equal(JSON.parse(meta['densetorch.config']).inChannels, 1);
    assert.equal(proto.opsetImport[0].version.toString(), '17');
    const dims = proto.graph.input[0].type.tensorType.shape.dim;
    assert.deepEqual([dims[0].dimParam, Number(dims[1].dimValue), Number(dims[2].dimValue), Number(dims[3].dimValue)], ['batch', 1, 28, 28]);

    const fixed = path.join(dir, 'fixed.onnx');
    await model.exportOnnx(fixed, { dynamicBatch: false, opset: 13 });
    const fixedProto = onnx.ModelProto.decode(fs.readFileSync(fixed));
    assert.equal(Number(fixedProto.graph.input[0].type.tensorType.shape.dim[0].dimValue), 1);
    const session = await ort.InferenceSession.create(fixed);
    assert.ok(await difference(session, model, images(1, 1, 28)) <= 1e-4, 'a fixed batch of 1 and opset 13 run too');
  });

  it('bad options and a running fit are clear errors naming what is wrong', async function () {
    this.timeout(120000);
    const model = dt.densenetCifar({ depth: 10, growthRate: 4, numClasses: 3 });
    const file = path.join(dir, 'bad.onnx');
    await assert.rejects(model.exportOnnx(file, { opset: 9 }), { name: 'RangeError', message: /options.opset to be between 13 and 21 but received 9/ });
    await assert.rejects(model.exportOnnx(file, { training: true }), { name: 'TypeError', message: /Unknown option 'training' of exportOnnx\(\)/ });
    await assert.rejects(model.exportOnnx(file, { foldBatchNorm: 'yes' }), { name: 'TypeError', message: /options.foldBatchNorm/ });
    await assert.rejects(model.exportOnnx(''), { name: 'TypeError' });
    const n = 16;
    const data = dt.datasets.fromTensors(images(n, 3, 16), dt.tensor(Array.from({ length: n }, (_, i) => i % 3), [n], { dtype: 'int64' }));
    const fitting = model.fit(data, { epochs: 3, batchSize: 2 });
    await assert.rejects(model.exportOnnx(file), { name: 'BusyError' });
    await fitting;
    assert.ok(!fs.existsSync(file), 'nothing written by a refused export');
  });
});
