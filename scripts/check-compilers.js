#!/usr/bin/env node
// Compiles the whole native/ tree with compilers other than the build's, to catch code only g++
// on x86-64 accepts before a platform that needs it is built:
//   clang    clang++ -c for x86-64: GNU-only pragmas and extensions (macOS builds with clang);
//   aarch64  aarch64-linux-gnu-g++ -c: x86-only code without a guard (Linux arm64, Apple silicon).
// Against LibTorch's and node-addon-api's headers (architecture-independent), with the build's
// definitions; the objects are thrown away (nothing is linked: there is no arm64 LibTorch here).
//
//   node scripts/check-compilers.js [clang] [aarch64]     (default: both)
//
// Prints one line per compiler and exits non-zero when one fails or is missing.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const config = require('./native-config.js');

const COMPILERS = {
  clang: { command: 'clang++', args: ['--target=x86_64-linux-gnu', '-fopenmp=libgomp', '-Werror=ignored-pragmas'], package: 'clang' },
  aarch64: { command: 'aarch64-linux-gnu-g++', args: ['-fopenmp'], package: 'g++-aarch64-linux-gnu' },
};

function exists(command) {
  return spawnSync(command, ['--version'], { encoding: 'utf8' }).status === 0;
}

/** node's and node-addon-api's header folders. */
function nodeIncludes() {
  const prefix = path.dirname(path.dirname(process.execPath));
  const node = path.join(prefix, 'include', 'node');
  if (!fs.existsSync(path.join(node, 'node_api.h'))) throw new Error(`node's headers are not in ${node}`);
  return [node, require('node-addon-api').include_dir.replace(/^"|"$/g, '')];
}

/** Compiles `unit` with `compiler`; resolves with { ok, seconds, output }. */
function compile(compiler, unit, includes, defines) {
  const args = [
    '-std=c++20', '-O1', '-fexceptions', '-frtti', '-fPIC', '-c', unit, '-o', `${unit}.o`, '-D_GLIBCXX_USE_CXX11_ABI=1',
    '-DNAPI_VERSION=8', '-DNAPI_CPP_EXCEPTIONS', '-DNODE_ADDON_API_DISABLE_DEPRECATED', ...defines.map((d) => `-D${d}`),
    ...includes.flatMap((d) => ['-isystem', d]), '-Werror=unknown-pragmas', ...compiler.args,
  ];
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(compiler.command, args, { cwd: root });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    child.on('close', (code) => resolve({ ok: code === 0, seconds: (Date.now() - started) / 1000, output }));
  });
}

/** Compiles every native source with `name` in unity units (one per core); returns the result. */
async function check(name) {
  const compiler = COMPILERS[name];
  if (!compiler) throw new Error(`unknown compiler '${name}': expected ${Object.keys(COMPILERS).join(' or ')}`);
  if (!exists(compiler.command)) return { name, ok: false, seconds: 0, output: `${compiler.command} is not installed (apt-get install ${compiler.package})` };
  const lt = config.libtorch();
  const g = config.gloo();
  const includes = [...lt.includeDirs, ...(g.found ? [g.includeDir] : []), ...nodeIncludes()];
  const defines = g.found ? ['DENSETORCH_DISTRIBUTED', 'USE_C10D_GLOO', 'USE_DISTRIBUTED'] : [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `densetorch-${name}-`));
  try {
    const groups = config.splitBySize(config.nativeSources(), Math.max(1, os.availableParallelism()));
    const units = groups.map((files, i) => {
      const unit = path.join(dir, `unit${i + 1}.cpp`);
      fs.writeFileSync(unit, files.map((f) => `#include "${path.join(root, f)}"`).join('\n') + '\n');
      return unit;
    });
    const started = Date.now();
    const results = await Promise.all(units.map((u) => compile(compiler, u, includes, defines)));
    const failed = results.filter((r) => !r.ok);
    return { name, ok: failed.length === 0, seconds: (Date.now() - started) / 1000, output: failed.map((r) => r.output).join('\n').slice(0, 20000) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(names) {
  const results = [];
  for (const name of names.length ? names : Object.keys(COMPILERS)) results.push(await check(name));
  return results;
}

if (require.main === module) {
  main(process.argv.slice(2)).then((results) => {
    for (const r of results) {
      console.log(`${r.name}: ${r.ok ? `native/ compiles (${r.seconds.toFixed(0)} s)` : 'FAILED'}`);
      if (!r.ok) console.log(r.output);
    }
    if (results.some((r) => !r.ok)) process.exit(1);
  }).catch((err) => {
    console.error(`check-compilers: ${err.message}`);
    process.exit(1);
  });
}

module.exports = { main, check };
