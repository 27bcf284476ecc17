/**
 * Reading image files into tensors: decoding, cropping and resizing by sharp (libvips), then
 * scaling to [0, 1] and per-channel normalisation, in the CHW layout models take.
 */
import * as fs from 'node:fs';
import { describe, DataError } from './errors';
import { tensor, Tensor } from './tensor';
import { knownOptions, normalizeArg, positiveInt } from './validate';
import { centerCropBox, checkTransform, CustomTransform, drawSeed, evalResizeFor, isPolicy, planFor, Plan, Random, resizeShorterEdge, sampleRandom, Transform } from './data/transforms';
import { addon } from './native';
import { describeInputSpec, imageInputSpec, InputSpec } from './input-spec';
import type { Normalize } from './datasets';

/** ImageNet's per-channel mean and std (RGB), torchvision's normalisation for its pretrained models. */
export const IMAGENET_NORMALIZE: Normalize = Object.freeze({ mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });

type SharpModule = typeof import('sharp').default;
let sharpModule: SharpModule | undefined;

/** sharp, loaded on first use (only the image features need it). */
function sharp(): SharpModule {
  if (!sharpModule) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      sharpModule = require('sharp') as SharpModule;
    } catch (err) {
      throw new DataError(`reading images needs the npm package 'sharp' (npm install sharp): ${(err as Error).message}`);
    }
  }
  return sharpModule;
}

/** What {@link read} needs of a model: its input spec, and for models without one its stem and channels. */
export interface ModelInput {
  /** The model's input spec, when known. */
  readonly input: InputSpec | undefined;
  /** The model's configuration (for the guess when `input` is undefined). */
  readonly config: {
    /** 'cifar' or 'imagenet'. */
    readonly stem: string;
    /** Channels the model takes. */
    readonly inChannels: number;
  };
}

/** Options of {@link read}. */
export interface ReadOptions {
  /**
   * Prepare the image as this model takes it (its {@link InputSpec}: channels, size, resize
   * policy, scaling and normalisation). `size`, `transform` and `normalize` are then not allowed.
   * A model without a spec gets the guess made before models carried one (the 'eval' transform at
   * 32 pixels for a CIFAR stem, 224 otherwise; RGB with ImageNet's normalisation, or grey without
   * normalisation for a 1-channel model), with a warning.
   */
  model?: ModelInput;
  /** Output height and width in pixels. Default 224. */
  size?: number;
  /** Default 'eval' (Resize(size·256/224) + CenterCrop(size)). */
  transform?: Transform;
  /** Per-channel normalisation after scaling to [0, 1]; `false` for none. Default ImageNet's. */
  normalize?: Normalize | false;
}

/** Validates a normalize option of RGB images: undefined is ImageNet's, false is none. */
export function checkNormalizeOption(value: unknown, what: string): Normalize | false {
  if (value === undefined) return IMAGENET_NORMALIZE;
  if (value === false) return false;
  return normalizeArg(value, 3, what) as Normalize;
}

/** Where an image comes from, for messages. */
function nameOf(source: string | Buffer): string {
  return typeof source === 'string' ? `'${source}'` : `a buffer of ${source.length} bytes`;
}

/**
 * Decodes one image and applies a transform; returns RGB pixels, size x size x 3, uint8.
 * @throws {DataError} naming the file when it cannot be read or decoded
 */
export async function decodeImage(source: string | Buffer, size: number, transform: Transform, random: Random): Promise<Uint8Array> {
  const lib = sharp();
  const input = await bytesOf(source);
  return decoding(source, async () => {
    if (typeof transform === 'function') return custom(lib, input, size, transform, random);
    const { width, height } = await lib(input).metadata();
    if (!width || !height) throw new Error('no image dimensions');
    const plan = planFor(transform, width, height, size, random);
    const pixels = await apply(lib, input, plan);
    return isPolicy(transform) ? addon().augment.policy(pixels, size, size, 3, transform, drawSeed(random)) : pixels;
  });
}

/** The encoded bytes of an image file or Buffer. @throws {DataError} naming the file */
async function bytesOf(source: string | Buffer): Promise<Buffer> {
  try {
    return typeof source === 'string' ? await fs.promises.readFile(source) : source;
  } catch (err) {
    throw new DataError(`cannot read image ${nameOf(source)}: ${(err as Error).message}`);
  }
}

/** Runs `decode`, turning what it throws into a DataError naming the image. */
async function decoding<T>(source: string | Buffer, decode: () => Promise<T>): Promise<T> {
  try {
    return await decode();
  } catch (err) {
    if (err instanceof DataError) throw err;
    throw new DataError(`cannot decode image ${nameOf(source)}: ${(err as Error).message}`);
  }
}

type SharpImage = ReturnType<SharpModule>;

/** Runs `image`'s pipeline to RGB bytes (8-bit, alpha dropped, grey expanded). */
async function rgb(image: SharpImage): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await image.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
  return { data, width: info.width, height: info.height };
}

/**
 * Ends a sharp pipeline and starts a new one on its pixels: sharp runs each pipeline's steps in
 * a fixed order (one extract before and one after the resize, the mirror before a post-resize
 * extract), so steps that must run in another order need a pass of their own.
 */
async function newPass(lib: SharpModule, image: SharpImage): Promise<SharpImage> {
  const { data, width, height } = await rgb(image);
  return lib(data, { raw: { width, height, channels: 3 } });
}

async function apply(lib: SharpModule, input: Buffer, plan: Plan): Promise<Uint8Array> {
  let image = lib(input);
  if (plan.crop) image = image.extract(plan.crop);
  image = image.resize(plan.resize.width, plan.resize.height, { fit: 'fill', kernel: 'linear' });
  if (plan.cropAfter) {
    if (plan.pad) {
      image = (await newPass(lib, image)).extend({ top: plan.pad, bottom: plan.pad, left: plan.pad, right: plan.pad, background: { r: 0, g: 0, b: 0 } });
      image = await newPass(lib, image);
    }
    image = image.extract(plan.cropAfter);
    // torchvision crops first, then flips.
    if (plan.flip && !plan.pad) image = await newPass(lib, image);
  }
  if (plan.flip) image = image.flop();
  const { data } = await rgb(image);
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

async function custom(lib: SharpModule, input: Buffer, size: number, transform: CustomTransform, random: Random): Promise<Uint8Array> {
  const { data, width, height } = await rgb(lib(input));
  const out = await transform({ data: new Uint8Array(data.buffer, data.byteOffset, data.length), width, height }, random);
  if (!out || out.width !== size || out.height !== size || !(out.data instanceof Uint8Array) || out.data.length !== size * size * 3) {
    throw new Error(`the custom transform must return { data: Uint8Array(${size * size * 3}), width: ${size}, height: ${size} } (RGB)`);
  }
  return out.data;
}

/** Writes RGB pixels (HWC uint8) into `out` at image `index` as normalised CHW float32. */
export function toChw(pixels: Uint8Array, size: number, normalize: Normalize | false, out: Float32Array, index: number): void {
  const scale = [0, 1, 2].map((c) => (normalize ? 1 / (255 * normalize.std[c]) : 1 / 255));
  const shift = [0, 1, 2].map((c) => (normalize ? normalize.mean[c] / normalize.std[c] : 0));
  writeChw(pixels, 3, size * size, scale, shift, out, index * 3 * size * size);
}

/** HWC uint8 pixels (`channels` per pixel, `plane` pixels) into `out` from `base` as CHW float32: pixel * scale[c] - shift[c]. */
function writeChw(pixels: Uint8Array, channels: number, plane: number, scale: readonly number[], shift: readonly number[], out: Float32Array, base: number): void {
  for (let c = 0; c < channels; c++) {
    const target = base + c * plane;
    for (let p = 0; p < plane; p++) out[target + p] = pixels[p * channels + c] * scale[c] - shift[c];
  }
}

/**
 * One image file (or encoded image in a Buffer) as a float32 tensor [1, 3, size, size]: decoded
 * by sharp (JPEG, PNG, WebP, TIFF, GIF, AVIF), transformed (default 'eval': Resize(size·256/224)
 * + CenterCrop(size)), scaled to [0, 1] and normalised (default ImageNet's mean and std).
 * @param source - a file path or the bytes of an encoded image
 * @param options - `size` (default 224), `transform` (default 'eval'), `normalize`
 * @returns a tensor [1, 3, size, size]
 * @throws {DataError} when the image cannot be read or decoded (the message names the file)
 * @example
 * ```js
 * const x = await dt.image.read('photo.jpg', { size: 224 });
 * const logits = await model.predict(x);
 * ```
 */
export async function read(source: string | Buffer, options: ReadOptions = {}): Promise<Tensor> {
  if (typeof source !== 'string' && !Buffer.isBuffer(source)) throw new TypeError(`Expected source to be a file path or a Buffer but received ${describe(source)}`);
  const o = knownOptions<ReadOptions>(options, ['size', 'transform', 'normalize', 'model'], 'image.read()');
  if (o.model !== undefined) {
    if (o.size !== undefined || o.transform !== undefined || o.normalize !== undefined) {
      throw new TypeError('image.read(): options.model decides size, transform and normalize; pass either model or those');
    }
    return readForModel(source, o.model);
  }
  const size = positiveInt(o.size ?? 224, 'options.size');
  const transform = checkTransform(o.transform ?? 'eval', 'options.transform');
  const normalize = checkNormalizeOption(o.normalize, 'options.normalize');
  const pixels = await decodeImage(source, size, transform, sampleRandom(0, 0, 0));
  const out = new Float32Array(3 * size * size);
  toChw(pixels, size, normalize, out, 0);
  return tensor(out, [1, 3, size, size]);
}

/** The spec a model without one is given: the guess densetorch made before models carried one. */
export function guessedInputSpec(model: ModelInput): InputSpec {
  const size = model.config.stem === 'cifar' ? 32 : 224;
  return model.config.inChannels === 1
    ? imageInputSpec(1, size, size, 'center-crop', undefined)
    : imageInputSpec(3, size, size, 'center-crop', IMAGENET_NORMALIZE);
}

const warnedModels = new WeakSet<object>();

/**
 * The spec `model` is read with: its own, or (warning once per model) the guess.
 */
export function inputSpecOf(model: ModelInput): InputSpec {
  if (model.input !== undefined) return model.input;
  const guess = guessedInputSpec(model);
  if (!warnedModels.has(model)) {
    warnedModels.add(model);
    process.emitWarning(`the model has no input spec (weights saved before densetorch recorded one, or data that could not tell): reading images as ${describeInputSpec(guess)}; state it with model.setInput()`, 'DensetorchWarning');
  }
  return guess;
}

/** Pixels of one image prepared by `spec`'s size and resize policy: HWC uint8, spec.channels per pixel. */
async function pixelsFor(source: string | Buffer, spec: InputSpec): Promise<Uint8Array> {
  const lib = sharp();
  const input = await bytesOf(source);
  return decoding(source, async () => {
    let image: SharpImage;
    if (spec.resize === 'center-crop' && spec.resizeShorterEdge === evalResizeFor(spec.height)) {
      // The 'eval' transform of image folders, so that a file reads as its evaluation batches do.
      const rgbPixels = await decodeImage(input, spec.height, 'eval', sampleRandom(0, 0, 0));
      if (spec.channels === 3) return rgbPixels;
      image = lib(Buffer.from(rgbPixels.buffer, rgbPixels.byteOffset, rgbPixels.length), { raw: { width: spec.width, height: spec.height, channels: 3 } });
    } else {
      const { width, height } = await lib(input).metadata();
      if (!width || !height) throw new Error('no image dimensions');
      if (spec.resize === 'center-crop') {
        const r = resizeShorterEdge(width, height, spec.resizeShorterEdge ?? evalResizeFor(spec.height));
        image = await newPass(lib, lib(input).resize(r.width, r.height, { fit: 'fill', kernel: 'linear' }));
        image = image.extract(centerCropBox(r.width, r.height, spec.height));
      } else {
        image = width === spec.width && height === spec.height ? lib(input) : lib(input).resize(spec.width, spec.height, { fit: 'fill', kernel: 'linear' });
      }
    }
    if (spec.channels === 3) {
      const { data } = await rgb(image);
      return new Uint8Array(data.buffer, data.byteOffset, data.length);
    }
    const { data, info } = await image.removeAlpha().grayscale().raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 1) throw new Error(`decoded to ${info.channels} channels, expected 1`);
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  });
}

/** One image as `model` takes it: a tensor [1, C, H, W] by the model's input spec. */
export async function readForModel(source: string | Buffer, model: ModelInput): Promise<Tensor> {
  const spec = inputSpecOf(model);
  const pixels = await pixelsFor(source, spec);
  const { channels: C, height: H, width: W } = spec;
  const [lo, hi] = spec.valueRange;
  const out = new Float32Array(C * H * W);
  // pixel / 255 scaled into [lo, hi], then (value - mean) / std.
  writeChw(pixels, C, H * W, spec.std.map((std) => (hi - lo) / 255 / std), spec.mean.map((mean, c) => (mean - lo) / spec.std[c]), out, 0);
  return tensor(out, [1, C, H, W]);
}
