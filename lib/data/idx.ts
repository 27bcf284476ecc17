/**
 * The IDX format of MNIST, Fashion-MNIST, EMNIST and KMNIST (plain or gzip): a magic number
 * (0, 0, type, dimensions), big-endian dimension sizes, then the values. Images are uint8
 * [N, rows, cols]; labels uint8 [N].
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, DataError } from '../errors';
import { tensor } from '../tensor';
import { knownOptions, positiveInt } from '../validate';
import { Dataset, fromTensors, Normalize } from '../datasets';

/** A parsed IDX file of unsigned bytes. */
export interface IdxArray {
  /** Dimensions, as stored in the file's header. */
  readonly shape: readonly number[];
  /** The values, row-major. */
  readonly data: Uint8Array;
}

const UBYTE = 0x08;

/** Reads an IDX file of unsigned bytes (gzip detected from its first two bytes). */
export function readIdx(file: string): IdxArray {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new DataError(`cannot read IDX file '${file}': ${(err as Error).message}`);
  }
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (err) {
      throw new DataError(`'${file}' looks gzip-compressed but does not decompress: ${(err as Error).message}`);
    }
  }
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw new DataError(`'${file}' is not an IDX file (bad magic number)`);
  if (bytes[2] !== UBYTE) throw new DataError(`'${file}' holds IDX type 0x${bytes[2].toString(16)}; only unsigned bytes (0x08) are supported`);
  const dims = bytes[3];
  if (dims < 1 || bytes.length < 4 + 4 * dims) throw new DataError(`'${file}' is truncated: its header names ${dims} dimensions`);
  const shape = Array.from({ length: dims }, (_, i) => bytes.readUInt32BE(4 + 4 * i));
  const count = shape.reduce((a, b) => a * b, 1);
  const start = 4 + 4 * dims;
  if (bytes.length !== start + count) {
    throw new DataError(`'${file}' has ${bytes.length - start} bytes of data but its shape [${shape.join(', ')}] needs ${count}`);
  }
  return { shape, data: new Uint8Array(bytes.buffer, bytes.byteOffset + start, count) };
}

/** Options of {@link idx}. */
export interface IdxOptions {
  /** Per-channel normalisation after scaling to [0, 1]. Default: none. */
  normalize?: Normalize;
  /** Class names, label i = entry i. */
  classes?: readonly string[];
  /** At most this many samples, from the start. Default: all. */
  limit?: number;
}

/**
 * A data set from a pair of IDX files (gzip or plain), as MNIST, Fashion-MNIST, EMNIST and
 * KMNIST ship: images [N, rows, cols] become uint8 [N, 1, rows, cols], held in memory.
 * @param imagesFile - e.g. train-images-idx3-ubyte.gz
 * @param labelsFile - e.g. train-labels-idx1-ubyte.gz
 * @throws {DataError} for a file that is missing, not IDX, truncated, or whose count does not match the other's
 * @example
 * ```js
 * const train = dt.datasets.idx('data/train-images-idx3-ubyte.gz', 'data/train-labels-idx1-ubyte.gz');
 * ```
 */
export function idx(imagesFile: string, labelsFile: string, options: IdxOptions = {}): Dataset {
  for (const [what, f] of [['imagesFile', imagesFile], ['labelsFile', labelsFile]] as const) {
    if (typeof f !== 'string' || f === '') throw new TypeError(`Expected ${what} to be a file path but received ${describe(f)}`);
  }
  const o = knownOptions<IdxOptions>(options, ['normalize', 'classes', 'limit'], 'idx()');
  const images = readIdx(imagesFile);
  const labels = readIdx(labelsFile);
  if (images.shape.length !== 3) throw new DataError(`'${imagesFile}' has shape [${images.shape.join(', ')}]; images need [N, rows, cols]`);
  if (labels.shape.length !== 1) throw new DataError(`'${labelsFile}' has shape [${labels.shape.join(', ')}]; labels need [N]`);
  if (images.shape[0] !== labels.shape[0]) {
    throw new DataError(`'${path.basename(imagesFile)}' holds ${images.shape[0]} images but '${path.basename(labelsFile)}' ${labels.shape[0]} labels`);
  }
  const [total, rows, cols] = images.shape;
  const n = o.limit === undefined ? total : Math.min(total, positiveInt(o.limit, 'options.limit'));
  const pixels = images.data.subarray(0, n * rows * cols);
  const dataset = fromTensors(tensor(pixels, [n, 1, rows, cols], { dtype: 'uint8' }), tensor(Int32Array.from(labels.data.subarray(0, n)), [n], { dtype: 'int32' }),
    { normalize: o.normalize, classes: o.classes });
  return dataset;
}

/** Fashion-MNIST's class names, by label. */
export const FASHION_MNIST_CLASSES: readonly string[] = Object.freeze([
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
]);

/** Where Debian's `dataset-fashion-mnist` package installs the files. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** Fashion-MNIST's mean and std (of its 60,000 training images, scaled to [0, 1]). */
export const FASHION_MNIST_NORMALIZE: Normalize = Object.freeze({ mean: [0.286], std: [0.353] });

/** Options of {@link fashionMnist}. */
export interface FashionMnistOptions {
  /** 'train' (60,000 images) or 'test' (10,000). Default 'train'. */
  split?: 'train' | 'test';
  /** Folder with the four IDX files. Default `FASHION_MNIST_DIR`, Debian's package's. */
  dir?: string;
  /** At most this many samples, from the start. Default: all. */
  limit?: number;
}

/**
 * Fashion-MNIST (Zalando's 28x28 grey photos of clothing, 10 classes) from its IDX files, by
 * default where Debian's `dataset-fashion-mnist` package puts them, normalised with the
 * training set's mean and std, with class names.
 * @throws {DataError} when the files are not there, saying how to get them
 */
export function fashionMnist(options: FashionMnistOptions = {}): Dataset {
  const o = knownOptions<FashionMnistOptions>(options, ['split', 'dir', 'limit'], 'fashionMnist()');
  const split = o.split ?? 'train';
  if (split !== 'train' && split !== 'test') throw new TypeError(`Expected options.split to be 'train' or 'test' but received ${describe(split)}`);
  const dir = o.dir ?? FASHION_MNIST_DIR;
  const prefix = split === 'train' ? 'train' : 't10k';
  const find = (kind: string): string => {
    for (const name of [`${prefix}-${kind}-idx${kind === 'images' ? 3 : 1}-ubyte.gz`, `${prefix}-${kind}-idx${kind === 'images' ? 3 : 1}-ubyte`]) {
      const file = path.join(dir, name);
      if (fs.existsSync(file)) return file;
    }
    throw new DataError(`Fashion-MNIST's ${split} ${kind} are not in '${dir}'. On Debian or Ubuntu: \`sudo apt-get install dataset-fashion-mnist\` (installs them into ${FASHION_MNIST_DIR}); elsewhere download the four IDX files from the Fashion-MNIST project and pass their folder (--data-dir, or { dir }).`);
  };
  return idx(find('images'), find('labels'), { normalize: FASHION_MNIST_NORMALIZE, classes: FASHION_MNIST_CLASSES, limit: o.limit });
}
