#!/usr/bin/env node
// Prints build settings for binding.gyp and CMakeLists.txt: the native sources and where
// LibTorch is. Usage: node scripts/native-config.js sources|include|libdir|libs|cmake-prefix|version
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function sources() {
  const dirs = [['native/core', '.cpp'], ['native/bindings', '.cc']];
  return dirs.flatMap(([dir, ext]) =>
    fs.readdirSync(path.join(root, dir)).filter((f) => f.endsWith(ext)).sort().map((f) => `${dir}/${f}`));
}

function libtorch() {
  let finder;
  try {
    finder = require('../dist/libtorch.js');
  } catch (err) {
    throw new Error('dist/libtorch.js is missing: run `npm run build:ts` before building the addon');
  }
  const pinned = process.env.DENSETORCH_LIBTORCH_ROOT;
  if (pinned) {
    const found = finder.inspectLibTorch(pinned, 'env');
    if (!found) throw new Error(`DENSETORCH_LIBTORCH_ROOT=${pinned} is not a LibTorch folder`);
    return found;
  }
  return finder.findLibTorch({ fetch: false });
}

const what = process.argv[2];
try {
  switch (what) {
    case 'sources': console.log(sources().join(' ')); break;
    case 'include': console.log(libtorch().includeDirs.join(' ')); break;
    case 'libdir': console.log(libtorch().libDir); break;
    case 'libs': {
      const lt = libtorch();
      const libs = ['-lc10', '-ltorch_cpu', '-ltorch'];
      if (lt.cuda) libs.push('-lc10_cuda', '-ltorch_cuda');
      console.log(libs.join(' '));
      break;
    }
    case 'cmake-prefix': console.log(libtorch().cmakePrefix); break;
    case 'version': console.log(libtorch().version); break;
    default:
      console.error('usage: node scripts/native-config.js sources|include|libdir|libs|cmake-prefix|version');
      process.exit(2);
  }
} catch (err) {
  console.error(`densetorch: ${err.message}`);
  process.exit(1);
}
