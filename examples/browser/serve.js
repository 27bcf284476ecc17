#!/usr/bin/env node
// Serves the browser demo: this folder, onnxruntime-web and protobufjs from node_modules under
// vendor/, and the ONNX model at /model.onnx.
//   node examples/browser/serve.js model.onnx [--port 8000]   then open http://127.0.0.1:8000/
'use strict';
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.onnx': 'application/octet-stream', '.png': 'image/png', '.jpg': 'image/jpeg' };

/** The folder of an installed package (looked up as require does, without loading it). */
function packageDir(name) {
  const dir = module.paths.map((p) => path.join(p, name)).find((d) => fs.existsSync(path.join(d, 'package.json')));
  if (!dir) throw new Error(`the browser demo needs the npm package '${name}' (npm install ${name})`);
  return dir;
}

/** Starts the server; resolves to { server, url }. `files` maps extra URL paths to files. */
function start(modelFile, { port = 0, host = '127.0.0.1', files = {} } = {}) {
  const roots = {
    '/vendor/ort/': path.join(packageDir('onnxruntime-web'), 'dist') + path.sep,
    '/vendor/protobufjs/': path.join(packageDir('protobufjs'), 'dist') + path.sep,
    '/': __dirname + path.sep,
  };
  const server = http.createServer((req, res) => {
    const pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const url = pathname.endsWith('/') ? `${pathname}index.html` : pathname;
    let file = url === '/model.onnx' ? modelFile : files[url];
    if (!file) {
      const prefix = Object.keys(roots).find((p) => url.startsWith(p));
      const resolved = path.resolve(roots[prefix], `.${url.slice(prefix.length - 1)}`);
      if (resolved.startsWith(roots[prefix])) file = resolved; // nothing outside its folder
    }
    if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve({ server, url: `http://${host}:${server.address().port}` })));
}

module.exports = { start };

if (require.main === module) {
  const model = process.argv[2];
  if (!model) {
    console.error('usage: node examples/browser/serve.js MODEL.onnx [--port 8000]');
    process.exit(2);
  }
  const at = process.argv.indexOf('--port');
  start(path.resolve(model), { port: at > 0 ? Number(process.argv[at + 1]) : 8000 }).then(({ url }) => console.log(`open ${url}/`));
}
