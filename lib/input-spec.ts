/**
 * What a model expects as input: the description `fit` records from its data, `save` writes into
 * the weight file's metadata (`densetorch.input`) and every reader of images uses (image.read with
 * a model, classify, the CLI's predict and serve), as torchvision's `weights.transforms()`.
 */
import { describe } from './errors';
import { knownOptions, positiveInt } from './validate';
import { evalResizeFor } from './data/transforms';

/** Metadata key of the input spec in a .safetensors file. */
export const METADATA_INPUT_KEY = 'densetorch.input';

/**
 * How a picture of another size becomes `height` x `width`: 'stretch' resizes it to exactly that
 * size (MNIST, CIFAR-10, tensors); 'center-crop' is torchvision's evaluation transform, the shorter
 * edge resized to `resizeShorterEdge` then the centre cropped (image folders).
 */
export type ResizePolicy = 'stretch' | 'center-crop';

/** Channel layout of the input: one grey channel, or red, green, blue. */
export type ChannelOrder = 'gray' | 'rgb';

/** The input a model was trained on, and so what a picture must become before it. */
export interface InputSpec {
  /** Channels: 1 (grey) or 3 (RGB); equals the model's `inChannels`. */
  readonly channels: number;
  /** Rows of the input. */
  readonly height: number;
  /** Columns of the input. */
  readonly width: number;
  /** How a picture of another size is brought to height x width. */
  readonly resize: ResizePolicy;
  /** For 'center-crop': the length the shorter edge is resized to before the crop. */
  readonly resizeShorterEdge?: number;
  /** 'gray' for 1 channel, 'rgb' for 3. */
  readonly channelOrder: ChannelOrder;
  /** The range 8-bit pixels are scaled to before normalisation: [0, 1] (pixel / 255). */
  readonly valueRange: readonly [number, number];
  /** Per-channel mean subtracted after scaling. */
  readonly mean: readonly number[];
  /** Per-channel standard deviation divided by after that. */
  readonly std: readonly number[];
}

/**
 * The input spec of 8-bit images of `channels` x `height` x `width` scaled to [0, 1] and normalised
 * by `normalize` (none: mean 0, std 1).
 */
export function imageInputSpec(channels: number, height: number, width: number, resize: ResizePolicy,
  normalize: { mean: readonly number[]; std: readonly number[] } | undefined): InputSpec {
  return Object.freeze({
    channels,
    height,
    width,
    resize,
    ...(resize === 'center-crop' ? { resizeShorterEdge: evalResizeFor(Math.min(height, width)) } : {}),
    channelOrder: channels === 1 ? 'gray' : 'rgb',
    valueRange: Object.freeze([0, 1]) as readonly [number, number],
    mean: Object.freeze(normalize ? [...normalize.mean] : new Array<number>(channels).fill(0)),
    std: Object.freeze(normalize ? [...normalize.std] : new Array<number>(channels).fill(1)),
  });
}

const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/**
 * Validates an input spec (from a caller or a file) against a model of `inChannels` channels;
 * returns a frozen copy with defaults filled (channelOrder, valueRange, resizeShorterEdge).
 * @throws {TypeError | RangeError} naming the field
 */
export function checkInputSpec(value: unknown, inChannels: number, what = 'input'): InputSpec {
  const o = knownOptions<InputSpec>(value, ['channels', 'height', 'width', 'resize', 'resizeShorterEdge', 'channelOrder', 'valueRange', 'mean', 'std'], what, what);
  const channels = positiveInt(o.channels, `${what}.channels`);
  if (channels !== 1 && channels !== 3) throw new RangeError(`Expected ${what}.channels to be 1 or 3 but received ${channels}`);
  if (channels !== inChannels) throw new RangeError(`${what}.channels is ${channels} but the model takes ${inChannels} channels (inChannels)`);
  const height = positiveInt(o.height, `${what}.height`);
  const width = positiveInt(o.width, `${what}.width`);
  const resize = o.resize ?? 'stretch';
  if (resize !== 'stretch' && resize !== 'center-crop') throw new TypeError(`Expected ${what}.resize to be 'stretch' or 'center-crop' but received ${describe(resize)}`);
  if (resize === 'center-crop' && height !== width) throw new RangeError(`${what}.resize 'center-crop' needs a square input, got ${height} x ${width}`);
  const order = o.channelOrder ?? (channels === 1 ? 'gray' : 'rgb');
  if (order !== (channels === 1 ? 'gray' : 'rgb')) throw new RangeError(`Expected ${what}.channelOrder to be '${channels === 1 ? 'gray' : 'rgb'}' for ${channels} channel(s) but received ${describe(order)}`);
  const range = o.valueRange ?? [0, 1];
  if (!Array.isArray(range) || range.length !== 2 || !range.every(finite) || !(range[0] < range[1])) {
    throw new TypeError(`Expected ${what}.valueRange to be [low, high] with low < high but received ${describe(range)}`);
  }
  const perChannel = (v: unknown, name: string, positive: boolean): number[] => {
    if (!Array.isArray(v) || v.length !== channels || !v.every(finite) || (positive && !v.every((x) => x > 0))) {
      throw new TypeError(`Expected ${what}.${name} to be ${channels} ${positive ? 'positive ' : ''}number(s) but received ${describe(v)}`);
    }
    return [...v];
  };
  const mean = perChannel(o.mean ?? new Array<number>(channels).fill(0), 'mean', false);
  const std = perChannel(o.std ?? new Array<number>(channels).fill(1), 'std', true);
  const shorter = resize === 'center-crop' ? positiveInt(o.resizeShorterEdge ?? evalResizeFor(height), `${what}.resizeShorterEdge`) : undefined;
  if (shorter !== undefined && shorter < height) throw new RangeError(`${what}.resizeShorterEdge (${shorter}) must be at least the crop (${height})`);
  return Object.freeze({
    channels, height, width, resize,
    ...(shorter !== undefined ? { resizeShorterEdge: shorter } : {}),
    channelOrder: order,
    valueRange: Object.freeze([range[0], range[1]]) as readonly [number, number],
    mean: Object.freeze(mean),
    std: Object.freeze(std),
  });
}

/** One line for people: `1 x 28 x 28 gray, stretch, [0, 1], mean [0.1307] std [0.3081]`. */
export function describeInputSpec(s: InputSpec): string {
  const resize = s.resize === 'center-crop' ? `resize shorter edge to ${s.resizeShorterEdge} then center-crop` : 'stretch';
  return `${s.channels} x ${s.height} x ${s.width} ${s.channelOrder}, ${resize}, pixels scaled to [${s.valueRange.join(', ')}], mean [${s.mean.join(', ')}] std [${s.std.join(', ')}]`;
}
