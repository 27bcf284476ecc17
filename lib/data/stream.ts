/**
 * Streamed data sets: batches made while training runs (decoded from image files, or taken from
 * any async iterable), handed to the C++ training thread through one bounded queue per data set.
 * The training thread pulls; this side keeps at most `prefetch` batches ready ahead of it, so
 * memory does not grow with the size of the data set.
 */
import { describe } from '../errors';
import type { InputSpec } from '../input-spec';
import { Shard, shardLength } from './shard';
import { addon, NativeFeederHandle } from '../native';
import { Tensor } from '../tensor';
import { knownOptions, nonNegativeInt, positiveInt } from '../validate';

/** One batch: float32 images [B, C, H, W] (already normalised) and integer class labels [B]. */
export interface Batch {
  /** Images, float32 [N, C, H, W]. */
  images: Tensor;
  /** Class indices, int64 [N]. */
  labels: Tensor;
}

/** How a data set is asked for one epoch's batches. */
export interface EpochRequest {
  /** 0-based epoch; shuffling is seeded with `seed + epoch`, as PyTorch's DistributedSampler. */
  epoch: number;
  /** Images per batch. */
  batchSize: number;
  /** Training: shuffled order (when `shuffle`) and random augmentation; else the fixed order, no augmentation. */
  train: boolean;
  /** Whether the order is shuffled (training only). */
  shuffle: boolean;
  /** Base seed of the shuffle and the augmentation draws. */
  seed: number;
  /**
   * Data-parallel training ({@link distributed.init}): the share of the epoch this rank reads.
   * Image folders apply it themselves (as DistributedSampler: training shards padded to equal
   * length, evaluation shards not); a source made with {@link fromAsyncIterable} should deliver
   * only its rank's share. Undefined in a single process.
   */
  shard?: Shard;
}

/** Default number of batches made ahead of the training thread. */
export const DEFAULT_PREFETCH = 3;

/**
 * A data set whose batches are made as they are needed. Subclasses: image folders
 * ({@link datasets.imageFolder}) and {@link fromAsyncIterable}. `fit`, `evaluate` and `validationData`
 * take them like in-memory data sets.
 */
export abstract class StreamDataset {
  /** Samples per epoch (0 when not known in advance). */
  abstract get length(): number;
  /** Class names, index = label, when the data set knows them. */
  get classes(): readonly string[] | undefined {
    return undefined;
  }

  /**
   * The input this data set gives a model (see {@link InputSpec}), when it knows it: `fit`
   * records it in the model, `save` writes it into the file. Undefined for a custom source: state
   * it with `model.setInput`.
   */
  get input(): InputSpec | undefined {
    return undefined;
  }
  /** Batches made ahead of the training thread. Default 3. */
  prefetch = DEFAULT_PREFETCH;
  /** The batches of one epoch, in order. */
  abstract batches(request: EpochRequest): AsyncIterable<Batch>;

  /**
   * @internal Connects this data set to a native queue for one fit/evaluate call; `close()`
   * stops its producer once the call has settled.
   */
  open(batchSize: number, shuffle: boolean, seed: number, shard?: Shard): { native: { feeder: NativeFeederHandle }; close(): void } {
    const length = shard && this.length > 0 ? shardLength(this.length, shard) : this.length;
    const batches = length > 0 ? Math.ceil(length / batchSize) : 0;
    let run: Run | undefined;
    const feeder: NativeFeederHandle = new (addon().NativeFeeder)(length, batches, this.prefetch, (generation: number, epoch: number, train: boolean, start: boolean) => {
      if (start) {
        run?.cancel();
        run = new Run(this, feeder, generation, { epoch, batchSize, train, shuffle, seed, shard }, this.prefetch);
      } else if (run && run.generation === generation) {
        run.credit();
      }
    });
    return { native: { feeder }, close: () => run?.cancel() };
  }
}

/** One epoch's producer: pulls batches from the data set while the native queue has room. */
class Run {
  /** The native queue's tag for this run's batches. */
  readonly generation: number;
  readonly #feeder: NativeFeederHandle;
  readonly #iterator: AsyncIterator<Batch>;
  #credits: number;
  #pumping = false;
  #cancelled = false;

  constructor(dataset: StreamDataset, feeder: NativeFeederHandle, generation: number, request: EpochRequest, prefetch: number) {
    this.generation = generation;
    this.#feeder = feeder;
    this.#credits = prefetch;
    try {
      this.#iterator = dataset.batches(request)[Symbol.asyncIterator]();
    } catch (err) {
      this.#iterator = { next: () => Promise.reject(err) };
    }
    void this.#pump();
  }

  credit(): void {
    this.#credits += 1;
    void this.#pump();
  }

  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    void this.#iterator.return?.(undefined)?.catch(() => undefined);
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#credits > 0 && !this.#cancelled) {
        this.#credits -= 1;
        const r = await this.#iterator.next();
        if (this.#cancelled) {
          if (!r.done) disposeBatch(r.value);
          return;
        }
        if (r.done) {
          this.#feeder.end(this.generation);
          this.#cancelled = true;
          return;
        }
        const { images, labels } = checkBatch(r.value);
        this.#feeder.push(this.generation, images.handle('batch images'), labels.handle('batch labels'));
        disposeBatch(r.value); // the queue holds its own reference to the memory
      }
    } catch (err) {
      this.#feeder.fail(this.generation, err instanceof Error ? err.message : String(err));
      this.#cancelled = true;
    } finally {
      this.#pumping = false;
    }
  }
}

function disposeBatch(batch: Batch): void {
  batch?.images?.dispose?.();
  batch?.labels?.dispose?.();
}

/** Checks one batch from a source: float32 images [B, C, H, W] and integer labels [B] on the CPU. */
export function checkBatch(value: unknown): Batch {
  if (typeof value !== 'object' || value === null) throw new TypeError(`Expected a batch { images, labels } but received ${describe(value)}`);
  const { images, labels } = value as Partial<Batch>;
  if (!(images instanceof Tensor)) throw new TypeError(`Expected batch.images to be a Tensor but received ${describe(images)}`);
  if (!(labels instanceof Tensor)) throw new TypeError(`Expected batch.labels to be a Tensor but received ${describe(labels)}`);
  if (images.dtype !== 'float32' || images.shape.length !== 4 || images.device !== 'cpu') {
    throw new TypeError(`Expected batch.images to be float32 [B, C, H, W] on the cpu but received ${images.dtype} [${images.shape.join(', ')}] on ${images.device}`);
  }
  if (!['int64', 'int32', 'uint8'].includes(labels.dtype) || labels.shape.length !== 1 || labels.shape[0] !== images.shape[0]) {
    throw new TypeError(`Expected batch.labels to be integers of shape [${images.shape[0]}] but received ${labels.dtype} [${labels.shape.join(', ')}]`);
  }
  return { images, labels };
}

/** A source for {@link fromAsyncIterable}: an async iterable of batches, or one per epoch. */
export type BatchSourceInput = AsyncIterable<Batch> | ((epoch: number, train: boolean) => AsyncIterable<Batch>);

/** Options of {@link fromAsyncIterable}. */
export interface AsyncIterableOptions {
  /** Samples per epoch, for progress reports (batches per epoch). Default: unknown. */
  length?: number;
  /** Class names, index = label. */
  classes?: readonly string[];
  /** Batches made ahead of the training thread. Default 3. */
  prefetch?: number;
}

class IterableDataset extends StreamDataset {
  readonly #source: BatchSourceInput;
  readonly #length: number;
  readonly #classes: readonly string[] | undefined;

  constructor(source: BatchSourceInput, length: number, classes: readonly string[] | undefined) {
    super();
    this.#source = source;
    this.#length = length;
    this.#classes = classes;
  }

  get length(): number {
    return this.#length;
  }

  override get classes(): readonly string[] | undefined {
    return this.#classes;
  }

  batches(request: EpochRequest): AsyncIterable<Batch> {
    return typeof this.#source === 'function' ? this.#source(request.epoch, request.train) : this.#source;
  }
}

/**
 * A data set from any async iterable of `{ images, labels }` batches (float32 images [B, C, H, W],
 * integer labels [B]), as TensorFlow.js's `fitDataset` takes them. The batches are used as they
 * come: the source decides their size, order and augmentation. A function `(epoch, train) =>
 * iterable` gives a fresh iterable per epoch; a plain iterable is iterated once per epoch (a
 * generator object can be iterated only once: pass a function for several epochs).
 *
 * @example
 * ```js
 * const data = dt.datasets.fromAsyncIterable(async function* () {
 *   for (const file of files) yield await loadBatch(file);
 * }, { length: 50000 });
 * await model.fit(data, { epochs: 2 });
 * ```
 */
export function fromAsyncIterable(source: BatchSourceInput, options: AsyncIterableOptions = {}): StreamDataset {
  const isIterable = typeof source === 'object' && source !== null && typeof (source as AsyncIterable<Batch>)[Symbol.asyncIterator] === 'function';
  if (typeof source !== 'function' && !isIterable) {
    throw new TypeError(`Expected source to be an async iterable of { images, labels } or a function (epoch) => async iterable but received ${describe(source)}`);
  }
  const o = knownOptions<AsyncIterableOptions>(options, ['length', 'classes', 'prefetch'], 'fromAsyncIterable()');
  const length = nonNegativeInt(o.length ?? 0, 'options.length');
  if (o.classes !== undefined && (!Array.isArray(o.classes) || !o.classes.every((c) => typeof c === 'string'))) {
    throw new TypeError(`Expected options.classes to be an array of strings but received ${describe(o.classes)}`);
  }
  const dataset = new IterableDataset(source, length, o.classes);
  dataset.prefetch = positiveInt(o.prefetch ?? DEFAULT_PREFETCH, 'options.prefetch');
  return dataset;
}
