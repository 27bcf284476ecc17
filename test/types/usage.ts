// Compiled by test/19-types.test.js with `tsc --noEmit --strict` against the shipped declarations
// (dist/index.d.ts): the public API as a TypeScript user writes it. Not run.
import * as dt from '../../dist/index';

async function usage(): Promise<void> {
  const versions: dt.Versions = dt.versions;
  const cuda: boolean = versions.cudaAvailable;
  dt.manualSeed(0);
  const x: dt.Tensor = dt.tensor(new Float32Array(3 * 32 * 32), [1, 3, 32, 32], { dtype: 'float32', device: 'cpu' });
  const shape: number[] = x.shape;
  const dtype: dt.AnyDType = x.dtype;
  const model: dt.DenseNet = dt.densenetCifar({ depth: 40, growthRate: 12, memoryEfficient: true });
  const config: dt.DenseNetConfig = model.config;
  const logits: dt.Tensor = await model.predict(x, { batchSize: 8, precision: 'fp32', signal: AbortSignal.timeout(1000), maxQueue: 4 });
  const data: dt.Dataset = dt.datasets.mnist({ split: 'test', limit: 100 });
  const folder: dt.ImageFolderDataset = dt.datasets.imageFolder('photos', { size: 224, transform: 'train', onBadImage: 'skip' });
  const streamed: dt.StreamDataset = dt.datasets.fromAsyncIterable(async function* () {
    yield { images: x, labels: dt.tensor([0], [1], { dtype: 'int64' }) };
  });
  const history: dt.History = await model.fit(data, {
    epochs: 1, batchSize: 32, validationData: folder,
    onEpochEnd: (logs: dt.EpochLogs) => { const share: number = logs.dataWaitShare; void share; },
  });
  const evaluation: { loss: number; accuracy: number } = await model.evaluate(streamed);
  const classes: readonly string[] | undefined = model.classes;
  const results: dt.Classification[] = await model.classify(['a.jpg'], { topK: 3 });
  const first: dt.ClassScore = results[0].top[0];
  const server: dt.Predictor = model.serve({ maxBatch: 32, maxDelayMs: 5 });
  const stats: dt.ServeStats = server.stats();
  await server.close();
  const image: dt.Tensor = await dt.image.read('a.jpg', { size: 224, transform: 'eval' });
  const available: boolean = dt.distributed.available;
  const group: dt.GroupInfo = await dt.distributed.init({ backend: 'gloo', worldSize: 2, masterPort: 29500, timeoutMs: 60_000 });
  await dt.distributed.allReduce(x, { op: 'mean' });
  await dt.distributed.broadcast(x, { src: 0 });
  await model.fit(data, { dropLast: true });
  dt.distributed.destroy();
  const memory: dt.MemoryStats = dt.cuda.memoryStats(0);
  const peakMiB: number = memory.peakAllocated / 2 ** 20;
  dt.cuda.resetPeakMemoryStats();
  dt.cuda.synchronize();
  dt.cuda.emptyCache();
  const tf32: boolean = dt.cuda.allowTF32(false);
  // @ts-expect-error: the counters are read-only
  memory.allocated = 0;
  // @ts-expect-error: reduce ops are a string-literal union
  await dt.distributed.allReduce(x, { op: 'product' });
  // @ts-expect-error: the precision is a string-literal union
  await model.predict(x, { precision: 'fp64' });
  // @ts-expect-error: internal members are not part of the declarations
  x.handle();
  void [cuda, shape, dtype, config, logits, history, evaluation, classes, first, stats, image, available, group, peakMiB, tf32];
}
void usage;
