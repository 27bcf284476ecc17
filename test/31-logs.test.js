'use strict';
// Training logs: fit({ logDir }) writes a TensorBoard event file (TFRecord framing, masked CRC32C,
// Event/Summary protobufs) and metrics.jsonl. The test reads every record back, checks both CRCs
// with its own CRC32C (bit by bit, Castagnoli polynomial), and the values against fit's history;
// where Python's tensorboard package is installed it also loads the file with EventAccumulator.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const dt = require('..');
const { eventTypes } = require('../dist/tensorboard');

/** CRC32C (reflected polynomial 0x82F63B78), bit by bit: the oracle for the writer's table-driven one. */
function crc32c(bytes) {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
const masked = (crc) => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;

/** The records of a TFRecord file, each CRC checked. */
function records(file) {
  const buf = fs.readFileSync(file);
  const out = [];
  for (let at = 0; at < buf.length;) {
    const length = Number(buf.readBigUInt64LE(at));
    assert.equal(buf.readUInt32LE(at + 8), masked(crc32c(buf.subarray(at, at + 8))), `length CRC of record ${out.length}`);
    const data = buf.subarray(at + 12, at + 12 + length);
    assert.equal(buf.readUInt32LE(at + 12 + length), masked(crc32c(data)), `data CRC of record ${out.length}`);
    out.push(data);
    at += 16 + length;
  }
  return out;
}

function hasPythonTensorboard() {
  const r = spawnSync(process.env.PYTHON || 'python3', ['-c', 'import tensorboard'], { encoding: 'utf8' });
  return r.status === 0;
}

describe('training logs (TensorBoard event files and metrics.jsonl)', () => {
  let dir;
  let history;
  let logDir;
  before(async function () {
    this.timeout(120000);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-logs-'));
    logDir = path.join(dir, 'runs', 'first');
    dt.manualSeed(0);
    const model = dt.densenetCifar({ depth: 10, growthRate: 4, inChannels: 1, numClasses: 10 });
    history = await model.fit(dt.datasets.mnist({ limit: 200 }), {
      epochs: 2, batchSize: 50, validationData: dt.datasets.mnist({ split: 'test', limit: 100 }), logDir,
      optimizer: { type: 'sgd', lr: 0.05 }, ema: { decay: 0.9 }, labelSmoothing: 0.1,
    });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('the event file is TFRecords with valid masked CRC32Cs: the file version, the run\'s hparams, scalars per batch and per epoch equal to fit\'s history', () => {
    const files = fs.readdirSync(logDir);
    const events = files.filter((f) => /^events\.out\.tfevents\.\d+\..+\.\d+$/.test(f));
    assert.equal(events.length, 1, files.join(', '));
    const { Event, HParamsPluginData } = eventTypes();
    const decoded = records(path.join(logDir, events[0])).map((r) => Event.toObject(Event.decode(r), { longs: Number }));
    assert.equal(decoded[0].fileVersion, 'brain.Event:2');
    const hp = decoded.find((e) => e.summary?.value?.[0]?.tag === '_hparams_/session_start_info');
    assert.equal(hp.summary.value[0].metadata.pluginData.pluginName, 'hparams');
    const start = HParamsPluginData.toObject(HParamsPluginData.decode(hp.summary.value[0].metadata.pluginData.content));
    assert.equal(start.sessionStartInfo.hparams.epochs.numberValue, 2);
    assert.equal(start.sessionStartInfo.hparams.optimizer.stringValue, 'sgd');
    assert.equal(start.sessionStartInfo.hparams.lr.numberValue, 0.05);
    const scalars = (tag) => decoded.flatMap((e) => (e.summary?.value ?? []).filter((v) => v.tag === tag).map((v) => ({ step: e.step, value: v.simpleValue })));
    const close = (a, b) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b)); // simple_value is a float32
    const epochLoss = scalars('epoch/loss');
    assert.deepEqual(epochLoss.map((s) => s.step), [1, 2]);
    epochLoss.forEach((s, i) => assert.ok(close(s.value, history.loss[i]), `epoch ${i + 1} loss ${s.value} vs ${history.loss[i]}`));
    scalars('epoch/val_accuracy').forEach((s, i) => assert.ok(close(s.value, history.valAccuracy[i])));
    const ema = scalars('epoch/ema_val_accuracy');
    assert.equal(ema.length, 2);
    ema.forEach((s, i) => assert.ok(close(s.value, history.epochs[i].emaValAccuracy), `epoch ${i + 1} EMA accuracy`));
    assert.equal(start.sessionStartInfo.hparams.emaDecay.numberValue, 0.9);
    assert.equal(start.sessionStartInfo.hparams.labelSmoothing.numberValue, 0.1);
    assert.equal(start.sessionStartInfo.hparams.augment.stringValue, 'none');
    const batchLoss = scalars('batch/loss');
    assert.equal(batchLoss.length, 8, '4 batches per epoch, 2 epochs');
    assert.deepEqual(batchLoss.map((s) => s.step), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.ok(scalars('batch/lr').every((s) => s.value > 0 && s.value <= 0.05 + 1e-9));
    console.log(`      ${decoded.length} events: file version, hparams, 8 batch and 2 epoch summaries`);
  });

  it('metrics.jsonl holds the same records, epoch values exactly (doubles)', () => {
    const lines = fs.readFileSync(path.join(logDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines[0].kind, 'hparams');
    const epochs = lines.filter((l) => l.kind === 'epoch');
    assert.deepEqual(epochs.map((e) => e['epoch/loss']), history.loss);
    assert.deepEqual(epochs.map((e) => e['epoch/val_accuracy']), history.valAccuracy);
    assert.equal(lines.filter((l) => l.kind === 'batch').length, 8);
  });

  it('TensorBoard itself reads the file (EventAccumulator), where Python has the tensorboard package', function () {
    this.timeout(120000);
    if (!hasPythonTensorboard()) {
      console.log('      skipped: Python has no tensorboard package (pip install tensorboard)');
      this.skip();
    }
    const script = [
      'import json, sys',
      'from tensorboard.backend.event_processing.event_accumulator import EventAccumulator',
      'acc = EventAccumulator(sys.argv[1]); acc.Reload()',
      "print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()['scalars']}))",
    ].join('\n');
    const r = spawnSync(process.env.PYTHON || 'python3', ['-c', script, logDir], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const tags = JSON.parse(r.stdout.trim().split('\n').pop());
    assert.deepEqual(tags['epoch/loss'].map(([step]) => step), [1, 2]);
    tags['epoch/loss'].forEach(([, v], i) => assert.ok(Math.abs(v - history.loss[i]) <= 1e-6 * Math.max(1, history.loss[i])));
    assert.equal(tags['batch/loss'].length, 8);
    console.log(`      EventAccumulator read ${Object.keys(tags).length} scalar tags`);
  });

  it('`densetorch train --logdir` writes them and prints the tensorboard line; a bad logDir is a TypeError', async () => {
    const cliDir = path.join(dir, 'cli-run');
    const r = spawnSync(process.execPath, [path.join(__dirname, '..', 'dist', 'cli.js'), 'train', '--limit', '100', '--epochs', '1', '--depth', '10', '--growth-rate', '4', '--batch-size', '50', '--out', path.join(dir, 'cli.safetensors'), '--logdir', cliDir], { encoding: 'utf8', timeout: 300000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /tensorboard --logdir /);
    assert.ok(fs.readdirSync(cliDir).some((f) => f.startsWith('events.out.tfevents.')));
    const m = dt.densenetCifar({ depth: 10, growthRate: 4, numClasses: 2 });
    await assert.rejects(m.fit(dt.datasets.mnist({ limit: 20 }), { logDir: 42 }), { name: 'TypeError', message: /logDir to be a folder path/ });
  });
});
