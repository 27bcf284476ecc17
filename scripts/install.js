#!/usr/bin/env node
// npm's install step. When this platform's package (@densetorch/<platform>, an optional
// dependency) or a prebuilt binary in prebuilds/ is there, it is used as it is (nothing to do);
// otherwise the TypeScript is compiled if needed and the addon is built from native/.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const prebuildDir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const hasPrebuild = fs.existsSync(prebuildDir) && fs.readdirSync(prebuildDir).some((f) => f.endsWith('.node'));

/** This platform's addon package, when npm installed it (dist/ exists in a published package). */
function platformPackage() {
  const platform = path.join(root, 'dist', 'platform.js');
  if (!fs.existsSync(platform)) return undefined;
  const { addonPackage, platformTag } = require(platform);
  try {
    return path.dirname(require.resolve(`${addonPackage(platformTag())}/package.json`, { paths: [root] }));
  } catch {
    return undefined;
  }
}

if (!process.env.DENSETORCH_BUILD_FROM_SOURCE) {
  const pkg = platformPackage();
  if (pkg) {
    console.log(`densetorch: using the prebuilt binary of ${path.basename(path.dirname(pkg))}/${path.basename(pkg)}`);
    process.exit(0);
  }
  if (hasPrebuild) {
    console.log(`densetorch: using the prebuilt binary in prebuilds/${process.platform}-${process.arch}`);
    process.exit(0);
  }
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
