#!/usr/bin/env node
// Prints build settings for binding.gyp (one query per call) and CMakeLists.txt (`cmake`: all of
// them, and the build record, as one CMake script, so LibTorch is looked for once): the native
// sources and where LibTorch is. Usage: node scripts/native-config.js QUERY
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const USAGE = 'sources|include|libdir|libs|cmake-prefix|version|cmake';

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
 * The text of `libtorch.json`, written beside a built addon: the LibTorch it was built against,
 * which the loader (lib/native.ts) requires at run time.
 */
function recordJson(lt) {
  return JSON.stringify({ version: lt.version, root: lt.root, source: lt.source, cuda: lt.cuda }, null, 2) + '\n';
}

/** Writes `libtorch.json` into the addon folder `dir`. */
function writeRecord(dir, lt) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'libtorch.json'), recordJson(lt));
}

/** A CMake quoted argument holding `value`. */
function cmakeQuoted(value) {
  return `"${value.replace(/[\\"$]/g, (c) => `\\${c}`)}"`;
}

/** A CMake script setting TORCH_VERSION, TORCH_INCLUDE_DIRS, TORCH_LIBRARY_DIR, TORCH_LIBRARIES and TORCH_RECORD. */
function cmakeSettings(lt) {
  const vars = {
    TORCH_VERSION: lt.version,
    TORCH_INCLUDE_DIRS: lt.includeDirs.join(';'),
    TORCH_LIBRARY_DIR: lt.libDir,
    TORCH_LIBRARIES: libNames(lt).map((n) => path.join(lt.libDir, `lib${n}.so`)).join(';'),
    TORCH_RECORD: recordJson(lt),
  };
  return Object.entries(vars).map(([name, value]) => `set(${name} ${cmakeQuoted(value)})`).join('\n');
}

function main(what) {
  switch (what) {
    case 'sources': console.log(sources().join(' ')); break;
    case 'include': console.log(libtorch().includeDirs.join(' ')); break;
    case 'libdir': console.log(libtorch().libDir); break;
    case 'libs': console.log(libNames(libtorch()).map((n) => `-l${n}`).join(' ')); break;
    case 'cmake-prefix': console.log(libtorch().cmakePrefix); break;
    case 'version': console.log(libtorch().version); break;
    case 'cmake': console.log(cmakeSettings(libtorch())); break;
    default:
      console.error(`usage: node scripts/native-config.js ${USAGE}`);
      process.exit(2);
  }
}

module.exports = { writeRecord };

if (require.main === module) {
  try {
    main(process.argv[2]);
  } catch (err) {
    console.error(`densetorch: ${err.message}`);
    process.exit(1);
  }
}
