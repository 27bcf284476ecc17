'use strict';
const assert = require('node:assert/strict');
const { main } = require('../scripts/check-package.js');

describe('package', () => {
  it('installs from its npm tarball with --ignore-scripts (no compiler) and runs a DenseNet with the prebuilt binary', function () {
    this.timeout(15 * 60 * 1000); // builds the prebuilt binary first when there is none
    const r = main();
    console.log(`      tarball ${(r.size / 1e6).toFixed(2)} MB, install ${r.installSeconds.toFixed(1)} s, addon ${r.addon}`);
    assert.ok(r.size < 5e6, `tarball is ${r.size} bytes`);
    assert.match(r.addon, /prebuilds\/linux-x64\/densetorch\.node$/);
  });
});
