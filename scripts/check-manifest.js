#!/usr/bin/env node
// The main package's manifest, checked before every pack (npm's prepack) and release: it must ask
// for its binaries. optionalDependencies names the addon package and the LibTorch package of every
// released platform (lib/platform.ts), each pinned to exactly this version, and the package ships
// no binary of its own (no prebuilds/ in `files`), so no tarball can install without the binary
// of a released platform or with one from another version.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

/** Throws naming what is wrong; returns the pinned optional dependencies. */
function checkManifest(manifest, platforms) {
  const released = platforms.filter((p) => p.status === 'released').map((p) => p.tag);
  const optional = manifest.optionalDependencies || {};
  const problems = [];
  for (const tag of released) {
    for (const name of [`@densetorch/${tag}`, `@densetorch/libtorch-${tag}`]) {
      if (optional[name] !== manifest.version) problems.push(`optionalDependencies["${name}"] is ${optional[name] === undefined ? 'missing' : `'${optional[name]}'`}, expected '${manifest.version}' (the package's own version)`);
    }
  }
  if ((manifest.files || []).some((f) => f.replace(/\/$/, '') === 'prebuilds')) problems.push("files lists prebuilds/: binaries ship in the platform packages (npm/), not in the main package");
  if (problems.length) throw new Error(`package.json cannot be packed: ${problems.join('; ')}`);
  return optional;
}

if (require.main === module) {
  try {
    const root = path.resolve(__dirname, '..');
    const { PLATFORMS } = require('../dist/platform.js');
    checkManifest(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')), PLATFORMS);
  } catch (err) {
    console.error(`densetorch: ${err.message}`);
    process.exit(1);
  }
}

module.exports = { checkManifest };
