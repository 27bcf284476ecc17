#!/usr/bin/env node
// Builds the addon from native/ against LibTorch (fetching the pinned LibTorch when none is
// found). node-gyp by default; DENSETORCH_BUILDER=cmake-js for the CMake path.
// Records which LibTorch it was built against in build/Release/libtorch.json.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { writeRecord } = require('./native-config.js');

const root = path.resolve(__dirname, '..');

function which(cmd) {
  const dirs = (process.env.PATH || '').split(path.delimiter);
  return dirs.some((d) => d && fs.existsSync(path.join(d, cmd)));
}

function main() {
  const finder = require('../dist/libtorch.js');
  const started = Date.now();
  const lt = finder.findLibTorch({ fetch: true, log: (m) => console.log(m) });
  console.log(`densetorch: using LibTorch ${lt.version} from ${lt.source} (${lt.root})${lt.cuda ? ' with CUDA' : ''}`);

  const env = { ...process.env, DENSETORCH_LIBTORCH_ROOT: lt.root };
  if (!env.CXX && which('ccache')) {
    env.CXX = 'ccache g++';
    env.CC = 'ccache gcc';
  }
  const jobs = String(Math.max(1, os.availableParallelism ? os.availableParallelism() : os.cpus().length));
  env.JOBS = env.JOBS || jobs;
  // Use the local Node headers when npm has not named a nodedir (no download needed).
  const prefix = path.dirname(path.dirname(process.execPath));
  const nodedirArgs = !env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include', 'node', 'common.gypi'))
    ? [`--nodedir=${prefix}`] : [];

  const builder = env.DENSETORCH_BUILDER || 'node-gyp';
  let cmd;
  if (builder === 'cmake-js') {
    const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
    cmd = [process.execPath, cmakeJs, 'compile', '--parallel', jobs];
  } else if (builder === 'node-gyp') {
    const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
    cmd = [process.execPath, nodeGyp, 'rebuild', '--jobs', jobs, ...nodedirArgs];
  } else {
    throw new Error(`DENSETORCH_BUILDER must be 'node-gyp' or 'cmake-js', got '${builder}'`);
  }
  console.log(`densetorch: building the addon with ${builder} (${jobs} jobs)`);
  const result = spawnSync(cmd[0], cmd.slice(1), { cwd: root, env, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`${builder} failed with exit code ${result.status}`);

  const out = path.join(root, 'build', 'Release');
  writeRecord(out, lt);
  console.log(`densetorch: addon built in ${((Date.now() - started) / 1000).toFixed(1)} s -> ${path.relative(root, out)}/densetorch.node`);
}

try {
  main();
} catch (err) {
  console.error(`densetorch: ${err.message}`);
  process.exit(1);
}
