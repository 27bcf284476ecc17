// Shared by the benchmark scripts: command-line flags and writing results.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const args = process.argv.slice(2);

/** The value after `--name` on the command line, or `fallback`. */
function flag(name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
}

/** Whether `--name` is on the command line. */
function has(name) {
  return args.includes(`--${name}`);
}

/** The median of a list of numbers (the mean of the middle two for an even count). */
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The machine, for a result file: CPU model and core count. */
function machine() {
  return { cpu: (os.cpus()[0] || { model: 'unknown' }).model, cores: os.cpus().length };
}

/** Writes `result` to bench/results/<name>-<date>.json and says where. */
function writeResult(name, result) {
  const out = path.join(__dirname, 'results', `${name}-${new Date().toISOString().slice(0, 10)}.json`);
  fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`CPU: ${result.cpu ?? machine().cpu}; wrote ${path.relative(process.cwd(), out)}`);
}

module.exports = { flag, has, median, machine, writeResult };
