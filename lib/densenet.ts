/**
 * The DenseNet model class, the preset factories and `load`. Configurations live in config.ts,
 * weight-file reading in weights.ts.
 */
import { BusyError, describe, WeightsError } from './errors';
import { boolean, checkSignal, knownOptions, optionsObject, positiveInt } from './validate';
import { cifarConfig, CifarArgs, DenseNetArgs, DenseNetConfig, PresetArgs, PresetName, PRESETS, resolveConfig } from './config';
import { pathArg, readWeightFile } from './weights';
import { addon, NativeModelConfig, NativeModelHandle, NativeTensorHandle } from './native';
import { checkDevice, Device, Tensor } from './tensor';
import { AbortError, AnyDataset, BatchLogs, checkDataset, checkPrecision, EpochLogs, EvaluateOptions, EvaluateResult, FitOptions, History, openDataset, Precision, resolveFitOptions, toHistory } from './training';
import { DEFAULT_MAX_QUEUE, InferenceQueue, Predictor, ServeOptions } from './serve';
import { read as readImage, readForModel } from './image';
import { METADATA_CLASSES_KEY, METADATA_CONFIG_KEY, METADATA_VERSION_KEY, PACKAGE_VERSION } from './package-info';
import { Classification, topClasses } from './classify';
import type { Normalize } from './datasets';
import { checkInputSpec, InputSpec, METADATA_INPUT_KEY } from './input-spec';
import { onnxBytes, OnnxExportOptions, resolveOnnxOptions } from './onnx';
import { logFitEvent, RunLog } from './tensorboard';

export { cifarConfig, PRESETS, resolveConfig };
export type { CifarArgs, DenseNetArgs, DenseNetConfig, PresetArgs, PresetName, PresetConfig, Stem } from './config';

/** The training augmentation of a data set, for the run's hparams. */
function augmentationOf(data: AnyDataset): { augment: string; randomErasing: number } {
  const d = data as { augment?: unknown; transform?: unknown; randomErasing?: unknown };
  const augment = typeof d.augment === 'string' ? d.augment : typeof d.transform === 'string' ? d.transform : typeof d.transform === 'function' ? 'custom' : 'none';
  return { augment, randomErasing: typeof d.randomErasing === 'number' ? d.randomErasing : 0 };
}

/** Options of {@link DenseNet.predict}. */
export interface PredictOptions {
  /** Images per forward pass (bounds memory). Default 256. */
  batchSize?: number;
  /** Compute precision (see {@link Precision}). Default 'fp32'. */
  precision?: Precision;
  /** Removes the call from the model's queue while it waits (a running call finishes). */
  signal?: AbortSignal;
  /** Refuse with a QueueFullError when this many calls already wait for the model. Default 1024. */
  maxQueue?: number;
}

const PREDICT_KEYS = ['batchSize', 'precision', 'signal', 'maxQueue'];

/** Options of {@link DenseNet.loadStateDict} and {@link DenseNet.loadWeights}. */
export interface LoadOptions {
  /** Require exactly the model's keys. Default true. Shape mismatches are always errors. */
  strict?: boolean;
}

function tensorArg(x: unknown, what: string): Tensor {
  if (!(x instanceof Tensor)) throw new TypeError(`Expected ${what} to be a Tensor but received ${describe(x)}`);
  return x;
}


export { METADATA_CONFIG_KEY, METADATA_CLASSES_KEY };

/** Options of {@link DenseNet.classify}. */
export interface ClassifyOptions {
  /** Classes per image. Default 5 (at most numClasses). */
  topK?: number;
  /**
   * Read files RGB with the 'eval' transform at this size instead of by the model's input spec
   * (default: the spec).
   */
  size?: number;
  /**
   * Normalisation of files read with `size` (after scaling to [0, 1]; `false` for none; default
   * ImageNet's). Default: the input spec's.
   */
  normalize?: Normalize | false;
}

function checkClasses(value: unknown, numClasses: number, what: string): readonly string[] {
  if (!Array.isArray(value) || !value.every((x) => typeof x === 'string')) throw new TypeError(`Expected ${what} to be an array of strings but received ${describe(value)}`);
  if (value.length !== numClasses) throw new RangeError(`Expected ${what} to name ${numClasses} classes (numClasses) but received ${value.length}`);
  return Object.freeze([...value]);
}

/**
 * A DenseNet (Huang et al., 2017) held by LibTorch. State-dict keys are torchvision's.
 */
export class DenseNet {
  readonly #native: NativeModelHandle;
  readonly #config: DenseNetConfig;
  // predict, evaluate and save wait here for one another instead of failing with a BusyError.
  readonly #queue = new InferenceQueue('this model');
  #fitting = false;
  #classes: readonly string[] | undefined;
  #input: InputSpec | undefined;

  /** Builds a DenseNet; every option defaults to DenseNet-121's (see {@link DenseNetArgs}). */
  constructor(args?: DenseNetArgs) {
    this.#config = resolveConfig(args);
    const device = args?.device === undefined ? 'cpu' : checkDevice(args.device, 'device');
    const config: NativeModelConfig = { ...this.#config, blockConfig: [...this.#config.blockConfig] };
    this.#native = new (addon().NativeModel)(config);
    if (device !== 'cpu') this.#native.to(device);
  }

  /** The configuration this model was built with. */
  get config(): DenseNetConfig {
    return this.#config;
  }

  /**
   * Class names, label i = entry i: set from the data set by the first `fit` on data that knows
   * them (an image folder's subfolders), saved in the .safetensors metadata by `save`, read back
   * by `dt.load`; or set here. Undefined when unknown.
   */
  get classes(): readonly string[] | undefined {
    return this.#classes;
  }

  /**
   * What the model takes as input (channels, size, how pictures are resized, scaling and
   * normalisation; see {@link InputSpec}): recorded by `fit` from its data, saved in the
   * .safetensors metadata by `save`, read back by `dt.load`; `dt.image.read(file, { model })`,
   * `classify`, `densetorch predict` and `densetorch serve` prepare pictures by it. Undefined when
   * unknown (then they guess, with a warning).
   */
  get input(): InputSpec | undefined {
    return this.#input;
  }

  /**
   * States what the model takes as input, for data sets that cannot tell (a custom source,
   * float32 tensors without a normalize option) or weights from elsewhere.
   * @param spec - an {@link InputSpec}; `channels` must equal the model's `inChannels`
   * @returns this model
   * @throws {TypeError | RangeError} naming the field that is wrong
   * @example
   * ```js
   * model.setInput({ channels: 3, height: 224, width: 224, resize: 'center-crop', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
   * ```
   */
  setInput(spec: InputSpec): this {
    this.#input = checkInputSpec(spec, this.#config.inChannels, 'spec');
    return this;
  }

  /** Sets the class names (one per output; undefined forgets them). */
  set classes(names: readonly string[] | undefined) {
    this.#classes = names === undefined ? undefined : checkClasses(names, this.#config.numClasses, 'classes');
  }

  /** The device holding the parameters. */
  get device(): Device {
    return this.#native.device() as Device;
  }

  /** Whether the model is in training mode (batch statistics, dropout). */
  get training(): boolean {
    return this.#native.isTraining();
  }

  /** Training mode: BN uses batch statistics and updates running ones; dropout is active. */
  train(): this {
    this.#native.setTraining(true);
    return this;
  }

  /** Evaluation mode: BN uses running statistics; no dropout. */
  eval(): this {
    this.#native.setTraining(false);
    return this;
  }

  /** Moves the parameters to `device`. */
  to(device: Device): this {
    const d = checkDevice(device, 'device');
    this.#native.to(d);
    return this;
  }

  /** Number of learnable parameters. */
  numParameters(): number {
    return this.#native.numParameters();
  }

  /**
   * Logits [N, numClasses] for images x [N, inChannels, H, W] (float32, on the model's device),
   * in the current mode, without recording gradients. Synchronous: the JS thread waits while
   * densetorch's compute thread runs it, behind the work queued before it (other models'
   * predictions, and one training step when another model is training). That wait always ends
   * (the compute thread never waits for the JS thread) but can be long for a large model or
   * batch: in a server, use the asynchronous {@link DenseNet.predict}.
   * @param x - images [N, inChannels, H, W], float32, on the model's device
   * @returns logits [N, numClasses]
   * @throws {TypeError|RangeError} for a bad input; {BusyError} while this model trains or has calls running
   * @example
   * ```js
   * const logits = model.eval().forward(dt.tensor(pixels, [1, 3, 32, 32]));
   * ```
   */
  forward(x: Tensor): Tensor {
    const input = tensorArg(x, 'x').handle('x');
    return new Tensor(this.#native.forward(input));
  }

  /**
   * Logits for x in evaluation mode without gradients, computed off the main thread.
   * Concurrent calls on one model wait in a first-in first-out queue (shared with `evaluate` and
   * `save`) and settle in the order they were made.
   * @param x - images [N, inChannels, H, W], float32, on the model's device
   * @param options - `batchSize` (default 256), `precision` (default 'fp32'), `signal`, `maxQueue` (default 1024)
   * @returns logits [N, numClasses]
   * @throws {TypeError|RangeError} for a bad input or option (synchronously checked shapes included)
   * @throws {QueueFullError} when `maxQueue` calls already wait
   * @throws {RequestAbortedError} when `signal` aborts while the call waits
   * @throws {BusyError} while `fit` runs
   * @example
   * ```js
   * const logits = await model.predict(dt.tensor(pixels, [1, 3, 32, 32]));
   * ```
   */
  async predict(x: Tensor, options: PredictOptions = {}): Promise<Tensor> {
    const input = tensorArg(x, 'x').handle('x');
    const o = knownOptions<PredictOptions>(options, PREDICT_KEYS, 'predict()');
    const batchSize = positiveInt(o.batchSize ?? 256, 'options.batchSize');
    const precision = checkPrecision(o.precision, 'options.precision');
    const signal = checkSignal(o.signal, 'options.signal');
    const maxQueue = positiveInt(o.maxQueue ?? DEFAULT_MAX_QUEUE, 'options.maxQueue');
    const [out] = await this.#infer([input], batchSize, precision, 'predict()', { signal, maxQueue });
    return out;
  }

  /**
   * The one inference path of predict, classify and serve: checks the inputs now (so that a bad
   * one is refused before it waits), then runs them as one batch in the model's queue.
   */
  async #infer(inputs: NativeTensorHandle[], batchSize: number, precision: Precision, name: string,
    queue: { signal?: AbortSignal; maxQueue: number }): Promise<Tensor[]> {
    this.#refuseWhileFitting(name);
    for (const input of inputs) this.#native.checkInput(input);
    const outs = await this.#queue.submit(() => this.#native.predict(inputs, batchSize, precision), name, queue);
    return outs.map((h) => new Tensor(h));
  }

  /**
   * The most probable classes of images: files (read as `dt.image.read(file, { model })` does, by
   * the model's {@link InputSpec}) or a tensor [N, C, H, W]. Runs in eval mode through the model's
   * queue.
   * @param input - a path, a list of paths, an encoded image Buffer, or a Tensor
   * @param options - `topK` (default 5); `size` and `normalize` read files RGB with the 'eval'
   *   transform at that size instead of by the input spec
   * @returns one entry per image: `{ file?, top: [{ label, className, probability }] }`
   * @throws {DataError} when a file cannot be decoded (naming it)
   * @example
   * ```js
   * const [result] = await model.classify('cat.jpg', { topK: 3 });
   * result.top[0]; // { label: 281, className: 'tabby', probability: 0.83 }
   * ```
   */
  async classify(input: string | readonly string[] | Buffer | Tensor, options: ClassifyOptions = {}): Promise<Classification[]> {
    const o = knownOptions<ClassifyOptions>(options, ['topK', 'size', 'normalize'], 'classify()');
    const topK = positiveInt(o.topK ?? 5, 'options.topK');
    if (input instanceof Tensor) return topClasses(await this.predict(input), topK, this.#classes).map((top) => ({ top }));
    const files = typeof input === 'string' || Buffer.isBuffer(input) ? [input] : input;
    if (!Array.isArray(files) || files.length === 0 || !files.every((f) => typeof f === 'string' || Buffer.isBuffer(f))) {
      throw new TypeError(`Expected input to be a file path, a list of paths, a Buffer or a Tensor but received ${describe(input)}`);
    }
    // By the model's input spec, unless the caller sets the size or normalisation.
    const explicit = o.size !== undefined || o.normalize !== undefined;
    const size = explicit ? positiveInt(o.size ?? (this.#config.stem === 'cifar' ? 32 : 224), 'options.size') : 0;
    const images = await Promise.all(files.map((f) => (explicit ? readImage(f, { size, normalize: o.normalize }) : readForModel(f, this))));
    let logits: Tensor[];
    try {
      logits = await this.#infer(images.map((x) => x.handle('image')), 256, 'fp32', 'classify()', { maxQueue: DEFAULT_MAX_QUEUE });
    } finally {
      for (const x of images) x.dispose();
    }
    return logits.map((l, i) => {
      const [top] = topClasses(l, topK, this.#classes);
      l.dispose();
      return typeof files[i] === 'string' ? { file: files[i] as string, top } : { top };
    });
  }

  /**
   * A dynamic batcher over this model for serving: concurrent `predict(x)` calls are merged into
   * one forward pass (up to `maxBatch` images: the requests that waited while the previous pass
   * ran, or `maxDelayMs` after the first when set), run in eval mode through the model's queue,
   * and split back.
   * @param options - `maxBatch` (default 32), `maxDelayMs` (default 0), `maxQueue` (default 1024)
   * @returns a {@link Predictor}
   * @example
   * ```js
   * const server = model.serve({ maxBatch: 32 });
   * const [a, b] = await Promise.all([server.predict(x1), server.predict(x2)]); // one forward pass
   * ```
   */
  serve(options: ServeOptions = {}): Predictor {
    return new Predictor({
      check: (x) => {
        this.#refuseWhileFitting('predict()');
        this.#native.checkInput(tensorArg(x, 'x').handle('x'));
      },
      classes: () => this.#classes,
      run: (inputs, batchSize) => this.#infer(inputs.map((t, i) => t.handle(`input ${i}`)), batchSize, 'fp32', 'predict()', { maxQueue: Infinity }),
    }, options);
  }

  #refuseWhileFitting(what: string): void {
    if (this.#fitting) throw new BusyError(`${what} refused: the model is busy with a running fit; await it first`);
  }

  /** Parameters and buffers by torchvision's names (tensors share memory with the model). */
  stateDict(): Record<string, Tensor> {
    const sd = this.#native.stateDict();
    const out: Record<string, Tensor> = {};
    for (const [name, handle] of Object.entries(sd)) out[name] = new Tensor(handle);
    return out;
  }

  /**
   * Writes the model's inference graph (evaluation mode: batch norm with its running statistics)
   * as an ONNX file of standard operators (Conv, BatchNormalization, Relu, Concat, AveragePool,
   * MaxPool, GlobalAveragePool, Flatten, Gemm) that onnxruntime, onnxruntime-web and other ONNX
   * runtimes run. Input `input` [batch, C, H, W] (H and W fixed by the model's input spec, when it
   * has one), output `logits` [batch, numClasses]; the config, the class names and the input spec
   * go into the file's `metadata_props`. Written atomically.
   * @param file - the target path (parent folder must exist)
   * @param options - `opset` (13-21, default 17), `dynamicBatch` (default true), `foldBatchNorm` (default true)
   * @throws {TypeError | RangeError} for bad options; {BusyError} while `fit` runs; {NativeError} when the file system refuses (the message says why)
   * @example
   * ```js
   * await model.exportOnnx('densenet.onnx');
   * // onnxruntime-node: (await ort.InferenceSession.create('densenet.onnx')).run({ input })
   * ```
   */
  async exportOnnx(file: string, options: OnnxExportOptions = {}): Promise<void> {
    const target = pathArg(file, 'path');
    const o = resolveOnnxOptions(options);
    this.#refuseWhileFitting('exportOnnx()');
    const bytes = await this.#queue.submit(async () => onnxBytes(this, o), 'exportOnnx()', { maxQueue: Infinity });
    // The weights' crash-safe writer (native/core/atomic_file), as save() uses.
    await addon().writeFileAtomically(target, bytes);
  }

  /**
   * Copies tensors into the model. Strict by default: missing or unexpected keys are an error.
   * Shape mismatches are always an error. On any error the model is left unchanged.
   */
  loadStateDict(stateDict: Record<string, Tensor>, options: LoadOptions = {}): void {
    const sd = optionsObject<Record<string, Tensor>>(stateDict, 'stateDict');
    const strict = boolean(optionsObject<LoadOptions>(options, 'options').strict ?? true, 'options.strict');
    const handles: Record<string, ReturnType<Tensor['handle']>> = {};
    for (const [name, t] of Object.entries(sd)) handles[name] = tensorArg(t, `stateDict['${name}']`).handle(`stateDict['${name}']`);
    this.#native.loadStateDict(handles, strict);
  }

  /**
   * Writes the weights as .safetensors (torchvision key names; the config, the class names and
   * the densetorch version in the metadata), atomically: a temporary file in the same folder is
   * fsynced and renamed into place, so a crash never leaves a half-written file. Waits in the
   * model's queue behind running `predict`/`evaluate` calls.
   * @param file - the target path (parent folder must exist)
   * @throws {TypeError} for an empty path; {NativeError} when the file system refuses (the message says why); {BusyError} while `fit` runs
   * @example
   * ```js
   * await model.save('bc100.safetensors');
   * const again = await dt.load('bc100.safetensors');
   * ```
   */
  async save(file: string): Promise<void> {
    const target = pathArg(file, 'path');
    const metadata = {
      format: 'pt',
      [METADATA_CONFIG_KEY]: JSON.stringify(this.#config),
      [METADATA_VERSION_KEY]: PACKAGE_VERSION,
      ...(this.#classes ? { [METADATA_CLASSES_KEY]: JSON.stringify(this.#classes) } : {}),
      ...(this.#input ? { [METADATA_INPUT_KEY]: JSON.stringify(this.#input) } : {}),
    };
    this.#refuseWhileFitting('save()');
    await this.#queue.submit(() => this.#native.save(target, metadata), 'save()', { maxQueue: Infinity });
  }

  /**
   * Loads weights from a .safetensors file or a PyTorch .pth state dict (such as torchvision's
   * published DenseNet weights). Strict by default; the model is unchanged on error.
   */
  async loadWeights(file: string, options: LoadOptions = {}): Promise<void> {
    const source = pathArg(file, 'path');
    const strict = boolean(optionsObject<LoadOptions>(options, 'options').strict ?? true, 'options.strict');
    const weights = await readWeightFile(source);
    try {
      this.#native.loadStateDict(weights.tensors, strict);
    } catch (err) {
      if (err instanceof WeightsError) throw new WeightsError(`${source}: ${err.message}`);
      throw err;
    } finally {
      for (const t of Object.values(weights.tensors)) t.dispose();
    }
  }

  /**
   * Trains on `data` with the C++ loop on densetorch's compute thread; the event loop stays free
   * (timers fire, callbacks run on the main thread), predictions asked for meanwhile run between
   * two training steps, and a second fit in the process starts when this one ends. Data in
   * memory is batched natively; a streamed data set (an image folder, `fromAsyncIterable`) is
   * decoded a few batches ahead of training.
   * @param data - a data set from `dt.datasets` (in memory or streamed)
   * @param options - epochs (1), batchSize (64), optimizer (SGD lr 0.1, Nesterov momentum 0.9,
   *   weight decay 1e-4), schedule ('constant'), shuffle (true), seed (0), validationData,
   *   onBatchEnd, onEpochEnd, signal, checkpoint, resumeFrom, precision ('fp32'); see {@link FitOptions}
   * @returns the {@link History} of the completed epochs
   * @throws {TypeError|RangeError} for a bad option (before anything runs)
   * @throws {TrainingError} when the loss becomes NaN or infinite (naming the epoch and batch) or a checkpoint cannot be read
   * @throws {DataError} when a batch cannot be made (an unreadable image, labels out of range)
   * @throws {AbortError} when `signal` aborts; its `history` holds the completed epochs and the model stays usable
   * @throws {BusyError} when the model is already training or has inference calls queued
   * @example
   * ```js
   * const history = await model.fit(dt.datasets.mnist(), {
   *   epochs: 8, batchSize: 64, schedule: { type: 'cosine' },
   *   validationData: dt.datasets.mnist({ split: 'test' }),
   *   onEpochEnd: (e) => console.log(e.epoch, e.loss, e.valAccuracy),
   * });
   * ```
   */
  async fit(data: AnyDataset, options: FitOptions = {}): Promise<History> {
    checkDataset(data, 'data');
    const o = resolveFitOptions(options);
    if (this.#classes === undefined && data.classes !== undefined && data.classes.length === this.#config.numClasses) this.#classes = Object.freeze([...data.classes]);
    // The input of the data it is trained on (the latest fit's, when it says).
    const input = data.input;
    if (input !== undefined && input.channels === this.#config.inChannels) this.#input = input;
    const epochs: EpochLogs[] = [];
    // A callback that throws stops the run; fit then rejects with what it threw.
    let callbackError: { error: unknown } | undefined;
    let log: RunLog | undefined;
    const onEvent = (kind: 'batch' | 'epoch', logs: never): void => {
      if (kind === 'epoch') epochs.push(logs as EpochLogs);
      if (callbackError) return;
      try {
        if (log) logFitEvent(log, kind, logs);
        if (kind === 'epoch') o.onEpochEnd?.(logs as EpochLogs);
        else o.onBatchEnd?.(logs as BatchLogs);
      } catch (error) {
        callbackError = { error };
        this.#native.stopFit();
      }
    };
    if (o.signal?.aborted) throw new AbortError('fit() was aborted before it started', toHistory([]));
    if (this.#queue.depth > 0) {
      throw new BusyError(`fit() refused: ${this.#queue.depth} predict/evaluate/save call(s) are queued or running on this model; await them first`);
    }
    const train = openDataset(data, o.native.batchSize, o.native.shuffle, o.native.seed, o.native.dropLast);
    const validation = o.validation && openDataset(o.validation, o.native.batchSize, false, o.native.seed);
    const closeData = (): void => {
      train.close();
      validation?.close();
      log?.close();
    };
    let running: ReturnType<NativeModelHandle['fit']>;
    try {
      // Logs open last, inside the cleanup: a refused start leaves no open file behind.
      if (o.logDir !== undefined) {
        log = new RunLog(o.logDir);
        const { optimizer, schedule } = o.native;
        log.hparams({
          epochs: o.native.epochs, batchSize: o.native.batchSize, optimizer: optimizer.type, lr: optimizer.lr, weightDecay: optimizer.weightDecay,
          ...(optimizer.type === 'sgd' ? { momentum: optimizer.momentum, nesterov: optimizer.nesterov } : {}),
          schedule: schedule.type, warmupEpochs: schedule.warmupEpochs, seed: o.native.seed, precision: o.native.precision, shuffle: o.native.shuffle,
          labelSmoothing: o.native.labelSmoothing, clipGradNorm: o.native.clipGradNorm, mixupAlpha: o.native.mixupAlpha, cutmixAlpha: o.native.cutmixAlpha,
          emaDecay: o.native.ema?.decay ?? 0, accumulateSteps: o.native.accumulateSteps, ...augmentationOf(data),
          growthRate: this.#config.growthRate, blockConfig: this.#config.blockConfig.join('-'), bnSize: this.#config.bnSize,
          compression: this.#config.compression, memoryEfficient: this.#config.memoryEfficient,
        });
      }
      running = this.#native.fit(train.native, { ...o.native, validationData: validation?.native }, onEvent, o.onBatchEnd !== undefined || log !== undefined);
    } catch (err) {
      closeData();
      throw err;
    }
    this.#fitting = true;
    const stop = (): void => this.#native.stopFit();
    o.signal?.addEventListener('abort', stop, { once: true });
    try {
      const result = await running.catch((err: unknown) => {
        throw callbackError ? callbackError.error : err;
      });
      if (callbackError) throw callbackError.error;
      if (result.stopped) throw new AbortError(`fit() was aborted after ${epochs.length} complete epoch(s)`, toHistory(epochs));
      return toHistory(epochs);
    } finally {
      this.#fitting = false;
      closeData();
      o.signal?.removeEventListener('abort', stop);
    }
  }

  /**
   * Mean cross-entropy loss and accuracy on `data`, in eval mode, off the main thread; waits in
   * the model's queue like `predict`.
   * @param data - a data set from `dt.datasets` (in memory or streamed; streamed ones use the 'eval' transform)
   * @param options - `batchSize` (default 256), `precision` (default 'fp32')
   * @returns `{ loss, accuracy }`
   * @throws {DataError} when a batch cannot be made; {BusyError} while `fit` runs
   * @example
   * ```js
   * const { loss, accuracy } = await model.evaluate(dt.datasets.mnist({ split: 'test' }));
   * ```
   */
  async evaluate(data: AnyDataset, options: EvaluateOptions = {}): Promise<EvaluateResult> {
    checkDataset(data, 'data');
    const o = optionsObject<EvaluateOptions>(options, 'options');
    const batchSize = positiveInt(o.batchSize ?? 256, 'options.batchSize');
    const precision = checkPrecision(o.precision, 'options.precision');
    this.#refuseWhileFitting('evaluate()');
    const r = await this.#queue.submit(async () => {
      const source = openDataset(data, batchSize, false, 0);
      try {
        return await this.#native.evaluate(source.native, batchSize, precision);
      } finally {
        source.close();
      }
    }, 'evaluate()', { maxQueue: DEFAULT_MAX_QUEUE });
    return { loss: r.loss, accuracy: r.accuracy };
  }

  /** @internal One forward/backward pass with cross-entropy (for tests and benchmarks). */
  lossAndGrads(x: Tensor, labels: Tensor): { loss: number; output: Tensor; grads: Record<string, Tensor> } {
    const r = this.#native.lossAndGrads(tensorArg(x, 'x').handle('x'), tensorArg(labels, 'labels').handle('labels'));
    const grads: Record<string, Tensor> = {};
    for (const [name, handle] of Object.entries(r.grads)) grads[name] = new Tensor(handle);
    return { loss: r.loss, output: new Tensor(r.output), grads };
  }
}


function preset(name: PresetName, args: PresetArgs | undefined): DenseNet {
  const a = optionsObject<PresetArgs>(args, `${name} options`);
  const allowed = ['numClasses', 'memoryEfficient', 'dropRate', 'inChannels', 'device'];
  for (const key of Object.keys(a)) {
    if (!allowed.includes(key)) throw new TypeError(`Unknown ${name} option '${key}'; expected one of ${allowed.join(', ')}`);
  }
  const p = PRESETS[name];
  return new DenseNet({ ...a, growthRate: p.growthRate, blockConfig: p.blockConfig, numInitFeatures: p.numInitFeatures, bnSize: 4, compression: 0.5, stem: 'imagenet' });
}

/** DenseNet-121 (torchvision's configuration: k=32, blocks 6-12-24-16). */
export function densenet121(args?: PresetArgs): DenseNet {
  return preset('densenet121', args);
}
/** DenseNet-161 (k=48, blocks 6-12-36-24, 96 initial features). */
export function densenet161(args?: PresetArgs): DenseNet {
  return preset('densenet161', args);
}
/** DenseNet-169 (k=32, blocks 6-12-32-32). */
export function densenet169(args?: PresetArgs): DenseNet {
  return preset('densenet169', args);
}
/** DenseNet-201 (k=32, blocks 6-12-48-32). */
export function densenet201(args?: PresetArgs): DenseNet {
  return preset('densenet201', args);
}
/** DenseNet-264 (the paper's; k=32, blocks 6-12-64-48). */
export function densenet264(args?: PresetArgs): DenseNet {
  return preset('densenet264', args);
}

/**
 * The paper's CIFAR DenseNets: 3 dense blocks of (L-4)/6 bottleneck layers (or (L-4)/3 plain
 * layers), a 3x3 stem with 2k channels for DenseNet-BC (16 otherwise). Examples:
 * `{ depth: 100, growthRate: 12 }` is DenseNet-BC (L=100, k=12);
 * `{ depth: 40, growthRate: 12, bottleneck: false, compression: 1 }` is DenseNet (L=40, k=12).
 */
export function densenetCifar(args: CifarArgs): DenseNet {
  return new DenseNet(cifarConfig(args));
}

/**
 * Rebuilds a model saved by {@link DenseNet.save}: config and class names from the file's
 * metadata, then the weights.
 * @param file - a .safetensors file written by `save`
 * @param options - `device` to move the model to (default 'cpu')
 * @returns the model
 * @throws {WeightsError} for a file that is not one densetorch wrote (no or bad config), is damaged, or does not match its config
 * @example
 * ```js
 * const model = await dt.load('bc100.safetensors');
 * model.classes; // the class names, when the model was trained on named classes
 * ```
 */
export async function load(file: string, options: { device?: Device } = {}): Promise<DenseNet> {
  return (await loadWithMetadata(file, options)).model;
}

/** {@link load}, also returning the file's metadata (one read of the file). @internal */
export async function loadWithMetadata(file: string, options: { device?: Device } = {}): Promise<{ model: DenseNet; metadata: Record<string, string> }> {
  const source = pathArg(file, 'path');
  const weights = await readWeightFile(source);
  try {
    const text = weights.metadata[METADATA_CONFIG_KEY];
    if (!text) throw new WeightsError(`${source} has no densetorch config in its metadata; build the model yourself and call model.loadWeights(path)`);
    let config: DenseNetArgs;
    try {
      config = JSON.parse(text) as DenseNetArgs;
    } catch {
      throw new WeightsError(`${source} has a malformed densetorch config in its metadata`);
    }
    let model: DenseNet;
    try {
      model = new DenseNet({ ...config, device: undefined });
    } catch (err) {
      throw new WeightsError(`${source} has an invalid densetorch config in its metadata: ${(err as Error).message}`);
    }
    try {
      model.loadStateDict(Object.fromEntries(Object.entries(weights.tensors).map(([k, h]) => [k, new Tensor(h)])));
    } catch (err) {
      if (err instanceof WeightsError) throw new WeightsError(`${source}: ${err.message}`);
      throw err;
    }
    const classes = weights.metadata[METADATA_CLASSES_KEY];
    if (classes) {
      try {
        model.classes = JSON.parse(classes) as string[];
      } catch (err) {
        throw new WeightsError(`${source} has malformed class names in its metadata: ${(err as Error).message}`);
      }
    }
    if (options.device && options.device !== 'cpu') model.to(options.device);
    const input = weights.metadata[METADATA_INPUT_KEY];
    if (input) {
      try {
        model.setInput(JSON.parse(input) as InputSpec);
      } catch (err) {
        throw new WeightsError(`${source} has a malformed input spec in its metadata: ${(err as Error).message}`);
      }
    }
    return { model, metadata: weights.metadata };
  } finally {
    for (const t of Object.values(weights.tensors)) t.dispose();
  }
}
