/**
 * Training options, their validation, and the History that fit() returns. The loop itself runs
 * in C++ on densetorch's compute thread (native/core/trainer.cpp, native/core/compute_thread.h).
 */
import * as path from 'node:path';
import { describe, DensetorchError, TrainingError } from './errors';
import { boolean, checkSignal, knownOptions, numberIn, optionalFunction, optionsObject, positiveInt, seedArg } from './validate';
import { Dataset } from './datasets';
import { StreamDataset } from './data/stream';
import { currentShard } from './data/shard';

/** The default learning rate of an optimizer: 0.1 for SGD (the paper's), 1e-3 for Adam and AdamW. */
export function defaultLr(type: 'sgd' | 'adam' | 'adamw'): number {
  return type === 'sgd' ? 0.1 : 1e-3;
}

/** What fit, evaluate and validationData take: data in memory or a streamed data set. */
export type AnyDataset = Dataset | StreamDataset;

/** Throws a TypeError unless `value` is a data set; returns it. */
export function checkDataset(value: unknown, what: string): AnyDataset {
  if (value instanceof Dataset || value instanceof StreamDataset) return value;
  throw new TypeError(`Expected ${what} to be a Dataset (see dt.datasets) but received ${describe(value)}`);
}

/**
 * Connects a data set to the addon for one call; `close()` after the call settles. In a
 * distributed group, a streamed data set delivers this rank's shard (in-memory ones are sharded
 * by the native side).
 */
export function openDataset(data: AnyDataset, batchSize: number, shuffle: boolean, seed: number, dropLast = false): { native: unknown; close(): void } {
  if (data instanceof StreamDataset) return data.open(batchSize, shuffle, seed, currentShard(dropLast));
  return { native: data.toNative(), close: () => undefined };
}

/** SGD with momentum (the paper's optimizer: lr 0.1, momentum 0.9, Nesterov, weight decay 1e-4). */
export interface SgdOptions {
  /** Selects SGD. */
  type: 'sgd';
  /** Default 0.1. */
  lr?: number;
  /** Default 0.9. */
  momentum?: number;
  /** Default true. */
  nesterov?: boolean;
  /** Default 1e-4. */
  weightDecay?: number;
}

/** Adam or AdamW. */
export interface AdamOptions {
  /** 'adam' (L2 penalty in the gradient) or 'adamw' (decoupled weight decay). */
  type: 'adam' | 'adamw';
  /** Default 1e-3. */
  lr?: number;
  /** Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Default 0 for adam, 1e-2 for adamw. */
  weightDecay?: number;
}

/** Linear warm-up, added to any schedule: torchvision's LinearLR, per step. */
export interface Warmup {
  /** Epochs (may be fractional) over which the rate rises linearly, step by step, to the schedule's. Default 0 (none). */
  warmupEpochs?: number;
  /** The rate's fraction at the first step, in (0, 1]. Default 0.1. */
  warmupStartFactor?: number;
}

/** Learning-rate schedule over the whole run (per epoch), with an optional warm-up (see {@link Warmup}). */
export type Schedule =
  | 'constant'
  | ({
    /** A constant rate (after the warm-up). */
    type: 'constant';
  } & Warmup)
  | ({
    /** Step decay: the rate is multiplied by `gamma` at each milestone. */
    type: 'multistep';
    /** Fractions of the run, in (0, 1), at which the rate drops; default [0.5, 0.75] (the paper). */
    milestones?: number[];
    /** Factor per milestone; default 0.1. */
    gamma?: number;
  } & Warmup)
  | ({
    /** Cosine annealing from the initial rate to 0 over the run. */
    type: 'cosine';
  } & Warmup);

/** What `evaluate` measures. */
export interface EvaluateResult {
  /** Mean cross-entropy over the data set. */
  loss: number;
  /** Fraction of images whose top-1 class is the label, in [0, 1]. */
  accuracy: number;
}

/** Progress of one batch. */
export interface BatchLogs {
  /** 1-based epoch. */
  epoch: number;
  /** 1-based batch within the epoch. */
  batch: number;
  /** Batches per epoch (0 for a streamed data set of unknown length). */
  batches: number;
  /** Mean cross-entropy of this batch. */
  loss: number;
  /** Fraction of this batch classified correctly (before the update). */
  accuracy: number;
  /** Learning rate of this epoch. */
  lr: number;
  /** Images of this batch per second of its step (data wait, forward, backward, update). */
  imagesPerSecond: number;
}

/** Summary of one epoch. */
export interface EpochLogs {
  /** 1-based epoch. */
  epoch: number;
  /** Mean training cross-entropy over the epoch's images. */
  loss: number;
  /** Fraction of the epoch's training images classified correctly (each before its update). */
  accuracy: number;
  /** Mean cross-entropy on `validationData` after the epoch (eval mode); null without it. */
  valLoss: number | null;
  /** Accuracy on `validationData` after the epoch; null without it. */
  valAccuracy: number | null;
  /** Mean cross-entropy of the weight average (fit's `ema`) on `validationData`; null without either. */
  emaValLoss: number | null;
  /** Accuracy of the weight average (fit's `ema`) on `validationData`; null without either. */
  emaValAccuracy: number | null;
  /** Learning rate of the epoch. */
  lr: number;
  /** Wall time of the epoch's training, in seconds (validation not included). */
  seconds: number;
  /** Training images per second over the epoch. */
  imagesPerSecond: number;
  /** Fraction of the epoch's training time the training thread waited for batches (near 0 for data in memory). */
  dataWaitShare: number;
}

/** A `mixup` or `cutmix` option of {@link FitOptions}. */
export interface MixOptions {
  /** α of λ ~ Beta(α, α), > 0 (torchvision's references use 0.2 for MixUp, 1.0 for CutMix). */
  alpha: number;
}

/** The `ema` option of {@link FitOptions}: an exponential moving average of the weights. */
export interface EmaOptions {
  /** avg = decay·avg + (1 − decay)·w at each update, in (0, 1) (e.g. 0.999 or 0.9998). */
  decay: number;
  /** Optimizer steps between updates. Default 1. */
  everySteps?: number;
  /** What the model holds when fit completes: the average ('ema', the default) or the trained weights ('raw'). */
  weights?: 'ema' | 'raw';
}

/**
 * Options of `model.fit`. The image augmentation of a recipe belongs to the training data set,
 * as torchvision's transforms do: `augment: 'cifar' | 'trivialaugment' | 'randaugment'` and
 * `randomErasing: p` on a data set in memory ({@link Dataset.withAugmentation},
 * `datasets.fromTensors`), `transform` and `randomErasing` on `datasets.imageFolder`.
 */
export interface FitOptions {
  /** Default 1. */
  epochs?: number;
  /** Default 64. */
  batchSize?: number;
  /** Default { type: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-4 }. */
  optimizer?: SgdOptions | AdamOptions;
  /** Default 'constant'. multistep milestones are fractions of the run (default [0.5, 0.75]), gamma 0.1. */
  schedule?: Schedule;
  /** Shuffle every epoch. Default true. */
  shuffle?: boolean;
  /** Seeds shuffling, augmentation and dropout. Default 0. */
  seed?: number;
  /**
   * Data-parallel training (after {@link distributed.init}): cut each epoch to a multiple of the
   * number of ranks instead of padding it by repeating samples, as DistributedSampler's
   * `drop_last`. Default false. No effect in a single process.
   */
  dropLast?: boolean;
  /** Evaluated after every epoch: data in memory or streamed (e.g. an image folder with the 'eval' transform). */
  validationData?: AnyDataset;
  /**
   * Called after every batch, on the main thread, as the reports arrive: training never waits
   * for it. When the main thread falls more than 64 batches behind, the newest report stands in
   * for the ones it missed (its `batch` tells how far training went). A callback that throws
   * stops the run and fit rejects with its error.
   */
  onBatchEnd?: (logs: BatchLogs) => void;
  /** Called after every epoch, on the main thread (never skipped). A callback that throws stops the run and fit rejects with its error. */
  onEpochEnd?: (logs: EpochLogs) => void;
  /** Stops training within one batch; fit then rejects with an AbortError holding the history so far. */
  signal?: AbortSignal;
  /**
   * Writes model + optimizer state + epoch + every rank's generator states atomically every
   * `everyEpochs` (default 1), at the end, and every `everySteps` optimizer steps inside an epoch
   * when set. Data-parallel: rank 0 writes it, the other ranks wait for the file.
   */
  checkpoint?: {
    /** File the checkpoint is written to (atomically replaced each time). */
    path: string;
    /** Epochs between checkpoints (default 1). */
    everyEpochs?: number;
    /**
     * Optimizer steps between checkpoints inside an epoch (default: none). Resuming from one
     * continues at the next batch of that epoch, with the same order and generator states: the
     * run ends with the weights an uninterrupted run gives.
     */
    everySteps?: number;
  };
  /**
   * Continues from a checkpoint written by `checkpoint`: its path, or 'auto' for
   * `checkpoint.path` when that file exists and a fresh start when it does not (what a worker
   * restarted by `densetorch launch --max-restarts` wants). Data-parallel: every rank must see
   * the same file (a shared file system across machines).
   */
  resumeFrom?: string;
  /** Precision of the forward pass (see {@link Precision}); weights and their updates stay float32. Default 'fp32'. */
  precision?: Precision;
  /**
   * Label smoothing ε in [0, 1): cross-entropy against (1 − ε)·onehot + ε/K, as
   * `torch.nn.CrossEntropyLoss(label_smoothing=ε)` (the reported loss is this one). Default 0.
   */
  labelSmoothing?: number;
  /**
   * Total-norm gradient clipping: before each update the gradients are scaled by
   * min(1, max / ‖g‖₂) over all parameters, as `torch.nn.utils.clip_grad_norm_` (data-parallel: on
   * the averaged gradients). Default: none.
   */
  clipGradNorm?: number;
  /**
   * A folder for the run's logs (created when missing): a TensorBoard event file
   * (`events.out.tfevents.*`; `tensorboard --logdir` on the folder or its parent) and the same
   * records as `metrics.jsonl`. Scalars per batch as reported (`batch/loss`, `batch/accuracy`,
   * `batch/lr`, `batch/images_per_second`, step = batches so far) and per epoch (`epoch/loss`,
   * `epoch/accuracy`, `epoch/val_loss`, `epoch/val_accuracy`, with `ema` `epoch/ema_val_loss` and
   * `epoch/ema_val_accuracy`, `epoch/lr`,
   * `epoch/images_per_second`, `epoch/data_wait_share`, step = epoch), and the run's options as
   * TensorBoard hparams. Default: no logs.
   */
  logDir?: string;
  /**
   * MixUp (torchvision's RandomMixup): each training batch is mixed with itself rolled by one,
   * x = λ·x + (1 − λ)·roll(x), targets λ·onehot(y) + (1 − λ)·onehot(roll(y)), λ ~ Beta(α, α), drawn
   * from the run's seed. With `cutmix` too, one of the two is chosen per batch. The loss is
   * cross-entropy against the mixed targets (label smoothing applies on top); the reported
   * accuracy compares predictions with each image's own label. Default: off.
   */
  mixup?: MixOptions;
  /**
   * CutMix (torchvision's RandomCutmix): a box of area about (1 − λ) of the image, centred at a
   * uniform pixel and clipped at the borders, is pasted from the batch rolled by one; λ ~ Beta(α, α),
   * then λ = 1 − box area / image area for the targets. With `mixup` too, one of the two is chosen
   * per batch. Default: off.
   */
  cutmix?: MixOptions;
  /**
   * An exponential moving average of the parameters and buffers (torchvision's
   * ExponentialMovingAverage): every `everySteps` optimizer steps (default 1) avg = decay·avg +
   * (1 − decay)·w, the first update copying the weights; during the schedule's warm-up epochs
   * the average follows the weights (torchvision's recipe). With `validationData` the average is
   * evaluated beside the raw weights every epoch (`emaValLoss`, `emaValAccuracy`). Checkpoints hold
   * both. When fit completes, the model holds the average (`weights: 'ema'`, the default; what
   * `save` writes afterwards) or the raw weights (`weights: 'raw'`). Default: off.
   */
  ema?: EmaOptions;
  /**
   * Gradient accumulation: the gradients of this many consecutive batches are summed and divided
   * by the count before one optimizer step, which then equals the step of one batch of all their
   * images (batch norm sees each batch on its own, as in PyTorch). `onBatchEnd` reports once per
   * step, with the figures of its batches. Default 1.
   */
  accumulateSteps?: number;
}

/** What fit() returns: one entry per completed epoch. */
export interface History {
  /** Every completed epoch's logs, in order. */
  epochs: EpochLogs[];
  /** `epochs[i].loss`, by epoch. */
  loss: number[];
  /** `epochs[i].accuracy`, by epoch. */
  accuracy: number[];
  /** `epochs[i].valLoss`, by epoch. */
  valLoss: (number | null)[];
  /** `epochs[i].valAccuracy`, by epoch. */
  valAccuracy: (number | null)[];
  /** `epochs[i].lr`, by epoch. */
  lr: number[];
  /** `epochs[i].seconds`, by epoch. */
  seconds: number[];
}

/** Options of `model.evaluate`. */
export interface EvaluateOptions {
  /** Default 256. */
  batchSize?: number;
  /** Compute precision (see {@link Precision}). Default 'fp32'. */
  precision?: Precision;
}

/**
 * Compute precision of the convolutions and the classifier: 'fp32' (default), 'bf16' (autocast
 * to bfloat16: CPUs with AVX-512 BF16 or AMX, and CUDA), or 'fp16' (float16, CUDA only). Weights,
 * batch-norm statistics and the returned logits stay float32.
 */
export type Precision = 'fp32' | 'bf16' | 'fp16';

/** Validates a precision option; undefined is the default, 'fp32'. */
export function checkPrecision(value: unknown, what: string): Precision {
  if (value === undefined) return 'fp32';
  if (value !== 'fp32' && value !== 'bf16' && value !== 'fp16') {
    throw new TypeError(`Expected ${what} to be 'fp32', 'bf16' or 'fp16' but received ${describe(value)}`);
  }
  return value;
}

export { TrainingError };

/** fit() was stopped by its AbortSignal. `history` holds the epochs completed before. */
export class AbortError extends DensetorchError {
  /** Epochs completed before the stop. */
  readonly history: History;
  constructor(message: string, history: History) {
    super(message);
    this.history = history;
  }
}

/** The validated options the addon reads (internal). */
export interface NativeFitOptions {
  epochs: number;
  batchSize: number;
  optimizer: { type: 'sgd' | 'adam' | 'adamw'; lr: number; momentum: number; nesterov: boolean; weightDecay: number; betas: [number, number] };
  schedule: { type: 'constant' | 'multistep' | 'cosine'; milestones: number[]; gamma: number; warmupEpochs: number; warmupStartFactor: number };
  labelSmoothing: number;
  clipGradNorm: number;
  mixupAlpha: number;
  cutmixAlpha: number;
  ema?: { decay: number; everySteps: number; weights: 'ema' | 'raw' };
  accumulateSteps: number;
  shuffle: boolean;
  seed: number;
  dropLast: boolean;
  validationData?: unknown;
  checkpointPath?: string;
  checkpointEvery: number;
  checkpointSteps: number;
  resumeFrom?: string;
  resumeAuto: boolean;
  precision: Precision;
}





const FIT_KEYS = ['epochs', 'batchSize', 'optimizer', 'schedule', 'shuffle', 'seed', 'dropLast', 'validationData', 'onBatchEnd', 'onEpochEnd', 'signal', 'checkpoint', 'resumeFrom', 'precision', 'logDir', 'labelSmoothing', 'clipGradNorm', 'mixup', 'cutmix', 'ema', 'accumulateSteps'];

/** The α of a `mixup` / `cutmix` option; 0 when absent. */
function mixAlpha(value: MixOptions | undefined, what: string): number {
  if (value === undefined) return 0;
  const o = knownOptions<MixOptions>(value, ['alpha'], 'fit()', what);
  return numberIn(o.alpha, `${what}.alpha`, (x) => x > 0, '> 0', true);
}

/** A validated `ema` option. */
function emaOption(value: FitOptions['ema']): NativeFitOptions['ema'] {
  if (value === undefined) return undefined;
  const o = knownOptions<EmaOptions>(value, ['decay', 'everySteps', 'weights'], 'fit()', 'ema');
  const weights = o.weights ?? 'ema';
  if (weights !== 'ema' && weights !== 'raw') throw new TypeError(`Expected ema.weights to be 'ema' or 'raw' but received ${describe(weights)}`);
  return {
    decay: numberIn(o.decay, 'ema.decay', (x) => x > 0 && x < 1, 'in (0, 1)', true),
    everySteps: positiveInt(o.everySteps ?? 1, 'ema.everySteps'),
    weights,
  };
}

/** Validates fit() options and fills in defaults. */
export function resolveFitOptions(options: FitOptions | undefined): {
  native: NativeFitOptions;
  onBatchEnd?: (logs: BatchLogs) => void;
  onEpochEnd?: (logs: EpochLogs) => void;
  signal?: AbortSignal;
  validation?: AnyDataset;
  logDir?: string;
} {
  options = optionsObject<FitOptions>(options, 'options');
  for (const key of Object.keys(options)) {
    if (!FIT_KEYS.includes(key)) throw new TypeError(`Unknown fit option '${key}'; expected one of ${FIT_KEYS.join(', ')}`);
  }
  const o = options;
  const opt = o.optimizer ?? { type: 'sgd' };
  optionsObject(opt, 'optimizer');
  const type = (opt as { type?: unknown }).type;
  if (type !== 'sgd' && type !== 'adam' && type !== 'adamw') throw new TypeError(`Expected optimizer.type to be 'sgd', 'adam' or 'adamw' but received ${describe(type)}`);
  const lrDefault = defaultLr(type);
  const lr = numberIn((opt as { lr?: number }).lr ?? lrDefault, 'optimizer.lr', (x) => x > 0, '> 0', true);
  let nativeOpt: NativeFitOptions['optimizer'];
  if (type === 'sgd') {
    const s = opt as SgdOptions;
    nativeOpt = {
      type, lr,
      momentum: numberIn(s.momentum ?? 0.9, 'optimizer.momentum', (x) => x >= 0 && x < 1, 'in [0, 1)', true),
      nesterov: boolean(s.nesterov ?? true, 'optimizer.nesterov'),
      weightDecay: numberIn(s.weightDecay ?? 1e-4, 'optimizer.weightDecay', (x) => x >= 0, '>= 0', true),
      betas: [0.9, 0.999],
    };
    if (nativeOpt.nesterov && nativeOpt.momentum === 0) throw new RangeError('Expected optimizer.momentum > 0 with nesterov: true but received 0');
  } else {
    const a = opt as AdamOptions;
    const betas = a.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2) throw new TypeError(`Expected optimizer.betas to be [beta1, beta2] but received ${describe(betas)}`);
    nativeOpt = {
      type, lr, momentum: 0, nesterov: false,
      weightDecay: numberIn(a.weightDecay ?? (type === 'adamw' ? 1e-2 : 0), 'optimizer.weightDecay', (x) => x >= 0, '>= 0', true),
      betas: [
        numberIn(betas[0], 'optimizer.betas[0]', (x) => x >= 0 && x < 1, 'in [0, 1)', true),
        numberIn(betas[1], 'optimizer.betas[1]', (x) => x >= 0 && x < 1, 'in [0, 1)', true),
      ],
    };
  }
  const schedule = o.schedule ?? 'constant';
  let nativeSchedule: Omit<NativeFitOptions['schedule'], 'warmupEpochs' | 'warmupStartFactor'>;
  if (schedule === 'constant' || (typeof schedule === 'object' && schedule !== null && schedule.type === 'constant')) {
    nativeSchedule = { type: 'constant', milestones: [], gamma: 1 };
  } else if (typeof schedule === 'object' && schedule !== null && schedule.type === 'multistep') {
    const milestones = schedule.milestones ?? [0.5, 0.75];
    if (!Array.isArray(milestones)) throw new TypeError(`Expected schedule.milestones to be an array of fractions in (0, 1) but received ${describe(milestones)}`);
    milestones.forEach((m, i) => numberIn(m, `schedule.milestones[${i}]`, (x) => x > 0 && x < 1, 'in (0, 1) (a fraction of the run)', true));
    nativeSchedule = { type: 'multistep', milestones: [...milestones], gamma: numberIn(schedule.gamma ?? 0.1, 'schedule.gamma', (x) => x > 0 && x <= 1, 'in (0, 1]', true) };
  } else if (typeof schedule === 'object' && schedule !== null && schedule.type === 'cosine') {
    nativeSchedule = { type: 'cosine', milestones: [], gamma: 1 };
  } else {
    throw new TypeError(`Expected schedule to be 'constant', { type: 'constant' | 'multistep' | 'cosine', ... } but received ${describe(schedule)}`);
  }
  const warm: Warmup = typeof schedule === 'object' ? schedule : {};
  const warmup = {
    warmupEpochs: numberIn(warm.warmupEpochs ?? 0, 'schedule.warmupEpochs', (x) => x >= 0, '>= 0', true),
    warmupStartFactor: numberIn(warm.warmupStartFactor ?? 0.1, 'schedule.warmupStartFactor', (x) => x > 0 && x <= 1, 'in (0, 1]', true),
  };
  const seed = seedArg(o.seed ?? 0, 'seed');
  const validation = o.validationData === undefined ? undefined : checkDataset(o.validationData, 'validationData');
  let checkpointPath: string | undefined;
  let checkpointEvery = 1;
  let checkpointSteps = 0;
  if (o.checkpoint !== undefined) {
    if (typeof o.checkpoint !== 'object' || o.checkpoint === null || typeof o.checkpoint.path !== 'string' || !o.checkpoint.path) {
      throw new TypeError(`Expected checkpoint to be { path: string, everyEpochs?: number, everySteps?: number } but received ${describe(o.checkpoint)}`);
    }
    knownOptions(o.checkpoint, ['path', 'everyEpochs', 'everySteps'], 'fit()', 'checkpoint');
    checkpointPath = path.resolve(o.checkpoint.path);
    checkpointEvery = positiveInt(o.checkpoint.everyEpochs ?? 1, 'checkpoint.everyEpochs');
    checkpointSteps = o.checkpoint.everySteps === undefined ? 0 : positiveInt(o.checkpoint.everySteps, 'checkpoint.everySteps');
  }
  if (o.resumeFrom !== undefined && (typeof o.resumeFrom !== 'string' || !o.resumeFrom)) throw new TypeError(`Expected resumeFrom to be a checkpoint path or 'auto' but received ${describe(o.resumeFrom)}`);
  const resumeAuto = o.resumeFrom === 'auto';
  if (resumeAuto && checkpointPath === undefined) throw new TypeError("Expected checkpoint: { path } with resumeFrom 'auto' (the file it resumes from) but received no checkpoint");
  if (o.logDir !== undefined && (typeof o.logDir !== 'string' || !o.logDir)) throw new TypeError(`Expected logDir to be a folder path but received ${describe(o.logDir)}`);
  return {
    native: {
      epochs: positiveInt(o.epochs ?? 1, 'epochs'),
      batchSize: positiveInt(o.batchSize ?? 64, 'batchSize'),
      optimizer: nativeOpt,
      schedule: { ...nativeSchedule, ...warmup },
      labelSmoothing: numberIn(o.labelSmoothing ?? 0, 'labelSmoothing', (x) => x >= 0 && x < 1, 'in [0, 1)', true),
      clipGradNorm: o.clipGradNorm === undefined ? 0 : numberIn(o.clipGradNorm, 'clipGradNorm', (x) => x > 0, '> 0', true),
      mixupAlpha: mixAlpha(o.mixup, 'mixup'),
      cutmixAlpha: mixAlpha(o.cutmix, 'cutmix'),
      ema: emaOption(o.ema),
      accumulateSteps: positiveInt(o.accumulateSteps ?? 1, 'accumulateSteps'),
      shuffle: boolean(o.shuffle ?? true, 'shuffle'),
      seed,
      dropLast: boolean(o.dropLast ?? false, 'dropLast'),
      validationData: undefined,
      checkpointPath,
      checkpointEvery,
      checkpointSteps,
      resumeFrom: o.resumeFrom === undefined || resumeAuto ? undefined : path.resolve(o.resumeFrom),
      resumeAuto,
      precision: checkPrecision(o.precision, 'precision'),
    },
    onBatchEnd: optionalFunction(o.onBatchEnd, 'onBatchEnd'),
    onEpochEnd: optionalFunction(o.onEpochEnd, 'onEpochEnd'),
    signal: checkSignal(o.signal, 'signal'),
    validation,
    logDir: o.logDir === undefined ? undefined : path.resolve(o.logDir),
  };
}

/** Builds a History from the per-epoch logs. */
export function toHistory(epochs: EpochLogs[]): History {
  return {
    epochs,
    loss: epochs.map((e) => e.loss),
    accuracy: epochs.map((e) => e.accuracy),
    valLoss: epochs.map((e) => e.valLoss),
    valAccuracy: epochs.map((e) => e.valAccuracy),
    lr: epochs.map((e) => e.lr),
    seconds: epochs.map((e) => e.seconds),
  };
}
