/**
 * Serving: the FIFO queue that lets many inference calls share one model, and the dynamic
 * batcher behind {@link DenseNet.serve} that merges small concurrent requests into one forward pass.
 */
import { DensetorchError } from './errors';
import type { Tensor } from './tensor';
import { ClassScore, topClasses } from './classify';
import { checkSignal, knownOptions, optionsObject, positiveInt, numberIn } from './validate';

/** An inference request was refused because the queue already holds its limit of requests. */
export class QueueFullError extends DensetorchError {
  /** The limit that was reached. */
  readonly maxQueue: number;
  constructor(message: string, maxQueue: number) {
    super(message);
    this.maxQueue = maxQueue;
  }
}

/** A queued request was removed by its AbortSignal before it ran, or its predictor was closed. */
export class RequestAbortedError extends DensetorchError {}

/** Default bound of a model's inference queue and of a predictor's queue. */
export const DEFAULT_MAX_QUEUE = 1024;

/** Options of one queued request. */
export interface QueueOptions {
  /** Removes the request while it waits (a running request finishes). */
  signal?: AbortSignal;
  /** Refuse with {@link QueueFullError} when this many requests are already waiting. Default 1024. */
  maxQueue?: number;
}

function abortReason(signal: AbortSignal, what: string): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name !== 'AbortError') return reason;
  return new RequestAbortedError(`${what} was aborted before it ran`);
}

interface Job {
  run: () => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  cleanup: () => void;
}

/**
 * Runs asynchronous jobs one at a time, in the order they were submitted. A waiting job can be
 * removed by its AbortSignal; a submission past `maxQueue` waiting jobs is refused.
 * @internal
 */
export class InferenceQueue {
  #waiting: Job[] = [];
  #running = false;
  readonly #what: string;

  constructor(what: string) {
    this.#what = what;
  }

  /** Jobs waiting plus the one running. */
  get depth(): number {
    return this.#waiting.length + (this.#running ? 1 : 0);
  }

  /** Runs `run` after every job submitted before it; settles as it does. */
  submit<T>(run: () => Promise<T>, name: string, options: { signal?: AbortSignal; maxQueue: number }): Promise<T> {
    const { signal, maxQueue } = options;
    if (signal?.aborted) return Promise.reject(abortReason(signal, name));
    if (this.#waiting.length >= maxQueue) {
      return Promise.reject(new QueueFullError(`${name} refused: ${this.#waiting.length} requests are already waiting for ${this.#what} (maxQueue ${maxQueue})`, maxQueue));
    }
    return new Promise<T>((resolve, reject) => {
      const job: Job = { run, resolve: resolve as (v: unknown) => void, reject, cleanup: () => undefined };
      if (signal) {
        const onAbort = (): void => {
          const i = this.#waiting.indexOf(job);
          if (i < 0) return; // already running: it finishes
          this.#waiting.splice(i, 1);
          reject(abortReason(signal, name));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        job.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.#waiting.push(job);
      this.#next();
    });
  }

  #next(): void {
    if (this.#running) return;
    const job = this.#waiting.shift();
    if (!job) return;
    job.cleanup();
    this.#running = true;
    let started: Promise<unknown>;
    try {
      started = job.run();
    } catch (err) {
      started = Promise.reject(err);
    }
    started.then(job.resolve, job.reject).finally(() => {
      this.#running = false;
      this.#next();
    });
  }
}

/** Options of {@link DenseNet.serve}. */
export interface ServeOptions {
  /** Most images in one merged forward pass. Default 32. */
  maxBatch?: number;
  /**
   * Longest wait, in ms, after a request arrives for others to join its batch while the model is
   * free. Default 0: a batch runs as soon as the model is free (requests arriving while it computes
   * form the next batch).
   */
  maxDelayMs?: number;
  /** Refuse with {@link QueueFullError} past this many waiting requests. Default 1024. */
  maxQueue?: number;
}

/** Options of {@link Predictor.predict}. */
export interface ServePredictOptions {
  /** Removes the request while it waits for its batch. */
  signal?: AbortSignal;
}

/** Counters of a {@link Predictor}. Latencies are of the last 10,000 requests. */
export interface ServeStats {
  /** Merged forward passes run. */
  readonly batches: number;
  /** Requests answered (fulfilled or rejected by the model). */
  readonly requests: number;
  /** Mean requests per forward pass. */
  readonly meanBatchSize: number;
  /** Requests waiting for a batch now. */
  readonly queueDepth: number;
  /** Median time from `predict()` to its answer, in ms. */
  readonly p50Ms: number;
  /** 99th percentile of that time, in ms. */
  readonly p99Ms: number;
}

/** What a predictor needs from its model (internal). */
export interface BatchRunner {
  /** Checks one request's input against the model (throws TypeError/RangeError-like errors). */
  check(x: Tensor): void;
  /** Logits of each input, computed as one batch (in slices of `batchSize` images), in the model's inference queue. */
  run(inputs: Tensor[], batchSize: number): Promise<Tensor[]>;
  /** The model's class names, if known. */
  classes(): readonly string[] | undefined;
}

interface Request {
  x: Tensor;
  images: number;
  key: string;
  started: number;
  resolve: (t: Tensor) => void;
  reject: (err: unknown) => void;
  cleanup: () => void;
}

const LATENCY_WINDOW = 10000;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/**
 * A dynamic batcher over one model: `predict()` calls from many callers are merged into one
 * forward pass (up to `maxBatch` images), run once, and split back. One merged pass runs at a
 * time; requests that arrive meanwhile form the next one, so batches grow with the load while a
 * lone request runs at once. `maxDelayMs` > 0 also holds a batch that is not full for up to that
 * long after its oldest request (more throughput at a steady trickle, more latency). Made by
 * {@link DenseNet.serve}.
 *
 * @example
 * ```js
 * const server = model.eval().serve({ maxBatch: 32 });
 * const logits = await server.predict(dt.tensor(pixels, [1, 3, 224, 224]));
 * server.stats(); // { batches, requests, meanBatchSize, queueDepth, p50Ms, p99Ms }
 * await server.close();
 * ```
 */
export class Predictor {
  readonly #runner: BatchRunner;
  readonly #maxBatch: number;
  readonly #maxDelayMs: number;
  readonly #maxQueue: number;
  #pending: Request[] = [];
  #inFlight = false;
  #cancelFlush: (() => void) | undefined;
  #closed = false;
  #drained: Array<() => void> = [];
  #batches = 0;
  #requests = 0;
  #latencies: number[] = [];

  /** @internal Use {@link DenseNet.serve}. */
  constructor(runner: BatchRunner, options: ServeOptions = {}) {
    const o = knownOptions<ServeOptions>(options, ['maxBatch', 'maxDelayMs', 'maxQueue'], 'serve()');
    this.#runner = runner;
    this.#maxBatch = positiveInt(o.maxBatch ?? 32, 'options.maxBatch');
    this.#maxDelayMs = numberIn(o.maxDelayMs ?? 0, 'options.maxDelayMs', (x) => x >= 0, '>= 0', true);
    this.#maxQueue = positiveInt(o.maxQueue ?? DEFAULT_MAX_QUEUE, 'options.maxQueue');
  }

  /**
   * Logits for `x` [N, C, H, W] (float32, on the model's device), computed in eval mode as part
   * of a merged batch. Equal to `model.predict(x)` up to float rounding (≤ 1e-5).
   * @param x - images; usually N = 1
   * @param options - `signal` removes the request while it waits
   * @returns logits [N, numClasses]
   * @throws {QueueFullError} when `maxQueue` requests are already waiting
   * @throws {RequestAbortedError} when aborted while waiting, or when the predictor is closed
   */
  predict(x: Tensor, options: ServePredictOptions = {}): Promise<Tensor> {
    try {
      const o = optionsObject<ServePredictOptions>(options, 'options');
      const signal = checkSignal(o.signal, 'options.signal');
      if (this.#closed) throw new RequestAbortedError('predict() refused: the predictor is closed');
      this.#runner.check(x);
      if (signal?.aborted) throw abortReason(signal, 'predict()');
      if (this.#pending.length >= this.#maxQueue) {
        throw new QueueFullError(`predict() refused: ${this.#pending.length} requests are already waiting (maxQueue ${this.#maxQueue})`, this.#maxQueue);
      }
      return new Promise<Tensor>((resolve, reject) => {
        const [n, c, h, w] = x.shape;
        const request: Request = { x, images: n, key: `${c}x${h}x${w}`, started: performance.now(), resolve, reject, cleanup: () => undefined };
        if (signal) {
          const onAbort = (): void => {
            const i = this.#pending.indexOf(request);
            if (i < 0) return; // its batch is running
            this.#pending.splice(i, 1);
            reject(abortReason(signal, 'predict()'));
            this.#settled();
          };
          signal.addEventListener('abort', onAbort, { once: true });
          request.cleanup = () => signal.removeEventListener('abort', onAbort);
        }
        this.#pending.push(request);
        this.#schedule();
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * The `topK` most probable classes of each image of `x`, with the model's class names; merged
   * into batches as {@link Predictor.predict}.
   * @returns one list per image, most probable first
   */
  async classify(x: Tensor, options: ServePredictOptions & { topK?: number } = {}): Promise<ClassScore[][]> {
    const { topK, ...rest } = optionsObject<ServePredictOptions & { topK?: number }>(options, 'options');
    const k = positiveInt(topK ?? 5, 'options.topK');
    const logits = await this.predict(x, rest);
    try {
      return topClasses(logits, k, this.#runner.classes());
    } finally {
      logits.dispose();
    }
  }

  /** Counters: batches run, mean batch size, queue depth, p50/p99 latency. */
  stats(): ServeStats {
    const sorted = [...this.#latencies].sort((a, b) => a - b);
    return {
      batches: this.#batches,
      requests: this.#requests,
      meanBatchSize: this.#batches ? this.#requests / this.#batches : 0,
      queueDepth: this.#pending.length,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
    };
  }

  /** Refuses new requests and resolves once every waiting request has been answered. */
  close(): Promise<void> {
    this.#closed = true;
    if (this.#idle()) return Promise.resolve();
    this.#flushSoon(0);
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  #idle(): boolean {
    return this.#pending.length === 0 && !this.#inFlight;
  }

  #settled(): void {
    if (this.#idle()) for (const resolve of this.#drained.splice(0)) resolve();
  }

  #pendingImages(): number {
    return this.#pending.reduce((s, r) => s + r.images, 0);
  }

  #schedule(): void {
    if (this.#inFlight || this.#pending.length === 0) return;
    if (this.#closed || this.#pendingImages() >= this.#maxBatch) {
      this.#flushSoon(0);
      return;
    }
    const waited = performance.now() - this.#pending[0].started;
    this.#flushSoon(Math.max(0, this.#maxDelayMs - waited));
  }

  #flushSoon(delayMs: number): void {
    this.#cancelFlush?.();
    const fire = (): void => {
      this.#cancelFlush = undefined;
      this.#flush();
    };
    // No delay: after the requests of this turn of the event loop (setTimeout's shortest is 1 ms).
    if (delayMs > 0) {
      const timer = setTimeout(fire, delayMs);
      this.#cancelFlush = () => clearTimeout(timer);
    } else {
      const immediate = setImmediate(fire);
      this.#cancelFlush = () => clearImmediate(immediate);
    }
  }

  #flush(): void {
    if (this.#inFlight || this.#pending.length === 0) return;
    // The oldest request and those after it with the same image size, up to maxBatch images
    // (a request larger than maxBatch runs alone).
    const key = this.#pending[0].key;
    const batch: Request[] = [];
    let images = 0;
    for (const r of this.#pending) {
      if (r.key !== key) continue;
      if (batch.length > 0 && images + r.images > this.#maxBatch) break;
      batch.push(r);
      images += r.images;
    }
    this.#pending = this.#pending.filter((r) => !batch.includes(r));
    for (const r of batch) r.cleanup();
    this.#inFlight = true;
    this.#runner.run(batch.map((r) => r.x), this.#maxBatch).then(
      (outputs) => this.#finish(batch, (r, i) => r.resolve(outputs[i])),
      (err: unknown) => this.#finish(batch, (r) => r.reject(err)),
    );
  }

  // The counters first, so that a caller resumed by its answer reads them up to date.
  #finish(batch: Request[], settle: (r: Request, i: number) => void): void {
    const now = performance.now();
    for (const r of batch) this.#latencies.push(now - r.started);
    if (this.#latencies.length > LATENCY_WINDOW) this.#latencies.splice(0, this.#latencies.length - LATENCY_WINDOW);
    this.#batches += 1;
    this.#requests += batch.length;
    this.#inFlight = false;
    batch.forEach(settle);
    this.#schedule();
    this.#settled();
  }
}
