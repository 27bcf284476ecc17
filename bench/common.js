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

/**
 * A distribution-free confidence interval for the median of `xs` (at least `level`, default 95%):
 * the order statistics x(j) and x(n+1-j) with the largest j for which a Binomial(n, 1/2) count
 * falls below j with probability at most (1 - level) / 2. Undefined bounds when `xs` is too short
 * (fewer than 6 values for 95%).
 */
function medianInterval(xs, level = 0.95) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  let below = 0; // P(count < j), for j = 1, 2, ...
  let j = 0;
  let term = 0.5 ** n; // P(count = 0)
  for (let i = 0; i < n; i++) {
    if (below + term > (1 - level) / 2) break;
    below += term;
    j = i + 1;
    term = (term * (n - i)) / (i + 1);
  }
  return j >= 1 ? { low: s[j - 1], high: s[n - j] } : { low: undefined, high: undefined };
}

/** The p-th percentile (0-100) of ascending `sorted`: the smallest value with p% at or below it. */
function percentile(sorted, p) {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** The machine, for a result file: CPU model and core count. */
function machine() {
  return { cpu: (os.cpus()[0] || { model: 'unknown' }).model, cores: os.cpus().length };
}

/** Writes `result` to bench/results/<name>-<date>.json and says where. */
function writeResult(name, result) {
  // --tag NAME keeps a second result of the same benchmark and day apart (else it replaces the first).
  const tag = flag('tag', '');
  const out = path.join(__dirname, 'results', `${name}${tag ? `-${tag}` : ''}-${new Date().toISOString().slice(0, 10)}.json`);
  fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`CPU: ${result.cpu ?? machine().cpu}; wrote ${path.relative(process.cwd(), out)}`);
}

/**
 * One bench/densetorch_case.js case in a fresh process with extra environment variables; its JSON.
 */
function runCase(c, threads, env = {}) {
  const { spawnSync } = require('node:child_process');
  const r = spawnSync(process.execPath, [path.join(__dirname, 'densetorch_case.js'), JSON.stringify({ ...c, threads })],
    { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${c.name} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

/**
 * An A/B of two environments over `cases`: `pairs` pairs of fresh processes per case, alternating
 * which side runs first. Prints each pair and the median ratio a / b of images per second with a
 * distribution-free 95% interval; returns { [case name]: { rows, medianRatio, interval } }.
 */
function abCases(cases, { threads, pairs, a, b }) {
  const out = {};
  for (const c of cases) {
    const rows = [];
    for (let i = 0; i < pairs; i++) {
      const first = i % 2 === 0 ? a : b;
      const second = first === a ? b : a;
      const r1 = runCase(c, threads, first.env);
      const r2 = runCase(c, threads, second.env);
      const [ra, rb] = first === a ? [r1, r2] : [r2, r1];
      rows.push({ [a.name]: ra.imagesPerSecond, [b.name]: rb.imagesPerSecond, [`peakRss_${a.name}_MiB`]: ra.peakRssMiB, [`peakRss_${b.name}_MiB`]: rb.peakRssMiB });
      console.log(`${c.name}: ${a.name} ${ra.imagesPerSecond.toFixed(2)} img/s, ${b.name} ${rb.imagesPerSecond.toFixed(2)} img/s`);
    }
    const ratios = rows.map((r) => r[a.name] / r[b.name]);
    const interval = medianInterval(ratios);
    out[c.name] = { rows, medianRatio: median(ratios), interval };
    console.log(`${c.name}: ${a.name} / ${b.name} median ${median(ratios).toFixed(3)} (95% ${interval.low?.toFixed(3)} to ${interval.high?.toFixed(3)}), peak RSS ${median(rows.map((r) => r[`peakRss_${a.name}_MiB`])).toFixed(0)} vs ${median(rows.map((r) => r[`peakRss_${b.name}_MiB`])).toFixed(0)} MiB`);
  }
  return out;
}

module.exports = { flag, has, median, medianInterval, percentile, machine, writeResult, runCase, abCases };
