/**
 * Image transforms with torchvision's geometry: RandomResizedCrop + horizontal flip for training,
 * Resize + CenterCrop for evaluation, the CIFAR recipe (4-pixel zero padding, random crop, flip).
 * The geometry (crop boxes and output sizes) is computed here with torchvision's formulas from
 * seeded draws; the pixels are decoded, cropped and resized by sharp (libvips).
 */
import { describe } from '../errors';

/** A crop box in pixels of the source image. */
export interface Box {
  /** First row, in pixels. */
  top: number;
  /** First column, in pixels. */
  left: number;
  /** Rows. */
  height: number;
  /** Columns. */
  width: number;
}

/** Uniform draws in [0, 1), deterministic for a seed. */
export type Random = () => number;

/**
 * A small, fast generator (mulberry32) for the draws of one sample: seeded from (seed, epoch,
 * index), so each sample's augmentation depends only on those, never on decoding order or timing.
 */
export function sampleRandom(seed: number, epoch: number, index: number): Random {
  let a = hash32(hash32(hash32(seed >>> 0) ^ (epoch >>> 0)) ^ (index >>> 0));
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hash32(x: number): number {
  let h = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  h = Math.imul(h ^ (h >>> 16), 0x45d9f3b);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A permutation of 0..n-1 (Fisher-Yates) from `random`. */
export function permutation(n: number, random: Random): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Python's round(): halves to the nearest even integer (torchvision's center crop uses it). */
export function pyRound(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** An integer in [lo, hi) (torch.randint's range). */
function randint(random: Random, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo));
}

/**
 * torchvision's RandomResizedCrop.get_params: up to 10 tries of an area in `scale` (fraction of
 * the image) and a log-uniform aspect ratio in `ratio`; else the central crop clamped to `ratio`.
 */
export function randomResizedCropBox(width: number, height: number, random: Random,
  scale: readonly [number, number] = [0.08, 1], ratio: readonly [number, number] = [3 / 4, 4 / 3]): Box {
  const area = width * height;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (scale[0] + random() * (scale[1] - scale[0]));
    const aspect = Math.exp(logRatio[0] + random() * (logRatio[1] - logRatio[0]));
    const w = pyRound(Math.sqrt(targetArea * aspect));
    const h = pyRound(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = randint(random, 0, height - h + 1);
      const left = randint(random, 0, width - w + 1);
      return { top, left, height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < Math.min(ratio[0], ratio[1])) {
    w = width;
    h = pyRound(w / Math.min(ratio[0], ratio[1]));
  } else if (inRatio > Math.max(ratio[0], ratio[1])) {
    h = height;
    w = pyRound(h * Math.max(ratio[0], ratio[1]));
  } else {
    w = width;
    h = height;
  }
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** torchvision's Resize(size) for an int size: the shorter edge becomes `size`, the aspect ratio is kept. */
export function resizeShorterEdge(width: number, height: number, size: number): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.floor((size * height) / width) };
  return { width: Math.floor((size * width) / height), height: size };
}

/** torchvision's CenterCrop(size) box in an image of width x height (not smaller than size). */
export function centerCropBox(width: number, height: number, size: number): Box {
  return { top: pyRound((height - size) / 2), left: pyRound((width - size) / 2), height: size, width: size };
}

/** The eval recipe's resize for a crop of `size`: torchvision's ImageNet scripts resize to size·256/224. */
export function evalResizeFor(size: number): number {
  return Math.floor((size * 256) / 224);
}

/** The pixels of one decoded image: height x width x 3 (RGB), uint8. */
export interface RawImage {
  /** Pixels, row-major, channels interleaved (HWC), uint8. */
  data: Uint8Array;
  /** Columns. */
  width: number;
  /** Rows. */
  height: number;
}

/**
 * A custom transform: gets the decoded RGB image and the sample's seeded draws, returns an RGB
 * image of the data set's size x size.
 */
export type CustomTransform = (image: RawImage, random: Random) => RawImage | Promise<RawImage>;

/**
 * 'train': RandomResizedCrop + horizontal flip. 'eval': Resize(size·256/224) + CenterCrop.
 * 'cifar': pad 4, random crop, flip. 'trivialaugment' / 'randaugment': 'train' followed by
 * torchvision's TrivialAugmentWide / RandAugment (see the in-memory `Augment`).
 */
export type TransformName = 'train' | 'eval' | 'cifar' | 'trivialaugment' | 'randaugment';

/** The transforms that end with an augmentation policy. */
export function isPolicy(transform: Transform): transform is 'trivialaugment' | 'randaugment' {
  return transform === 'trivialaugment' || transform === 'randaugment';
}

/** A seed for native draws (uint32) from a sample's draws. */
export function drawSeed(random: Random): number {
  return Math.floor(random() * 4294967296);
}

/** A transform option: a recipe name or a {@link CustomTransform}. */
export type Transform = TransformName | CustomTransform;

/** Validates a transform option. */
export function checkTransform(value: unknown, what: string): Transform {
  if (value === 'train' || value === 'eval' || value === 'cifar' || value === 'trivialaugment' || value === 'randaugment' || typeof value === 'function') return value as Transform;
  throw new TypeError(`Expected ${what} to be 'train', 'eval', 'cifar', 'trivialaugment', 'randaugment' or a function but received ${describe(value)}`);
}

/** One image's recipe, in sharp's terms: crop, resize, pad, flip. */
export interface Plan {
  /** Crop of the source image first (train) — undefined for none. */
  crop?: Box;
  /** Resize to exactly width x height (after the crop). */
  resize: { width: number; height: number };
  /** Crop after the resize (eval's center crop, cifar's padded crop). */
  cropAfter?: Box;
  /** Zero padding on each side before cropAfter (cifar). */
  pad?: number;
  /** Mirror left-right at the end. */
  flip: boolean;
}

/** CIFAR's padding, in pixels per side. */
export const CIFAR_PAD = 4;

/** The plan of a named recipe for an image of width x height and output `size`. */
export function planFor(name: TransformName, width: number, height: number, size: number, random: Random): Plan {
  switch (name) {
    case 'train':
    case 'trivialaugment':
    case 'randaugment': {
      const crop = randomResizedCropBox(width, height, random);
      return { crop, resize: { width: size, height: size }, flip: random() < 0.5 };
    }
    case 'eval': {
      const resized = resizeShorterEdge(width, height, evalResizeFor(size));
      return { resize: resized, cropAfter: centerCropBox(resized.width, resized.height, size), flip: false };
    }
    case 'cifar': {
      const top = randint(random, 0, 2 * CIFAR_PAD + 1);
      const left = randint(random, 0, 2 * CIFAR_PAD + 1);
      return { resize: { width: size, height: size }, pad: CIFAR_PAD, cropAfter: { top, left, height: size, width: size }, flip: random() < 0.5 };
    }
  }
}
