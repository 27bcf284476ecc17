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
  const sources = [main, ...fs.readdirSync(__dirname).filter((f) => /\.(h|cpp|inc)$/.test(f)).map((f) => path.join(__dirname, f))];
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

/** Runs bench/native/roofline with `args`; the JSON line it prints. */
function roofline(args) {
  const out = execFileSync(benchTool('roofline'), args.map(String), { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop());
}

/** The roofline program's arguments for a model (its `config`) on size x size images after `command threads`. */
function modelArgs(command, threads, config, size, batch, backward, reps) {
  return [command, threads, size, size, batch, backward ? 1 : 0, reps, config.growthRate, config.blockConfig.join(','),
    config.numInitFeatures, config.bnSize, config.compression, config.numClasses, config.inChannels, config.stem];
}

/** The FMA peak of `threads` threads (register-only FMAs, fastest of 5 runs): { gflops, isa }. */
function fmaPeak(threads) {
  return roofline(['peak', threads, 0.2, 5]);
}

/** Forward FLOPs per image (2 per multiply-add of every convolution and the classifier) of a model's `config`. */
function forwardFlops(config, size) {
  return roofline(modelArgs('flops', 1, config, size, 1, false, 1)).forwardFlopsPerImage;
}

module.exports = { benchTool, roofline, modelArgs, fmaPeak, forwardFlops };
