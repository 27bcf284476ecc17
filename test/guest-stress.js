'use strict';
// A host process that uses densetorch the way a server that also trains does: several models,
// a seeded random interleaving of every public call (fit, forward, predict, evaluate, classify,
// save, serve().predict, train()/eval(), aborts, timers that call forward), run as a child of
// test/23-good-guest.test.js. It prints one line per settled operation ("progress N"), so the
// parent sees a stall (no line for 10 s) as a hang, and ends with "done <json summary>".
//   node test/guest-stress.js <seed> <operations>
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const dt = require('..');

const seed = Number(process.argv[2] ?? 1);
const operations = Number(process.argv[3] ?? 300);

let state = seed >>> 0 || 1;
/** xorshift32: the interleaving is the seed's. */
function random() {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state / 4294967296;
}
const pick = (list) => list[Math.floor(random() * list.length)];

dt.manualSeed(seed);
const tiny = () => new dt.DenseNet({ growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, stem: 'cifar', inChannels: 1, numClasses: 4 });
const models = Array.from({ length: 6 }, tiny);

function images(n) {
  const data = new Float32Array(n * 64);
  for (let i = 0; i < data.length; i++) data[i] = random() - 0.5;
  return dt.tensor(data, [n, 1, 8, 8]);
}
function dataset(n) {
  return dt.datasets.fromTensors(images(n), dt.tensor(Array.from({ length: n }, (_, i) => i % 4), [n], { dtype: 'int64' }));
}
/** Streamed batches decoded "on the JS thread", as an image folder is. */
function streamed(n) {
  return dt.datasets.fromAsyncIterable(async function* () {
    for (let b = 0; b < n / 8; b++) {
      await new Promise((resolve) => setImmediate(resolve));
      yield { images: images(8), labels: dt.tensor(Array.from({ length: 8 }, (_, i) => i % 4), [8], { dtype: 'int64' }) };
    }
  }, { length: n });
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-guest-'));
// Errors a caller is told to expect when calls collide; anything else fails the run.
const EXPECTED = new Set(['BusyError', 'AbortError', 'RequestAbortedError', 'QueueFullError', 'PredictorClosedError']);
const counts = { started: 0, settled: 0, expectedErrors: 0, busyTicks: 0, byKind: {}, refusedByKind: {} };
const unexpected = [];
const pending = new Set();

function settle(kind, err) {
  counts.settled += 1;
  counts.byKind[kind] = (counts.byKind[kind] ?? 0) + 1;
  if (err) {
    if (EXPECTED.has(err.name)) {
      counts.expectedErrors += 1;
      counts.refusedByKind[kind] = (counts.refusedByKind[kind] ?? 0) + 1;
    }
    else unexpected.push(`${kind}: ${err.name}: ${err.message}`);
  }
  console.log(`progress ${counts.settled}`);
}

// Calls not yet settled, per model: fit and the timers prefer an idle model (a caller that
// knows its own work), so that they run, not only collide.
const busy = new Map();

/** Runs one operation; a synchronous one settles at once, an async one when its promise does. */
function run(kind, m, fn) {
  counts.started += 1;
  busy.set(m, (busy.get(m) ?? 0) + 1);
  const done = () => busy.set(m, busy.get(m) - 1);
  let result;
  try {
    result = fn();
  } catch (err) {
    done();
    settle(kind, err);
    return;
  }
  if (result && typeof result.then === 'function') {
    const p = result.then(() => settle(kind), (err) => settle(kind, err)).finally(done);
    pending.add(p);
    p.finally(() => pending.delete(p));
  } else {
    done();
    settle(kind);
  }
}

function pickModel(kind) {
  const idle = models.filter((m) => !busy.get(m));
  return (kind === 'fit' || kind === 'timer') && idle.length > 0 && random() < 0.8 ? pick(idle) : pick(models);
}

const servers = models.map((m) => m.serve({ maxBatch: 4, maxDelayMs: 2 }));
const timers = [];

const ACTIONS = {
  fit: (m) => {
    const controller = new AbortController();
    if (random() < 0.3) setTimeout(() => controller.abort(), Math.floor(random() * 30));
    return m.fit(random() < 0.3 ? streamed(32) : dataset(32), {
      epochs: 1 + Math.floor(random() * 2), batchSize: 8, signal: controller.signal,
      // A callback that itself calls forward on another model: the reports arrive without the
      // compute thread waiting for them.
      onBatchEnd: random() < 0.5 ? () => pick(models).forward(images(1)).dispose() : undefined,
    });
  },
  forward: (m) => m.forward(images(2)).dispose(),
  predict: (m) => {
    const controller = new AbortController();
    if (random() < 0.2) controller.abort();
    return m.predict(images(1 + Math.floor(random() * 4)), { signal: controller.signal }).then((t) => t.dispose());
  },
  evaluate: (m) => m.evaluate(random() < 0.3 ? streamed(16) : dataset(16), { batchSize: 8 }),
  classify: (m) => m.classify(images(2), { topK: 2 }),
  save: (m) => m.save(path.join(dir, `m${models.indexOf(m)}.safetensors`)),
  serve: (m) => servers[models.indexOf(m)].predict(images(1)).then((t) => t.dispose()),
  mode: (m) => (random() < 0.5 ? m.train() : m.eval()),
  // A timer that calls forward synchronously twice per tick for a while (a health probe; a tick
  // that finds the model busy answers so and goes on).
  timer: (m) => {
    let ticks = 3 + Math.floor(random() * 5);
    return new Promise((resolve, reject) => {
      const t = setInterval(() => {
        try {
          m.forward(images(1)).dispose();
          m.forward(images(1)).dispose();
        } catch (err) {
          if (err.name !== 'BusyError') {
            clearInterval(t);
            reject(err);
            return;
          }
          counts.busyTicks += 1;
        }
        if (--ticks === 0) {
          clearInterval(t);
          resolve();
        }
      }, 1);
      timers.push(t);
    });
  },
};
const KINDS = Object.keys(ACTIONS);

async function main() {
  for (let i = 0; i < operations; i++) {
    const kind = pick(KINDS);
    const m = pickModel(kind);
    run(kind, m, () => ACTIONS[kind](m));
    // Sometimes let work progress, sometimes pile calls up.
    const pause = random();
    if (pause < 0.6) await new Promise((resolve) => setImmediate(resolve));
    else if (pause < 0.8) await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 20)));
  }
  while (pending.size > 0) await Promise.allSettled([...pending]);
  await Promise.all(servers.map((s) => s.close()));
  // Every model still works: eval-mode predict equals eval-mode forward.
  const x = images(3);
  let agree = 0;
  for (const m of models) {
    m.eval();
    const a = (await m.predict(x)).toArray();
    const b = m.forward(x).toArray();
    if (a.every((v, i) => Math.abs(v - b[i]) <= 1e-5 * Math.max(1, Math.abs(v)))) agree += 1;
  }
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`done ${JSON.stringify({ ...counts, unexpected, modelsAgree: agree, models: models.length })}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
