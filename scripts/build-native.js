#!/usr/bin/env node
// Builds the addon from native/ against LibTorch (fetching the pinned LibTorch when none is
// found). node-gyp by default; DENSETORCH_BUILDER=cmake-js for the CMake path.
// Records which LibTorch it was built against in build/Release/libtorch.json, and what it was
// built from in build/Release/build-stamp.json: when nothing changed since, it does nothing; when
// only sources changed, it rebuilds incrementally. DENSETORCH_FORCE_BUILD=1 always starts afresh.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { writeRecord, unityGroups } = require('./native-config.js');
const stamps = require('./build-stamp.js');

const root = path.resolve(__dirname, '..');

function which(cmd) {
  const dirs = (process.env.PATH || '').split(path.delimiter);
  return dirs.some((d) => d && fs.existsSync(path.join(d, cmd)));
}

function main() {
  // --per-file: one translation unit per source (see unityGroups in native-config.js), so that a
  // rebuild after editing one file recompiles only that file.
  if (process.argv.includes('--per-file')) process.env.DENSETORCH_UNITY = '0';
  const finder = require('../dist/libtorch.js');
  const started = Date.now();
  const lt = finder.findLibTorch({ fetch: true, log: (m) => console.log(m) });
  console.log(`densetorch: using LibTorch ${lt.version} from ${lt.source} (${lt.root})${lt.cuda ? ' with CUDA' : ''}`);
  const gloo = require('../dist/gloo.js').findGloo({ fetch: true, log: (m) => console.log(m) });
  console.log(gloo.found
    ? `densetorch: distributed training (c10d, Gloo) on, with gloo's headers from ${gloo.source} (${gloo.includeDir})`
    : `densetorch: distributed training off: ${gloo.reason}`);

  const builder = process.env.DENSETORCH_BUILDER || 'node-gyp';
  if (builder !== 'node-gyp' && builder !== 'cmake-js') throw new Error(`DENSETORCH_BUILDER must be 'node-gyp' or 'cmake-js', got '${builder}'`);
  const out = path.join(root, 'build', 'Release');
  const jobs = String(Math.max(1, os.availableParallelism ? os.availableParallelism() : os.cpus().length));
  const stamp = stamps.currentStamp(lt, {
    builder,
    unity: builder === 'node-gyp' ? unityGroups({ JOBS: jobs, ...process.env }) : null,
    gloo: gloo.found ? gloo.includeDir : null,
  });
  const need = process.env.DENSETORCH_FORCE_BUILD ? 'full' : stamps.buildNeeded(out, stamp);
  if (need === 'up-to-date') {
    console.log(`densetorch: ${path.relative(root, out)}/densetorch.node is up to date (same sources, node-addon-api ${stamp.configuration.nodeAddonApi} and LibTorch ${lt.version}); nothing to build`);
    return;
  }
  // A build that fails half-way must not leave a stamp that vouches for the old addon.
  stamps.removeStamp(out);

  const env = { ...process.env, DENSETORCH_LIBTORCH_ROOT: lt.root, DENSETORCH_GLOO_ROOT: gloo.found ? gloo.includeDir : '' };
  if (!env.CXX && which('ccache')) {
    env.CXX = 'ccache g++';
    env.CC = 'ccache gcc';
  }
  env.JOBS = env.JOBS || jobs;
  // Use the local Node headers when npm has not named a nodedir (no download needed).
  const prefix = path.dirname(path.dirname(process.execPath));
  const nodedirArgs = !env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include', 'node', 'common.gypi'))
    ? [`--nodedir=${prefix}`] : [];

  const incremental = need === 'incremental';
  let cmd;
  if (builder === 'cmake-js') {
    const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
    cmd = [process.execPath, cmakeJs, incremental ? 'compile' : 'rebuild', '--parallel', jobs];
  } else {
    const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
    const configured = fs.existsSync(path.join(root, 'build', 'Makefile'));
    cmd = [process.execPath, nodeGyp, incremental && configured ? 'build' : 'rebuild', '--jobs', jobs, ...nodedirArgs];
  }
  const units = stamp.configuration.unity ? `${stamp.configuration.unity} unity translation units` : 'one translation unit per source';
  console.log(`densetorch: ${incremental ? 'rebuilding what changed' : 'building the addon'} with ${builder} ${cmd[2]} (${jobs} jobs${builder === 'node-gyp' ? `, ${units}` : ''})`);
  const compileStarted = Date.now();
  const result = spawnSync(cmd[0], cmd.slice(1), { cwd: root, env, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`${builder} failed with exit code ${result.status}`);
  const compileSeconds = (Date.now() - compileStarted) / 1000;

  writeRecord(out, lt);
  stamps.writeStamp(out, stamp);
  console.log(`densetorch: compiled in ${compileSeconds.toFixed(1)} s`);
  console.log(`densetorch: addon built in ${((Date.now() - started) / 1000).toFixed(1)} s -> ${path.relative(root, out)}/densetorch.node`);
}

try {
  main();
} catch (err) {
  console.error(`densetorch: ${err.message}`);
  process.exit(1);
}
