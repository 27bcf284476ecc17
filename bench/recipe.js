// Time to accuracy of `densetorch train --recipe fashion` and its ablations: each variant is the
// recipe with one option changed, trained in a fresh process, and its final test accuracy (raw
// weights and weight average) and training time recorded in bench/results/recipe-<date>.json.
//
//   node bench/recipe.js [--limit 10000] [--epochs 6] [--seed 0] [--only full,no-erasing,...]
//
// --limit trains and tests on that many images per split (a short proxy for the full run);
// without it each variant is the full 60,000-image recipe (about an hour each on 2 cores).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { flag, machine, writeResult } = require('./common');

const CLI = path.join(__dirname, '..', 'dist', 'cli.js');

/** The recipe and one change each. */
const VARIANTS = {
  full: [],
  'no-erasing': ['--random-erasing', '0'],
  'no-smoothing': ['--label-smoothing', '0'],
  'no-crop-flip': ['--augment', 'none'],
  trivialaugment: ['--augment', 'trivialaugment'],
  mixup: ['--mixup-alpha', '0.2'],
  'weight-decay-1e-4': ['--weight-decay', '0.0001'],
};

function runVariant(name, extra, { limit, epochs, seed }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `densetorch-recipe-${name}-`));
  const args = [CLI, 'train', '--recipe', 'fashion', '--seed', String(seed), '--out', path.join(dir, 'model.safetensors'), ...extra];
  if (limit) args.push('--limit', String(limit));
  if (epochs) args.push('--epochs', String(epochs));
  const started = Date.now();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  const seconds = (Date.now() - started) / 1000;
  fs.rmSync(dir, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`${name} failed:\n${r.stdout}\n${r.stderr}`);
  const last = /test accuracy ([\d.]+)(?:; weight average ([\d.]+))?/.exec(r.stdout);
  const epochsSeen = [...r.stdout.matchAll(/^epoch (\d+)\/\d+: .* acc ([\d.]+)(?: \(EMA ([\d.]+)\))? \| lr/gm)]
    .map((m) => ({ epoch: Number(m[1]), test: Number(m[2]), ema: m[3] === undefined ? null : Number(m[3]) }));
  return { name, args: extra, seconds, accuracy: Number(last[1]), emaAccuracy: last[2] === undefined ? null : Number(last[2]), epochs: epochsSeen };
}

function main() {
  const limit = flag('limit') === undefined ? undefined : Number(flag('limit'));
  const epochs = flag('epochs') === undefined ? undefined : Number(flag('epochs'));
  const seed = Number(flag('seed', '0'));
  const only = flag('only') ? flag('only').split(',') : Object.keys(VARIANTS);
  const rows = [];
  for (const name of only) {
    if (!VARIANTS[name]) throw new Error(`unknown variant '${name}': ${Object.keys(VARIANTS).join(', ')}`);
    const row = runVariant(name, VARIANTS[name], { limit, epochs, seed });
    console.log(`${name.padEnd(18)} test accuracy ${row.accuracy.toFixed(4)}, weight average ${row.emaAccuracy?.toFixed(4) ?? '-'}, ${(row.seconds / 60).toFixed(1)} min`);
    rows.push(row);
  }
  writeResult(`recipe${limit ? `-limit${limit}` : ''}`, { machine: machine(), limit: limit ?? null, epochs: epochs ?? null, seed, rows });
}

main();
