'use strict';
// Installed from a registry as users get it: verdaccio on loopback, the release published there,
// `npm install densetorch` with scripts blocked and no compiler, Python or LibTorch on the machine.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { main } = require('../scripts/check-package.js');
const { checkManifest } = require('../scripts/check-manifest.js');
const { PLATFORMS, platformTag } = require('../dist/platform.js');

const ROOT = path.resolve(__dirname, '..');

describe('package', () => {
  it('the manifest asks for its binaries: every released platform\'s addon and LibTorch packages pinned to its own version, no prebuilds/ of its own (npm pack refuses otherwise)', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    assert.doesNotThrow(() => checkManifest(manifest, PLATFORMS));
    const unpinned = { ...manifest, optionalDependencies: { ...manifest.optionalDependencies, '@densetorch/linux-x64-gnu': '^0.1.0' } };
    assert.throws(() => checkManifest(unpinned, PLATFORMS), /"@densetorch\/linux-x64-gnu"\] is '\^0\.1\.0', expected '0\.1\.0'/);
    const { optionalDependencies, ...without } = manifest;
    assert.ok(optionalDependencies);
    assert.throws(() => checkManifest(without, PLATFORMS), /"@densetorch\/libtorch-linux-x64-gnu"\] is missing/);
    assert.throws(() => checkManifest({ ...manifest, files: [...manifest.files, 'prebuilds/'] }, PLATFORMS), /files lists prebuilds/);
    for (const p of PLATFORMS) {
      const npmManifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'npm', p.tag, 'package.json'), 'utf8'));
      assert.equal(npmManifest.name, `@densetorch/${p.tag}`);
      assert.ok(npmManifest.os.length === 1 && npmManifest.cpu.length === 1, `${p.tag}: os and cpu`);
      if (p.tag.includes('linux')) assert.deepEqual(npmManifest.libc, ['glibc']);
    }
  });

  it('released through verdaccio, installs with scripts blocked, no compiler, no Python and no other LibTorch: only this platform\'s packages, and a forward pass', async function () {
    this.timeout(15 * 60 * 1000);
    if (platformTag() !== 'linux-x64-gnu') {
      console.log(`      (skipped: the release is built and tested on linux-x64-gnu; this is ${platformTag()})`);
      this.skip();
    }
    const r = await main();
    for (const s of r.sizes) console.log(`      ${s.name}: ${s.packedMB} MB packed, ${s.unpackedMB} MB unpacked`);
    console.log(`      release ${r.releaseSeconds.toFixed(0)} s; npm install densetorch ${r.installSeconds.toFixed(1)} s; installed ${r.scoped.join(', ')}`);
    assert.deepEqual(r.scoped, ['libtorch-linux-x64-gnu', 'linux-x64-gnu'], 'npm installed only the packages of this platform');
    assert.deepEqual(r.others, ['@densetorch/linux-arm64-gnu', '@densetorch/darwin-arm64']);
    assert.deepEqual(r.forward.shape, [2, 10]);
    assert.match(r.addon, /node_modules\/@densetorch\/linux-x64-gnu\/prebuilds\/linux-x64\/densetorch\.napi\.glibc\.node$/);
    assert.equal(r.libtorch[1], 'package', r.doctor);
    const main_ = r.sizes.find((s) => s.name === 'densetorch');
    assert.ok(main_ && main_.packedMB < 5, `the main package is ${main_?.packedMB} MB`);
  });
});
