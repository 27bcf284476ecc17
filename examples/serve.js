#!/usr/bin/env node
// An HTTP inference server over one saved model, with dynamic batching (model.serve).
//   node examples/serve.js densenet.safetensors --port 8080      (or: npx densetorch serve ...)
//   POST /predict   body: an image (Content-Type image/*: JPEG, PNG, WebP, TIFF, GIF, AVIF), read as
//                   the model takes it (dt.image.read(body, { model }): its saved input spec), or a JSON tensor
//                   {"shape": [N, C, H, W], "data": [...N*C*H*W numbers]}
//                   answer: {"predictions": [{"top": [{"label", "className", "probability"}, ...5]}, ...N]}
//                   (className: the model's class names, saved with it, or null)
//   GET  /healthz   answer: {"status": "ok", "stats": {batches, requests, meanBatchSize, queueDepth, p50Ms, p99Ms}}
// A bad body is answered 400 with the reason; the server keeps serving. SIGTERM/SIGINT: stop
// accepting connections, answer every queued request, then exit 0.
'use strict';
const http = require('node:http');
const dt = require('..');

const MAX_BODY_BYTES = 64 << 20;

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The input tensor of a request body: an encoded image, or a JSON tensor {shape: [N, C, H, W], data: number[]}. */
async function tensorFromBody(body, contentType, model, imageSize) {
  if (/^image\//.test(contentType || '')) {
    try {
      // As the model was trained (its input spec), unless --image-size overrides it.
      return await dt.image.read(body, imageSize === undefined ? { model } : { size: imageSize });
    } catch (err) {
      throw new HttpError(400, err.message);
    }
  }
  if (!/^application\/json\b/.test(contentType || '')) {
    throw new HttpError(415, `expected Content-Type image/* (an encoded image) or application/json (a JSON tensor), got '${contentType || 'none'}'`);
  }
  let parsed;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `body is not valid JSON: ${err.message}`);
  }
  const { shape, data } = parsed || {};
  if (!Array.isArray(shape) || shape.length !== 4 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new HttpError(400, 'expected "shape" to be [N, C, H, W] with positive integers');
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (!Array.isArray(data) || data.length !== count || !data.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new HttpError(400, `expected "data" to hold ${count} finite numbers (the product of shape)`);
  }
  return dt.tensor(Float32Array.from(data), shape);
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * An http.Server answering /predict and /healthz with `model` in eval mode through a dynamic
 * batcher. `close()` on the returned object stops accepting connections and resolves once every
 * queued request was answered.
 */
function createServer(model, { maxBatch = 32, maxDelayMs = 0, maxQueue = 1024, topK = 5, imageSize } = {}) {
  model.eval();
  const predictor = model.serve({ maxBatch, maxDelayMs, maxQueue });
  const server = http.createServer(async (req, res) => {
    try {
      if (req.method === 'GET' && req.url === '/healthz') {
        send(res, 200, { status: 'ok', stats: predictor.stats() });
        return;
      }
      if (req.url !== '/predict') throw new HttpError(404, `no route ${req.method} ${req.url}: use POST /predict or GET /healthz`);
      if (req.method !== 'POST') throw new HttpError(405, 'use POST for /predict');
      const x = await tensorFromBody(await readBody(req), req.headers['content-type'], model, imageSize);
      let tops;
      try {
        tops = await predictor.classify(x, { topK });
      } catch (err) {
        if (err instanceof TypeError || err instanceof RangeError) throw new HttpError(400, err.message); // the model's input checks
        if (err instanceof dt.QueueFullError) throw new HttpError(503, err.message);
        throw err;
      } finally {
        x.dispose();
      }
      send(res, 200, { predictions: tops.map((top) => ({ top })) });
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 500;
      if (!res.headersSent) send(res, status, { error: err.message });
    }
  });
  const closeServer = () => new Promise((resolve) => server.close(() => resolve()));
  return {
    server,
    predictor,
    /** Stops accepting connections; resolves when every queued request is answered. */
    async close() {
      const closed = closeServer();
      await predictor.close();
      server.closeIdleConnections?.();
      await closed;
    },
  };
}

/** Starts a server on `port` (0: any free port); resolves to { close, port, ... } once listening. */
async function start(modelFile, { port = 8080, host = '127.0.0.1', ...options } = {}) {
  const model = await dt.load(modelFile);
  const running = createServer(model, options);
  await new Promise((resolve, reject) => {
    running.server.once('error', reject);
    running.server.listen(port, host, resolve);
  });
  return { ...running, port: running.server.address().port, host };
}

async function main(argv = process.argv.slice(2)) {
  const file = argv.find((a) => !a.startsWith('--'));
  const flag = (name, fallback) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : fallback;
  };
  if (!file) {
    console.error('usage: node examples/serve.js MODEL.safetensors [--port 8080] [--host 127.0.0.1] [--max-batch 32] [--max-delay-ms 0] [--image-size S]');
    return 2;
  }
  const running = await start(file, {
    port: Number(flag('port', 8080)), host: flag('host', '127.0.0.1'),
    maxBatch: Number(flag('max-batch', 32)), maxDelayMs: Number(flag('max-delay-ms', 0)),
    imageSize: flag('image-size') === undefined ? undefined : Number(flag('image-size')),
  });
  console.log(`densetorch: serving ${file} on http://${running.host}:${running.port} (POST /predict, GET /healthz)`);
  await new Promise((resolve) => {
    const stop = (signal) => {
      console.log(`densetorch: ${signal}: finishing ${running.predictor.stats().queueDepth} queued request(s), then exiting`);
      running.close().then(resolve);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  const s = running.predictor.stats();
  console.log(`densetorch: answered ${s.requests} request(s) in ${s.batches} batch(es); stopped`);
  return 0;
}

module.exports = { createServer, start, main };

if (require.main === module) {
  main().then((code) => {
    process.exitCode = code;
  }, (err) => {
    console.error(`error: ${err.message}`);
    process.exitCode = 1;
  });
}
