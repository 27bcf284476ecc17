'use strict';
// densetorch as a guest in someone else's Node process: no call sequence hangs it, waiting for
// the compute thread holds no thread of libuv's pool, loading it changes nothing process-wide,
// and memory a burst of work took goes back once it idles.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const dt = require('..');
const { ROOT, runNode, runWatched, randomImages } = require('./helpers');

const STALL_MS = 10000;

/** A DenseNet of two small blocks for 8x8 one-channel images, 4 classes. */
const tiny = () => new dt.DenseNet({ growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, stem: 'cifar', inChannels: 1, numClasses: 4 });

/** `n` random images [n, c, size, size] labelled 0..classes-1 in turn. */
function labelled(n, c, size, classes) {
  return dt.datasets.fromTensors(randomImages(n, c, size, size), dt.tensor(Array.from({ length: n }, (_, i) => i % classes), [n], { dtype: 'int64' }));
}

/** The summary a watched child printed last ("done {...}"), after checking it did not stall. */
function summaryOf(run, what) {
  assert.equal(run.stalled, false, `${what} stalled: no progress for ${STALL_MS / 1000} s (a hang); last output:\n${run.stdout.slice(-400)}\n${run.stderr}`);
  assert.equal(run.status, 0, `${what} failed:\n${run.stderr}`);
  const line = run.stdout.trim().split('\n').filter((l) => l.startsWith('done ')).pop();
  assert.ok(line, `${what} printed no summary:\n${run.stdout.slice(-400)}`);
  return JSON.parse(line.slice('done '.length));
}

describe('a good guest in the host process', () => {
  it('fit with onBatchEnd while a timer calls the synchronous forward on another model twice per tick finishes (reports never wait for the JS thread)', async function () {
    this.timeout(120000);
    const script = path.join(os.tmpdir(), `densetorch-forward-timer-${process.pid}.js`);
    fs.writeFileSync(script, `
      const dt = require(${JSON.stringify(ROOT)});
      const tiny = () => new dt.DenseNet({ growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, stem: 'cifar', inChannels: 1, numClasses: 4 });
      const a = tiny(), b = tiny();
      const n = 512;
      const images = dt.tensor(new Float32Array(n * 64).map((_, i) => Math.sin(i)), [n, 1, 8, 8]);
      const labels = dt.tensor(Array.from({ length: n }, (_, i) => i % 4), [n], { dtype: 'int64' });
      const x = dt.tensor(new Float32Array(64), [1, 1, 8, 8]);
      let ticks = 0, batches = 0;
      const timer = setInterval(() => { b.forward(x).dispose(); b.forward(x).dispose(); ticks++; }, 1);
      a.fit(dt.datasets.fromTensors(images, labels), { epochs: 2, batchSize: 8, onBatchEnd: () => { batches++; console.log('batch ' + batches); } })
        .then((h) => { clearInterval(timer); console.log('done ' + JSON.stringify({ epochs: h.epochs.length, batches, ticks })); });
    `);
    try {
      const summary = summaryOf(await runWatched(script, [], { stallMs: STALL_MS }), 'the forward-in-a-timer reproducer');
      assert.equal(summary.epochs, 2);
      assert.ok(summary.batches >= 1 && summary.batches <= 128, `${summary.batches} batch reports`);
      assert.ok(summary.ticks > 0, 'the timer kept firing during training');
      console.log(`      ${summary.batches} batch reports, ${summary.ticks} timer ticks of two forwards each`);
    } finally {
      fs.rmSync(script, { force: true });
    }
  });

  for (const seed of [1, 2, 3]) {
    it(`a seeded random interleaving of 300 calls on 6 models (fit with and without streamed data and aborts, forward, predict, evaluate, classify, save, serve().predict, train()/eval(), forward in timers) never stalls for 10 s; every call settles, only with documented refusals; every model still computes (seed ${seed})`, async function () {
      this.timeout(300000);
      const summary = summaryOf(await runWatched(path.join(__dirname, 'guest-stress.js'), [String(seed), '300'], { stallMs: STALL_MS }), `stress seed ${seed}`);
      assert.deepEqual(summary.unexpected, []);
      assert.equal(summary.settled, summary.started);
      assert.equal(summary.started, 300);
      assert.equal(summary.modelsAgree, summary.models, 'eval-mode predict equals eval-mode forward on every model afterwards');
      // Which calls ran and which were refused depends on scheduling (a slow machine or a sanitizer
      // build refuses more): printed, not asserted. That every model still computes is asserted above.
      const ran = Object.fromEntries(Object.entries(summary.byKind).map(([k, n]) => [k, n - (summary.refusedByKind[k] ?? 0)]));
      console.log(`      ran to completion: ${JSON.stringify(ran)}; refused (BusyError and the like): ${summary.expectedErrors}`);
    });
  }

  it('predictions waiting for the compute thread hold no thread of libuv\'s pool: fs.readFile (4 pool threads) finishes while 16 models\' predictions wait behind a training step', async function () {
    this.timeout(120000);
    dt.manualSeed(0);
    const trainer = dt.densenetCifar({ depth: 40, growthRate: 12, bottleneck: false, compression: 1, numClasses: 10 });
    const data = labelled(64, 3, 32, 10);
    const models = Array.from({ length: 16 }, tiny);
    const x = randomImages(1, 1, 8, 8);
    const file = path.join(os.tmpdir(), `densetorch-guest-${process.pid}.txt`);
    fs.writeFileSync(file, 'x');
    const checks = [];
    let stepMs = 0;
    try {
      await trainer.fit(data, {
        epochs: 1, batchSize: 16,
        onBatchEnd: (b) => {
          if (b.batch !== 1) return;
          stepMs = (16 / b.imagesPerSecond) * 1000;
          // The next step has just started (reports do not hold training back); 20 ms into it
          // the compute thread is surely inside the step, not at the boundary where it serves
          // the tasks queued meanwhile.
          checks.push(new Promise((resolve) => setTimeout(resolve, 20)).then(() => {
            const settled = { predictions: 0 };
            const predictions = models.map((m) => m.predict(x).then((t) => {
              settled.predictions += 1;
              t.dispose();
            }));
            const started = process.hrtime.bigint();
            const reads = Array.from({ length: 8 }, () => fs.promises.readFile(file).then(() => ({
              ms: Number(process.hrtime.bigint() - started) / 1e6, predictionsSettled: settled.predictions,
            })));
            return Promise.all([Promise.all(reads), Promise.all(predictions)]);
          }));
        },
      });
      const [[reads]] = await Promise.all(checks);
      console.log(`      training step ${stepMs.toFixed(0)} ms; 8 reads while 16 predictions waited: max ${Math.max(...reads.map((r) => r.ms)).toFixed(1)} ms; predictions settled before each read: ${reads.map((r) => r.predictionsSettled).join(',')}`);
      // With pool threads parked on the compute thread, at most four predictions would hold them
      // until the step ends; the reads would finish only after some predictions did.
      assert.ok(reads.every((r) => r.predictionsSettled === 0), 'every read finished before any prediction (none of them holds a pool thread)');
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it('require(\'densetorch\') calls no mallopt and changes no environment variable or caught signal', function () {
    this.timeout(120000);
    // An interposed mallopt records every call made in the process.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-mallopt-'));
    try {
      const source = path.join(dir, 'spy.c');
      const lib = path.join(dir, 'libspy.so');
      fs.writeFileSync(source, `
        #define _GNU_SOURCE
        #include <dlfcn.h>
        #include <stdio.h>
        int mallopt(int param, int value) {
          fprintf(stderr, "mallopt(%d, %d)\\n", param, value);
          int (*real)(int, int) = (int (*)(int, int))dlsym(RTLD_NEXT, "mallopt");
          return real(param, value);
        }`);
      const cc = spawnSync(process.env.CC || 'gcc', ['-shared', '-fPIC', '-O1', source, '-o', lib, '-ldl'], { encoding: 'utf8' });
      assert.equal(cc.status, 0, cc.stderr);
      const r = runNode(`
        const fs = require('node:fs');
        const caught = () => fs.readFileSync('/proc/self/status', 'utf8').match(/^SigCgt:\\s*(\\w+)/m)[1];
        const env = JSON.stringify(process.env), before = caught();
        const dt = require('.');
        dt.tensor([1, 2], [2]).toArray();
        console.log(JSON.stringify({ env: JSON.stringify(process.env) === env, before, after: caught() }));
      `, { env: { LD_PRELOAD: [process.env.LD_PRELOAD, lib].filter(Boolean).join(' ') } }); // after a sanitizer's runtime, if any
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(r.stderr.match(/mallopt\(.*\)/g) ?? [], [], 'no mallopt call');
      const out = JSON.parse(r.stdout.trim().split('\n').pop());
      assert.equal(out.env, true, 'process.env unchanged');
      assert.equal(out.after, out.before, 'the caught-signal mask (SigCgt) unchanged');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('memory a burst of predictions kept for reuse goes back to the system once the compute thread idles (BC-100, batch 128)', async function () {
    this.timeout(120000);
    if (process.env.DENSETORCH_SANITIZER) this.skip(); // a sanitizer's allocator keeps freed memory: RSS says nothing there
    const r = runNode(`
      const dt = require('.');
      const rss = () => process.memoryUsage().rss / 2 ** 20;
      (async () => {
        const m = dt.densenetCifar({ depth: 100, growthRate: 12 });
        const x = dt.tensor(new Float32Array(128 * 3 * 32 * 32).fill(0.1), [128, 3, 32, 32]);
        await m.predict(dt.tensor(new Float32Array(3 * 32 * 32), [1, 3, 32, 32]));
        const before = rss();
        const y = await m.predict(x, { batchSize: 128 });
        const peak = rss();
        await new Promise((resolve) => setTimeout(resolve, 1500));
        console.log(JSON.stringify({ before, peak, idle: rss(), shape: y.shape }));
      })();
    `);
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(r.stdout.trim().split('\n').pop());
    console.log(`      RSS before ${m.before.toFixed(0)} MiB, right after the burst ${m.peak.toFixed(0)} MiB, 1.5 s later ${m.idle.toFixed(0)} MiB`);
    assert.deepEqual(m.shape, [128, 10]);
    assert.ok(m.peak - m.before > 50, 'the burst took memory (else this test checks nothing)');
    assert.ok(m.idle - m.before < 0.25 * (m.peak - m.before), 'three quarters of it went back');
  });

  it('a callback that throws stops fit, which rejects with that error; the model stays usable', async () => {
    const model = tiny();
    const data = labelled(256, 1, 8, 4);
    const boom = new Error('logger failed');
    let calls = 0;
    await assert.rejects(model.fit(data, { epochs: 3, batchSize: 8, onBatchEnd: () => { calls += 1; throw boom; } }), (err) => err === boom);
    assert.equal(calls, 1, 'called once, then no more');
    await assert.rejects(model.fit(data, { epochs: 3, batchSize: 8, onEpochEnd: () => { throw new RangeError('stop here'); } }), { name: 'RangeError', message: 'stop here' });
    const h = await model.fit(data, { epochs: 1, batchSize: 64 });
    assert.equal(h.epochs.length, 1);
  });
});
