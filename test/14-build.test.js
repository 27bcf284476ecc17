'use strict';
// The build: idempotent install (build stamp), incremental rebuilds, unity translation units.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { ROOT } = require('./helpers');
const stamps = require('../scripts/build-stamp.js');
const nativeConfig = require('../scripts/native-config.js');

// A LibTorch description only (nothing is read from its folder).
const LT = { version: '2.13.0+cpu', root: path.join(os.tmpdir(), 'densetorch-fake-libtorch'), cuda: false };
// A gloo include folder by name only (nothing is read from it).
const FAKE_GLOO = path.join(os.tmpdir(), 'densetorch-fake-gloo', 'include');

describe('build stamp', () => {
  let dir;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-stamp-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('records the LibTorch, node-addon-api, build mode, source list and a hash of every native file', () => {
    const stamp = stamps.currentStamp(LT, { builder: 'node-gyp', unity: 2 });
    assert.deepEqual(stamp.configuration.libtorch, LT);
    assert.equal(stamp.configuration.nodeAddonApi, require('node-addon-api/package.json').version);
    assert.equal(stamp.configuration.unity, 2);
    assert.deepEqual(stamp.configuration.sourceList, nativeConfig.nativeSources());
    assert.ok(stamp.configuration.sourceList.includes('native/core/densenet.cpp'));
    assert.match(stamp.sources, /^[0-9a-f]{64}$/);
    assert.ok(stamps.nativeFiles().includes('native/core/densenet.h'), 'headers are part of the hash');
  });

  it('says full, incremental or up-to-date from what changed', () => {
    const stamp = stamps.currentStamp(LT, { builder: 'node-gyp', unity: 2 });
    assert.equal(stamps.buildNeeded(dir, stamp), 'full', 'no addon, no stamp');
    fs.writeFileSync(path.join(dir, 'densetorch.node'), '');
    assert.equal(stamps.buildNeeded(dir, stamp), 'full', 'an addon without a stamp');
    stamps.writeStamp(dir, stamp);
    assert.equal(stamps.buildNeeded(dir, stamp), 'up-to-date');
    assert.equal(stamps.buildNeeded(dir, { ...stamp, sources: '0'.repeat(64) }), 'incremental');
    const otherTorch = stamps.currentStamp({ ...LT, version: '2.14.1+cu130', cuda: true }, { builder: 'node-gyp', unity: 2 });
    assert.equal(stamps.buildNeeded(dir, otherTorch), 'full');
    assert.equal(stamps.buildNeeded(dir, stamps.currentStamp(LT, { builder: 'node-gyp', unity: 0 })), 'full');
    assert.equal(stamps.buildNeeded(dir, stamps.currentStamp(LT, { builder: 'cmake-js', unity: null })), 'full');
    fs.rmSync(path.join(dir, 'densetorch.node'));
    assert.equal(stamps.buildNeeded(dir, stamp), 'full', 'the addon was deleted');
  });

  it('treats a damaged stamp as no stamp', () => {
    fs.writeFileSync(path.join(dir, 'densetorch.node'), '');
    fs.writeFileSync(path.join(dir, stamps.STAMP_NAME), '{"configuration":');
    assert.equal(stamps.buildNeeded(dir, stamps.currentStamp(LT, { builder: 'node-gyp', unity: 2 })), 'full');
  });
});

describe('unity build', () => {
  it('splits the sources into groups of about equal size, each source in exactly one group', () => {
    const all = nativeConfig.nativeSources();
    for (const groups of [1, 2, 3, 5]) {
      const split = nativeConfig.splitBySize(all, groups);
      assert.equal(split.length, groups);
      assert.deepEqual(split.flat().sort(), [...all].sort());
      const bytes = split.map((files) => files.reduce((s, f) => s + fs.statSync(path.join(ROOT, f)).size, 0));
      const largest = Math.max(...all.map((f) => fs.statSync(path.join(ROOT, f)).size));
      assert.ok(Math.max(...bytes) - Math.min(...bytes) <= largest, `unbalanced: ${bytes}`);
    }
  });

  it('compiles one unit per core by default, one per source with DENSETORCH_UNITY=0, and refuses other values', () => {
    assert.equal(nativeConfig.unityGroups({ JOBS: '2' }), 2);
    assert.equal(nativeConfig.unityGroups({ JOBS: '2', DENSETORCH_UNITY: '0' }), 0);
    assert.equal(nativeConfig.unityGroups({ DENSETORCH_UNITY: '3' }), 3);
    assert.throws(() => nativeConfig.unityGroups({ DENSETORCH_UNITY: 'yes' }), /DENSETORCH_UNITY must be a non-negative integer, got 'yes'/);
    assert.deepEqual(nativeConfig.sources({ DENSETORCH_UNITY: '0' }), nativeConfig.nativeSources());
    assert.deepEqual(nativeConfig.sources({ DENSETORCH_UNITY: '99' }), nativeConfig.nativeSources(), 'more units than sources');
  });
});

describe("gloo's headers (distributed part)", () => {
  const gloo = require('../dist/gloo.js');
  const saved = {};
  const setEnv = (vars) => {
    for (const [k, v] of Object.entries(vars)) {
      if (!(k in saved)) saved[k] = process.env[k];
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  afterEach(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
      delete saved[k];
    }
  });

  it('DENSETORCH_DISTRIBUTED=0 builds without it; a DENSETORCH_GLOO_INCLUDE without gloo/ is refused with the reason', () => {
    setEnv({ DENSETORCH_DISTRIBUTED: '0' });
    assert.deepEqual(gloo.findGloo({ fetch: true }), { found: false, reason: 'DENSETORCH_DISTRIBUTED=0 was set at build time' });
    setEnv({ DENSETORCH_DISTRIBUTED: undefined, DENSETORCH_GLOO_INCLUDE: os.tmpdir() });
    const r = gloo.findGloo({ fetch: true });
    assert.equal(r.found, false);
    assert.match(r.reason, /DENSETORCH_GLOO_INCLUDE=.* holds no gloo\/allreduce_ring\.h/);
  });

  it("the build's defines and include folders follow what was found", () => {
    setEnv({ DENSETORCH_GLOO_ROOT: '' });
    assert.deepEqual(nativeConfig.gloo(), { found: false, reason: 'not found at build time' });
    setEnv({ DENSETORCH_GLOO_ROOT: FAKE_GLOO });
    assert.deepEqual(nativeConfig.gloo(), { found: true, includeDir: FAKE_GLOO });
    const stamp = stamps.currentStamp(LT, { builder: 'node-gyp', unity: 2, gloo: FAKE_GLOO });
    assert.equal(stamp.configuration.gloo, FAKE_GLOO);
    assert.notDeepEqual(stamps.currentStamp(LT, { builder: 'node-gyp', unity: 2 }).configuration, stamp.configuration);
  });

  it("fetches Debian's libgloo-dev into an empty cache with apt-get download and dpkg -x (nothing installed)", function () {
    this.timeout(180000);
    const probe = spawnSync('apt-get', ['--version'], { stdio: 'ignore' });
    if (probe.error || probe.status !== 0) {
      console.log('      skipped: no apt-get on this machine');
      this.skip();
    }
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-gloo-cache-'));
    try {
      setEnv({ DENSETORCH_CACHE: cache });
      const r = gloo.fetchGloo(() => undefined);
      if (!r.found && /apt-get download libgloo-dev failed/.test(r.reason)) {
        console.log(`      skipped: ${r.reason}`);
        this.skip();
      }
      assert.equal(r.found, true, r.reason);
      assert.equal(r.includeDir, path.join(cache, 'gloo', 'usr', 'include'));
      assert.ok(fs.existsSync(path.join(r.includeDir, 'gloo', 'allreduce_ring.h')));
      assert.deepEqual(fs.readdirSync(cache), ['gloo']); // no staging folder left behind
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });
});

describe('install', () => {
  it('a second `node scripts/install.js` compiles nothing and leaves the built addon untouched', function () {
    this.timeout(60000);
    const out = path.join(ROOT, 'build', 'Release');
    const addon = path.join(out, 'densetorch.node');
    if (!stamps.readStamp(out)) {
      console.log('      (skipped: build/Release has no addon built by scripts/build-native.js)');
      this.skip();
    }
    const before = fs.statSync(addon);
    // A compiler that always fails: any compile attempt would fail the install.
    const env = { ...process.env, DENSETORCH_BUILD_FROM_SOURCE: '1', CXX: 'false', CC: 'false' };
    delete env.DENSETORCH_FORCE_BUILD;
    const r = spawnSync(process.execPath, ['scripts/install.js'], { cwd: ROOT, env, encoding: 'utf8', timeout: 60000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /densetorch\.node is up to date \(same sources, node-addon-api [\d.]+ and LibTorch [^)]+\); nothing to build/);
    assert.doesNotMatch(r.stdout, /building the addon|CXX\(target\)/);
    const after = fs.statSync(addon);
    assert.equal(after.ino, before.ino);
    assert.equal(after.mtimeMs, before.mtimeMs);
    assert.equal(after.size, before.size);
  });
});
