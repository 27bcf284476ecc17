'use strict';
// Shared test helpers (no shared state).
const { spawn, spawnSync } = require('node:child_process');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

/** Runs a Node script in a child process (so an abort is seen as a failed exit, not a dead runner). */
function runNode(script, { env = {}, timeout = 120000 } = {}) {
  const result = spawnSync(process.execPath, ['--expose-gc', '-e', script], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout,
  });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Runs a Node script file as a child and watches its output: a child that prints nothing for
 * `stallMs` is killed and reported as stalled (a hung process cannot fire its own watchdog).
 * Resolves with { status, signal, stalled, stdout, stderr }.
 */
function runWatched(file, args = [], { stallMs = 10000, env = {} } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let stalled = false;
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        stalled = true;
        child.kill('SIGKILL');
      }, stallMs);
    };
    arm();
    child.stdout.on('data', (d) => {
      stdout += d;
      arm();
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (status, signal) => {
      clearTimeout(watchdog);
      resolve({ status, signal, stalled, stdout, stderr });
    });
  });
}

/** Deterministic float32 images [n, c, h, w] in [-0.5, 0.5). */
function randomImages(n, c, h, w, seed = 1) {
  // Required here, not at the top: helpers is also used by tests that must not load the addon first.
  const dt = require('..');
  let s = seed;
  const data = new Float32Array(n * c * h * w).map(() => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
  return dt.tensor(data, [n, c, h, w]);
}

/** The largest absolute difference between two tensors of the same size. */
function maxAbsDiff(a, b) {
  const x = a.toArray();
  const y = b.toArray();
  if (x.length !== y.length) throw new Error(`sizes differ: ${x.length} vs ${y.length}`);
  let d = 0;
  for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(Number(x[i]) - Number(y[i])));
  return d;
}

/** Resident set size in MiB. */
function rssMiB() {
  return process.memoryUsage().rss / (1024 * 1024);
}

/** Forces full garbage collections (needs --expose-gc) and lets finalizers run. */
async function collectGarbage(rounds = 4) {
  for (let i = 0; i < rounds; i++) {
    global.gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * Under AddressSanitizer (npm run test:asan) freed memory sits in ASan's quarantine, so RSS bounds
 * do not apply: the leak tests print their figures and skip their assertion there.
 */
const UNDER_SANITIZER = process.env.DENSETORCH_SANITIZER === 'address';

/** Asserts `mib` < `limit` unless running under a sanitizer. */
function assertBoundedGrowth(mib, limit) {
  if (UNDER_SANITIZER) return;
  if (!(mib < limit)) throw new Error(`RSS grew by ${mib.toFixed(1)} MB (bound ${limit} MB)`);
}

/** Starts `densetorch serve` on a free port; resolves with the child, its URL and its output so far. */
function startServer(file, extra = []) {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'serve', file, '--port', '0', ...extra], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { text: '' };
  child.stdout.on('data', (d) => { output.text += d; });
  child.stderr.on('data', (d) => { output.text += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output.text}`)), 60000);
    child.stdout.on('data', () => {
      const match = /serving .* on (http:\/\/[\d.]+:\d+)/.exec(output.text);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1], output });
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}:\n${output.text}`)));
  });
}

module.exports = { startServer, randomImages, maxAbsDiff, ROOT, runNode, runWatched, rssMiB, collectGarbage, assertBoundedGrowth, UNDER_SANITIZER };
