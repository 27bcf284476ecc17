'use strict';
// The example HTTP server (examples/serve.js, also `densetorch serve`), run as a child process.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startServer } = require('./helpers');
const sharp = require('sharp');
const dt = require('..');

const NUM_CLASSES = 7;

async function savedModel(dir) {
  dt.manualSeed(11);
  const model = new dt.DenseNet({
    growthRate: 4, blockConfig: [2, 2], numInitFeatures: 8, bnSize: 2, compression: 0.5, dropRate: 0,
    numClasses: NUM_CLASSES, inChannels: 3, stem: 'cifar', memoryEfficient: false,
  });
  const file = path.join(dir, 'model.safetensors');
  await model.save(file);
  return file;
}

function jsonTensor(seed, n = 1) {
  const data = Array.from({ length: n * 3 * 8 * 8 }, (_, i) => Math.sin(seed * 31 + i) * 0.5);
  return JSON.stringify({ shape: [n, 3, 8, 8], data });
}

async function post(url, body, contentType = 'application/json') {
  const res = await fetch(`${url}/predict`, { method: 'POST', body, headers: { 'Content-Type': contentType } });
  return { status: res.status, body: await res.json() };
}

function exited(child) {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

describe('HTTP server (densetorch serve / examples/serve.js)', () => {
  let dir;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-serve-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('answers 200 requests from 16 concurrent clients with the top-5 classes; bad bodies get 400 and it keeps serving', async function () {
    this.timeout(120000);
    const file = await savedModel(dir);
    const { child, url } = await startServer(file, ['--max-batch', '16', '--max-delay-ms', '5']);
    try {
      const health = await (await fetch(`${url}/healthz`)).json();
      assert.equal(health.status, 'ok');

      let next = 0;
      const answers = [];
      const client = async () => {
        while (next < 200) {
          const i = next++;
          answers[i] = await post(url, jsonTensor(i));
        }
      };
      await Promise.all(Array.from({ length: 16 }, client));
      assert.equal(answers.length, 200);
      for (const a of answers) {
        assert.equal(a.status, 200, JSON.stringify(a.body));
        assert.equal(a.body.predictions.length, 1);
        const top = a.body.predictions[0].top;
        assert.equal(top.length, 5);
        for (let k = 1; k < top.length; k++) assert.ok(top[k - 1].probability >= top[k].probability);
        assert.ok(top.every((t) => Number.isInteger(t.label) && t.label >= 0 && t.label < NUM_CLASSES));
      }
      // The same input gives the same answer wherever it was batched (up to float rounding).
      const again = (await post(url, jsonTensor(0))).body.predictions[0].top;
      const first = answers[0].body.predictions[0].top;
      assert.deepEqual(again.map((t) => t.label), first.map((t) => t.label));
      again.forEach((t, k) => assert.ok(Math.abs(t.probability - first[k].probability) <= 1e-5));

      const bad = [
        [await post(url, '{"shape": [1, 3, 8'), /body is not valid JSON/],
        [await post(url, JSON.stringify({ shape: [1, 3, 8, 8], data: [1, 2] })), /expected "data" to hold 192 finite numbers/],
        [await post(url, JSON.stringify({ shape: [1, 2, 8, 8], data: new Array(128).fill(0) })), /channels/],
        [await post(url, JSON.stringify({ shape: [3, 8, 8] })), /expected "shape" to be \[N, C, H, W\]/],
      ];
      for (const [answer, reason] of bad) {
        assert.equal(answer.status, 400, JSON.stringify(answer.body));
        assert.match(answer.body.error, reason);
      }
      const wrongType = await post(url, 'pixels', 'text/plain');
      assert.equal(wrongType.status, 415);
      const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toBuffer();
      const fromImage = await post(url, png, 'image/png');
      assert.equal(fromImage.status, 200, JSON.stringify(fromImage.body));
      assert.equal(fromImage.body.predictions[0].top.length, 5);
      const corrupt = await post(url, Buffer.from('not a png'), 'image/png');
      assert.equal(corrupt.status, 400);
      assert.match(corrupt.body.error, /cannot decode image a buffer of 9 bytes/);
      assert.equal((await post(url, jsonTensor(1, 2))).body.predictions.length, 2, 'still serving, several images per request');
      const stats = (await (await fetch(`${url}/healthz`)).json()).stats;
      console.log(`      ${stats.requests} requests in ${stats.batches} batches (mean ${stats.meanBatchSize.toFixed(2)}), p50 ${stats.p50Ms.toFixed(1)} ms, p99 ${stats.p99Ms.toFixed(1)} ms`);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('merges concurrent HTTP requests into one forward pass (8 requests, --max-batch 8: one batch)', async function () {
    this.timeout(120000);
    const file = await savedModel(dir);
    // A batching delay longer than the test: the batch runs because it is full, not because of time.
    const { child, url } = await startServer(file, ['--max-batch', '8', '--max-delay-ms', '600000']);
    try {
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => post(url, jsonTensor(i))));
      assert.deepEqual(answers.map((a) => a.status), new Array(8).fill(200));
      const stats = (await (await fetch(`${url}/healthz`)).json()).stats;
      assert.deepEqual({ batches: stats.batches, requests: stats.requests, meanBatchSize: stats.meanBatchSize }, { batches: 1, requests: 8, meanBatchSize: 8 });
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('on SIGTERM answers the requests it has accepted, then exits 0', async function () {
    this.timeout(120000);
    const file = await savedModel(dir);
    // A batching delay longer than the test keeps the requests queued when SIGTERM arrives.
    const { child, url, output } = await startServer(file, ['--max-batch', '64', '--max-delay-ms', '600000']);
    const done = exited(child);
    const requests = Array.from({ length: 8 }, (_, i) => post(url, jsonTensor(i)));
    // SIGTERM once the server holds all 8 (its queue, not a guess at how long that takes).
    for (let depth = 0; depth < 8;) depth = (await (await fetch(`${url}/healthz`)).json()).stats.queueDepth;
    child.kill('SIGTERM');
    const answers = await Promise.all(requests);
    assert.deepEqual(answers.map((a) => a.status), new Array(8).fill(200));
    const { code } = await done;
    assert.equal(code, 0, output.text);
    assert.match(output.text, /SIGTERM: finishing 8 queued request\(s\), then exiting/);
    assert.match(output.text, /answered 8 request\(s\)/);
  });
});
