'use strict';
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const dt = require('..');
const { ROOT, rssMiB, collectGarbage, assertBoundedGrowth } = require('./helpers');

const TINY = { growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, bnSize: 2, numClasses: 3, stem: 'cifar' };

function tmpdir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `densetorch-${tag}-`));
}

function smallData(n = 16, size = 16) {
  const images = dt.tensor(Float32Array.from({ length: n * 3 * size * size }, (_, i) => ((i * 7919) % 255) / 255), [n, 3, size, size]);
  return dt.datasets.fromTensors(images, dt.tensor(Array.from({ length: n }, (_, i) => i % 3), [n], { dtype: 'int64' }));
}

/** RSS growth (MiB) over `rounds` calls of `step`, measured after `warmup` calls. */
async function rssGrowth(step, rounds, warmup) {
  for (let i = 0; i < warmup; i++) await step(i);
  await collectGarbage();
  const before = rssMiB();
  for (let i = 0; i < rounds; i++) await step(i);
  await collectGarbage();
  return rssMiB() - before;
}

describe('leaks: RSS stays bounded', () => {
  it('1,000 forward passes (results disposed) and 1,000 more (results only dropped)', async () => {
    const model = new dt.DenseNet(TINY).eval();
    const x = dt.tensor(new Float32Array(8 * 3 * 32 * 32).fill(0.25), [8, 3, 32, 32]);
    const disposed = await rssGrowth(() => model.forward(x).dispose(), 1000, 50);
    const dropped = await rssGrowth((i) => { model.forward(x); if (i % 100 === 99) global.gc(); }, 1000, 50);
    console.log(`      RSS growth over 1,000 forward passes: ${disposed.toFixed(1)} MB (disposed), ${dropped.toFixed(1)} MB (dropped, GC)`);
    assertBoundedGrowth(disposed, 30);
    assertBoundedGrowth(dropped, 30);
  });

  it('20 short fits on one model, and 20 predict() calls', async () => {
    const model = new dt.DenseNet(TINY);
    const data = smallData();
    const fits = await rssGrowth(() => model.fit(data, { epochs: 2, batchSize: 8, validationData: data }), 20, 3);
    const x = dt.tensor(new Float32Array(16 * 3 * 16 * 16).fill(0.5), [16, 3, 16, 16]);
    const predicts = await rssGrowth(async () => (await model.predict(x, { batchSize: 4 })).dispose(), 20, 3);
    console.log(`      RSS growth over 20 fits: ${fits.toFixed(1)} MB; over 20 predict(): ${predicts.toFixed(1)} MB`);
    assertBoundedGrowth(fits, 30);
    assertBoundedGrowth(predicts, 30);
  });

  it('20 models built and dropped: their memory is freed after GC', async () => {
    const growth = await rssGrowth(() => { new dt.DenseNet({ ...TINY, growthRate: 32, numInitFeatures: 64 }).stateDict(); }, 20, 3);
    console.log(`      RSS growth over 20 dropped models: ${growth.toFixed(1)} MB`);
    assertBoundedGrowth(growth, 30);
  });
});

describe('concurrency', () => {
  it('while fit() runs: forward, predict, stateDict, loadStateDict, train/eval, save and a second fit are BusyErrors; all work after it', async () => {
    const model = new dt.DenseNet(TINY);
    const data = smallData(64);
    const sd = new dt.DenseNet(TINY).stateDict();
    const x = dt.tensor(new Float32Array(3 * 16 * 16), [1, 3, 16, 16]);
    const dir = tmpdir('busy');
    const running = model.fit(data, { epochs: 20, batchSize: 8 });
    const busy = { name: 'BusyError', message: /the model is busy with a running fit/ };
    assert.throws(() => model.forward(x), busy);
    assert.throws(() => model.stateDict(), busy);
    assert.throws(() => model.loadStateDict(sd), busy);
    assert.throws(() => model.eval(), busy);
    await assert.rejects(model.predict(x), busy);
    await assert.rejects(model.save(path.join(dir, 'm.safetensors')), busy);
    await assert.rejects(model.fit(data), busy);
    await assert.rejects(model.evaluate(data), busy);
    await running;
    model.eval();
    assert.deepEqual(model.forward(x).shape, [1, 3]);
    await model.save(path.join(dir, 'm.safetensors'));
    model.loadStateDict(sd);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('predict() on another model while a fit runs is answered between the run\'s steps, not after the run', async () => {
    const trained = new dt.DenseNet(TINY);
    const other = new dt.DenseNet({ ...TINY, growthRate: 6 }).eval();
    const x = dt.tensor(Float32Array.from({ length: 2 * 3 * 16 * 16 }, (_, i) => Math.sin(i)), [2, 3, 16, 16]);
    const alone = (await other.predict(x)).toArray();
    let batches = 0;
    let firstBatch;
    const started = new Promise((resolve) => { firstBatch = resolve; });
    const running = trained.fit(smallData(64), { epochs: 20, batchSize: 8, onBatchEnd: () => { batches++; firstBatch(); } });
    let fitDone = false;
    running.then(() => { fitDone = true; });
    await started;
    const during = (await other.predict(x)).toArray();
    const batchesThen = batches;
    assert.equal(fitDone, false, `the prediction waited for the whole run (${batchesThen} of 160 batches)`);
    await running;
    console.log(`      answered after batch ${batchesThen} of 160`);
    assert.deepEqual(during, alone);
  });

  it('two models fit and save at once in one process, each to its own file, and both load back', async () => {
    const dir = tmpdir('two');
    const a = new dt.DenseNet(TINY);
    const b = new dt.DenseNet({ ...TINY, growthRate: 6 });
    const data = smallData(32);
    await Promise.all([a.fit(data, { epochs: 3, batchSize: 8 }), b.fit(data, { epochs: 3, batchSize: 8, seed: 4 })]);
    await Promise.all([a.save(path.join(dir, 'a.safetensors')), b.save(path.join(dir, 'b.safetensors'))]);
    const [a2, b2] = await Promise.all([dt.load(path.join(dir, 'a.safetensors')), dt.load(path.join(dir, 'b.safetensors'))]);
    assert.equal(a2.config.growthRate, 4);
    assert.equal(b2.config.growthRate, 6);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['a.safetensors', 'b.safetensors']);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('aborting fit() at random moments, also while it writes its checkpoint, always leaves a checkpoint that resumes', async () => {
    const dir = tmpdir('abort');
    const file = path.join(dir, 'run.ckpt');
    const data = smallData(16, 32);
    const model = dt.densenet121({ numClasses: 3 }); // a 64 MB checkpoint: writing it takes a while
    let aborts = 0;
    for (let round = 0; round < 6; round++) {
      const controller = new AbortController();
      let epochs = 0;
      const running = model.fit(data, { epochs: 1000, batchSize: 16, optimizer: { type: 'sgd', lr: 0.01 }, checkpoint: { path: file }, signal: controller.signal, onEpochEnd: () => { epochs++; } });
      await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 700));
      controller.abort();
      await assert.rejects(running, { name: 'AbortError' });
      aborts++;
      if (epochs === 0) continue;
      const resumed = await model.fit(data, { epochs: 1, batchSize: 16, optimizer: { type: 'sgd', lr: 0.01 }, resumeFrom: file });
      assert.equal(resumed.epochs.length, 0, 'the checkpoint holds at least one finished epoch');
    }
    assert.ok(fs.existsSync(file), 'at least one checkpoint was written');
    assert.deepEqual(fs.readdirSync(dir), ['run.ckpt'], 'no temporary file left behind');
    console.log(`      ${aborts} aborts; the checkpoint resumed after each`);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

/** Starts test/save-child.js; resolves once it has acknowledged its first save. */
function startSaver(mode, file) {
  const child = spawn(process.execPath, [path.join(__dirname, 'save-child.js'), mode, file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const state = { child, acknowledged: 0, stderr: '' };
  let buffer = '';
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      buffer += chunk;
      const lines = buffer.split('\n');
      buffer = lines.pop();
      for (const line of lines) {
        const m = /^(?:saved|epoch) (\d+)$/.exec(line);
        if (m) state.acknowledged = Number(m[1]);
      }
      if (state.acknowledged >= 1) resolve(state);
    });
    child.stderr.on('data', (chunk) => { state.stderr += chunk; });
    child.on('exit', (code, signal) => reject(new Error(`saver exited early (${code ?? signal}): ${state.stderr}`)));
  });
}

/** SIGKILLs the child and waits for it to be gone. */
function kill(state) {
  return new Promise((resolve, reject) => {
    state.child.removeAllListeners('exit');
    const { exitCode, signalCode } = state.child;
    if (exitCode !== null || signalCode !== null) {
      reject(new Error(`the saver stopped by itself (${exitCode ?? signalCode}) before the kill: ${state.stderr}`));
      return;
    }
    state.child.on('exit', () => resolve());
    state.child.kill('SIGKILL');
  });
}

describe('atomic saves: kill -9 while saving, 50 times', function () {
  this.timeout(600000);
  const kills = { weights: 25, checkpoint: 25 };

  for (const mode of ['weights', 'checkpoint']) {
    it(`${mode}: after each kill the last complete ${mode === 'weights' ? 'weight file' : 'checkpoint'} loads, never a partial one (${kills[mode]} kills)`, async () => {
      const dir = tmpdir(`kill-${mode}`);
      const file = path.join(dir, mode === 'weights' ? 'model.safetensors' : 'run.ckpt');
      const data = smallData(2, 32);
      const checker = mode === 'checkpoint' ? dt.densenet121({ numClasses: 10 }) : undefined;
      let midWrite = 0;
      for (let k = 0; k < kills[mode]; k++) {
        const saver = await startSaver(mode, file);
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 600));
        await kill(saver);
        if (fs.readdirSync(dir).some((f) => f.includes('.tmp-'))) midWrite++;
        const acknowledged = saver.acknowledged;
        if (mode === 'weights') {
          const back = await dt.load(file); // a complete file, or this throws
          const version = back.stateDict()['classifier.bias'].toArray()[0];
          assert.ok(version >= acknowledged, `file holds version ${version}, but version ${acknowledged} had been saved`);
        } else {
          // Resuming for (acknowledged + 1) epochs runs none if the checkpoint holds them all and
          // one if it holds `acknowledged`; an older or broken checkpoint would run more or throw.
          const h = await checker.fit(data, { epochs: acknowledged + 1, batchSize: 2, optimizer: { type: 'sgd', lr: 0.01 }, resumeFrom: file });
          assert.ok(h.epochs.length <= 1, `resumed ${h.epochs.length} epochs: the checkpoint was older than epoch ${acknowledged}`);
        }
      }
      // A save by a live process removes the temporary files that killed writers left behind.
      const model = mode === 'weights' ? dt.densenet121({ numClasses: 10 }) : undefined;
      if (model) await model.save(file);
      else await checker.fit(data, { epochs: 1, batchSize: 2, optimizer: { type: 'sgd', lr: 0.01 }, checkpoint: { path: file } });
      assert.deepEqual(fs.readdirSync(dir), [path.basename(file)]);
      console.log(`      ${kills[mode]} kills, ${midWrite} of them while a temporary file was being written; the target always loaded`);
      assert.ok(midWrite >= 1, 'at least one kill landed while a temporary file was being written');
      fs.rmSync(dir, { recursive: true, force: true });
    });
  }
});
