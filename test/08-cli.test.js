'use strict';
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const dt = require('..');

const CLI = path.join(__dirname, '..', 'dist', 'cli.js');

function cli(args, env = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 300000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

describe('CLI', () => {
  const usage = [
    [['train', '--epochs', '0'], /--epochs must be an integer >= 1, got '0'/],
    [['train', '--bogus'], /unknown option '--bogus'/],
    [['train', '--dataset', 'imagenet'], /argument 'imagenet' is invalid\. Allowed choices are mnist, fashion-mnist, cifar10, folder/],
    [['train', '--lr', '-1'], /--lr must be a positive number, got '-1'/],
    [['frobnicate'], /unknown command 'frobnicate'/],
  ];
  for (const [args, message] of usage) {
    it(`exits 2 with a usage message for: densetorch ${args.join(' ')}`, () => {
      const r = cli(args);
      assert.equal(r.status, 2, r.err);
      assert.match(r.err, message);
      assert.match(r.err, /Usage: densetorch/);
    });
  }

  it('exits 2 for a CIFAR-10 run without --data-dir, saying what is missing', () => {
    const r = cli(['train', '--dataset', 'cifar10']);
    assert.equal(r.status, 2);
    assert.match(r.err, /--data-dir is required with --dataset cifar10/);
  });

  it('trains a small DenseNet on MNIST, prints progress and a summary table, saves the model and a plot; info and evaluate read it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-cli-'));
    const model = path.join(dir, 'm.safetensors');
    const plot = path.join(dir, 'curve.svg');
    const r = cli(['train', '--limit', '200', '--epochs', '2', '--depth', '10', '--growth-rate', '4', '--batch-size', '32', '--out', model, '--plot', plot, '--threads', '2']);
    assert.equal(r.status, 0, r.err + r.out);
    assert.match(r.out, /model: DenseNet-BC \(L=10, k=4\)/);
    assert.match(r.out, /epoch 1\/2 batch \d+\/7 loss \d\.\d{4} acc \d\.\d{4} \d+ img\/s/);
    assert.match(r.out, /epoch 2\/2: loss \d\.\d{4} acc \d\.\d{4} \| test loss \d\.\d{4} acc \d\.\d{4}/);
    assert.match(r.out, /epoch +loss +accuracy +test loss +test accuracy +lr +seconds/);
    assert.match(r.out, /trained in [\d.]+ s; test accuracy \d\.\d{4}; saved /);
    assert.ok(fs.statSync(model).size > 1000);
    const svg = fs.readFileSync(plot, 'utf8');
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.equal((svg.match(/<polyline/g) || []).length, 4, 'train and test curves for loss and accuracy');

    const info = cli(['info', model]);
    assert.equal(info.status, 0, info.err);
    assert.match(info.out, /parameters: [\d,]+/);
    assert.match(info.out, /blockConfig: \[1, 1, 1\]/);
    assert.match(info.out, /inChannels: 1/);
    assert.match(info.out, /input: 1 x 28 x 28 gray, stretch/, 'the input spec recorded from MNIST');
    assert.match(info.out, /densetorch\.version: /);

    const evaluation = cli(['evaluate', model, '--dataset', 'mnist', '--limit', '100']);
    assert.equal(evaluation.status, 0, evaluation.err);
    assert.match(evaluation.out, /mnist test \(100 images\): loss \d\.\d{4}, accuracy \d\.\d{4}/);
    fs.rmSync(dir, { recursive: true });
  });

  it('evaluate and info fail with exit 1 and a clear message for a missing file', () => {
    const r = cli(['info', '/nonexistent/model.safetensors']);
    assert.equal(r.status, 1);
    assert.match(r.err, /error: no such file: \/nonexistent\/model\.safetensors/);
  });

  it('runs as its own program, as `npx densetorch` in a clone runs it: executable, with a node shebang', () => {
    fs.accessSync(CLI, fs.constants.X_OK);
    assert.match(fs.readFileSync(CLI, 'utf8'), /^#!\/usr\/bin\/env node\n/);
    const r = spawnSync(CLI, ['--help'], { encoding: 'utf8', timeout: 60000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage: densetorch/);
  });

  it('doctor reports versions, where LibTorch was found, CUDA and threads', () => {
    const r = cli(['doctor']);
    assert.equal(r.status, 0, r.out + r.err);
    const pin = require('../package.json').libtorch;
    assert.ok(r.out.includes(`densetorch ${require('../package.json').version} (pins LibTorch ${pin})`), r.out);
    const builtAgainst = /addon: .*densetorch\.node \(built against LibTorch ([^)]+)\)/.exec(r.out);
    assert.ok(builtAgainst, r.out);
    assert.ok(r.out.includes(`: ${builtAgainst[1]} at `), 'the LibTorch the addon was built against was found');
    assert.match(r.out, /addon: .*densetorch\.node/);
    assert.match(r.out, /CUDA (not available|available)/);
    assert.match(r.out, /\d+ threads/);
  });

  it('doctor says what is wrong when LIBTORCH is not a LibTorch folder (exit 1)', () => {
    const r = cli(['doctor'], { LIBTORCH: os.tmpdir() });
    assert.equal(r.status, 1);
    assert.match(r.out, /problem: LIBTORCH is set to/);
  });

  it('setup reports the LibTorch it found or fetched', () => {
    const r = cli(['setup']);
    assert.equal(r.status, 0, r.err);
    // the LibTorch the addon was built for (the pinned release, or e.g. a CUDA LibTorch given by LIBTORCH)
    assert.match(r.out, new RegExp(`LibTorch ${dt.versions.libtorch.replace(/\./g, '\\.')}\\S* ready at .* \\(found via (python|cache|env)\\)`));
  });
});
