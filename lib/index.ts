/**
 * densetorch: DenseNet for Node.js on LibTorch.
 *
 * ```js
 * const dt = require('densetorch');
 * const x = dt.tensor(new Float32Array(6), [2, 3]);
 * ```
 */
import { loadNative } from './native';
import { PACKAGE_VERSION } from './package-info';
import { positiveInt, seedArg } from './validate';

export { tensor, Tensor } from './tensor';
export type { DType, AnyDType, Device, TensorData, TensorOptions } from './tensor';
export {
  DenseNet,
  densenet121,
  densenet161,
  densenet169,
  densenet201,
  densenet264,
  densenetCifar,
  load,
  PRESETS,
} from './densenet';
export type { DenseNetArgs, DenseNetConfig, PresetArgs, PresetName, PresetConfig, CifarArgs, PredictOptions, LoadOptions, Stem, ClassifyOptions } from './densenet';
export type { Classification, ClassScore } from './classify';
export * as datasets from './datasets';
export * as image from './image';
export * as distributed from './distributed';
export * as cuda from './cuda';
export type { MemoryStats } from './cuda';
export type { InitOptions, GroupInfo, ReduceOp, Backend } from './distributed';
export type { Dataset, DatasetOptions, AugmentationOptions, Normalize, Augment, StreamDataset, Batch, ImageFolderDataset, ImageFolderOptions } from './datasets';
export type { ReadOptions, ModelInput } from './image';
export type { InputSpec, ResizePolicy, ChannelOrder } from './input-spec';
export type { OnnxExportOptions } from './onnx';
export type { Transform, TransformName, CustomTransform, RawImage, Box } from './data/transforms';
export { AbortError } from './training';
export { Predictor, QueueFullError, RequestAbortedError } from './serve';
export type { ServeOptions, ServePredictOptions, ServeStats } from './serve';
export type { AnyDataset, Precision, FitOptions, History, BatchLogs, EpochLogs, EvaluateOptions, EvaluateResult, SgdOptions, AdamOptions, Schedule, Warmup, MixOptions, EmaOptions } from './training';
export {
  DataError,
  DistributedError,
  TrainingError,
  DensetorchError,
  WeightsError,
  BusyError,
  LibTorchNotFoundError,
  LibTorchVersionError,
  AddonLoadError,
  NativeError,
} from './errors';

const loaded = loadNative();

/** Versions of densetorch and LibTorch, and whether CUDA can be used. */
export interface Versions {
  /** densetorch's package version. */
  readonly densetorch: string;
  /** LibTorch version the addon was compiled against. */
  readonly libtorch: string;
  /** Whether a CUDA device is usable. */
  readonly cudaAvailable: boolean;
}


/** Versions of densetorch and LibTorch, and CUDA availability. */
export const versions: Versions = Object.freeze({
  densetorch: PACKAGE_VERSION,
  libtorch: loaded.addon.versions().libtorch,
  cudaAvailable: loaded.addon.versions().cudaAvailable,
});


/** Sets the number of threads LibTorch uses for intra-op parallelism. */
export function setNumThreads(n: number): void {
  loaded.addon.setNumThreads(positiveInt(n, 'n'));
}

/** The number of threads LibTorch uses for intra-op parallelism. */
export function getNumThreads(): number {
  return loaded.addon.getNumThreads();
}

/** Seeds LibTorch's random generators (CPU and CUDA), for reproducible models and training. */
export function manualSeed(seed: number): void {
  loaded.addon.manualSeed(seedArg(seed, 'seed'));
}
