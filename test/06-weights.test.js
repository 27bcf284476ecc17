'use strict';
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const dt = require('..');
const { randomImages, maxAbsDiff } = require('./helpers');

const FIXTURES = path.join(__dirname, 'fixtures');
const tinyConfig = { growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, bnSize: 2, numClasses: 3 };

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-weights-'));
}

function fixtureTensor(file, shape) {
  const buf = fs.readFileSync(path.join(FIXTURES, file));
  return dt.tensor(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4), shape);
}

function snapshot(model) {
  return Object.fromEntries(Object.entries(model.stateDict()).map(([k, t]) => [k, Array.from(t.toArray(), Number)]));
}

function pythonHasTorchvision() {
  const r = spawnSync('python3', ['-c', 'import sys; sys.path.insert(0, "scripts"); from torchvision_densenet import torchvision_densenet; torchvision_densenet()'], { cwd: path.join(__dirname, '..'), encoding: 'utf8' });
  return r.status === 0;
}

describe('weights: state dicts', () => {
  it("uses torchvision's key names", () => {
    const keys = Object.keys(dt.densenet121().stateDict());
    for (const k of ['features.conv0.weight', 'features.norm0.running_mean', 'features.denseblock1.denselayer1.norm1.weight',
      'features.denseblock1.denselayer6.conv2.weight', 'features.transition3.conv.weight', 'features.transition1.norm.running_var',
      'features.norm5.num_batches_tracked', 'classifier.weight', 'classifier.bias']) {
      assert.ok(keys.includes(k), `missing ${k}`);
    }
    assert.equal(keys.length, 727, "torchvision's densenet121 state_dict() has 727 entries");
    assert.equal(keys.filter((k) => k.endsWith('num_batches_tracked')).length, 121);
  });

  it('the CIFAR stem has conv0 3x3 and no norm0/pool0', () => {
    const sd = dt.densenetCifar({ depth: 40, growthRate: 12, bottleneck: false }).stateDict();
    assert.deepEqual(sd['features.conv0.weight'].shape, [16, 3, 3, 3]);
    assert.ok(!('features.norm0.weight' in sd));
  });

  it('loadStateDict copies every tensor: outputs become identical', () => {
    dt.manualSeed(1);
    const a = new dt.DenseNet({ ...tinyConfig, stem: 'cifar' }).eval();
    const b = new dt.DenseNet({ ...tinyConfig, stem: 'cifar' }).eval();
    const x = randomImages(2, 3, 16, 16);
    assert.ok(maxAbsDiff(a.forward(x), b.forward(x)) > 0);
    b.loadStateDict(a.stateDict());
    assert.equal(maxAbsDiff(a.forward(x), b.forward(x)), 0);
  });

  it('strict loading lists missing and unexpected keys and leaves the model unchanged', () => {
    const m = new dt.DenseNet({ ...tinyConfig, stem: 'cifar' });
    const before = snapshot(m);
    const sd = new dt.DenseNet({ ...tinyConfig, stem: 'cifar' }).stateDict();
    delete sd['classifier.bias'];
    sd['extra.weight'] = dt.tensor([1], [1]);
    assert.throws(() => m.loadStateDict(sd), {
      name: 'WeightsError',
      message: /cannot load state dict: 1 missing key\(s\): classifier\.bias; 1 unexpected key\(s\): extra\.weight/,
    });
    assert.deepEqual(snapshot(m), before);
  });

  it('shape mismatches are errors even when not strict, naming both shapes', () => {
    const m = new dt.DenseNet({ ...tinyConfig, stem: 'cifar' });
    const before = snapshot(m);
    const sd = new dt.DenseNet({ ...tinyConfig, stem: 'cifar', numClasses: 5 }).stateDict();
    assert.throws(() => m.loadStateDict(sd, { strict: false }), {
      name: 'WeightsError',
      message: /shape mismatch for classifier\.weight \(expected \[3, 16\], got \[5, 16\]\), classifier\.bias \(expected \[3\], got \[5\]\)/,
    });
    assert.deepEqual(snapshot(m), before);
  });

  it('non-strict loading ignores unexpected and missing keys', () => {
    const m = new dt.DenseNet({ ...tinyConfig, stem: 'cifar' });
    const source = new dt.DenseNet({ ...tinyConfig, stem: 'cifar' }).stateDict();
    const partial = { 'features.conv0.weight': source['features.conv0.weight'], 'unknown.key': dt.tensor([1], [1]) };
    m.loadStateDict(partial, { strict: false });
    assert.deepEqual(Array.from(m.stateDict()['features.conv0.weight'].toArray()), Array.from(source['features.conv0.weight'].toArray()));
  });

  it('rejects non-tensor values with a TypeError naming the key', () => {
    const m = new dt.DenseNet({ ...tinyConfig, stem: 'cifar' });
    assert.throws(() => m.loadStateDict({ 'features.conv0.weight': [1, 2] }), { name: 'TypeError', message: /Expected stateDict\['features\.conv0\.weight'\] to be a Tensor/ });
  });
});

describe('weights: save and load (.safetensors)', () => {
  it('save() then dt.load() rebuilds the same model: config and outputs', async () => {
    const dir = tmpdir();
    dt.manualSeed(2);
    const m = dt.densenetCifar({ depth: 16, growthRate: 6, numClasses: 4 });
    m.lossAndGrads(randomImages(4, 3, 16, 16), dt.tensor([0, 1, 2, 3], [4], { dtype: 'int64' })); // train-mode step: BN stats move
    m.eval();
    const file = path.join(dir, 'model.safetensors');
    await m.save(file);
    assert.deepEqual(fs.readdirSync(dir), ['model.safetensors'], 'no temporary file is left');
    const back = await dt.load(file);
    assert.deepEqual(back.config, m.config);
    back.eval();
    const x = randomImages(3, 3, 16, 16);
    assert.equal(maxAbsDiff(back.forward(x), m.forward(x)), 0);
    const header = fs.readFileSync(file);
    const n = Number(header.readBigUInt64LE(0));
    const meta = JSON.parse(header.subarray(8, 8 + n).toString())['__metadata__'];
    assert.equal(meta.format, 'pt');
    assert.deepEqual(JSON.parse(meta['densetorch.config']).blockConfig, [2, 2, 2]);
    fs.rmSync(dir, { recursive: true });
  });

  it('overwrites an existing file atomically (old file intact until the rename)', async () => {
    const dir = tmpdir();
    const file = path.join(dir, 'm.safetensors');
    const a = new dt.DenseNet({ ...tinyConfig, stem: 'cifar' });
    await a.save(file);
    const b = new dt.DenseNet({ ...tinyConfig, stem: 'cifar' });
    await b.save(file);
    const back = await dt.load(file);
    assert.deepEqual(Array.from(back.stateDict()['classifier.weight'].toArray()), Array.from(b.stateDict()['classifier.weight'].toArray()));
    assert.deepEqual(fs.readdirSync(dir), ['m.safetensors']);
    fs.rmSync(dir, { recursive: true });
  });

  it('loads a .safetensors file whose header length starts with the byte 0x80 (not a legacy pickle)', async () => {
    const dir = tmpdir();
    const file = path.join(dir, 'padded.safetensors');
    const model = new dt.DenseNet(tinyConfig);
    await model.save(file);
    const bytes = fs.readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    // Pad the header with spaces (allowed by the format) to a length whose low byte is 0x80.
    const padded = Math.ceil((headerLength + 1) / 256) * 256 + 0x80;
    const header = Buffer.concat([bytes.subarray(8, 8 + headerLength), Buffer.alloc(padded - headerLength, ' ')]);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(padded));
    fs.writeFileSync(file, Buffer.concat([length, header, bytes.subarray(8 + headerLength)]));
    assert.equal(fs.readFileSync(file)[0], 0x80);
    const loaded = await dt.load(file);
    const x = randomImages(1, 3, 32, 32);
    assert.equal(maxAbsDiff(loaded.eval().forward(x), model.eval().forward(x)), 0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('rejects a save into a missing folder with the path in the message', async () => {
    const m = new dt.DenseNet({ ...tinyConfig, stem: 'cifar' });
    await assert.rejects(m.save('/nonexistent-dir/m.safetensors'), (err) => err instanceof dt.DensetorchError && /nonexistent-dir/.test(err.message));
  });

  it('dt.load refuses a weights file without a densetorch config', async () => {
    await assert.rejects(dt.load(path.join(FIXTURES, 'tiny_densenet.pth')), { name: 'WeightsError', message: /has no densetorch config in its metadata; build the model yourself and call model\.loadWeights\(path\)/ });
  });
});

describe('weights: PyTorch interoperability', () => {
  const meta = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tiny_densenet.json'), 'utf8'));

  for (const file of ['tiny_densenet.pth', 'tiny_densenet_legacy_keys.pth']) {
    it(`loads ${file} (torch.save of torchvision's state_dict) and matches PyTorch's outputs within 1e-5`, async () => {
      const m = new dt.DenseNet({ ...meta.config, stem: 'imagenet' });
      await m.loadWeights(path.join(FIXTURES, file));
      m.eval();
      const y = m.forward(fixtureTensor('tiny_input.f32', meta.input_shape));
      const expected = fixtureTensor('tiny_output.f32', meta.output_shape);
      const d = maxAbsDiff(y, expected);
      console.log(`      max |densetorch - PyTorch ${meta.torch}| = ${d.toExponential(2)}`);
      assert.ok(d <= 1e-5, `difference ${d}`);
      assert.equal(Number(m.stateDict()['features.norm0.num_batches_tracked'].toArray()[0]), 7);
    });
  }

  it('a model saved by densetorch loads into torchvision with load_state_dict and gives the same outputs', async function () {
    if (!pythonHasTorchvision()) this.skip(); // needs python3 with torch and torchvision
    const dir = tmpdir();
    dt.manualSeed(5);
    const m = new dt.DenseNet({ ...meta.config, stem: 'imagenet' });
    m.lossAndGrads(randomImages(4, 3, 32, 32), dt.tensor([0, 1, 2, 0], [4], { dtype: 'int64' }));
    m.eval();
    const x = randomImages(2, 3, 32, 32, 9);
    const file = path.join(dir, 'm.safetensors');
    await m.save(file);
    fs.writeFileSync(path.join(dir, 'x.f32'), Buffer.from(x.toArray().buffer));
    const script = `
import json, struct, sys, torch
sys.path.insert(0, 'scripts')
from torchvision_densenet import torchvision_densenet
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
header = json.loads(raw[8:8 + n])
dtypes = {'F32': torch.float32, 'I64': torch.int64}
sd = {k: torch.frombuffer(bytearray(raw[8 + n + v['data_offsets'][0]: 8 + n + v['data_offsets'][1]]), dtype=dtypes[v['dtype']]).reshape(v['shape'])
      for k, v in header.items() if k != '__metadata__'}
model = torchvision_densenet()(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=3)
model.load_state_dict(sd)
model.eval()
x = torch.frombuffer(bytearray(open(sys.argv[2], 'rb').read()), dtype=torch.float32).reshape(2, 3, 32, 32)
with torch.no_grad():
    print(json.dumps(model(x).flatten().tolist()))
`;
    const r = spawnSync('python3', ['-c', script, file, path.join(dir, 'x.f32')], { cwd: path.join(__dirname, '..'), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const theirs = JSON.parse(r.stdout.trim().split('\n').pop());
    const ours = m.forward(x).toArray();
    let d = 0;
    for (let i = 0; i < ours.length; i++) d = Math.max(d, Math.abs(ours[i] - theirs[i]));
    console.log(`      torchvision on densetorch's file: max |difference| = ${d.toExponential(2)}`);
    assert.ok(d <= 1e-5, `difference ${d}`);
    fs.rmSync(dir, { recursive: true });
  });
});

// Bad files: see the 'files' cases of test/bad-inputs.js (run by test/11-bad-input.test.js).
