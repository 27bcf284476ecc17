/**
 * Argument checks shared by the API modules. Each throws a TypeError for a value of the wrong
 * kind and a RangeError for one out of range, naming the argument, the expectation and the value.
 */
import { describe } from './errors';

/** An integer >= 1. */
export function positiveInt(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new TypeError(`Expected ${what} to be a positive integer but received ${describe(value)}`);
  if (value < 1) throw new RangeError(`Expected ${what} to be a positive integer but received ${value}`);
  return value;
}

/** A seed: a safe integer >= 0 (TypeError for another kind of value, RangeError for a negative one). */
export function seedArg(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new TypeError(`Expected ${what} to be a non-negative safe integer but received ${describe(value)}`);
  if (value < 0) throw new RangeError(`Expected ${what} to be a non-negative safe integer but received ${value}`);
  return value;
}

/** An integer >= 0. */
export function nonNegativeInt(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new TypeError(`Expected ${what} to be a non-negative integer but received ${describe(value)}`);
  if (value < 0) throw new RangeError(`Expected ${what} to be a non-negative integer but received ${value}`);
  return value;
}

/**
 * A number (not NaN) for which `ok` holds; `range` completes "a number ..." in the message, e.g.
 * 'in (0, 1]' or '> 0'. With `finite`, infinities are rejected as the wrong kind too.
 */
export function numberIn(value: unknown, what: string, ok: (x: number) => boolean, range: string, finite = false): number {
  if (typeof value !== 'number' || Number.isNaN(value) || (finite && !Number.isFinite(value))) {
    throw new TypeError(`Expected ${what} to be a number ${range} but received ${describe(value)}`);
  }
  if (!ok(value)) throw new RangeError(`Expected ${what} to be a number ${range} but received ${value}`);
  return value;
}

/** A boolean. */
export function boolean(value: unknown, what: string): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`Expected ${what} to be a boolean but received ${describe(value)}`);
  return value;
}

/** An options object ({} when undefined); arrays and null are refused. */
export function optionsObject<T>(value: unknown, what: string): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError(`Expected ${what} to be an object but received ${describe(value)}`);
  return value as Partial<T>;
}

/**
 * An options object of `fn` (see optionsObject) whose keys are all in `known`; an unknown key
 * (a typo) is a TypeError naming it, `fn` and the known ones.
 */
export function knownOptions<T>(value: unknown, known: readonly string[], fn: string, what = 'options'): Partial<T> {
  const o = optionsObject<T>(value, what);
  for (const key of Object.keys(o)) {
    if (!known.includes(key)) throw new TypeError(`Unknown option '${key}' of ${fn}: expected one of ${known.join(', ')}`);
  }
  return o;
}

/** Per-channel normalisation { mean, std } of `channels` finite numbers each, std > 0; undefined stays undefined. */
export function normalizeArg(value: unknown, channels: number, what: string): { mean: number[]; std: number[] } | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null) throw new TypeError(`Expected ${what} to be { mean, std } but received ${describe(value)}`);
  const n = value as { mean?: unknown; std?: unknown };
  const lists: number[][] = [];
  for (const key of ['mean', 'std'] as const) {
    const arr = n[key];
    if (!Array.isArray(arr) || arr.length !== channels || !arr.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      throw new TypeError(`Expected ${what}.${key} to be ${channels} finite numbers (one per channel) but received ${describe(arr)}`);
    }
    lists.push([...arr]);
  }
  const [mean, std] = lists;
  if (std.some((x) => x <= 0)) throw new RangeError(`Expected ${what}.std to be positive but received [${std.join(', ')}]`);
  return { mean, std };
}

/** An AbortSignal, or undefined. */
export function checkSignal(value: unknown, what: string): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw new TypeError(`Expected ${what} to be an AbortSignal but received ${describe(value)}`);
  return value;
}

/** A function, or undefined. */
export function optionalFunction<T>(value: unknown, what: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw new TypeError(`Expected ${what} to be a function but received ${describe(value)}`);
  return value as T;
}
