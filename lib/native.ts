/**
 * Loads LibTorch's shared libraries and then the addon. The addon carries no rpath, so the
 * libraries are opened first, globally, where the search in libtorch.ts finds them; the
 * addon's own dependencies then resolve to the already-loaded copies.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AddonLoadError, LibTorchVersionError, nativeErrorClasses } from './errors';
import { checkEnvStep, findLibTorch, LibTorchInstall, releaseOf, searchLibTorch } from './libtorch';
import { PACKAGE_ROOT, PINNED_TORCH_VERSION } from './package-info';
import { addonPackage, platformTag, releasedPlatforms } from './platform';

/** The addon's native tensor handle (internal). */
export interface NativeTensorHandle {
  shape(): number[];
  dtype(): string;
  device(): string;
  toArray(): Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;
  to(device: string): NativeTensorHandle;
  dispose(): void;
  isDisposed(): boolean;
}

/** The config object the native model is built from (validated in lib/densenet.ts). */
export interface NativeModelConfig {
  growthRate: number;
  blockConfig: number[];
  numInitFeatures: number;
  bnSize: number;
  compression: number;
  dropRate: number;
  numClasses: number;
  inChannels: number;
  stem: 'imagenet' | 'cifar';
  memoryEfficient: boolean;
}

/** The addon's native model handle (internal). */
export interface NativeModelHandle {
  forward(x: NativeTensorHandle): NativeTensorHandle;
  /** Logits of each input, computed as one batch (concatenated, run in slices of batchSize, split back). */
  predict(inputs: NativeTensorHandle[], batchSize: number, precision: string): Promise<NativeTensorHandle[]>;
  /** Throws what predict would for an input of the wrong rank, channels, size, dtype or device. */
  checkInput(x: NativeTensorHandle): void;
  setTraining(training: boolean): void;
  isTraining(): boolean;
  numParameters(): number;
  to(device: string): void;
  device(): string;
  stateDict(): Record<string, NativeTensorHandle>;
  loadStateDict(sd: Record<string, NativeTensorHandle>, strict: boolean): void;
  save(path: string, metadata: Record<string, string>): Promise<void>;
  fit(data: unknown, options: unknown, onEvent: (kind: 'batch' | 'epoch', logs: never) => void, reportBatches: boolean): Promise<{ epochs: unknown[]; stopped: boolean }>;
  stopFit(): void;
  evaluate(data: unknown, batchSize: number, precision: string): Promise<{ loss: number; accuracy: number; count: number }>;
  lossAndGrads(x: NativeTensorHandle, labels: NativeTensorHandle): { loss: number; output: NativeTensorHandle; grads: Record<string, NativeTensorHandle> };
}

/** The JS end of a native batch queue (internal; see lib/data/stream.ts). */
export interface NativeFeederHandle {
  push(generation: number, images: NativeTensorHandle, labels: NativeTensorHandle): boolean;
  end(generation: number): void;
  fail(generation: number, message: string): void;
}

/** The addon's c10d process group functions (internal; see lib/distributed.ts). */
export interface NativeDistributed {
  available: boolean;
  reason: string;
  init(options: { backend: string; rank: number; worldSize: number; masterAddr: string; masterPort: number; timeoutMs: number; heartbeatTimeoutMs: number; jobToken?: string }): Promise<void>;
  isInitialized(): boolean;
  info(): { rank: number; worldSize: number; backend: 'gloo' | 'nccl' };
  destroy(): void;
  allReduce(tensor: NativeTensorHandle, op: string): Promise<void>;
  broadcast(tensor: NativeTensorHandle, src: number): Promise<void>;
  barrier(): Promise<void>;
  /** DistributedSampler's indices of one rank for one epoch. */
  shardIndices(n: number, rank: number, world: number, shuffle: boolean, seed: number, epoch: number, dropLast: boolean, pad: boolean): number[];
}

/** A weight file as read by the addon (internal). */
export interface NativeWeightFile {
  tensors: Record<string, NativeTensorHandle>;
  metadata: Record<string, string>;
}

/** Bytes held by the CUDA caching allocator for one device (internal; see lib/cuda.ts). */
export interface NativeCudaMemoryStats {
  allocated: number;
  peakAllocated: number;
  reserved: number;
  peakReserved: number;
  allocRetries: number;
  ooms: number;
}

/** The addon's exports (internal). */
export interface Addon {
  NativeModel: new (config: NativeModelConfig) => NativeModelHandle;
  NativeFeeder: new (size: number, batches: number, capacity: number,
    onRequest: (generation: number, epoch: number, train: boolean, start: boolean) => void) => NativeFeederHandle;
  readWeights(path: string): Promise<NativeWeightFile>;
  /** Replaces a file with `bytes`, crash-safe (temporary file, fsync, rename, folder fsync). */
  writeFileAtomically(path: string, bytes: Uint8Array): Promise<void>;
  distributed: NativeDistributed;
  /** Image policies and random erasing for images decoded in JS (native/core/augment). */
  augment: {
    /** A policy on RGB or grey pixels (height x width x channels, uint8); returns new pixels. */
    policy(pixels: Uint8Array, width: number, height: number, channels: number, name: 'trivialaugment' | 'randaugment', seed: number): Uint8Array;
    /** RandomErasing of image `index` of a float32 [N, C, H, W] batch, in place. */
    erase(images: Float32Array, index: number, channels: number, height: number, width: number, p: number, seed: number): void;
  };
  /** The CUDA caching allocator's counters and controls (lib/cuda.ts). */
  cuda: {
    memoryStats(device: number): NativeCudaMemoryStats;
    resetPeakMemoryStats(device: number): void;
    emptyCache(): void;
    synchronize(device: number): void;
    allowTF32(allow?: boolean): boolean;
  };
  NativeTensor: {
    fromData(data: ArrayBufferView, shape: number[], source: string, target: string, device: string): NativeTensorHandle;
  };
  versions(): { libtorch: string; cudaAvailable: boolean; cudaDeviceCount: number };
  /** Which kernel variant runs each op in this process ('libtorch': LibTorch's own). */
  kernels(): { capability: string; cpu: string; normGemm: string; winograd: string; conv3x3WeightGrad: string };
  setNumThreads(n: number): void;
  getNumThreads(): number;
  manualSeed(seed: number): void;
  /** Hands densetorch's error classes to the addon (once, at load). */
  setErrorClasses(classes: Record<string, new (message: string) => Error>): void;
  /** Bytes of native memory currently reported to V8 by this addon's environment (diagnostics). */
  externalMemory(): number;
}

/** What was loaded, for `versions` and `densetorch doctor`. */
export interface LoadedNative {
  readonly addon: Addon;
  readonly addonPath: string;
  readonly libtorch: LibTorchInstall;
  /** The LibTorch version the addon was built against. */
  readonly builtAgainst: string;
}

// RTLD_NODELETE keeps a library mapped even though process.dlopen, finding no Node module in it,
// closes it again: 0x1000 in glibc and musl, 0x80 on macOS; Windows has no dlopen flags.
const RTLD_NODELETE = process.platform === 'darwin' ? 0x80 : process.platform === 'win32' ? 0 : 0x1000;

// node-gyp-build ships no types; its resolver takes a package root and finds build/Release or
// prebuilds/<platform>-<arch>/ with the tags of this runtime.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const gypBuild = require('node-gyp-build') as { resolve(dir: string): string };

/**
 * The addon file to load, in order: `DENSETORCH_ADDON` when set (e.g. a cmake-js build); the
 * prebuilt binary of this platform's package `@densetorch/<platform>` (an optional dependency:
 * npm installs only the one matching os, cpu and libc); a local build of this package
 * (build/Release, or prebuilds/ from `npm run build:prebuild`). Else an error naming the
 * platforms with packages and how to build from source.
 */
export function addonPath(): string {
  const override = process.env.DENSETORCH_ADDON;
  if (override) {
    if (!fs.existsSync(override)) throw new AddonLoadError(`DENSETORCH_ADDON is set to '${override}', which does not exist`);
    return path.resolve(override);
  }
  const tag = platformTag();
  let packageRoot: string | undefined;
  try {
    packageRoot = path.dirname(require.resolve(`${addonPackage(tag)}/package.json`));
  } catch {
    // not installed: this platform has no package, or it was not installed; a local build may exist
  }
  const tried: string[] = [];
  for (const root of packageRoot ? [packageRoot, PACKAGE_ROOT] : [PACKAGE_ROOT]) {
    try {
      return gypBuild.resolve(root);
    } catch (err) {
      tried.push(`${root}: ${(err as Error).message}`);
    }
  }
  throw new AddonLoadError(
    `No densetorch addon for ${tag} (node ${process.version}). Prebuilt packages exist for: ${releasedPlatforms().join(', ')} ` +
      `(${addonPackage('<platform>')}, installed with densetorch as an optional dependency${packageRoot ? '' : `; ${addonPackage(tag)} is not installed`}). ` +
      'Elsewhere, build from source: install a C++20 compiler and Python 3, then run `npm rebuild densetorch` ' +
      `(or \`npm run build\` in a clone). Looked in: ${tried.join('; ')}`,
  );
}

/** The LibTorch release the addon at `file` expects: its build record, else the package pin. */
function expectedVersion(file: string): string {
  const record = path.join(path.dirname(file), 'libtorch.json');
  if (fs.existsSync(record)) {
    const parsed = JSON.parse(fs.readFileSync(record, 'utf8')) as { version?: string };
    if (parsed.version) return parsed.version;
  }
  return PINNED_TORCH_VERSION;
}

/** Picks the LibTorch to load: the first in the search order whose release matches the addon's. */
function chooseLibTorch(expected: string): LibTorchInstall {
  if (!expected) return findLibTorch({ runtime: true });
  const steps = searchLibTorch({ runtime: true });
  checkEnvStep(steps);
  const env = steps.find((s) => s.source === 'env');
  const found = steps.filter((s) => s.found).map((s) => s.found as LibTorchInstall);
  if (env?.found && releaseOf(env.found.version) !== releaseOf(expected)) {
    throw new LibTorchVersionError(
      `LIBTORCH points at LibTorch ${env.found.version} (${env.found.root}) but this densetorch addon was built for ` +
        `LibTorch ${expected}. Point LIBTORCH at LibTorch ${releaseOf(expected)}, or rebuild densetorch from source.`,
    );
  }
  const match = found.find((lt) => releaseOf(lt.version) === releaseOf(expected));
  if (match) return match;
  if (found.length > 0) {
    const seen = found.map((lt) => `${lt.version} (${lt.source}: ${lt.root})`).join(', ');
    throw new LibTorchVersionError(
      `This densetorch addon was built for LibTorch ${expected}, but only LibTorch ${seen} was found. ` +
        `Run \`npx densetorch setup\` to fetch LibTorch ${releaseOf(expected)}, or rebuild densetorch from source.`,
    );
  }
  return findLibTorch({ runtime: true }); // throws the not-found error with what to do
}

function preload(lt: LibTorchInstall): void {
  const flags = os.constants.dlopen.RTLD_NOW | os.constants.dlopen.RTLD_GLOBAL | RTLD_NODELETE;
  const ext = process.platform === 'darwin' ? '.dylib' : '.so';
  const names = ['libc10', 'libtorch_cpu', 'libc10_cuda', 'libtorch_cuda', 'libtorch'];
  for (const name of names) {
    const file = path.join(lt.libDir, name + ext);
    if (!fs.existsSync(file)) continue;
    try {
      process.dlopen({ exports: {} }, file, flags);
    } catch (err) {
      // Expected: a plain library registers no Node module. Anything else is a real failure.
      const message = (err as Error).message;
      if (!/did not self-register|napi_register_module/i.test(message)) {
        throw new AddonLoadError(`Could not load ${file}: ${message}`);
      }
    }
  }
}

let loaded: LoadedNative | undefined;

/** Loads LibTorch and the addon once; later calls return the same handle. */
export function loadNative(): LoadedNative {
  if (loaded) return loaded;
  const file = addonPath();
  const builtAgainst = expectedVersion(file);
  const libtorch = chooseLibTorch(builtAgainst);
  preload(libtorch);
  const module = { exports: {} as Addon };
  try {
    process.dlopen(module, file, os.constants.dlopen.RTLD_NOW);
  } catch (err) {
    throw new AddonLoadError(`Could not load the densetorch addon ${file}: ${(err as Error).message}`);
  }
  module.exports.setErrorClasses(nativeErrorClasses());
  loaded = { addon: module.exports, addonPath: file, libtorch, builtAgainst: builtAgainst || module.exports.versions().libtorch };
  return loaded;
}

/** The loaded addon's exports. */
export function addon(): Addon {
  return loadNative().addon;
}
