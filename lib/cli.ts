#!/usr/bin/env node
/**
 * The densetorch command line: train, launch, evaluate, info, predict, serve, setup, doctor.
 * Usage errors print the usage and exit with code 2.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { launch, LaunchOptions } from './launch';
import { cacheDir, findLibTorch, searchLibTorch } from './libtorch';
import { writePlot } from './plot';
import { RECIPES, RecipeName, withRecipe } from './recipes';
import { platformTag } from './platform';
import { defaultLr, Precision } from './training';
import { loadWithMetadata } from './densenet';
import type { Augment, Dataset } from './datasets';
import { METADATA_CLASSES_KEY, METADATA_CONFIG_KEY, PACKAGE_VERSION, PINNED_TORCH_VERSION } from './package-info';
import { describeInputSpec, METADATA_INPUT_KEY } from './input-spec';

type Densetorch = typeof import('./index');

/** A bad combination of options found while running a command (commander has not printed it). */
class UsageError extends Error {}

/** Loads the library (LibTorch + addon) only for commands that need it. */
function load(): Densetorch {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('./index') as Densetorch;
}

function int(name: string, min = 1) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got '${value}'`);
    return n;
  };
}

function positive(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number, got '${value}'`);
    return n;
  };
}

function nonNegative(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a number >= 0, got '${value}'`);
    return n;
  };
}

/** --precision, shared by train and evaluate. */
function precisionOption(): Option {
  return new Option('--precision <p>', 'compute precision: fp32, bf16 (CPUs with AVX-512 BF16/AMX, CUDA) or fp16 (CUDA)').choices(['fp32', 'bf16', 'fp16']).default('fp32');
}

/** The data sets the CLI trains and evaluates on. */
const DATASETS = ['mnist', 'fashion-mnist', 'cifar10', 'folder'] as const;
type DatasetName = (typeof DATASETS)[number];

interface TrainFlags extends LauncherFlags {
  dataset: DatasetName;
  imageSize?: number;
  precision: Precision;
  dataDir?: string;
  limit?: number;
  model: string;
  depth: number;
  growthRate: number;
  bottleneck: boolean;
  compression: number;
  epochs: number;
  batchSize: number;
  optimizer: 'sgd' | 'adam' | 'adamw';
  lr?: number;
  weightDecay?: number;
  schedule: 'constant' | 'multistep' | 'cosine';
  warmupEpochs?: number;
  labelSmoothing?: number;
  clipGradNorm?: number;
  mixupAlpha?: number;
  cutmixAlpha?: number;
  emaDecay?: number;
  emaSteps?: number;
  accumulate?: number;
  augment?: Augment;
  randomErasing?: number;
  recipe?: RecipeName;
  memoryEfficient: boolean;
  threads?: number;
  seed: number;
  out: string;
  checkpoint?: string;
  checkpointSteps?: number;
  resume?: string;
  plot?: string;
  logdir?: string;
}

/** The launcher options of `launch` and `train` (torchrun's names). */
interface LauncherFlags {
  nprocPerNode?: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  maxRestarts: number;
  jobToken?: string;
}

const LAUNCHER_FLAGS = ['--nproc-per-node', '--nnodes', '--node-rank', '--master-addr', '--master-port', '--max-restarts', '--job-token'];

/** Adds the launcher options to a command. */
function launcherOptions(command: Command, nprocRequired: boolean): Command {
  const nproc = new Option('--nproc-per-node <n>', 'worker processes on this machine (one rank each)').argParser(int('--nproc-per-node'));
  if (nprocRequired) nproc.makeOptionMandatory();
  return command
    .addOption(nproc)
    .option('--nnodes <n>', 'machines in the job', int('--nnodes'), 1)
    .option('--node-rank <r>', "this machine's index, 0-based", int('--node-rank', 0), 0)
    .option('--master-addr <host>', "address of rank 0's machine (it hosts the rendezvous)", '127.0.0.1')
    .option('--master-port <port>', 'TCP port of the rendezvous on rank 0', int('--master-port'), 29500)
    .option('--max-restarts <n>', 'start every worker again this many times after one fails (resume with fit({ resumeFrom: \'auto\' }) or train --resume auto)', int('--max-restarts', 0), 0)
    .option('--job-token <secret>', 'a secret every rank must present to join (default: DENSETORCH_JOB_TOKEN); prefer the variable, which other users cannot read in the process list');
}

/** Runs `command` as this machine's workers (see lib/launch.ts); returns the exit code. */
async function runLaunch(flags: LauncherFlags, command: string[]): Promise<number> {
  if (flags.nodeRank >= flags.nnodes) throw new UsageError(`--node-rank must be below --nnodes (${flags.nnodes}), got ${flags.nodeRank}`);
  const options: LaunchOptions = {
    nprocPerNode: flags.nprocPerNode ?? 1,
    nnodes: flags.nnodes,
    nodeRank: flags.nodeRank,
    masterAddr: flags.masterAddr,
    masterPort: flags.masterPort,
    maxRestarts: flags.maxRestarts,
    jobToken: flags.jobToken,
    command,
  };
  const world = options.nprocPerNode * flags.nnodes;
  console.error(`densetorch launch: ${options.nprocPerNode} worker(s) on node ${flags.nodeRank} of ${flags.nnodes} (world size ${world}), rendezvous at ${flags.masterAddr}:${flags.masterPort}`);
  const result = await launch(options);
  if (result.restarts > 0) console.error(`densetorch launch: ${result.restarts} restart(s)`);
  if (result.failed) console.error(`densetorch launch: failed: rank ${result.failed.rank} ${result.failed.signal ? `was killed by ${result.failed.signal}` : `exited with code ${result.failed.code}`}`);
  return result.exitCode;
}

/** `argv` without the launcher options (and their values), for the workers of `train`. */
export function withoutLauncherFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (LAUNCHER_FLAGS.includes(arg)) {
      i += 1; // its value
    } else if (!LAUNCHER_FLAGS.some((f) => arg.startsWith(`${f}=`))) {
      out.push(arg);
    }
  }
  return out;
}

/**
 * The data of one split. 'folder': an image folder per split under --data-dir (train/, and val/
 * or test/), streamed with the 'train' transform for training and 'eval' otherwise.
 */
/** The recipe options in effect, as one line (empty when none is set). */
function recipeSummary(flags: TrainFlags, data: { augment?: string; randomErasing?: number; transform?: unknown }): string {
  const parts: string[] = [];
  const augment = 'augment' in data ? data.augment : typeof data.transform === 'string' ? data.transform : undefined;
  if (augment && augment !== 'none') parts.push(`augment ${augment}`);
  if (data.randomErasing) parts.push(`random erasing ${data.randomErasing}`);
  if (flags.weightDecay !== undefined) parts.push(`weight decay ${flags.weightDecay}`);
  if (flags.warmupEpochs) parts.push(`warm-up ${flags.warmupEpochs} epochs`);
  if (flags.labelSmoothing) parts.push(`label smoothing ${flags.labelSmoothing}`);
  if (flags.mixupAlpha) parts.push(`mixup ${flags.mixupAlpha}`);
  if (flags.cutmixAlpha) parts.push(`cutmix ${flags.cutmixAlpha}`);
  if (flags.emaDecay) parts.push(`weight average ${flags.emaDecay}${flags.emaSteps ? ` every ${flags.emaSteps} steps` : ''}`);
  if (flags.clipGradNorm) parts.push(`gradient clipping ${flags.clipGradNorm}`);
  if (flags.accumulate && flags.accumulate > 1) parts.push(`accumulating ${flags.accumulate} batches`);
  return parts.join(', ');
}

/** Training augmentation asked for on the command line (the data set's own when absent). */
interface AugmentFlags {
  augment?: Augment;
  randomErasing?: number;
}

function datasetsFor(dt: Densetorch, name: DatasetName, dir: string | undefined, split: 'train' | 'test', limit?: number, imageSize = 224, aug: AugmentFlags = {}) {
  if (name === 'folder') {
    if (!dir) throw new UsageError('--data-dir is required with --dataset folder (a folder with train/ and val/ subfolders, one subfolder per class in each)');
    const sub = split === 'train' ? 'train' : ['val', 'test'].find((d) => fs.existsSync(path.join(dir, d)));
    if (!sub) throw new UsageError(`--dataset folder needs ${path.join(dir, 'val')} or ${path.join(dir, 'test')} for evaluation`);
    // Image folders: torchvision's 'train' geometry unless --augment names another ('none': the eval transform).
    const transform = split === 'test' || aug.augment === 'none' ? 'eval' : aug.augment ?? 'train';
    return dt.datasets.imageFolder(path.join(dir, sub), { size: imageSize, transform, limit, ...(split === 'train' ? { randomErasing: aug.randomErasing } : {}) });
  }
  let data: Dataset;
  if (name === 'mnist') data = dt.datasets.mnist({ split, limit });
  else if (name === 'fashion-mnist') data = dt.datasets.fashionMnist({ split, limit, dir });
  else {
    if (limit !== undefined) throw new UsageError('--limit works with --dataset mnist, fashion-mnist and folder only');
    if (!dir) throw new UsageError('--data-dir is required with --dataset cifar10 (the folder of data_batch_1.bin ... test_batch.bin)');
    data = dt.datasets.cifar10(dir, { split });
  }
  return split === 'train' && (aug.augment !== undefined || aug.randomErasing !== undefined) ? data.withAugmentation(aug) : data;
}

function fmt(x: number | null, digits = 4): string {
  return x === null ? '-' : x.toFixed(digits);
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padStart(widths[i])).join('  ');
  return [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

async function train(flags: TrainFlags): Promise<void> {
  const launcherAsked = flags.nprocPerNode !== undefined || flags.nnodes > 1;
  if (launcherAsked && process.env.WORLD_SIZE === undefined) {
    // This process is the launcher: the workers run this same command without the launcher options.
    process.exitCode = await runLaunch(flags, [__filename, ...withoutLauncherFlags(process.argv.slice(2))]);
    return;
  }
  const dt = load();
  if (flags.threads) dt.setNumThreads(flags.threads);
  // A worker of `densetorch launch` (or torchrun-style environment): join the group first.
  const group = process.env.WORLD_SIZE !== undefined ? await dt.distributed.init() : undefined;
  const lead = !group || group.rank === 0; // prints progress and saves
  const log = (line: string): void => {
    if (lead) console.log(line);
  };
  try {
    await trainIn(dt, flags, lead, log, group?.worldSize ?? 1);
  } finally {
    if (group) dt.distributed.destroy();
  }
}

async function trainIn(dt: Densetorch, flags: TrainFlags, lead: boolean, log: (line: string) => void, world: number): Promise<void> {
  const imageSize = flags.imageSize ?? (flags.model === 'cifar' ? 32 : 224);
  const trainData = datasetsFor(dt, flags.dataset, flags.dataDir, 'train', flags.limit, imageSize, { augment: flags.augment, randomErasing: flags.randomErasing });
  const testData = datasetsFor(dt, flags.dataset, flags.dataDir, 'test', flags.limit, imageSize);
  const channels = trainData instanceof dt.datasets.StreamDataset ? 3 : trainData.imageShape[0];
  dt.manualSeed(flags.seed);
  const common = { numClasses: trainData.classes?.length ?? 10, inChannels: channels, memoryEfficient: flags.memoryEfficient };
  let model;
  if (flags.model === 'cifar') {
    model = dt.densenetCifar({ depth: flags.depth, growthRate: flags.growthRate, bottleneck: flags.bottleneck, compression: flags.compression, ...common });
  } else if (flags.model in dt.PRESETS) {
    model = dt[flags.model as keyof typeof dt.PRESETS](common);
  } else {
    throw new UsageError(`--model must be 'cifar' or one of ${Object.keys(dt.PRESETS).join(', ')}, got '${flags.model}'`);
  }
  // Only the type and the learning rate: fit() owns every other default.
  const lr = flags.lr ?? defaultLr(flags.optimizer);
  const optimizer = { type: flags.optimizer, lr, ...(flags.weightDecay !== undefined ? { weightDecay: flags.weightDecay } : {}) };
  const schedule = { type: flags.schedule, ...(flags.warmupEpochs !== undefined ? { warmupEpochs: flags.warmupEpochs } : {}) };
  log(`densetorch ${dt.versions.densetorch} (LibTorch ${dt.versions.libtorch}), ${dt.getNumThreads()} threads${world > 1 ? ` per rank, ${world} ranks (data-parallel, c10d/gloo)` : ''}`);
  log(`model: ${flags.model === 'cifar' ? `DenseNet${flags.bottleneck ? '-BC' : ''} (L=${flags.depth}, k=${flags.growthRate})` : flags.model}, ` +
    `${model.numParameters().toLocaleString('en')} parameters${flags.memoryEfficient ? ', memory-efficient' : ''}`);
  if (flags.logdir) log(`logs: ${path.resolve(flags.logdir)} (view with: tensorboard --logdir ${path.resolve(flags.logdir)})`);
  log(`data: ${flags.dataset}, ${trainData.length} training / ${testData.length} test images; ${flags.epochs} epochs of batch ${flags.batchSize}${world > 1 ? ` per rank (${flags.batchSize * world} in all)` : ''}, ${flags.optimizer} lr ${lr}, ${flags.schedule} schedule${flags.precision === 'fp32' ? '' : `, ${flags.precision} compute`}`);
  const recipe = recipeSummary(flags, trainData);
  if (recipe) log(`recipe${flags.recipe ? ` ${flags.recipe}` : ''}: ${recipe}`);

  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cliProgress = require('cli-progress') as typeof import('cli-progress');
  const tty = lead && Boolean(process.stderr.isTTY);
  const bar = new cliProgress.SingleBar({
    format: 'epoch {epoch}/{epochs} [{bar}] {value}/{total} | loss {loss} | acc {acc} | {ips} img/s | ETA {eta_formatted}',
    hideCursor: true,
    clearOnComplete: false,
    etaBuffer: 20,
  }, cliProgress.Presets.shades_classic);
  const controller = new AbortController();
  const onSigint = (): void => {
    console.error('\ninterrupted: stopping after the current batch');
    controller.abort();
  };
  process.once('SIGINT', onSigint);
  let running = { loss: 0, correct: 0, seen: 0 };
  const started = Date.now();
  try {
    const history = await model.fit(trainData, {
      epochs: flags.epochs, batchSize: flags.batchSize, optimizer, schedule, seed: flags.seed, validationData: testData, precision: flags.precision,
      signal: controller.signal,
      checkpoint: flags.checkpoint ? { path: flags.checkpoint, ...(flags.checkpointSteps ? { everySteps: flags.checkpointSteps } : {}) } : undefined,
      resumeFrom: flags.resume,
      ...(flags.labelSmoothing !== undefined ? { labelSmoothing: flags.labelSmoothing } : {}),
      ...(flags.clipGradNorm !== undefined ? { clipGradNorm: flags.clipGradNorm } : {}),
      ...(flags.mixupAlpha !== undefined ? { mixup: { alpha: flags.mixupAlpha } } : {}),
      ...(flags.cutmixAlpha !== undefined ? { cutmix: { alpha: flags.cutmixAlpha } } : {}),
      ...(flags.emaDecay !== undefined ? { ema: { decay: flags.emaDecay, everySteps: flags.emaSteps ?? 1 } } : {}),
      ...(flags.accumulate !== undefined ? { accumulateSteps: flags.accumulate } : {}),
      // Only the first rank writes logs (every rank sees the group's figures).
      ...(flags.logdir && lead ? { logDir: flags.logdir } : {}),
      onBatchEnd: (b) => {
        if (b.batch === 1) {
          running = { loss: 0, correct: 0, seen: 0 };
          if (tty) bar.start(b.batches, 0, { epoch: b.epoch, epochs: flags.epochs, loss: '-', acc: '-', ips: '-' });
        }
        running.loss += b.loss;
        running.correct += b.accuracy;
        running.seen += 1;
        const payload = { epoch: b.epoch, epochs: flags.epochs, loss: (running.loss / running.seen).toFixed(4), acc: (running.correct / running.seen).toFixed(4), ips: b.imagesPerSecond.toFixed(0) };
        if (tty) bar.update(b.batch, payload);
        else if (b.batch % Math.max(1, Math.floor(b.batches / 4)) === 0) log(`epoch ${b.epoch}/${flags.epochs} batch ${b.batch}/${b.batches} loss ${payload.loss} acc ${payload.acc} ${payload.ips} img/s`);
      },
      onEpochEnd: (e) => {
        if (tty) bar.stop();
        log(`epoch ${e.epoch}/${flags.epochs}: loss ${fmt(e.loss)} acc ${fmt(e.accuracy)} | test loss ${fmt(e.valLoss)} acc ${fmt(e.valAccuracy)}${e.emaValAccuracy !== null ? ` (EMA ${fmt(e.emaValAccuracy)})` : ''} | lr ${e.lr.toPrecision(3)} | ${e.seconds.toFixed(1)} s, ${e.imagesPerSecond.toFixed(0)} img/s`);
      },
    });
    const ema = history.epochs.some((e) => e.emaValAccuracy !== null);
    const rows = [['epoch', 'loss', 'accuracy', 'test loss', 'test accuracy', ...(ema ? ['EMA test accuracy'] : []), 'lr', 'seconds']];
    for (const e of history.epochs) rows.push([String(e.epoch), fmt(e.loss), fmt(e.accuracy), fmt(e.valLoss), fmt(e.valAccuracy), ...(ema ? [fmt(e.emaValAccuracy)] : []), e.lr.toPrecision(3), e.seconds.toFixed(1)]);
    log(`\n${table(rows)}\n`);
    if (!lead) return;
    await model.save(flags.out);
    const last = history.epochs[history.epochs.length - 1];
    const saved = last?.emaValAccuracy != null ? `; weight average ${fmt(last.emaValAccuracy)} (saved)` : '';
    console.log(`trained in ${((Date.now() - started) / 1000).toFixed(1)} s; test accuracy ${fmt(last?.valAccuracy ?? null)}${saved}; saved ${path.resolve(flags.out)}`);
    if (flags.plot) {
      writePlot(flags.plot, history.epochs);
      console.log(`wrote ${path.resolve(flags.plot)}`);
    }
  } finally {
    if (tty) bar.stop();
    process.removeListener('SIGINT', onSigint);
  }
}

interface EvaluateFlags {
  dataset: DatasetName;
  imageSize?: number;
  precision: Precision;
  dataDir?: string;
  split: 'train' | 'test';
  batchSize: number;
  limit?: number;
}

async function evaluate(file: string, flags: EvaluateFlags): Promise<void> {
  const dt = load();
  const model = await dt.load(file);
  const size = flags.imageSize ?? model.input?.height ?? (model.config.stem === 'cifar' ? 32 : 224);
  const data = datasetsFor(dt, flags.dataset, flags.dataDir, flags.split, flags.limit, size);
  const started = Date.now();
  const r = await model.evaluate(data, { batchSize: flags.batchSize, precision: flags.precision });
  console.log(`${flags.dataset} ${flags.split} (${data.length} images): loss ${r.loss.toFixed(4)}, accuracy ${r.accuracy.toFixed(4)} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

async function info(file: string): Promise<void> {
  const { model, metadata: header } = await loadWithMetadata(file);
  console.log(`file: ${path.resolve(file)} (${(fs.statSync(file).size / 1e6).toFixed(2)} MB)`);
  console.log(`parameters: ${model.numParameters().toLocaleString('en')}`);
  console.log('config:');
  for (const [k, v] of Object.entries(model.config)) console.log(`  ${k}: ${Array.isArray(v) ? `[${v.join(', ')}]` : String(v)}`);
  if (model.classes) console.log(`classes (${model.classes.length}): ${model.classes.join(', ')}`);
  console.log(`input: ${model.input ? describeInputSpec(model.input) : 'not recorded (a file saved before densetorch recorded it); predict and serve guess, with a warning'}`);
  console.log('metadata:');
  const shown = new Set([METADATA_CONFIG_KEY, METADATA_CLASSES_KEY, METADATA_INPUT_KEY]);
  for (const [k, v] of Object.entries(header)) if (!shown.has(k)) console.log(`  ${k}: ${v}`);
}

function setup(): void {
  const lt = findLibTorch({ fetch: true, log: (m) => console.log(m) });
  console.log(`LibTorch ${lt.version} ready at ${lt.root} (found via ${lt.source})`);
}

function doctor(): number {
  console.log(`densetorch ${PACKAGE_VERSION} (pins LibTorch ${PINNED_TORCH_VERSION}), node ${process.version}, platform ${platformTag()}`);
  console.log(`cache: ${cacheDir()}`);
  for (const step of searchLibTorch({ runtime: true })) {
    console.log(`LibTorch via ${step.source}: ${step.found ? `${step.found.version} at ${step.found.root}${step.found.cuda ? ' (CUDA)' : ''}` : `not found (${step.where})`}`);
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const native = require('./native') as typeof import('./native');
    const loaded = native.loadNative();
    const v = loaded.addon.versions();
    console.log(`addon: ${loaded.addonPath} (built against LibTorch ${loaded.builtAgainst})`);
    console.log(`loaded LibTorch ${loaded.libtorch.version} from ${loaded.libtorch.source}; CUDA ${v.cudaAvailable ? `available (${v.cudaDeviceCount} device(s))` : 'not available'}; ${loaded.addon.getNumThreads()} threads`);
    const { distributed } = loaded.addon;
    const k = loaded.addon.kernels();
    console.log(`kernels: capability ${k.capability} (CPU ${k.cpu}); 1x1 with batch norm: ${k.normGemm}; 3x3 Winograd: ${k.winograd}; 3x3 weight gradient: ${k.conv3x3WeightGrad}`);
    console.log(`distributed training: ${distributed.available ? 'available (c10d, Gloo)' : `not available: ${distributed.reason}`}`);
    console.log('ok');
    return 0;
  } catch (err) {
    console.log(`problem: ${(err as Error).message}`);
    return 1;
  }
}

/** Builds the command-line program (exported for tests). */
export function program(): Command {
  const cli = new Command('densetorch').description('DenseNet on LibTorch from Node.js').exitOverride().showHelpAfterError().enablePositionalOptions();
  const trainCommand = cli
    .command('train')
    .description('train a DenseNet and save it as .safetensors')
    .addOption(new Option('--dataset <name>', "data set: mnist (ships with the package), fashion-mnist (Debian's dataset-fashion-mnist or --data-dir), cifar10 (--data-dir), folder (--data-dir with train/ and val/ image folders)").choices(DATASETS).default('mnist'))
    .option('--data-dir <dir>', 'folder of the data set: CIFAR-10 binaries, Fashion-MNIST IDX files, or train/ and val/ image folders')
    .option('--limit <n>', 'use at most n images per split, for quick runs (mnist, fashion-mnist, folder)', int('--limit', 10))
    .addOption(new Option('--image-size <pixels>', 'image size for --dataset folder (default: 224 for presets, 32 for cifar models)').argParser(int('--image-size')))
    .option('--model <name>', "'cifar' (set by --depth/--growth-rate) or a preset: densenet121, densenet161, densenet169, densenet201, densenet264", 'cifar')
    .option('--depth <L>', 'CIFAR DenseNet depth (6n+4 with bottleneck, 3n+4 without)', int('--depth'), 28)
    .option('--growth-rate <k>', 'growth rate k', int('--growth-rate'), 12)
    .option('--no-bottleneck', 'plain layers instead of DenseNet-B bottlenecks')
    .option('--compression <theta>', 'transition compression in (0, 1]', positive('--compression'), 0.5)
    .option('--epochs <n>', 'epochs', int('--epochs'), 8)
    .option('--batch-size <n>', 'batch size', int('--batch-size'), 64)
    .addOption(new Option('--optimizer <type>', 'optimizer').choices(['sgd', 'adam', 'adamw']).default('sgd'))
    .option('--lr <rate>', 'learning rate (default 0.1 for sgd, 1e-3 for adam/adamw)', positive('--lr'))
    .option('--weight-decay <w>', 'weight decay (default 1e-4 for sgd, 0 for adam, 1e-2 for adamw)', nonNegative('--weight-decay'))
    .addOption(new Option('--schedule <type>', 'learning-rate schedule').choices(['constant', 'multistep', 'cosine']).default('cosine'))
    .option('--warmup-epochs <n>', 'linear warm-up of the rate over n epochs, per step (from 0.1 of it)', positive('--warmup-epochs'))
    .option('--label-smoothing <e>', 'label smoothing in [0, 1) (cross-entropy against (1-e)*onehot + e/K)', nonNegative('--label-smoothing'))
    .option('--clip-grad-norm <max>', 'clip the gradients to this total norm before each update', positive('--clip-grad-norm'))
    .option('--mixup-alpha <a>', 'MixUp of each batch with lambda ~ Beta(a, a) (with --cutmix-alpha: one of the two per batch)', positive('--mixup-alpha'))
    .option('--cutmix-alpha <a>', 'CutMix of each batch with lambda ~ Beta(a, a)', positive('--cutmix-alpha'))
    .option('--ema-decay <d>', 'keep an exponential moving average of the weights (e.g. 0.9998), evaluated every epoch and saved', positive('--ema-decay'))
    .option('--ema-steps <n>', 'optimizer steps between updates of the average', int('--ema-steps'))
    .option('--accumulate <n>', 'sum the gradients of n batches before each update', int('--accumulate'))
    .addOption(new Option('--augment <name>', 'training augmentation (default: the data set\'s; cifar10 and folders augment, mnist and fashion-mnist do not)').choices(['none', 'cifar', 'trivialaugment', 'randaugment']))
    .option('--random-erasing <p>', 'RandomErasing probability per training image', nonNegative('--random-erasing'))
    .addOption(new Option('--recipe <name>', `a tested set of the options above for a data set (options given on the command line win): ${Object.keys(RECIPES).join(', ')}; see docs/training.md`).choices(Object.keys(RECIPES)))
    .option('--memory-efficient', 'memory-efficient concatenation (Pleiss et al.)', false)
    .addOption(precisionOption())
    .option('--threads <n>', 'LibTorch threads', int('--threads'))
    .option('--seed <n>', 'random seed', int('--seed', 0), 0)
    .option('--out <file>', 'where to save the model', 'densenet.safetensors')
    .option('--checkpoint <file>', 'write a resumable checkpoint after every epoch')
    .option('--checkpoint-steps <n>', 'also write it every n optimizer steps inside an epoch', int('--checkpoint-steps'))
    .option('--resume <file>', "resume from a checkpoint ('auto': from --checkpoint when it exists, for launch --max-restarts)")
    .option('--plot <file.svg>', 'write a chart of loss and accuracy per epoch')
    .option('--logdir <dir>', 'write TensorBoard event files and metrics.jsonl into this folder');
  launcherOptions(trainCommand, false).action((flags: TrainFlags, command: Command) => train(withRecipe(flags, command)));
  launcherOptions(
    cli
      .command('launch')
      .description("run a data-parallel training script as this machine's workers, with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")
      .argument('<script>', 'the Node program every worker runs (it calls dt.distributed.init())')
      .argument('[args...]', "the program's arguments")
      .passThroughOptions(),
    true,
  ).action(async (script: string, args: string[], flags: LauncherFlags) => {
    process.exitCode = await runLaunch(flags, [script, ...args]);
  });
  cli
    .command('evaluate <model>')
    .description('loss and accuracy of a saved model on a data set')
    .addOption(new Option('--dataset <name>', 'data set (as for train)').choices(DATASETS).default('mnist'))
    .option('--data-dir <dir>', 'folder of the data set (as for train)')
    .addOption(new Option('--image-size <pixels>', 'image size for --dataset folder').argParser(int('--image-size')))
    .addOption(new Option('--split <split>', 'which part').choices(['train', 'test']).default('test'))
    .option('--batch-size <n>', 'batch size', int('--batch-size'), 256)
    .option('--limit <n>', 'use at most n images (mnist, fashion-mnist, folder)', int('--limit', 10))
    .addOption(precisionOption())
    .action((file: string, flags: EvaluateFlags) => evaluate(file, flags));
  cli.command('info <model>').description('config, parameter count and metadata of a saved model').action((file: string) => info(file));
  cli
    .command('export <model>')
    .description('write a saved model as an ONNX inference graph (for onnxruntime, onnxruntime-web, ...)')
    .requiredOption('--onnx <file>', 'the ONNX file to write')
    .addOption(new Option('--opset <n>', 'ONNX operator set (13-21)').default(17).argParser(int('--opset')))
    .option('--no-fold-batch-norm', 'keep every BatchNormalization node (default: fold those after a convolution into it)')
    .option('--static-batch', 'fix the batch dimension to 1 (default: any batch size)')
    .action(async (file: string, flags: { onnx: string; opset: number; foldBatchNorm: boolean; staticBatch?: boolean }) => {
      const dt = load();
      const model = await dt.load(file);
      await model.exportOnnx(flags.onnx, { opset: flags.opset, foldBatchNorm: flags.foldBatchNorm, dynamicBatch: !flags.staticBatch });
      console.log(`wrote ${flags.onnx} (${(fs.statSync(flags.onnx).size / 1e6).toFixed(2)} MB, opset ${flags.opset}${model.input ? `, input ${describeInputSpec(model.input)}` : ''})`);
    });
  cli
    .command('predict <model> <images...>')
    .description('classify image files (JPEG, PNG, WebP, TIFF, GIF, AVIF) with a saved model')
    .addOption(new Option('--top <k>', 'classes per image').default(5).argParser(int('--top')))
    .addOption(new Option('--size <pixels>', "read images RGB at this size with the 'eval' transform (default: as the model's input spec says)").argParser(int('--size')))
    .option('--json', 'print JSON instead of a table')
    .action(async (file: string, images: string[], flags: { top: number; size?: number; json?: boolean }) => {
      const dt = load();
      const model = await dt.load(file);
      const results = await model.classify(images, flags.size === undefined ? { topK: flags.top } : { topK: flags.top, size: flags.size });
      if (flags.json) {
        console.log(JSON.stringify(results, null, 2));
        return;
      }
      for (const r of results) {
        console.log(r.file);
        for (const t of r.top) console.log(`  ${(100 * t.probability).toFixed(2).padStart(6)}%  ${t.className ?? `class ${t.label}`}${t.className ? ` (${t.label})` : ''}`);
      }
    });
  cli
    .command('serve <model>')
    .description('HTTP inference server (POST /predict with a JSON tensor, GET /healthz) with dynamic batching')
    .addOption(new Option('--port <n>', 'TCP port (0: any free port)').default(8080).argParser(int('--port', 0)))
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .addOption(new Option('--max-batch <n>', 'most images in one merged forward pass').default(32).argParser(int('--max-batch')))
    .addOption(new Option('--max-delay-ms <ms>', 'longest wait for a batch to fill while the model is free').default(0).argParser(int('--max-delay-ms', 0)))
    .action(async (file: string, flags: { port: number; host: string; maxBatch: number; maxDelayMs: number }) => {
      // The server is the example program (examples/serve.js), shipped with the package.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const server = require(path.join(__dirname, '..', 'examples', 'serve.js')) as { main(argv: string[]): Promise<number> };
      process.exitCode = await server.main([file, '--port', String(flags.port), '--host', flags.host, '--max-batch', String(flags.maxBatch), '--max-delay-ms', String(flags.maxDelayMs)]);
    });
  cli.command('setup').description('fetch the pinned LibTorch into the densetorch cache').action(() => setup());
  cli.command('doctor').description('what densetorch finds: versions, LibTorch, CUDA, threads, addon').action(() => {
    process.exitCode = doctor();
  });
  return cli;
}

async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`error: ${err.message}\n\nUsage: densetorch ${argv.slice(2, 3).join(' ')} [options] (see --help)`);
      return 2;
    }
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return 0;
      return 2; // usage error: commander already printed the message and the usage
    }
    console.error(`error: ${(err as Error).message}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
