// Classifies a dropped image with a model exported by densetorch (model.exportOnnx): reads the
// input spec and class names from the ONNX file's metadata_props, prepares the picture as the
// model was trained (size, resize policy, grey or RGB, scaling, mean/std) and runs it with
// onnxruntime-web. `window.densetorchDemo.classifyUrl(url)` is the same, for scripts and tests
// (`window.densetorchDemo.probabilities`: every class's, by label).
'use strict';

const MODEL_URL = new URLSearchParams(location.search).get('model') || 'model.onnx';

// The part of ONNX's ModelProto this page reads: metadata_props (field 14).
const Entry = new protobuf.Type('StringStringEntryProto')
  .add(new protobuf.Field('key', 1, 'string'))
  .add(new protobuf.Field('value', 2, 'string'));
const Model = new protobuf.Type('ModelProto').add(new protobuf.Field('metadataProps', 14, 'StringStringEntryProto', 'repeated')).add(Entry);
new protobuf.Root().add(Model);

async function loadModel() {
  const bytes = new Uint8Array(await (await fetch(MODEL_URL)).arrayBuffer());
  const meta = Object.fromEntries(Model.decode(bytes).metadataProps.map((e) => [e.key, e.value]));
  if (!meta['densetorch.input']) throw new Error(`${MODEL_URL} has no densetorch.input in its metadata: export it from a model that knows its input`);
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  return { session, spec: JSON.parse(meta['densetorch.input']), classes: meta['densetorch.classes'] ? JSON.parse(meta['densetorch.classes']) : undefined };
}

/** The picture as a [1, C, H, W] float32 tensor by the input spec (drawn on `canvas`). */
function prepare(image, spec, canvas) {
  canvas.width = spec.width;
  canvas.height = spec.height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingQuality = 'high';
  const w = image.naturalWidth || image.width, h = image.naturalHeight || image.height;
  if (spec.resize === 'center-crop') {
    // torchvision's eval transform: the shorter edge to resizeShorterEdge, then the centre crop.
    const scale = spec.resizeShorterEdge / Math.min(w, h);
    const sw = spec.width / scale, sh = spec.height / scale;
    ctx.drawImage(image, (w - sw) / 2, (h - sh) / 2, sw, sh, 0, 0, spec.width, spec.height);
  } else {
    ctx.drawImage(image, 0, 0, w, h, 0, 0, spec.width, spec.height);
  }
  const rgba = ctx.getImageData(0, 0, spec.width, spec.height).data;
  const plane = spec.width * spec.height;
  const [lo, hi] = spec.valueRange;
  const out = new Float32Array(spec.channels * plane);
  for (let p = 0; p < plane; p++) {
    const r = rgba[4 * p], g = rgba[4 * p + 1], b = rgba[4 * p + 2];
    const values = spec.channels === 1 ? [0.2126 * r + 0.7152 * g + 0.0722 * b] : [r, g, b];
    for (let c = 0; c < spec.channels; c++) out[c * plane + p] = (lo + ((hi - lo) * values[c]) / 255 - spec.mean[c]) / spec.std[c];
  }
  return new ort.Tensor('float32', out, [1, spec.channels, spec.height, spec.width]);
}

function softmax(logits) {
  const m = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

const loaded = loadModel();

/** Top-5 classes of an image element: [{ label, className, probability }]. */
async function classifyImage(image) {
  const { session, spec, classes } = await loaded;
  const input = prepare(image, spec, document.getElementById('preview'));
  const { logits } = await session.run({ input });
  const probs = softmax(Array.from(logits.data));
  window.densetorchDemo.probabilities = probs;
  const top = probs.map((probability, label) => ({ label, className: classes ? classes[label] : null, probability }))
    .sort((a, b) => b.probability - a.probability).slice(0, 5);
  document.getElementById('top').innerHTML = top.map((t) => `<tr><td>${t.className ?? t.label}</td><td>${(100 * t.probability).toFixed(2)}%</td></tr>`).join('');
  return top;
}

function imageFrom(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`cannot load ${url}`));
    image.src = url;
  });
}

window.densetorchDemo = { loaded, classifyUrl: async (url) => classifyImage(await imageFrom(url)) };

loaded.then(({ spec, classes }) => {
  document.getElementById('status').textContent = `model ${MODEL_URL}: ${spec.channels} x ${spec.height} x ${spec.width}, ${classes ? classes.length : 'unnamed'} classes`;
}, (err) => {
  document.getElementById('status').textContent = `error: ${err.message}`;
});

const drop = document.getElementById('drop');
const classifyFile = async (file) => classifyImage(await imageFrom(URL.createObjectURL(file)));
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  if (e.dataTransfer.files[0]) classifyFile(e.dataTransfer.files[0]);
});
document.getElementById('file').addEventListener('change', (e) => { if (e.target.files[0]) classifyFile(e.target.files[0]); });
