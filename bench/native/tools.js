'use strict';
// Builds the benchmarks' own C++ programs (bench/native/*_main.cpp) against the LibTorch the addon
// uses, into build/bench/, once per change of their sources.
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const nativeConfig = require('../../scripts/native-config.js');

const ROOT = path.resolve(__dirname, '..', '..');

/** The path of the built program `name` (bench/native/<name>_main.cpp), compiling it if needed. */
function benchTool(name) {
  const main = path.join(__dirname, `${name}_main.cpp`);
  const sources = [main, ...fs.readdirSync(__dirname).filter((f) => /\.(h|cpp)$/.test(f)).map((f) => path.join(__dirname, f))];
  const hash = crypto.createHash('sha256');
  for (const f of sources.sort()) hash.update(fs.readFileSync(f));
  const lt = nativeConfig.libtorch();
  hash.update(lt.libDir);
  const dir = path.join(ROOT, 'build', 'bench');
  const exe = path.join(dir, `${name}-${hash.digest('hex').slice(0, 12)}`);
  if (fs.existsSync(exe)) return exe;
  fs.mkdirSync(dir, { recursive: true });
  console.error(`bench: compiling ${path.relative(ROOT, main)} (once)`);
  execFileSync(process.env.CXX || 'g++', nativeConfig.programArgs(lt, [main, path.join(__dirname, `${name}.cpp`)], exe),
    { stdio: ['ignore', 'inherit', 'inherit'] });
  return exe;
}

module.exports = { benchTool };
