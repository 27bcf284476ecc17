// The build stamp: what a built addon was made from (hashes of the native sources and the build
// files, the node-addon-api release, the LibTorch it links, the build mode), written beside the
// addon after a successful build. A build whose stamp matches is up to date and is not redone;
// one whose configuration part matches is rebuilt incrementally (`node-gyp build`, which
// recompiles only what changed) instead of from scratch.
'use strict';
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const STAMP_NAME = 'build-stamp.json';

function hashFiles(files) {
  const hash = createHash('sha256');
  for (const file of files) {
    hash.update(`${file}\0`);
    hash.update(fs.readFileSync(path.join(root, file)));
    hash.update('\0');
  }
  return hash.digest('hex');
}

/** Every file under native/ (sources and headers), relative to the package root, sorted. */
function nativeFiles() {
  const out = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const rel = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else if (entry.isFile()) out.push(rel);
    }
  };
  walk('native');
  return out;
}

/**
 * The stamp a build made now would carry. `configuration` holds what `node-gyp configure` reads
 * (when it changes, the build starts from scratch); `sources` what make tracks itself.
 * `lt` is the LibTorch install (lib/libtorch.ts) the build links; `gloo` the include folder of
 * gloo's headers (lib/gloo.ts), or null when the distributed part is left out.
 */
function currentStamp(lt, { builder, unity, gloo = null }) {
  const napiPackage = JSON.parse(fs.readFileSync(require.resolve('node-addon-api/package.json'), 'utf8'));
  const { nativeSources } = require('./native-config.js');
  return {
    configuration: {
      builder,
      unity,
      libtorch: { version: lt.version, root: lt.root, cuda: lt.cuda },
      gloo,
      nodeAddonApi: napiPackage.version,
      platform: `${process.platform}-${process.arch}`,
      sourceList: nativeSources(),
      buildFiles: hashFiles(['binding.gyp', 'CMakeLists.txt', 'scripts/native-config.js']),
    },
    sources: hashFiles(nativeFiles()),
  };
}

/** The stamp of the addon built in `dir`, or undefined. Also undefined when the addon is gone. */
function readStamp(dir) {
  const file = path.join(dir, STAMP_NAME);
  if (!fs.existsSync(file) || !fs.existsSync(path.join(dir, 'densetorch.node'))) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

function writeStamp(dir, stamp) {
  fs.writeFileSync(path.join(dir, STAMP_NAME), `${JSON.stringify(stamp, null, 2)}\n`);
}

function removeStamp(dir) {
  fs.rmSync(path.join(dir, STAMP_NAME), { force: true });
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/** 'up-to-date' | 'incremental' | 'full': how much of a build in `dir` has to be redone. */
function buildNeeded(dir, stamp) {
  const old = readStamp(dir);
  if (!old) return 'full';
  if (!same(old.configuration, stamp.configuration)) return 'full';
  return old.sources === stamp.sources ? 'up-to-date' : 'incremental';
}

module.exports = { currentStamp, readStamp, writeStamp, removeStamp, buildNeeded, nativeFiles, STAMP_NAME };
