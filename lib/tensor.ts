/**
 * Tensors: typed data in LibTorch memory, on the CPU or a CUDA device.
 */
import { describe } from './errors';
import { addon, NativeTensorHandle } from './native';
import { knownOptions } from './validate';

/** Element types a tensor can hold when created from JS data. */
export type DType = 'float32' | 'float64' | 'int32' | 'int64' | 'uint8';

/** Element types LibTorch may hand back (for example from mixed-precision work). */
export type AnyDType = DType | 'float16' | 'bfloat16' | 'bool';

/** Where a tensor lives: the CPU, the current CUDA device, or CUDA device N. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

/** Typed arrays accepted as tensor data, and returned by {@link Tensor.toArray}. */
export type TensorData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

/** Options of {@link tensor}. */
export interface TensorOptions {
  /** Element type. Default: the typed array's own type, or `'float32'` for `number[]`. */
  dtype?: DType;
  /** Device. Default `'cpu'`. */
  device?: Device;
}

const DTYPES: readonly DType[] = ['float32', 'float64', 'int32', 'int64', 'uint8'];

/** The dtype a typed array holds, or undefined for unsupported kinds. */
function dtypeOfArray(data: ArrayBufferView): DType | undefined {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Uint8Array) return 'uint8';
  return undefined;
}

/** Validates a dtype argument; throws a TypeError naming `what`. */
export function checkDType(value: unknown, what: string): DType {
  if (typeof value !== 'string' || !(DTYPES as readonly string[]).includes(value)) {
    throw new TypeError(`Expected ${what} to be one of ${DTYPES.map((d) => `'${d}'`).join(', ')} but received ${describe(value)}`);
  }
  return value as DType;
}

/**
 * Validates a device argument. Throws a TypeError for a malformed device and a RangeError for
 * 'cuda' when CUDA is not available.
 */
export function checkDevice(value: unknown, what: string): Device {
  if (typeof value !== 'string' || !/^(cpu|cuda(:\d+)?)$/.test(value)) {
    throw new TypeError(`Expected ${what} to be 'cpu', 'cuda' or 'cuda:N' but received ${describe(value)}`);
  }
  if (value !== 'cpu') {
    const v = addon().versions();
    if (!v.cudaAvailable) {
      throw new RangeError(`Expected ${what} to be an available device but received '${value}': CUDA is not available (this LibTorch has no CUDA support or no GPU is present)`);
    }
    const index = value.includes(':') ? Number(value.split(':')[1]) : 0;
    if (index >= v.cudaDeviceCount) {
      throw new RangeError(`Expected ${what} to be an available device but received '${value}': only ${v.cudaDeviceCount} CUDA device(s) exist`);
    }
  }
  return value as Device;
}

/** Validates a shape: an array of non-negative integers whose product is a safe integer. */
export function checkShape(value: unknown, what = 'shape'): number[] {
  if (!Array.isArray(value)) throw new TypeError(`Expected ${what} to be an array of non-negative integers but received ${describe(value)}`);
  let product = 1;
  value.forEach((dim, i) => {
    if (typeof dim !== 'number' || !Number.isInteger(dim)) {
      throw new TypeError(`Expected ${what}[${i}] to be a non-negative integer but received ${describe(dim)}`);
    }
    if (dim < 0) throw new RangeError(`Expected ${what}[${i}] to be a non-negative integer but received ${dim}`);
    product *= dim;
  });
  if (!Number.isSafeInteger(product)) {
    throw new RangeError(`Expected ${what} to have a product of at most ${Number.MAX_SAFE_INTEGER} elements but [${value.join(', ')}] has ${product}`);
  }
  return value.slice() as number[];
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function fromNumbers(data: readonly unknown[], dtype: DType): TensorData {
  const isInt = dtype !== 'float32' && dtype !== 'float64';
  data.forEach((x, i) => {
    if (typeof x !== 'number') {
      throw new TypeError(`Expected data[${i}] to be a number but received ${describe(x)}`);
    }
    if (isInt && !Number.isInteger(x)) {
      throw new TypeError(`Expected data[${i}] to be an integer for dtype '${dtype}' but received ${x}`);
    }
  });
  const numbers = data as number[];
  switch (dtype) {
    case 'float32': return Float32Array.from(numbers);
    case 'float64': return Float64Array.from(numbers);
    case 'int32': return Int32Array.from(numbers);
    case 'int64': return BigInt64Array.from(numbers, (x) => BigInt(x));
    case 'uint8': return Uint8Array.from(numbers);
  }
}

/**
 * A tensor held by LibTorch. Its memory is freed by {@link Tensor.dispose} or, if never
 * disposed, when the object is garbage collected (its size is reported to V8).
 */
export class Tensor {
  #handle: NativeTensorHandle | null;
  readonly #shape: readonly number[];
  readonly #dtype: AnyDType;
  readonly #device: Device;

  /** @internal Wraps a native handle; use {@link tensor} to create tensors. */
  constructor(handle: NativeTensorHandle) {
    this.#handle = handle;
    this.#shape = Object.freeze(handle.shape());
    this.#dtype = handle.dtype() as AnyDType;
    this.#device = handle.device() as Device;
  }

  /** @internal The native handle; throws a TypeError if disposed. */
  handle(what = 'this tensor'): NativeTensorHandle {
    if (this.#handle === null) throw new TypeError(`Expected ${what} to be a live tensor but it has been disposed`);
    return this.#handle;
  }

  /** Sizes of each dimension. */
  get shape(): number[] {
    this.handle();
    return this.#shape.slice();
  }

  /** Element type. */
  get dtype(): AnyDType {
    this.handle();
    return this.#dtype;
  }

  /** Device holding the data. */
  get device(): Device {
    this.handle();
    return this.#device;
  }

  /** Number of elements. */
  get size(): number {
    return numel(this.shape);
  }

  /** Whether {@link Tensor.dispose} has been called. */
  get isDisposed(): boolean {
    return this.#handle === null;
  }

  /**
   * A copy of the elements, row-major, as the typed array of this dtype (float16/bfloat16
   * come back as Float32Array, bool as Uint8Array).
   */
  toArray(): TensorData {
    const handle = this.handle();
    return handle.toArray();
  }

  /** A copy of this tensor on `device` (or this same data when already there, as a new handle). */
  to(device: Device): Tensor {
    const handle = this.handle();
    const target = checkDevice(device, 'device');
    return new Tensor(handle.to(target));
  }

  /** Frees the tensor's memory now. Calling it again does nothing. */
  dispose(): void {
    if (this.#handle === null) return;
    this.#handle.dispose();
    this.#handle = null;
  }

  /** A short description: `Tensor(float32, [2, 3], cpu)`. */
  toString(): string {
    if (this.#handle === null) return 'Tensor(disposed)';
    return `Tensor(${this.#dtype}, [${this.#shape.join(', ')}], ${this.#device})`;
  }
}

/**
 * Creates a tensor from a copy of `data`.
 *
 * @param data Elements in row-major order: a Float32Array, Float64Array, Int32Array,
 *   BigInt64Array, Uint8Array, or an array of numbers.
 * @param shape Sizes of each dimension; their product must equal the number of elements.
 * @param options `dtype` (default: the typed array's type, float32 for number[]) and
 *   `device` (default 'cpu'). A typed array of another type is converted to `dtype`.
 */
export function tensor(data: TensorData | readonly number[], shape: readonly number[], options: TensorOptions = {}): Tensor {
  options = knownOptions<TensorOptions>(options, ['dtype', 'device'], 'tensor()');
  const dims = checkShape(shape);
  const target = options.dtype === undefined ? undefined : checkDType(options.dtype, 'options.dtype');
  const device = options.device === undefined ? 'cpu' : checkDevice(options.device, 'options.device');
  let array: TensorData;
  if (Array.isArray(data)) {
    array = fromNumbers(data, target ?? 'float32');
  } else if (ArrayBuffer.isView(data) && dtypeOfArray(data)) {
    array = data as TensorData;
  } else {
    throw new TypeError(
      'Expected data to be a Float32Array, Float64Array, Int32Array, BigInt64Array, Uint8Array or number[] ' +
        `but received ${describe(data)}`,
    );
  }
  const expected = numel(dims);
  if (array.length !== expected) {
    throw new RangeError(`Expected data to have ${expected} elements for shape [${dims.join(', ')}] but received ${array.length}`);
  }
  const source = dtypeOfArray(array) as DType;
  return new Tensor(addon().NativeTensor.fromData(array, dims, source, target ?? source, device));
}
