/**
 * torchvision's ImageFolder layout: one subfolder per class (classes = sorted subfolder names),
 * images anywhere below each. Streamed: images are decoded batch by batch while training runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { shardOrder } from './shard';
import { describe, DataError } from '../errors';
import { tensor } from '../tensor';
import { knownOptions, positiveInt } from '../validate';
import { checkNormalizeOption, decodeImage, toChw } from '../image';
import { imageInputSpec, InputSpec } from '../input-spec';
import { Batch, DEFAULT_PREFETCH, EpochRequest, StreamDataset } from './stream';
import { checkTransform, drawSeed, permutation, sampleRandom, Transform } from './transforms';
import { addon } from '../native';
import { checkRandomErasing, type Normalize } from '../datasets';

/** Image file extensions sharp decodes, matched case-insensitively. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif'];

/** Options of {@link imageFolder}. */
export interface ImageFolderOptions {
  /** Output height and width. Default 224. */
  size?: number;
  /** 'train' (RandomResizedCrop + flip), 'eval' (Resize + CenterCrop), 'cifar', 'trivialaugment' or 'randaugment' ('train' + the policy) or a function. Default 'eval'. */
  transform?: Transform;
  /** torchvision's RandomErasing probability per training image, after normalisation (see the in-memory `AugmentationOptions`). Default 0. */
  randomErasing?: number;
  /** Per-channel normalisation after scaling to [0, 1]; `false` for none. Default ImageNet's mean and std. */
  normalize?: Normalize | false;
  /** File extensions to take (with the dot). Default {@link IMAGE_EXTENSIONS}. */
  extensions?: readonly string[];
  /** At most this many samples, spread evenly over the sorted list (every class keeps its share). Default: all. */
  limit?: number;
  /** An unreadable or corrupt file: 'error' fails the epoch with a DataError naming it; 'skip' leaves it out and counts it. Default 'error'. */
  onBadImage?: 'error' | 'skip';
  /** Batches decoded ahead of the training thread. Default 3. */
  prefetch?: number;
}

/** One sample of an image folder. */
export interface ImageSample {
  /** Path of the image file. */
  readonly file: string;
  /** Class index: the position of its folder among the sorted class folders. */
  readonly label: number;
}

const OPTION_KEYS = ['size', 'transform', 'randomErasing', 'normalize', 'extensions', 'limit', 'onBadImage', 'prefetch'];

function listFiles(dir: string, extensions: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const full = path.join(d, entry.name);
      const isDir = entry.isDirectory() || (entry.isSymbolicLink() && fs.statSync(full).isDirectory());
      if (isDir) walk(full);
      else if (extensions.some((e) => entry.name.toLowerCase().endsWith(e))) out.push(full);
    }
  };
  walk(dir);
  return out;
}

/** A streamed data set of the images under one folder per class. Made by {@link imageFolder}. */
export class ImageFolderDataset extends StreamDataset {
  /** Class names: the sorted subfolder names; label i is classes[i]. */
  readonly #classes: readonly string[];
  /** Every sample, in torchvision's order (by class, then by path). */
  readonly samples: readonly ImageSample[];
  /** Output size. */
  readonly size: number;
  /** The transform of every image. */
  readonly transform: Transform;
  /** Normalisation after scaling to [0, 1], or false. */
  readonly normalize: Normalize | false;
  /** What to do with a file that cannot be decoded. */
  readonly onBadImage: 'error' | 'skip';
  /** RandomErasing probability per training image (0: none). */
  randomErasing = 0;
  #skipped = new Set<string>();

  /** @internal Use {@link imageFolder}. */
  constructor(classes: string[], samples: ImageSample[], size: number, transform: Transform, normalize: Normalize | false, onBadImage: 'error' | 'skip') {
    super();
    this.#classes = Object.freeze([...classes]);
    this.samples = Object.freeze(samples.map((s) => Object.freeze({ ...s })));
    this.size = size;
    this.transform = transform;
    this.normalize = normalize;
    this.onBadImage = onBadImage;
  }

  get length(): number {
    return this.samples.length;
  }

  override get classes(): readonly string[] {
    return this.#classes;
  }

  /**
   * torchvision's evaluation transform at this size (shorter edge to size·256/224, centre crop),
   * RGB, this normalisation; undefined for a custom transform.
   */
  override get input(): InputSpec | undefined {
    if (typeof this.transform === 'function') return undefined;
    return imageInputSpec(3, this.size, this.size, 'center-crop', this.normalize || undefined);
  }

  /** Files left out so far because they could not be decoded (with `onBadImage: 'skip'`). */
  get skipped(): readonly string[] {
    return [...this.#skipped];
  }

  async *batches(request: EpochRequest): AsyncGenerator<Batch> {
    const n = this.samples.length;
    const all = request.train && request.shuffle ? permutation(n, sampleRandom(request.seed, request.epoch, 0xffffffff)) : Array.from({ length: n }, (_, i) => i);
    const order = request.shard ? shardOrder(all, request.shard, request.train) : all;
    const transform = request.train ? this.transform : (typeof this.transform === 'function' ? this.transform : 'eval');
    for (let start = 0; start < order.length; start += request.batchSize) {
      const picks = order.slice(start, start + request.batchSize);
      const draws = picks.map((index) => sampleRandom(request.seed, request.epoch, index));
      const decoded = await Promise.all(picks.map(async (index, i) => {
        const sample = this.samples[index];
        try {
          return await decodeImage(sample.file, this.size, transform, draws[i]);
        } catch (err) {
          if (this.onBadImage === 'skip' && err instanceof DataError) {
            this.#skipped.add(sample.file);
            return undefined;
          }
          throw err;
        }
      }));
      const kept = picks.filter((_, i) => decoded[i] !== undefined);
      if (kept.length === 0) continue;
      const images = new Float32Array(kept.length * 3 * this.size * this.size);
      const labels = new Int32Array(kept.length);
      let k = 0;
      decoded.forEach((pixels, i) => {
        if (!pixels) return;
        toChw(pixels, this.size, this.normalize, images, k);
        if (request.train && this.randomErasing > 0) addon().augment.erase(images, k, 3, this.size, this.size, this.randomErasing, drawSeed(draws[i]));
        labels[k] = this.samples[picks[i]].label;
        k += 1;
      });
      yield { images: tensor(images, [kept.length, 3, this.size, this.size]), labels: tensor(labels, [kept.length], { dtype: 'int32' }) };
    }
  }
}

/**
 * The images of a folder with one subfolder per class (torchvision's ImageFolder): classes are
 * the sorted subfolder names, samples every file below them with an image extension. The images
 * are decoded by sharp batch by batch as training goes, a few batches ahead (`prefetch`), so any
 * number of files trains in the same memory. When training (fit), the 'train' transform draws
 * its crops and flips from `seed`, the epoch and the sample, so runs repeat exactly; in
 * evaluation, a named transform is replaced by 'eval'.
 * @param dir - the folder
 * @param options - size (224), transform ('eval'), normalize (ImageNet's), extensions, limit, onBadImage ('error'), prefetch (3)
 * @throws {TypeError|RangeError} for bad options; {DataError} when the folder has no class folders or no images
 * @example
 * ```js
 * const train = dt.datasets.imageFolder('photos/train', { size: 224, transform: 'train' });
 * const val = dt.datasets.imageFolder('photos/val', { size: 224, transform: 'eval' });
 * await model.fit(train, { epochs: 5, batchSize: 32, validationData: val });
 * ```
 */
export function imageFolder(dir: string, options: ImageFolderOptions = {}): ImageFolderDataset {
  if (typeof dir !== 'string' || dir === '') throw new TypeError(`Expected dir to be a folder path but received ${describe(dir)}`);
  const o = knownOptions<ImageFolderOptions>(options, OPTION_KEYS, 'imageFolder()');
  const size = positiveInt(o.size ?? 224, 'options.size');
  const transform = checkTransform(o.transform ?? 'eval', 'options.transform');
  const normalize = checkNormalizeOption(o.normalize, 'options.normalize');
  const extensions = o.extensions ?? IMAGE_EXTENSIONS;
  if (!Array.isArray(extensions) || extensions.length === 0 || !extensions.every((e) => typeof e === 'string' && e.startsWith('.'))) {
    throw new TypeError(`Expected options.extensions to be a list of extensions such as ['.jpg', '.png'] but received ${describe(extensions)}`);
  }
  const onBadImage = o.onBadImage ?? 'error';
  if (onBadImage !== 'error' && onBadImage !== 'skip') throw new TypeError(`Expected options.onBadImage to be 'error' or 'skip' but received ${describe(onBadImage)}`);
  const limit = o.limit === undefined ? undefined : positiveInt(o.limit, 'options.limit');
  const root = path.resolve(dir);
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(root, { withFileTypes: true });
  } catch (err) {
    throw new DataError(`cannot read the image folder '${root}': ${(err as Error).message}`);
  }
  const classes = entries.filter((e) => e.isDirectory() || (e.isSymbolicLink() && fs.statSync(path.join(root, e.name)).isDirectory()))
    .map((e) => e.name).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (classes.length === 0) throw new DataError(`'${root}' has no class folders: expected one subfolder per class (${root}/<class>/<image>)`);
  let samples: ImageSample[] = classes.flatMap((name, label) => listFiles(path.join(root, name), extensions.map((e) => e.toLowerCase())).map((file) => ({ file, label })));
  if (samples.length === 0) throw new DataError(`no images with extensions ${extensions.join(', ')} under '${root}'`);
  if (limit !== undefined && limit < samples.length) {
    const all = samples;
    samples = Array.from({ length: limit }, (_, k) => all[Math.floor((k * all.length) / limit)]);
  }
  const dataset = new ImageFolderDataset(classes, samples, size, transform, normalize, onBadImage);
  dataset.prefetch = positiveInt(o.prefetch ?? DEFAULT_PREFETCH, 'options.prefetch');
  dataset.randomErasing = checkRandomErasing(o.randomErasing, 'options.randomErasing');
  return dataset;
}
