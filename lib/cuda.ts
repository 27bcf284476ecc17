/**
 * CUDA devices: how much memory the caching allocator holds, and waiting for queued work.
 * Kernels on a CUDA device run asynchronously: time a step with {@link synchronize} (or by
 * reading a result back), and read its memory with {@link memoryStats}, the counters PyTorch's
 * `torch.cuda.memory_stats()` reads.
 *
 * @example
 * ```js
 * dt.cuda.resetPeakMemoryStats();
 * await model.fit(data, { epochs: 1, batchSize: 64 });
 * console.log(dt.cuda.memoryStats().peakAllocated / 2 ** 20, 'MiB');
 * ```
 */
import { addon } from './native';
import { boolean, nonNegativeInt } from './validate';

/** Bytes on one CUDA device, as the caching allocator counts them (all memory pools together). */
export interface MemoryStats {
  /** Bytes held by live tensors now (`torch.cuda.memory_allocated()`). */
  readonly allocated: number;
  /** The most `allocated` has been since the process started or {@link resetPeakMemoryStats}. */
  readonly peakAllocated: number;
  /** Bytes the cache holds from the driver now, in use or free (`torch.cuda.memory_reserved()`). */
  readonly reserved: number;
  /** The most `reserved` has been since the process started or {@link resetPeakMemoryStats}. */
  readonly peakReserved: number;
  /** Allocations that only succeeded after the cache was emptied. */
  readonly allocRetries: number;
  /** Allocations that failed even then (out of memory). */
  readonly ooms: number;
}

function deviceIndex(device: number | undefined): number {
  const { cudaAvailable, cudaDeviceCount: count } = addon().versions();
  if (!cudaAvailable) throw new RangeError('Expected a CUDA device, but CUDA is not available (no CUDA LibTorch or no GPU)');
  const index = device === undefined ? 0 : nonNegativeInt(device, 'device');
  if (index >= count) throw new RangeError(`Expected device to be below ${count} (the CUDA devices here) but received ${index}`);
  return index;
}

/** The caching allocator's counters for CUDA device `device` (default 0). Throws a RangeError without CUDA. */
export function memoryStats(device?: number): MemoryStats {
  return Object.freeze({ ...addon().cuda.memoryStats(deviceIndex(device)) });
}

/** Starts `peakAllocated` and `peakReserved` of CUDA device `device` (default 0) from their current values. */
export function resetPeakMemoryStats(device?: number): void {
  addon().cuda.resetPeakMemoryStats(deviceIndex(device));
}

/** Returns the cache's unused blocks to the driver (other processes can then use them). */
export function emptyCache(): void {
  deviceIndex(0);
  addon().cuda.emptyCache();
}

/**
 * Blocks until every kernel queued on CUDA device `device` (default 0) has finished; for timing.
 * It waits on the calling thread: keep it out of a server's request path.
 */
export function synchronize(device?: number): void {
  addon().cuda.synchronize(deviceIndex(device));
}

/**
 * Whether float32 convolutions (cuDNN) and matrix products (cuBLAS) on CUDA may round their inputs
 * to TF32 (10-bit mantissa, on tensor cores): faster on Ampere and later GPUs, about 1e-3 relative
 * error per operation. LibTorch's defaults: convolutions yes, matrix products no (PyTorch's
 * `torch.backends.cudnn.allow_tf32` and `torch.backends.cuda.matmul.allow_tf32`).
 * @param allow - when given, sets both; process-wide
 * @returns whether convolutions may use TF32 (after the change)
 * @example
 * ```js
 * dt.cuda.allowTF32(false); // IEEE float32 everywhere, e.g. to compare with CPU results
 * ```
 */
export function allowTF32(allow?: boolean): boolean {
  return addon().cuda.allowTF32(allow === undefined ? undefined : boolean(allow, 'allow'));
}
