/**
 * Error classes. Bad arguments are plain `TypeError` / `RangeError`; everything else densetorch
 * raises on purpose is a {@link DensetorchError} subclass.
 */

/** Base class of densetorch's own errors. */
export class DensetorchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** No usable LibTorch was found (or it could not be fetched). */
export class LibTorchNotFoundError extends DensetorchError {}

/** The LibTorch found has a different version from the one the addon was built against. */
export class LibTorchVersionError extends DensetorchError {}

/** The native addon could not be found or loaded. */
export class AddonLoadError extends DensetorchError {}

/** A weight file or state dict could not be loaded: bad format, missing/unexpected keys, wrong shapes. */
export class WeightsError extends DensetorchError {}

/** The model is running a background job (fit, predict, save) and cannot take this call now. */
export class BusyError extends DensetorchError {}

/** Training failed: the loss became NaN or infinite, or a checkpoint could not be read. */
export class TrainingError extends DensetorchError {}

/** A batch could not be made: an unreadable image file, a data source that failed, labels out of range. */
export class DataError extends DensetorchError {}

/**
 * Data-parallel training failed: a rank died, was killed or stopped answering (the message names
 * it), the rendezvous timed out, or the build has no distributed support.
 */
export class DistributedError extends DensetorchError {}

/**
 * The classes the addon throws (handed to it once at load, as better-sqlite3 does): native code
 * raises these directly, with `code` set (DENSETORCH_WEIGHTS, _BUSY, _TRAINING, _DATA, _DISTRIBUTED, _NATIVE)
 * and the stack of the JS call that failed.
 */
export function nativeErrorClasses(): Record<string, typeof DensetorchError> {
  return { WeightsError, BusyError, TrainingError, DataError, DistributedError, NativeError };
}

/** A native operation failed: inside LibTorch (the message is its first line) or a file system call such as a save. */
export class NativeError extends DensetorchError {}

/** Describes a value for an error message: `-1 of type number`, `an array of length 3`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as { length: number }).length}`;
  if (typeof value === 'string') return `'${value}' of type string`;
  if (typeof value === 'object') return `an object of type ${value.constructor?.name ?? 'Object'}`;
  return `${String(value)} of type ${typeof value}`;
}
