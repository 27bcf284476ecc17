'use strict';
const assert = require('node:assert/strict');
const dt = require('..');
const { runNode } = require('./helpers');

describe('tensors: round trips', () => {
  const cases = [
    ['float32', Float32Array, [1.5, -2.25, 3e-8, 4e30, 0, -0.5]],
    ['float64', Float64Array, [1.5, -2.25, 1e-300, 4e300, Math.PI, -0.5]],
    ['int32', Int32Array, [1, -2, 2147483647, -2147483648, 0, 7]],
    ['int64', BigInt64Array, [1n, -2n, 9007199254740993n, -(2n ** 63n), 0n, 7n]],
    ['uint8', Uint8Array, [0, 1, 127, 128, 255, 42]],
  ];
  const shapes = [[6], [2, 3], [3, 2, 1], [1, 1, 6, 1]];
  for (const [dtype, ArrayType, values] of cases) {
    for (const shape of shapes) {
      it(`keeps ${dtype} values and shape [${shape}] through toArray()`, () => {
        const data = ArrayType.from(values);
        const t = dt.tensor(data, shape);
        assert.deepEqual(t.shape, shape);
        assert.equal(t.dtype, dtype);
        assert.equal(t.device, 'cpu');
        const back = t.toArray();
        assert.ok(back instanceof ArrayType, `toArray() returns a ${ArrayType.name}`);
        assert.deepEqual(Array.from(back), Array.from(data));
        t.dispose();
      });
    }
  }

  it('copies the data: later changes to the source array do not reach the tensor', () => {
    const data = new Float32Array([1, 2, 3]);
    const t = dt.tensor(data, [3]);
    data[0] = 100;
    assert.deepEqual(Array.from(t.toArray()), [1, 2, 3]);
  });

  it('reads a typed array view with a byte offset', () => {
    const buffer = new Float32Array([9, 9, 1, 2, 3, 4]).buffer;
    const t = dt.tensor(new Float32Array(buffer, 8, 4), [2, 2]);
    assert.deepEqual(Array.from(t.toArray()), [1, 2, 3, 4]);
  });

  it('builds float32 from number[] by default and honours dtype', () => {
    assert.equal(dt.tensor([1, 2], [2]).dtype, 'float32');
    const t = dt.tensor([1, 2, 3], [3], { dtype: 'int64' });
    assert.equal(t.dtype, 'int64');
    assert.deepEqual(Array.from(t.toArray()), [1n, 2n, 3n]);
    assert.deepEqual(Array.from(dt.tensor([0.5, 2], [2], { dtype: 'float64' }).toArray()), [0.5, 2]);
  });

  it('converts a typed array to another dtype when asked', () => {
    const t = dt.tensor(new Int32Array([1, 2, 3, 4]), [4], { dtype: 'float32' });
    assert.equal(t.dtype, 'float32');
    assert.deepEqual(Array.from(t.toArray()), [1, 2, 3, 4]);
  });

  it('supports scalars (shape []) and empty tensors', () => {
    const s = dt.tensor([7], []);
    assert.deepEqual(s.shape, []);
    assert.deepEqual(Array.from(s.toArray()), [7]);
    const e = dt.tensor(new Float32Array(0), [0, 3]);
    assert.deepEqual(e.shape, [0, 3]);
    assert.equal(e.toArray().length, 0);
  });

  it('to("cpu") returns a new tensor with the same values', () => {
    const t = dt.tensor([1, 2], [2]);
    const u = t.to('cpu');
    assert.notEqual(u, t);
    assert.deepEqual(Array.from(u.toArray()), [1, 2]);
    t.dispose();
    assert.deepEqual(Array.from(u.toArray()), [1, 2], 'the copy outlives the original');
  });
});

describe('tensors: bad arguments', () => {
  const cases = [
    ['a shape whose product differs from the data length', () => dt.tensor([1, 2, 3], [2, 2]), RangeError, /Expected data to have 4 elements for shape \[2, 2\] but received 3/],
    ['a negative dimension', () => dt.tensor([1], [-1]), RangeError, /Expected shape\[0\] to be a non-negative integer but received -1/],
    ['a fractional dimension', () => dt.tensor([1, 2], [1.5]), TypeError, /Expected shape\[0\] to be a non-negative integer but received 1\.5 of type number/],
    ['a non-array shape', () => dt.tensor([1], 1), TypeError, /Expected shape to be an array of non-negative integers but received 1 of type number/],
    ['a shape too large to count', () => dt.tensor([1], [2 ** 30, 2 ** 30, 2 ** 30]), RangeError, /Expected shape to have a product of at most/],
    ['an unknown dtype', () => dt.tensor([1], [1], { dtype: 'float8' }), TypeError, /Expected options\.dtype to be one of 'float32', 'float64', 'int32', 'int64', 'uint8' but received 'float8' of type string/],
    ['a malformed device', () => dt.tensor([1], [1], { device: 'gpu' }), TypeError, /Expected options\.device to be 'cpu', 'cuda' or 'cuda:N' but received 'gpu' of type string/],
    ['an unsupported typed array', () => dt.tensor(new Int16Array(2), [2]), TypeError, /Expected data to be a Float32Array.*but received a Int16Array of length 2/],
    ['a string as data', () => dt.tensor('abc', [3]), TypeError, /Expected data to be .* but received 'abc' of type string/],
    ['a non-number inside number[]', () => dt.tensor([1, 'x'], [2]), TypeError, /Expected data\[1\] to be a number but received 'x' of type string/],
    ['a fraction for an integer dtype', () => dt.tensor([1, 2.5], [2], { dtype: 'int32' }), TypeError, /Expected data\[1\] to be an integer for dtype 'int32' but received 2\.5/],
    ['non-object options', () => dt.tensor([1], [1], 'float32'), TypeError, /Expected options to be an object but received 'float32' of type string/],
  ];
  if (!dt.versions.cudaAvailable) {
    cases.push(['cuda when CUDA is unavailable', () => dt.tensor([1], [1], { device: 'cuda' }), RangeError, /Expected options\.device to be an available device but received 'cuda': CUDA is not available/]);
    cases.push(['to("cuda") when CUDA is unavailable', () => dt.tensor([1], [1]).to('cuda'), RangeError, /Expected device to be an available device but received 'cuda'/]);
  }
  for (const [title, call, ErrorClass, message] of cases) {
    it(`rejects ${title} with a ${ErrorClass.name}`, () => {
      assert.throws(call, (err) => {
        assert.ok(err instanceof ErrorClass, `expected ${ErrorClass.name}, got ${err.name}: ${err.message}`);
        assert.match(err.message, message);
        return true;
      });
    });
  }

  it('turns a LibTorch exception into a one-line JS error without a backtrace', () => {
    // Bypass the TS validation to reach LibTorch's own device parser.
    const { addon } = require('../dist/native.js');
    assert.throws(() => addon().NativeTensor.fromData(new Float32Array(1), [1], 'float32', 'float32', 'cuda:x'), (err) => {
      assert.ok(err instanceof Error);
      assert.ok(err.message.length > 0);
      assert.ok(!err.message.includes('\n'), `one line, got: ${err.message}`);
      assert.doesNotMatch(err.message, /Exception raised from|frame #/);
      return true;
    });
  });

  it('rechecks sizes in C++: a shape mismatch reaching the addon is a TypeError, not an abort', () => {
    const { addon } = require('../dist/native.js');
    assert.throws(() => addon().NativeTensor.fromData(new Float32Array(2), [3], 'float32', 'float32', 'cpu'), TypeError);
    assert.throws(() => addon().NativeTensor.fromData(new Float32Array(2), [2], 'complex', 'float32', 'cpu'), /unknown dtype 'complex'/);
  });

  it('survives native errors in a child process (no abort)', () => {
    const script = `
      const dt = require('.');
      const { addon } = require('./dist/native.js');
      let n = 0;
      for (const args of [[new Float32Array(2), [3], 'float32', 'float32', 'cpu'], [new Float32Array(1), [1], 'float32', 'float32', 'cuda:x'], [new Float32Array(1), [1], 'x', 'float32', 'cpu']]) {
        try { addon().NativeTensor.fromData(...args); } catch (e) { n++; }
      }
      console.log('caught', n);`;
    const result = runNode(script);
    assert.equal(result.signal, null, result.stderr);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /caught 3/);
  });
});

describe('tensors: dispose', () => {
  it('frees the tensor; later use is a TypeError naming the problem', () => {
    const t = dt.tensor([1, 2, 3], [3]);
    assert.equal(t.isDisposed, false);
    t.dispose();
    assert.equal(t.isDisposed, true);
    for (const use of [() => t.shape, () => t.dtype, () => t.device, () => t.toArray(), () => t.to('cpu')]) {
      assert.throws(use, { name: 'TypeError', message: 'Expected this tensor to be a live tensor but it has been disposed' });
    }
    assert.equal(String(t), 'Tensor(disposed)');
  });

  it('is idempotent', () => {
    const t = dt.tensor([1], [1]);
    t.dispose();
    assert.doesNotThrow(() => t.dispose());
    assert.equal(t.isDisposed, true);
  });
});

describe('runtime', () => {
  it('reports versions', () => {
    assert.equal(dt.versions.densetorch, require('../package.json').version);
    assert.match(dt.versions.libtorch, /^\d+\.\d+\.\d+/);
    assert.equal(typeof dt.versions.cudaAvailable, 'boolean');
  });

  it('sets and gets the thread count, and validates it', () => {
    const before = dt.getNumThreads();
    dt.setNumThreads(1);
    assert.equal(dt.getNumThreads(), 1);
    dt.setNumThreads(before);
    assert.equal(dt.getNumThreads(), before);
    assert.throws(() => dt.setNumThreads(0), { name: 'RangeError', message: /Expected n to be a positive integer but received 0/ });
    assert.throws(() => dt.setNumThreads(1.5), { name: 'TypeError', message: /received 1\.5 of type number/ });
  });

  it('validates manualSeed', () => {
    assert.doesNotThrow(() => dt.manualSeed(42));
    assert.throws(() => dt.manualSeed(-1), { name: 'RangeError', message: /Expected seed to be a non-negative safe integer but received -1/ });
  });
});
