// Smallest densetorch program: tensors in and out of LibTorch.
// Run: node examples/quickstart.js
'use strict';
const dt = require('..');

console.log('densetorch', dt.versions.densetorch, '| LibTorch', dt.versions.libtorch, '| CUDA', dt.versions.cudaAvailable);
const x = dt.tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
console.log(String(x), Array.from(x.toArray()));
x.dispose();
