#!/usr/bin/env node
// Makes the prebuilt binary that ships in the npm package: prebuilds/<platform>-<arch>/densetorch.node,
// the name node-gyp-build looks for (an N-API addon: one binary for every Node release).
// It reuses build/Release/densetorch.node when that build is up to date (scripts/build-stamp.js)
// instead of compiling the addon again, and strips its symbols (--strip-all), as prebuildify --strip does.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed with exit code ${r.status}`);
}

function main() {
  run(process.execPath, [path.join(__dirname, 'build-native.js')]);
  const built = path.join(root, 'build', 'Release', 'densetorch.node');
  const stamp = JSON.parse(fs.readFileSync(path.join(root, 'build', 'Release', 'build-stamp.json'), 'utf8'));
  if (!stamp.configuration.gloo) {
    throw new Error("the prebuilt binary must include distributed training, but this build has no gloo headers (see the build's output: install libgloo-dev or set DENSETORCH_GLOO_INCLUDE)");
  }
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  fs.mkdirSync(dir, { recursive: true });
  const target = path.join(dir, 'densetorch.node');
  const temp = `${target}.tmp-${process.pid}`;
  fs.copyFileSync(built, temp);
  if (process.platform === 'linux' || process.platform === 'darwin') {
    run(process.env.PREBUILD_STRIP_BIN || 'strip', process.platform === 'darwin' ? [temp, '-Sx'] : [temp, '--strip-all']);
  }
  fs.renameSync(temp, target);
  console.log(`densetorch: prebuilt binary ${path.relative(root, target)} (${(fs.statSync(target).size / 1e6).toFixed(1)} MB)`);
}

try {
  main();
} catch (err) {
  console.error(`densetorch: ${err.message}`);
  process.exit(1);
}
