#!/usr/bin/env node
// npm's install step. A prebuilt binary for this platform is used as it is (nothing to do);
// otherwise the TypeScript is compiled if needed and the addon is built from native/.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const prebuildDir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const hasPrebuild = fs.existsSync(prebuildDir) && fs.readdirSync(prebuildDir).some((f) => f.endsWith('.node'));

if (hasPrebuild && !process.env.DENSETORCH_BUILD_FROM_SOURCE) {
  console.log(`densetorch: using the prebuilt binary in prebuilds/${process.platform}-${process.arch}`);
  process.exit(0);
}

function step(args) {
  const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status || 1);
}

if (!fs.existsSync(path.join(root, 'dist', 'libtorch.js'))) {
  let tsc;
  try {
    tsc = require.resolve('typescript/bin/tsc');
  } catch {
    console.error(`densetorch: no prebuilt binary for ${process.platform}-${process.arch} and no TypeScript to build from source.`);
    process.exit(1);
  }
  require('./build-ts.js').buildTs(tsc);
}
step([path.join(__dirname, 'build-native.js')]);
