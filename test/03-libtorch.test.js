'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { ROOT, runNode } = require('./helpers');
const libtorch = require('../dist/libtorch.js');
const { loadNative } = require('../dist/native.js');
const dt = require('..');
// A gloo include folder by name only (nothing is read from it).
const FAKE_GLOO = path.join(os.tmpdir(), 'densetorch-fake-gloo', 'include');

/** A folder shaped like LibTorch (empty libraries), of `version`; with libtorch_cuda when `cuda`. */
function fakeLibTorch(version, { cuda = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-fake-'));
  fs.mkdirSync(path.join(dir, 'lib'));
  fs.mkdirSync(path.join(dir, 'include', 'torch'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'lib', 'libtorch.so'), '');
  if (cuda) fs.writeFileSync(path.join(dir, 'lib', 'libtorch_cuda.so'), '');
  fs.writeFileSync(path.join(dir, 'version.py'), `__version__ = '${version}'\n`);
  return dir;
}

describe('LibTorch discovery', () => {
  it('loaded a LibTorch whose release matches the one the addon was built for', () => {
    const native = loadNative();
    assert.equal(libtorch.releaseOf(native.libtorch.version), libtorch.releaseOf(native.builtAgainst));
    assert.ok(['env', 'python', 'cache'].includes(native.libtorch.source));
    console.log(`      LibTorch ${native.libtorch.version} from ${native.libtorch.source} (${native.libtorch.root})`);
  });

  it('inspects a LibTorch folder: version, include and library folders', () => {
    const found = libtorch.inspectLibTorch(loadNative().libtorch.root, 'env');
    assert.ok(found);
    assert.match(found.version, /^\d+\.\d+\.\d+/);
    assert.ok(fs.existsSync(path.join(found.libDir, 'libtorch.so')));
    assert.ok(fs.existsSync(path.join(found.includeDirs[0], 'ATen', 'ATen.h')));
    assert.ok(fs.existsSync(path.join(found.root, 'share', 'cmake', 'Torch', 'TorchConfig.cmake')));
  });

  it('honours DENSETORCH_CACHE for the cache folder', () => {
    const saved = process.env.DENSETORCH_CACHE;
    try {
      process.env.DENSETORCH_CACHE = '/tmp/dt-cache-test';
      assert.equal(libtorch.cacheDir(), '/tmp/dt-cache-test');
      assert.ok(libtorch.cachedLibTorchDir().startsWith('/tmp/dt-cache-test/libtorch/'));
    } finally {
      if (saved === undefined) delete process.env.DENSETORCH_CACHE; else process.env.DENSETORCH_CACHE = saved;
    }
  });

  it('rejects a LIBTORCH that is not a LibTorch folder, saying what was expected', () => {
    const result = runNode('require(".")', { env: { LIBTORCH: os.tmpdir() } });
    assert.notEqual(result.status, 0);
    assert.equal(result.signal, null);
    assert.match(result.stderr, /LibTorchNotFoundError: LIBTORCH is set to '.*', which is not a LibTorch folder \(expected lib\/libtorch\.so/);
  });

  it('refuses a LibTorch of another version, naming both versions, without crashing', () => {
    const dir = fakeLibTorch('2.9.1+cpu');
    try {
      const result = runNode('require(".")', { env: { LIBTORCH: dir } });
      assert.equal(result.signal, null);
      assert.notEqual(result.status, 0);
      assert.match(result.stderr, new RegExp(`LibTorchVersionError: LIBTORCH points at LibTorch 2\\.9\\.1\\+cpu .* built for LibTorch ${dt.versions.libtorch.replace(/\./g, '\\.')}`));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says what to do when no LibTorch can be found', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-empty-'));
    try {
      const result = runNode(
        'try { require("./dist/libtorch.js").findLibTorch(); } catch (e) { console.log(e.name + ": " + e.message); }',
        { env: { DENSETORCH_CACHE: empty, PYTHON: path.join(empty, 'no-python'), LIBTORCH: '' } },
      );
      assert.match(result.stdout, /LibTorchNotFoundError: LibTorch was not found\. Looked at: .*Run `npx densetorch setup`.*or set LIBTORCH/);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('LibTorch fetch: checksums', () => {
  it('accepts a pinned wheel with the right SHA-256 and refuses one with another, naming both', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-wheel-'));
    const name = Object.keys(libtorch.PINNED_WHEEL_SHA256)[0];
    const file = path.join(dir, name);
    fs.writeFileSync(file, 'not a wheel');
    assert.throws(() => libtorch.verifyWheel(file), {
      name: 'LibTorchNotFoundError',
      message: new RegExp(`checksum mismatch for .*${name.replace(/[+.]/g, '\\$&')}: expected sha256 ${libtorch.PINNED_WHEEL_SHA256[name]}, got [0-9a-f]{64}`),
    });
    const other = path.join(dir, 'torch-2.13.0-cp312-cp312-manylinux_2_28_x86_64.whl');
    fs.writeFileSync(other, 'x');
    assert.match(libtorch.verifyWheel(other), /no pinned checksum/);
    fs.rmSync(dir, { recursive: true });
  });

  it('computes SHA-256 of a file', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-sha-')), 'f');
    fs.writeFileSync(file, 'abc');
    assert.equal(libtorch.sha256File(file), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('build settings (binding.gyp and CMakeLists.txt share scripts/native-config.js)', () => {
  function nativeConfig(args, env = {}) {
    const result = spawnSync(process.execPath, ['scripts/native-config.js', ...args], {
      cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8',
    });
    assert.equal(result.status, 0, result.stderr);
    return result.stdout.trim();
  }

  it('links the CUDA libraries for a CUDA LibTorch and only the CPU ones otherwise', () => {
    const cuda = fakeLibTorch('2.14.1+cu130', { cuda: true });
    const cpu = fakeLibTorch('2.13.0+cpu');
    try {
      assert.equal(nativeConfig(['libs'], { DENSETORCH_LIBTORCH_ROOT: cuda }), '-lc10 -ltorch_cpu -ltorch -lc10_cuda -ltorch_cuda');
      assert.equal(nativeConfig(['libs'], { DENSETORCH_LIBTORCH_ROOT: cpu }), '-lc10 -ltorch_cpu -ltorch');
      const torchIncludes = [path.join(cpu, 'include'), path.join(cpu, 'include', 'torch', 'csrc', 'api', 'include')];
      assert.equal(nativeConfig(['include'], { DENSETORCH_LIBTORCH_ROOT: cpu, DENSETORCH_GLOO_ROOT: '' }), torchIncludes.join(' '));
      assert.equal(nativeConfig(['defines'], { DENSETORCH_GLOO_ROOT: '' }), '');
      // With gloo's headers: their folder after LibTorch's, and the distributed part's switches.
      assert.equal(nativeConfig(['include'], { DENSETORCH_LIBTORCH_ROOT: cpu, DENSETORCH_GLOO_ROOT: FAKE_GLOO }), [...torchIncludes, FAKE_GLOO].join(' '));
      assert.equal(nativeConfig(['defines'], { DENSETORCH_GLOO_ROOT: FAKE_GLOO }), 'DENSETORCH_DISTRIBUTED USE_C10D_GLOO USE_DISTRIBUTED');
    } finally {
      fs.rmSync(cuda, { recursive: true, force: true });
      fs.rmSync(cpu, { recursive: true, force: true });
    }
  });

  it('configures the CMake build against a CUDA LibTorch without a CUDA toolkit and writes the build record', function () {
    const cmake = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
    if (cmake.status !== 0) {
      console.log('      (skipped: no cmake on PATH)');
      this.skip();
    }
    const cuda = fakeLibTorch('2.14.1+cu130', { cuda: true });
    const build = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-cmake-'));
    try {
      const result = spawnSync('cmake', ['-S', ROOT, '-B', build], {
        cwd: ROOT, env: { ...process.env, DENSETORCH_LIBTORCH_ROOT: cuda, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` },
        encoding: 'utf8', timeout: 120000,
      });
      assert.equal(result.status, 0, result.stdout + result.stderr);
      const libs = ['libc10.so', 'libtorch_cpu.so', 'libtorch.so', 'libc10_cuda.so', 'libtorch_cuda.so'].map((f) => path.join(cuda, 'lib', f));
      assert.ok(result.stdout.includes(`-- densetorch: LibTorch 2.14.1+cu130: ${libs.join(';')}\n`), result.stdout);
      assert.doesNotMatch(result.stdout + result.stderr, /Could NOT find CUDA/);
      // The loader's record of the LibTorch the addon is built against, beside the addon.
      const record = JSON.parse(fs.readFileSync(path.join(build, 'libtorch.json'), 'utf8'));
      assert.deepEqual(record, { version: '2.14.1+cu130', root: cuda, source: 'env', cuda: true });
    } finally {
      fs.rmSync(cuda, { recursive: true, force: true });
      fs.rmSync(build, { recursive: true, force: true });
    }
  });
});
