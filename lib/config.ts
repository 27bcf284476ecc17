/**
 * DenseNet configurations: the full config type, its defaults (DenseNet-121's), the presets
 * (data, not classes), validation of user arguments, and the paper's CIFAR configurations.
 */
import { describe } from './errors';
import { boolean, knownOptions, nonNegativeInt, numberIn, optionsObject, positiveInt } from './validate';
import type { Device } from './tensor';

/** The stem before the first dense block. */
export type Stem = 'imagenet' | 'cifar';

/** Full DenseNet configuration (what `model.config` returns). */
export interface DenseNetConfig {
  /** Channels each layer adds (k). */
  readonly growthRate: number;
  /** Layers per dense block. */
  readonly blockConfig: readonly number[];
  /** Channels out of the stem. */
  readonly numInitFeatures: number;
  /** Bottleneck width factor (DenseNet-B uses 4); 0 for plain BN-ReLU-Conv3x3 layers. */
  readonly bnSize: number;
  /** Transition compression θ in (0, 1]: a transition outputs floor(θ·channels). */
  readonly compression: number;
  /** Dropout after each layer's new features, in [0, 1). */
  readonly dropRate: number;
  /** Classifier outputs. */
  readonly numClasses: number;
  /** Input image channels. */
  readonly inChannels: number;
  /** 'imagenet': 7x7/2 conv, BN, ReLU, 3x3/2 max-pool. 'cifar': one 3x3 conv. */
  readonly stem: Stem;
  /** Recompute concatenation + BN + ReLU in backward instead of storing them (Pleiss et al.). */
  readonly memoryEfficient: boolean;
}

/** Arguments of `new DenseNet(...)`; every field is optional and defaults to DenseNet-121's. */
export interface DenseNetArgs {
  /** Default 32. */
  growthRate?: number;
  /** Default [6, 12, 24, 16]. */
  blockConfig?: readonly number[];
  /** Default 64. */
  numInitFeatures?: number;
  /** Default 4; 0 for no bottleneck. */
  bnSize?: number;
  /** Default 0.5. */
  compression?: number;
  /** Default 0. */
  dropRate?: number;
  /** Default 1000. */
  numClasses?: number;
  /** Default 3. */
  inChannels?: number;
  /** Default 'imagenet'. */
  stem?: Stem;
  /** Default false. */
  memoryEfficient?: boolean;
  /** Default 'cpu'. */
  device?: Device;
}

/** Options shared by the ImageNet presets. */
export interface PresetArgs {
  /** Default 1000. */
  numClasses?: number;
  /** Default false. */
  memoryEfficient?: boolean;
  /** Default 0. */
  dropRate?: number;
  /** Default 3. */
  inChannels?: number;
  /** Default 'cpu'. */
  device?: Device;
}

/** Options of {@link densenetCifar}. */
export interface CifarArgs {
  /** Total depth L: 6n+4 with bottleneck, 3n+4 without. */
  depth: number;
  /** Growth rate k. */
  growthRate: number;
  /** DenseNet-B bottleneck layers. Default true. */
  bottleneck?: boolean;
  /** Transition compression θ. Default 0.5 (DenseNet-C); 1 for none. */
  compression?: number;
  /** Default 10. */
  numClasses?: number;
  /** Default false. */
  memoryEfficient?: boolean;
  /** Default 0 (the paper uses 0.2 without data augmentation). */
  dropRate?: number;
  /** Default 3. */
  inChannels?: number;
  /** Default 'cpu'. */
  device?: Device;
}

export const DEFAULTS: DenseNetConfig = {
  growthRate: 32,
  blockConfig: [6, 12, 24, 16],
  numInitFeatures: 64,
  bnSize: 4,
  compression: 0.5,
  dropRate: 0,
  numClasses: 1000,
  inChannels: 3,
  stem: 'imagenet',
  memoryEfficient: false,
};

/** The architecture of one ImageNet preset. */
export interface PresetConfig {
  /** Channels each dense layer adds (k). */
  readonly growthRate: number;
  /** Dense layers in each of the four blocks. */
  readonly blockConfig: readonly number[];
  /** Channels out of the stem convolution. */
  readonly numInitFeatures: number;
}

/** The ImageNet presets: torchvision's 121/161/169/201 and the paper's 264. */
export const PRESETS: Readonly<Record<'densenet121' | 'densenet161' | 'densenet169' | 'densenet201' | 'densenet264', PresetConfig>> = {
  densenet121: { growthRate: 32, blockConfig: [6, 12, 24, 16], numInitFeatures: 64 },
  densenet161: { growthRate: 48, blockConfig: [6, 12, 36, 24], numInitFeatures: 96 },
  densenet169: { growthRate: 32, blockConfig: [6, 12, 32, 32], numInitFeatures: 64 },
  densenet201: { growthRate: 32, blockConfig: [6, 12, 48, 32], numInitFeatures: 64 },
  densenet264: { growthRate: 32, blockConfig: [6, 12, 64, 48], numInitFeatures: 64 },
};

/** Names of the ImageNet presets. */
export type PresetName = keyof typeof PRESETS;






const CONFIG_KEYS = new Set<string>([...Object.keys(DEFAULTS), 'device']);

/** Validates DenseNet arguments and fills in defaults. */
export function resolveConfig(args: DenseNetArgs | undefined): DenseNetConfig {
  const a = optionsObject<DenseNetArgs>(args, 'DenseNet options');
  for (const key of Object.keys(a)) {
    if (!CONFIG_KEYS.has(key)) throw new TypeError(`Unknown DenseNet option '${key}'; expected one of ${[...CONFIG_KEYS].join(', ')}`);
  }
  const blockConfig = a.blockConfig ?? DEFAULTS.blockConfig;
  if (!Array.isArray(blockConfig) || blockConfig.length === 0) {
    throw new TypeError(`Expected blockConfig to be a non-empty array of positive integers but received ${describe(blockConfig)}`);
  }
  const stem = a.stem ?? DEFAULTS.stem;
  if (stem !== 'imagenet' && stem !== 'cifar') throw new TypeError(`Expected stem to be 'imagenet' or 'cifar' but received ${describe(stem)}`);
  return Object.freeze({
    growthRate: positiveInt(a.growthRate ?? DEFAULTS.growthRate, 'growthRate'),
    blockConfig: Object.freeze(blockConfig.map((n, i) => positiveInt(n, `blockConfig[${i}]`))),
    numInitFeatures: positiveInt(a.numInitFeatures ?? DEFAULTS.numInitFeatures, 'numInitFeatures'),
    bnSize: nonNegativeInt(a.bnSize ?? DEFAULTS.bnSize, 'bnSize'),
    compression: numberIn(a.compression ?? DEFAULTS.compression, 'compression', (x) => x > 0 && x <= 1, 'in (0, 1]'),
    dropRate: numberIn(a.dropRate ?? DEFAULTS.dropRate, 'dropRate', (x) => x >= 0 && x < 1, 'in [0, 1)'),
    numClasses: positiveInt(a.numClasses ?? DEFAULTS.numClasses, 'numClasses'),
    inChannels: positiveInt(a.inChannels ?? DEFAULTS.inChannels, 'inChannels'),
    stem,
    memoryEfficient: boolean(a.memoryEfficient ?? DEFAULTS.memoryEfficient, 'memoryEfficient'),
  });
}

/** The configuration of the paper's CIFAR DenseNets for a depth and growth rate. */
export function cifarConfig(args: CifarArgs): DenseNetArgs {
  const a = knownOptions<CifarArgs>(args, ['depth', 'growthRate', 'bottleneck', 'compression', 'numClasses', 'memoryEfficient', 'dropRate', 'inChannels', 'device'], 'densenetCifar()', 'densenetCifar options');
  const bottleneck = boolean(a.bottleneck ?? true, 'bottleneck');
  const growthRate = positiveInt(a.growthRate, 'growthRate');
  const compression = numberIn(a.compression ?? 0.5, 'compression', (x) => x > 0 && x <= 1, 'in (0, 1]');
  const depth = positiveInt(a.depth, 'depth');
  const step = bottleneck ? 6 : 3;
  if (depth < 4 + step || (depth - 4) % step !== 0) {
    const examples = bottleneck ? '10, 16, 22, ..., 100, 190, 250' : '7, 10, 13, ..., 40, 100';
    throw new RangeError(
      `Expected depth to be ${step}n+4 (${examples}) for a DenseNet ${bottleneck ? 'with' : 'without'} bottleneck layers but received ${depth}`,
    );
  }
  const perBlock = (depth - 4) / step;
  return {
    growthRate,
    blockConfig: [perBlock, perBlock, perBlock],
    numInitFeatures: bottleneck && compression < 1 ? 2 * growthRate : 16,
    bnSize: bottleneck ? 4 : 0,
    compression,
    dropRate: a.dropRate ?? 0,
    numClasses: a.numClasses ?? 10,
    inChannels: a.inChannels ?? 3,
    stem: 'cifar',
    memoryEfficient: a.memoryEfficient ?? false,
    device: a.device,
  };
}

