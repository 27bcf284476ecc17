#!/usr/bin/env node
// Prints build settings for binding.gyp and CMakeLists.txt: the native sources and where
// LibTorch is, and writes the build record. Usage: node scripts/native-config.js
// sources|include|libdir|libs|libpaths|cmake-prefix|version [--cmake], or record <addon folder>;
// --cmake separates list items with ';' (a CMake list) instead of spaces.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const USAGE = 'sources|include|libdir|libs|libpaths|cmake-prefix|version [--cmake] | record <addon folder>';

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

/** The LibTorch libraries the addon links, by name (c10, torch_cpu, ...). */
function libNames(lt) {
  return lt.cuda ? ['c10', 'torch_cpu', 'torch', 'c10_cuda', 'torch_cuda'] : ['c10', 'torch_cpu', 'torch'];
}

/**
 * Writes `libtorch.json` beside a built addon: the LibTorch it was built against, which the
 * loader (lib/native.ts) requires at run time.
 */
function writeRecord(dir, lt) {
  fs.mkdirSync(dir, { recursive: true });
  const record = { version: lt.version, root: lt.root, source: lt.source, cuda: lt.cuda };
  fs.writeFileSync(path.join(dir, 'libtorch.json'), JSON.stringify(record, null, 2) + '\n');
}

function main(what, sep) {
  switch (what) {
    case 'sources': console.log(sources().join(sep)); break;
    case 'include': console.log(libtorch().includeDirs.join(sep)); break;
    case 'libdir': console.log(libtorch().libDir); break;
    case 'libs': console.log(libNames(libtorch()).map((n) => `-l${n}`).join(sep)); break;
    case 'libpaths': {
      const lt = libtorch();
      console.log(libNames(lt).map((n) => path.join(lt.libDir, `lib${n}.so`)).join(sep));
      break;
    }
    case 'cmake-prefix': console.log(libtorch().cmakePrefix); break;
    case 'version': console.log(libtorch().version); break;
    case 'record': {
      const dir = process.argv[3];
      if (!dir) throw new Error('record needs the addon folder');
      writeRecord(dir, libtorch());
      break;
    }
    default:
      console.error(`usage: node scripts/native-config.js ${USAGE}`);
      process.exit(2);
  }
}

module.exports = { writeRecord };

if (require.main === module) {
  try {
    main(process.argv[2], process.argv.includes('--cmake') ? ';' : ' ');
  } catch (err) {
    console.error(`densetorch: ${err.message}`);
    process.exit(1);
  }
}
