'use strict';
/**
 * The bad-input table: each case calls the public API with one thing wrong and names the error
 * class it must raise and a pattern its message must match (the argument, what was expected and
 * what was given). Cases marked `model` also check that the model is unchanged afterwards.
 *
 * test/11-bad-input.test.js runs every case in the mocha process, and runs this file as a script
 * in a child process too (`node test/bad-inputs.js`): there an abort or a crash in native code
 * ends the child with a signal and fails the test instead of killing the runner. As a script it
 * prints one line per case and a summary, and exits 1 if any case did not raise what it should.
 */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const dt = require('..');

const FIXTURES = path.join(__dirname, 'fixtures');
const TINY = { growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, bnSize: 2, numClasses: 3, stem: 'cifar' };
const TINY_IMAGENET = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tiny_densenet.json'), 'utf8')).config;

/** A float32 tensor of the given shape filled with a ramp. */
function images(shape) {
  const n = shape.reduce((a, b) => a * b, 1);
  return dt.tensor(Float32Array.from({ length: n }, (_, i) => (i % 17) / 17), shape);
}

/** A data set of `n` images [n, channels, 8, 8] with the given labels (default 0, 1, 2, ...). */
function dataset({ n = 6, channels = 3, labels } = {}) {
  const l = labels ?? Array.from({ length: n }, (_, i) => i % 3);
  return dt.datasets.fromTensors(images([n, channels, 8, 8]), dt.tensor(l, [l.length], { dtype: 'int64' }));
}

/** Every parameter and buffer as plain numbers (to check that a failed call changed nothing). */
function snapshot(model) {
  return Object.fromEntries(Object.entries(model.stateDict()).map(([k, t]) => [k, Array.from(t.toArray(), Number)]));
}

/** Rewrites the JSON header of a .safetensors file's bytes with `edit`. */
function withHeader(bytes, edit) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
  const text = Buffer.from(JSON.stringify(edit(header)));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, bytes.subarray(8 + n)]);
}

/** The file with its header JSON text edited by `edit(text)` (to write JSON that JSON.stringify cannot). */
function withHeaderText(bytes, edit) {
  const n = Number(bytes.readBigUInt64LE(0));
  const text = Buffer.from(edit(bytes.subarray(8, 8 + n).toString()));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, bytes.subarray(8 + n)]);
}

/**
 * Shared state of a run: a temporary folder holding a valid weight file of the tiny model, and
 * helpers that write variants of it. Call `cleanup()` at the end.
 */
async function makeContext() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-bad-'));
  const good = path.join(dir, 'good.safetensors');
  await new dt.DenseNet(TINY).save(good);
  let counter = 0;
  return {
    dir,
    good,
    /** Writes `mutate(bytes of the good file)` to a new file and returns its path. */
    variant(mutate) {
      const file = path.join(dir, `variant-${counter++}.safetensors`);
      fs.writeFileSync(file, mutate(Buffer.from(fs.readFileSync(good))));
      return file;
    },
    /** Writes `text` to a new file and returns its path. */
    file(name, content) {
      const file = path.join(dir, name);
      fs.writeFileSync(file, content);
      return file;
    },
    cleanup() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const cases = [];
/**
 * Adds a case. `run(ctx, model)` must throw (or reject) with `error` (a class name: TypeError,
 * RangeError or one of densetorch's) whose message matches `message`. With `model` ('cifar' or
 * 'imagenet'), a tiny model of that stem is built first and must be unchanged afterwards.
 */
function bad(area, title, error, message, run, options = {}) {
  cases.push({ area, title, error, message, run, ...options });
}

// ---- tensors ----
bad('tensor', 'data is a string', 'TypeError', /Expected data to be a Float32Array.* but received 'abc' of type string/, () => dt.tensor('abc', [3]));
bad('tensor', 'data is a plain object', 'TypeError', /Expected data to be .* but received an object of type Object/, () => dt.tensor({ length: 2 }, [2]));
bad('tensor', 'data is an Int16Array', 'TypeError', /Expected data to be .* but received a Int16Array of length 2/, () => dt.tensor(new Int16Array(2), [2]));
bad('tensor', 'a number[] holding a string', 'TypeError', /Expected data\[1\] to be a number but received 'x' of type string/, () => dt.tensor([1, 'x'], [2]));
bad('tensor', 'a fraction for an integer dtype', 'TypeError', /Expected data\[0\] to be an integer for dtype 'int32' but received 0.5/, () => dt.tensor([0.5], [1], { dtype: 'int32' }));
bad('tensor', 'shape is not an array', 'TypeError', /Expected shape to be an array of non-negative integers but received 6 of type number/, () => dt.tensor([1, 2], 6));
bad('tensor', 'a negative dimension', 'RangeError', /Expected shape\[1\] to be a non-negative integer but received -2/, () => dt.tensor([1, 2], [1, -2]));
bad('tensor', 'a fractional dimension', 'TypeError', /Expected shape\[0\] to be a non-negative integer but received 1.5 of type number/, () => dt.tensor([1, 2], [1.5]));
bad('tensor', 'a dimension that is not a number', 'TypeError', /Expected shape\[0\] to be a non-negative integer but received '2' of type string/, () => dt.tensor([1, 2], ['2']));
bad('tensor', 'element count differs from the shape', 'RangeError', /Expected data to have 6 elements for shape \[2, 3\] but received 5/, () => dt.tensor(new Float32Array(5), [2, 3]));
bad('tensor', 'a shape whose product overflows', 'RangeError', /Expected shape to have a product of at most 9007199254740991 elements but \[2147483648, 2147483648, 2147483648\]/, () => dt.tensor([1], [2 ** 31, 2 ** 31, 2 ** 31]));
bad('tensor', 'an unknown option (a typo)', 'TypeError', /Unknown option 'dtpye' of tensor\(\): expected one of dtype, device/, () => dt.tensor([1], [1], { dtpye: 'int32' }));
bad('config', 'densenetCifar with an unknown option', 'TypeError', /Unknown option 'growth' of densenetCifar\(\): expected one of depth, growthRate/, () => dt.densenetCifar({ depth: 40, growthRate: 12, growth: 12 }));
bad('data', 'fromTensors with an unknown option', 'TypeError', /Unknown option 'augmentation' of fromTensors\(\): expected one of normalize, augment, randomErasing, classes/, () => dt.datasets.fromTensors(images([2, 3, 8, 8]), dt.tensor([0, 1], [2], { dtype: 'int64' }), { augmentation: 'cifar' }));
bad('tensor', 'a huge shape with too little data', 'RangeError', /Expected data to have 4503599627370496 elements for shape \[67108864, 67108864\] but received 1/, () => dt.tensor([1], [2 ** 26, 2 ** 26]));
bad('tensor', 'an unknown dtype', 'TypeError', /Expected options\.dtype to be one of 'float32', 'float64', 'int32', 'int64', 'uint8' but received 'int8'/, () => dt.tensor([1], [1], { dtype: 'int8' }));
bad('tensor', 'a dtype that is not a string', 'TypeError', /Expected options\.dtype to be one of .* but received 4 of type number/, () => dt.tensor([1], [1], { dtype: 4 }));
bad('tensor', 'a malformed device', 'TypeError', /Expected options\.device to be 'cpu', 'cuda' or 'cuda:N' but received 'gpu'/, () => dt.tensor([1], [1], { device: 'gpu' }));
bad('tensor', 'a CUDA device that does not exist', 'RangeError', /Expected options\.device to be an available device but received 'cuda:99'/, () => dt.tensor([1], [1], { device: 'cuda:99' }));
bad('tensor', 'options is an array', 'TypeError', /Expected options to be an object but received an array of length 0/, () => dt.tensor([1], [1], []));
bad('tensor', 'options is a string', 'TypeError', /Expected options to be an object but received 'float32' of type string/, () => dt.tensor([1], [1], 'float32'));
bad('tensor', 'toArray() of a disposed tensor', 'TypeError', /Expected this tensor to be a live tensor but it has been disposed/, () => { const t = dt.tensor([1], [1]); t.dispose(); t.toArray(); });
bad('tensor', 'shape of a disposed tensor', 'TypeError', /Expected this tensor to be a live tensor but it has been disposed/, () => { const t = dt.tensor([1], [1]); t.dispose(); return t.shape; });
bad('tensor', 'to() of a disposed tensor', 'TypeError', /has been disposed/, () => { const t = dt.tensor([1], [1]); t.dispose(); t.to('cpu'); });
bad('tensor', 'to() a malformed device', 'TypeError', /Expected device to be 'cpu', 'cuda' or 'cuda:N' but received 'tpu'/, () => dt.tensor([1], [1]).to('tpu'));

// ---- model configurations ----
bad('config', 'growth rate 0', 'RangeError', /Expected growthRate to be a positive integer but received 0/, () => new dt.DenseNet({ ...TINY, growthRate: 0 }));
bad('config', 'a fractional growth rate', 'TypeError', /Expected growthRate to be a positive integer but received 1.5 of type number/, () => new dt.DenseNet({ ...TINY, growthRate: 1.5 }));
bad('config', 'an empty blockConfig', 'TypeError', /Expected blockConfig to be a non-empty array of positive integers but received an array of length 0/, () => new dt.DenseNet({ ...TINY, blockConfig: [] }));
bad('config', 'a block of -1 layers', 'RangeError', /Expected blockConfig\[1\] to be a positive integer but received -1/, () => new dt.DenseNet({ ...TINY, blockConfig: [2, -1] }));
bad('config', 'blockConfig is a number', 'TypeError', /Expected blockConfig to be a non-empty array .* but received 4 of type number/, () => new dt.DenseNet({ ...TINY, blockConfig: 4 }));
bad('config', 'negative dropout', 'RangeError', /Expected dropRate to be a number in \[0, 1\) but received -0.1/, () => new dt.DenseNet({ ...TINY, dropRate: -0.1 }));
bad('config', 'dropout 1', 'RangeError', /Expected dropRate to be a number in \[0, 1\) but received 1/, () => new dt.DenseNet({ ...TINY, dropRate: 1 }));
bad('config', 'compression 0', 'RangeError', /Expected compression to be a number in \(0, 1\] but received 0/, () => new dt.DenseNet({ ...TINY, compression: 0 }));
bad('config', 'compression NaN', 'TypeError', /Expected compression to be a number in \(0, 1\] but received NaN of type number/, () => new dt.DenseNet({ ...TINY, compression: NaN }));
bad('config', 'zero classes', 'RangeError', /Expected numClasses to be a positive integer but received 0/, () => new dt.DenseNet({ ...TINY, numClasses: 0 }));
bad('config', 'a negative bottleneck width', 'RangeError', /Expected bnSize to be a non-negative integer but received -4/, () => new dt.DenseNet({ ...TINY, bnSize: -4 }));
bad('config', 'an unknown stem', 'TypeError', /Expected stem to be 'imagenet' or 'cifar' but received 'resnet' of type string/, () => new dt.DenseNet({ ...TINY, stem: 'resnet' }));
bad('config', 'memoryEfficient as a string', 'TypeError', /Expected memoryEfficient to be a boolean but received 'yes' of type string/, () => new dt.DenseNet({ ...TINY, memoryEfficient: 'yes' }));
bad('config', 'an unknown option', 'TypeError', /Unknown DenseNet option 'growth'; expected one of growthRate, /, () => new dt.DenseNet({ growth: 12 }));
bad('config', 'options is a number', 'TypeError', /Expected DenseNet options to be an object but received 5 of type number/, () => new dt.DenseNet(5));
bad('config', 'an unavailable device', 'RangeError', /Expected device to be an available device but received 'cuda:99'/, () => new dt.DenseNet({ ...TINY, device: 'cuda:99' }));
bad('config', 'CIFAR depth 41 (not 6n+4)', 'RangeError', /Expected depth to be 6n\+4 \(10, 16, 22, \.\.\., 100, 190, 250\) for a DenseNet with bottleneck layers but received 41/, () => dt.densenetCifar({ depth: 41, growthRate: 12 }));
bad('config', 'CIFAR depth 41 without bottlenecks (not 3n+4)', 'RangeError', /Expected depth to be 3n\+4 .* without bottleneck layers but received 41/, () => dt.densenetCifar({ depth: 41, growthRate: 12, bottleneck: false }));
bad('config', 'CIFAR depth 4 (no layers)', 'RangeError', /Expected depth to be 6n\+4 .* but received 4/, () => dt.densenetCifar({ depth: 4, growthRate: 12 }));
bad('config', 'CIFAR without a growth rate', 'TypeError', /Expected growthRate to be a positive integer but received undefined/, () => dt.densenetCifar({ depth: 40 }));
bad('config', 'CIFAR with no options', 'TypeError', /Expected growthRate to be a positive integer but received undefined/, () => dt.densenetCifar());
bad('config', 'an option a preset does not take', 'TypeError', /Unknown densenet121 option 'growthRate'; expected one of numClasses, memoryEfficient, dropRate, inChannels, device/, () => dt.densenet121({ growthRate: 12 }));
bad('config', 'a preset with negative dropout', 'RangeError', /Expected dropRate to be a number in \[0, 1\) but received -1/, () => dt.densenet169({ dropRate: -1 }));
bad('config', 'model.to() a malformed device', 'TypeError', /Expected device to be 'cpu', 'cuda' or 'cuda:N' but received 'gpu:0'/, (ctx, m) => m.to('gpu:0'), { model: 'cifar' });

// ---- forward / predict ----
bad('forward', 'x is not a tensor', 'TypeError', /Expected x to be a Tensor but received an array of length 3/, (ctx, m) => m.forward([1, 2, 3]), { model: 'cifar' });
bad('forward', 'a rank-3 input', 'TypeError', /input must have shape \[N, 3, H, W\], got a tensor of rank 3/, (ctx, m) => m.forward(images([3, 8, 8])), { model: 'cifar' });
bad('forward', 'a rank-5 input', 'TypeError', /input must have shape \[N, 3, H, W\], got a tensor of rank 5/, (ctx, m) => m.forward(images([1, 1, 3, 8, 8])), { model: 'cifar' });
bad('forward', 'the wrong number of channels', 'TypeError', /input must have shape \[N, 3, H, W\], got 1 channel/, (ctx, m) => m.forward(images([2, 1, 8, 8])), { model: 'cifar' });
bad('forward', 'an int64 input', 'TypeError', /input must have dtype Float \(as the model\), got Long/, (ctx, m) => m.forward(dt.tensor(new BigInt64Array(192), [1, 3, 8, 8])), { model: 'cifar' });
bad('forward', 'a uint8 input', 'TypeError', /input must have dtype Float \(as the model\), got Byte/, (ctx, m) => m.forward(dt.tensor(new Uint8Array(192), [1, 3, 8, 8])), { model: 'cifar' });
bad('forward', 'an empty batch', 'RangeError', /input must hold at least one image, got shape \[0, 3, 8, 8\]/, (ctx, m) => m.forward(images([0, 3, 8, 8])), { model: 'cifar' });
bad('forward', 'a disposed input', 'TypeError', /Expected x to be a live tensor but it has been disposed/, (ctx, m) => { const x = images([1, 3, 8, 8]); x.dispose(); m.forward(x); }, { model: 'cifar' });
bad('forward', 'an image too small for the ImageNet stem', 'RangeError', /input of 1x1 pixels is too small for this model: its stem and 1 transition\(s\) need at least 5x5/, (ctx, m) => m.forward(images([1, 3, 1, 1])), { model: 'imagenet' });
bad('forward', 'predict() of a non-tensor', 'TypeError', /Expected x to be a Tensor but received null/, (ctx, m) => m.predict(null), { model: 'cifar' });
bad('forward', 'predict() with batch size 0', 'RangeError', /Expected options\.batchSize to be a positive integer but received 0/, (ctx, m) => m.predict(images([1, 3, 8, 8]), { batchSize: 0 }), { model: 'cifar' });
bad('forward', 'predict() with the wrong channels', 'TypeError', /input must have shape \[N, 3, H, W\], got 2 channel/, (ctx, m) => m.predict(images([1, 2, 8, 8])), { model: 'cifar' });
bad('forward', 'predict() with an unknown precision', 'TypeError', /Expected options\.precision to be 'fp32', 'bf16' or 'fp16' but received 'fp8' of type string/, (ctx, m) => m.predict(images([1, 3, 8, 8]), { precision: 'fp8' }), { model: 'cifar' });
bad('forward', 'predict() in fp16 on the CPU', 'RangeError', /precision 'fp16' needs a CUDA model; use 'bf16' on the CPU/, (ctx, m) => m.predict(images([1, 3, 8, 8]), { precision: 'fp16' }), { model: 'cifar' });
bad('forward', 'predict() options as an array', 'TypeError', /Expected options to be an object but received an array of length 1/, (ctx, m) => m.predict(images([1, 3, 8, 8]), [16]), { model: 'cifar' });

// ---- fit options ----
const fitCase = (title, error, message, options, data) =>
  bad('fit', title, error, message, (ctx, m) => m.fit(data ? data() : dataset(), options), { model: 'cifar' });
fitCase('batch size 0', 'RangeError', /Expected batchSize to be a positive integer but received 0/, { batchSize: 0 });
fitCase('negative epochs', 'RangeError', /Expected epochs to be a positive integer but received -1/, { epochs: -1 });
fitCase('fractional epochs', 'TypeError', /Expected epochs to be a positive integer but received 1.5 of type number/, { epochs: 1.5 });
fitCase('an unknown optimizer', 'TypeError', /Expected optimizer\.type to be 'sgd', 'adam' or 'adamw' but received 'rmsprop' of type string/, { optimizer: { type: 'rmsprop' } });
fitCase('optimizer given as a string', 'TypeError', /Expected optimizer to be an object but received 'sgd' of type string/, { optimizer: 'sgd' });
fitCase('learning rate 0', 'RangeError', /Expected optimizer\.lr to be a number > 0 but received 0/, { optimizer: { type: 'sgd', lr: 0 } });
fitCase('an infinite learning rate', 'TypeError', /Expected optimizer\.lr to be a number > 0 but received Infinity of type number/, { optimizer: { type: 'adam', lr: Infinity } });
fitCase('momentum 1', 'RangeError', /Expected optimizer\.momentum to be a number in \[0, 1\) but received 1/, { optimizer: { type: 'sgd', momentum: 1 } });
fitCase('Nesterov without momentum', 'RangeError', /Expected optimizer\.momentum > 0 with nesterov: true but received 0/, { optimizer: { type: 'sgd', momentum: 0 } });
fitCase('Adam betas of one value', 'TypeError', /Expected optimizer\.betas to be \[beta1, beta2\] but received an array of length 1/, { optimizer: { type: 'adam', betas: [0.9] } });
fitCase('milestones out of range', 'RangeError', /Expected schedule\.milestones\[1\] to be a number in \(0, 1\) \(a fraction of the run\) but received 1.5/, { schedule: { type: 'multistep', milestones: [0.5, 1.5] } });
fitCase('milestones not an array', 'TypeError', /Expected schedule\.milestones to be an array of fractions in \(0, 1\) but received 0.5 of type number/, { schedule: { type: 'multistep', milestones: 0.5 } });
fitCase('gamma 0', 'RangeError', /Expected schedule\.gamma to be a number in \(0, 1\] but received 0/, { schedule: { type: 'multistep', gamma: 0 } });
fitCase('an unknown schedule', 'TypeError', /Expected schedule to be 'constant', \{ type: 'constant' \| 'multistep' \| 'cosine', \.\.\. \} but received 'linear' of type string/, { schedule: 'linear' });
fitCase('a signal that is not an AbortSignal', 'TypeError', /Expected signal to be an AbortSignal but received an object of type AbortController/, { signal: new AbortController() });
fitCase('an unknown option', 'TypeError', /Unknown fit option 'lr'; expected one of epochs, /, { lr: 0.1 });
fitCase('onBatchEnd not a function', 'TypeError', /Expected onBatchEnd to be a function but received 'log' of type string/, { onBatchEnd: 'log' });
fitCase('a checkpoint without a path', 'TypeError', /Expected checkpoint to be \{ path: string, everyEpochs\?: number, everySteps\?: number \} but received an object of type Object/, { checkpoint: { everyEpochs: 1 } });
fitCase('checkpoint every 0 steps', 'RangeError', /Expected checkpoint\.everySteps to be a positive integer but received 0/, { checkpoint: { path: 'c.ckpt', everySteps: 0 } });
fitCase('an unknown checkpoint option', 'TypeError', /Unknown option 'everyStep' of fit\(\): expected one of path, everyEpochs, everySteps/, { checkpoint: { path: 'c.ckpt', everyStep: 5 } });
fitCase("resumeFrom 'auto' without a checkpoint", 'TypeError', /Expected checkpoint: \{ path \} with resumeFrom 'auto'/, { resumeFrom: 'auto' });
fitCase('checkpoint every 0 epochs', 'RangeError', /Expected checkpoint\.everyEpochs to be a positive integer but received 0/, { checkpoint: { path: 'c.ckpt', everyEpochs: 0 } });
fitCase('a negative seed', 'RangeError', /Expected seed to be a non-negative safe integer but received -1$/, { seed: -1 });
fitCase('shuffle as a number', 'TypeError', /Expected shuffle to be a boolean but received 1 of type number/, { shuffle: 1 });
fitCase('validationData not a Dataset', 'TypeError', /Expected validationData to be a Dataset \(see dt.datasets\) but received an object of type Object/, { validationData: {} });
fitCase('an unknown precision', 'TypeError', /Expected precision to be 'fp32', 'bf16' or 'fp16' but received 'half' of type string/, { precision: 'half' });
fitCase('fp16 training on the CPU', 'RangeError', /precision 'fp16' needs a CUDA model; use 'bf16' on the CPU/, { precision: 'fp16' });
fitCase('options as an array', 'TypeError', /Expected options to be an object but received an array of length 0/, []);
bad('fit', 'data is not a Dataset', 'TypeError', /Expected data to be a Dataset \(see dt\.datasets\) but received an object of type Object/, (ctx, m) => m.fit({ images: 1 }), { model: 'cifar' });
bad('fit', 'resuming from a file that does not exist', 'TrainingError', /checkpoint .*missing\.ckpt does not exist/, (ctx, m) => m.fit(dataset(), { resumeFrom: path.join(ctx.dir, 'missing.ckpt') }), { model: 'cifar' });
bad('fit', 'resuming from a weight file (not a checkpoint)', 'TrainingError', /cannot resume from .*good\.safetensors/, (ctx, m) => m.fit(dataset(), { resumeFrom: ctx.good }), { model: 'cifar' });
bad('fit', 'images with other channels than the model', 'TypeError', /images must have shape \[N, 3, H, W\], got 1 channels \(shape \[6, 1, 8, 8\]\)/, (ctx, m) => m.fit(dataset({ channels: 1 })), { model: 'cifar' });
bad('fit', 'evaluate() with batch size 0', 'RangeError', /Expected options\.batchSize to be a positive integer but received 0/, (ctx, m) => m.evaluate(dataset(), { batchSize: 0 }), { model: 'cifar' });

// ---- data sets ----
bad('data', 'labels out of range for the model', 'RangeError', /labels must be in \[0, 2\] for a model with 3 classes, got labels from 0 to 5/, (ctx, m) => m.fit(dataset({ labels: [0, 1, 5, 2, 1, 0] })), { model: 'cifar' });
bad('data', 'negative labels', 'RangeError', /Expected labels to be non-negative class indices but labels\[2\] is -1/, (ctx, m) => m.evaluate(dataset({ labels: [0, 1, -1, 2, 1, 0] })), { model: 'cifar' });
bad('data', 'more labels than images', 'RangeError', /Expected labels to have one entry per image \(4\) but received 5/, () => dt.datasets.fromTensors(images([4, 3, 8, 8]), dt.tensor([0, 1, 2, 0, 1], [5], { dtype: 'int64' })));
bad('data', 'float labels', 'TypeError', /Expected labels to be integers \(int64, int32 or uint8\) but received float32/, () => dt.datasets.fromTensors(images([2, 3, 8, 8]), dt.tensor([0, 1], [2])));
bad('data', 'labels of rank 2', 'RangeError', /Expected labels to have shape \[N\] but received shape \[2, 1\]/, () => dt.datasets.fromTensors(images([2, 3, 8, 8]), dt.tensor([0, 1], [2, 1], { dtype: 'int64' })));
bad('data', 'labels that are not a tensor', 'TypeError', /Expected labels to be a Tensor but received an array of length 2/, () => dt.datasets.fromTensors(images([2, 3, 8, 8]), [0, 1]));
bad('data', 'images of rank 3', 'RangeError', /Expected images to have shape \[N, C, H, W\] but received shape \[3, 8, 8\]/, () => dt.datasets.fromTensors(images([3, 8, 8]), dt.tensor([0, 1, 2], [3], { dtype: 'int64' })));
bad('data', 'int32 images', 'TypeError', /Expected images to be uint8 or float32 but received int32/, () => dt.datasets.fromTensors(dt.tensor(new Int32Array(64), [1, 1, 8, 8]), dt.tensor([0], [1], { dtype: 'int64' })));
bad('data', 'a normalize mean per channel missing', 'TypeError', /Expected options\.normalize\.mean to be 3 finite numbers \(one per channel\) but received an array of length 1/, () => dt.datasets.fromTensors(images([1, 3, 8, 8]), dt.tensor([0], [1], { dtype: 'int64' }), { normalize: { mean: [0.5], std: [1, 1, 1] } }));
bad('data', 'a zero normalize std', 'RangeError', /Expected options\.normalize\.std to be positive but received \[1, 0, 1\]/, () => dt.datasets.fromTensors(images([1, 3, 8, 8]), dt.tensor([0], [1], { dtype: 'int64' }), { normalize: { mean: [0, 0, 0], std: [1, 0, 1] } }));
bad('data', 'an unknown augmentation', 'TypeError', /Expected options\.augment to be 'none', 'cifar', 'trivialaugment', 'randaugment' but received 'flip' of type string/, () => dt.datasets.fromTensors(images([1, 3, 8, 8]), dt.tensor([0], [1], { dtype: 'int64' }), { augment: 'flip' }));
bad('data', 'data set options as an array', 'TypeError', /Expected options to be an object but received an array of length 0/, () => dt.datasets.fromTensors(images([1, 3, 8, 8]), dt.tensor([0], [1], { dtype: 'int64' }), []));
bad('data', 'an unknown MNIST split', 'TypeError', /Expected options\.split to be 'train' or 'test' but received 'val' of type string/, () => dt.datasets.mnist({ split: 'val' }));
bad('data', 'an MNIST limit below 10', 'RangeError', /Expected options\.limit to be an integer >= 10 but received 5$/, () => dt.datasets.mnist({ limit: 5 }));
bad('data', 'an MNIST limit that is not a number', 'TypeError', /Expected options\.limit to be an integer >= 10 but received '20' of type string/, () => dt.datasets.mnist({ limit: '20' }));
bad('data', 'a CIFAR-10 folder that does not exist', 'DatasetError', /CIFAR-10 folder .*no-such-folder does not exist/, (ctx) => dt.datasets.cifar10(path.join(ctx.dir, 'no-such-folder')));
bad('data', 'a CIFAR-10 file of the wrong size', 'DatasetError', /CIFAR-10 file .*test_batch\.bin has 100 bytes, not a multiple of 3073/, (ctx) => {
  const dir = path.join(ctx.dir, 'cifar-short');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'test_batch.bin'), Buffer.alloc(100));
  return dt.datasets.cifar10(dir, { split: 'test' });
});
bad('data', 'a CIFAR-10 label above 9', 'DatasetError', /image 1 has label 12, expected 0-9/, (ctx) => {
  const dir = path.join(ctx.dir, 'cifar-label');
  fs.mkdirSync(dir, { recursive: true });
  const b = Buffer.alloc(2 * 3073);
  b[3073] = 12;
  fs.writeFileSync(path.join(dir, 'test_batch.bin'), b);
  return dt.datasets.cifar10(dir, { split: 'test' });
});

// ---- weight files and state dicts (the model must be unchanged after each) ----
const fileCase = (title, message, make, stem = 'cifar', error = 'WeightsError') =>
  bad('files', title, error, message, (ctx, m) => m.loadWeights(make(ctx)), { model: stem });
fileCase('a truncated file', /ends at byte \d+ but the data section has \d+ bytes \(truncated file\?\)/, (ctx) => ctx.variant((b) => b.subarray(0, b.length - 100)));
fileCase('a file shorter than 8 bytes', /shorter than the 8-byte header length/, (ctx) => ctx.variant((b) => b.subarray(0, 5)));
fileCase('an empty file', /shorter than the 8-byte header length/, (ctx) => ctx.file('empty.safetensors', ''));
fileCase('a header length larger than the file', /header length \d+ is larger than the file/, (ctx) => ctx.variant((b) => { b.writeBigUInt64LE(BigInt(b.length)); return b; }));
fileCase('a header length of 2^64-1', /header length 18446744073709551615 exceeds 100 MB/, (ctx) => ctx.variant((b) => { b.writeBigUInt64LE(2n ** 64n - 1n); return b; }));
fileCase('invalid header JSON', /header is not valid JSON/, (ctx) => ctx.variant((b) => { b[8] = 0x5b; b[9] = 0x7d; return b; }));
// The header parser is strict JSON (RFC 8259): each of these is refused, with the reason.
for (const [title, text, reason] of [
  ['a number with a leading zero', '{"x":01,', /a leading zero/],
  ['a number starting with a dot', '{"x":.5,', /expected a value/],
  ['a number ending with a dot', '{"x":1.,', /no digits after '\.'/],
  ['an exponent without digits', '{"x":1e,', /no digits in the exponent/],
  ['a lone high surrogate', '{"\\ud800x":1,', /lone high surrogate \\ud800/],
  ['a lone low surrogate', '{"\\udc00":1,', /lone low surrogate \\udc00/],
  ['a duplicate key', '{"__metadata__":{},', /duplicate key '__metadata__'/],
]) {
  fileCase(`header JSON with ${title}`, reason, (ctx) => ctx.variant((b) => withHeaderText(b, (h) => text + h.slice(1))));
}
fileCase('a header that is a JSON array', /header is not a JSON object/, (ctx) => ctx.variant((b) => withHeader(b, () => [1, 2])));
fileCase('an unsupported dtype', /tensor 'classifier\.bias' has unsupported dtype 'C64'/, (ctx) => ctx.variant((b) => withHeader(b, (h) => { h['classifier.bias'].dtype = 'C64'; return h; })));
fileCase('a dtype that is not a string', /tensor 'classifier\.bias' needs dtype \(string\), shape \(array\) and data_offsets \(array\)/, (ctx) => ctx.variant((b) => withHeader(b, (h) => { h['classifier.bias'].dtype = 7; return h; })));
fileCase('overlapping offsets', /tensor 'classifier\.bias' overlaps another tensor's data/, (ctx) => ctx.variant((b) => withHeader(b, (h) => { const w = h['classifier.bias']; w.data_offsets = w.data_offsets.map((o) => o - 4); return h; })));
fileCase('offsets past the end of the data', /tensor 'classifier\.bias' .*(past the end|ends at byte)/, (ctx) => ctx.variant((b) => withHeader(b, (h) => { const w = h['classifier.bias']; w.data_offsets = [w.data_offsets[0] + 1e6, w.data_offsets[1] + 1e6]; return h; })));
fileCase('offsets in reverse order', /tensor 'classifier\.bias' has data_offsets/, (ctx) => ctx.variant((b) => withHeader(b, (h) => { const w = h['classifier.bias']; w.data_offsets = [w.data_offsets[1], w.data_offsets[0]]; return h; })));
fileCase('a negative dimension', /tensor 'classifier\.bias' has a shape entry that is not a non-negative integer/, (ctx) => ctx.variant((b) => withHeader(b, (h) => { h['classifier.bias'].shape = [-3]; return h; })));
fileCase('a size that disagrees with the shape', /tensor 'classifier\.bias' has 12 bytes but its dtype and shape need 16/, (ctx) => ctx.variant((b) => withHeader(b, (h) => { h['classifier.bias'].shape = [4]; return h; })));
fileCase('a shape whose byte size overflows', /tensor 'classifier\.bias' has a shape too large/, (ctx) => ctx.variant((b) => withHeader(b, (h) => { h['classifier.bias'].shape = [2 ** 31, 2 ** 31, 2 ** 31]; return h; })));
fileCase('a missing tensor and an unexpected one', /1 missing key\(s\): classifier\.bias; 1 unexpected key\(s\): other\.bias/, (ctx) => ctx.variant((b) => withHeader(b, (h) => { h['other.bias'] = h['classifier.bias']; delete h['classifier.bias']; return h; })));
fileCase('weights of a model with other classes', /shape mismatch for classifier\.weight \(expected \[3, 16\], got \[5, 16\]\)/, (ctx) => ctx.other5);
fileCase('a directory', /is a directory, not a weight file/, (ctx) => ctx.dir, 'imagenet');
fileCase('a missing file', /no such file/, (ctx) => path.join(ctx.dir, 'nope.safetensors'), 'imagenet');
fileCase('a text file', /notes\.txt: header length \d+ exceeds 100 MB/, (ctx) => ctx.file('notes.txt', 'these are not weights\n'), 'imagenet');
fileCase('a training checkpoint dict (.pth)', /entry 'epoch' is not a tensor \(a training checkpoint\? save model\.state_dict\(\) instead\)/, () => path.join(FIXTURES, 'checkpoint_dict.pth'), 'imagenet');
fileCase('a pickled module (.pth)', /refusing to load global 'torchvision\.models\.densenet\.DenseNet'/, () => path.join(FIXTURES, 'full_module.pth'), 'imagenet');
fileCase('a legacy non-zip .pth', /legacy \(non-zip\) format; re-save it with torch\.save/, () => path.join(FIXTURES, 'legacy_format.pth'), 'imagenet');
fileCase('a .pth whose zip is cut in half', /half\.pth is not a readable PyTorch zip archive/, (ctx) => { const b = fs.readFileSync(path.join(FIXTURES, 'tiny_densenet.pth')); return ctx.file('half.pth', b.subarray(0, b.length >> 1)); }, 'imagenet');
bad('files', 'a path that is not a string', 'TypeError', /Expected path to be a non-empty string but received 42 of type number/, (ctx, m) => m.loadWeights(42), { model: 'cifar' });
bad('files', 'dt.load of a file without densetorch metadata', 'WeightsError', /has no densetorch config in its metadata/, () => dt.load(path.join(FIXTURES, 'tiny_densenet.pth')));
bad('files', 'dt.load of a file with an invalid config', 'WeightsError', /has an invalid densetorch config in its metadata: Expected growthRate to be a positive integer but received 0/, (ctx) =>
  dt.load(ctx.variant((b) => withHeader(b, (h) => { const c = JSON.parse(h.__metadata__['densetorch.config']); c.growthRate = 0; h.__metadata__['densetorch.config'] = JSON.stringify(c); return h; }))));
bad('files', 'save() into a folder that does not exist', 'NativeError', /cannot save .*no-such-dir\/m\.safetensors: cannot create .*: No such file or directory/, (ctx, m) => m.save(path.join(ctx.dir, 'no-such-dir', 'm.safetensors')), { model: 'cifar' });
bad('files', 'a state dict value that is not a tensor', 'TypeError', /Expected stateDict\['features\.conv0\.weight'\] to be a Tensor but received an array of length 2/, (ctx, m) => m.loadStateDict({ 'features.conv0.weight': [1, 2] }), { model: 'cifar' });
bad('files', 'a state dict with a disposed tensor', 'TypeError', /Expected stateDict\['classifier\.bias'\] to be a live tensor but it has been disposed/, (ctx, m) => { const sd = m.stateDict(); const t = dt.tensor([1, 2, 3], [3]); t.dispose(); sd['classifier.bias'] = t; m.loadStateDict(sd); }, { model: 'cifar' });
bad('files', 'a state dict tensor of the wrong shape', 'WeightsError', /shape mismatch for classifier\.bias \(expected \[3\], got \[2\]\)/, (ctx, m) => { const sd = m.stateDict(); sd['classifier.bias'] = dt.tensor([1, 2], [2]); m.loadStateDict(sd); }, { model: 'cifar' });

// ---- process-wide settings ----
bad('settings', 'setNumThreads(0)', 'RangeError', /Expected n to be a positive integer but received 0/, () => dt.setNumThreads(0));
bad('settings', 'manualSeed(-1)', 'RangeError', /Expected seed to be a non-negative safe integer but received -1$/, () => dt.manualSeed(-1));
bad('settings', 'manualSeed(2^53)', 'TypeError', /Expected seed to be a non-negative safe integer but received 9007199254740992/, () => dt.manualSeed(2 ** 53));

/** Runs one case; resolves to undefined when it raised what it should, else to what went wrong. */
async function check(c, ctx) {
  let model;
  let before;
  if (c.model) {
    model = new dt.DenseNet(c.model === 'cifar' ? TINY : { ...TINY_IMAGENET, stem: 'imagenet' });
    before = snapshot(model);
  }
  let error;
  try {
    await c.run(ctx, model);
  } catch (err) {
    error = err;
  }
  if (error === undefined) return 'no error was raised';
  const Class = c.error === 'TypeError' ? TypeError : c.error === 'RangeError' ? RangeError : c.error === 'DatasetError' ? dt.datasets.DatasetError : dt[c.error];
  if (!(error instanceof Class) || error.name !== c.error) return `raised ${error.name}: ${error.message}`;
  if (!c.message.test(error.message)) return `message ${JSON.stringify(error.message)} does not match ${c.message}`;
  if (model) {
    try {
      assert.deepEqual(snapshot(model), before);
    } catch {
      return 'the model changed';
    }
  }
  return undefined;
}

/** Extra files some cases need (made once per context). */
async function prepare(ctx) {
  ctx.other5 = path.join(ctx.dir, 'other5.safetensors');
  await new dt.DenseNet({ ...TINY, numClasses: 5 }).save(ctx.other5);
  return ctx;
}

async function main() {
  const ctx = await prepare(await makeContext());
  let failed = 0;
  try {
    for (const c of cases) {
      const problem = await check(c, ctx);
      if (problem) failed++;
      console.log(`${problem ? 'FAIL' : 'ok  '} ${c.area}: ${c.title}${problem ? ` -- ${problem}` : ''}`);
    }
  } finally {
    ctx.cleanup();
  }
  console.log(`${cases.length - failed} of ${cases.length} bad inputs rejected as expected`);
  process.exitCode = failed === 0 ? 0 : 1;
}

if (require.main === module) main();

module.exports = { cases, check, makeContext: async () => prepare(await makeContext()), TINY };
