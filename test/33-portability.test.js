'use strict';
// The native code beyond g++ on x86-64: the whole native/ tree compiles with clang (GNU-only
// code paths a macOS build would hit) and for aarch64 (x86-only code without a guard), and the
// platform tag names the per-platform packages.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { check } = require('../scripts/check-compilers.js');
const { platformTag, PLATFORMS } = require('../dist/platform.js');

function has(command) {
  return spawnSync(command, ['--version']).status === 0;
}

describe('portability', function () {
  this.timeout(10 * 60 * 1000);

  for (const [name, command, pkg] of [['clang', 'clang++', 'clang'], ['aarch64', 'aarch64-linux-gnu-g++', 'g++-aarch64-linux-gnu']]) {
    it(`native/ compiles with ${name === 'clang' ? 'clang (x86-64)' : 'g++ for aarch64'}`, async function () {
      if (!has(command)) {
        console.log(`      (skipped: ${command} is not installed; apt-get install ${pkg})`);
        this.skip();
      }
      const r = await check(name);
      assert.ok(r.ok, r.output);
      console.log(`      ${name}: every native source compiled in ${r.seconds.toFixed(0)} s`);
    });
  }

  it('names this machine\'s platform as the package folders do', () => {
    if (process.platform === 'linux') assert.match(platformTag('linux', 'x64'), /^linux-x64-(gnu|musl)$/);
    assert.equal(platformTag('darwin', 'arm64'), 'darwin-arm64');
    assert.equal(platformTag('win32', 'x64'), 'win32-x64-msvc');
    assert.deepEqual(PLATFORMS.filter((p) => p.status === 'released').map((p) => p.tag), ['linux-x64-gnu']);
  });
});
