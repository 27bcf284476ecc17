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

/** Runs a native call and turns the plain `Error` it throws into a densetorch error class. */
export function native<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    throw rethrowNative(err);
  }
}

/** Awaits a native promise and maps its rejection as {@link native} does. */
export async function nativeAsync<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await native(call);
  } catch (err) {
    throw rethrowNative(err);
  }
}

/** Maps an error thrown by the addon to densetorch's classes (TypeError/RangeError kept as they are). */
export function rethrowNative(err: unknown): Error {
  if (err instanceof TypeError || err instanceof RangeError || err instanceof DensetorchError) return err;
  if (err instanceof Error) {
    const code = (err as Error & { code?: string }).code;
    const kinds: Record<string, typeof DensetorchError> = { DENSETORCH_WEIGHTS: WeightsError, DENSETORCH_BUSY: BusyError, DENSETORCH_TRAINING: TrainingError, DENSETORCH_DATA: DataError };
    const Kind = (code && kinds[code]) || NativeError;
    const wrapped = new Kind(err.message);
    if (err.stack) wrapped.stack = `${Kind.name}: ${err.message}\n${err.stack.split('\n').slice(1).join('\n')}`;
    return wrapped;
  }
  return new NativeError(String(err));
}
