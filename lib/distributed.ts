/**
 * Data-parallel training across processes and machines on PyTorch's own collective engine, c10d
 * (Gloo on the CPU), with torchrun's conventions: every process is one rank, started by
 * `densetorch launch` (or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
 * MASTER_PORT), calls {@link init}, then trains as usual: once a group is initialized, `fit` and
 * `evaluate` are data-parallel as a model wrapped in PyTorch's DistributedDataParallel.
 *
 * @example
 * ```js
 * const dt = require('densetorch');
 * const { rank } = await dt.distributed.init();          // torchrun's environment variables
 * const model = dt.DenseNet.cifar({ depth: 40, growthRate: 12, numClasses: 10 });
 * await model.fit(train, { epochs: 10, batchSize: 64 }); // 64 per rank; gradients averaged
 * if (rank === 0) await model.save('model.safetensors');
 * dt.distributed.destroy();
 * ```
 */
import { DistributedError } from './errors';
import { addon, NativeDistributed } from './native';
import { Tensor } from './tensor';
import { knownOptions, nonNegativeInt, numberIn, positiveInt } from './validate';

export { DistributedError };

/** The collective backend: 'gloo' for CPU tensors (every build), 'nccl' for CUDA tensors (CUDA builds with NCCL). */
export type Backend = 'gloo' | 'nccl';

/** How a reduction combines the ranks' tensors. */
export type ReduceOp = 'sum' | 'mean' | 'max' | 'min';

/** Options of {@link init}; each defaults from torchrun's environment variables. */
export interface InitOptions {
  /** Default 'gloo'. */
  backend?: Backend;
  /** This process's rank, 0-based. Default: `RANK`, else 0. */
  rank?: number;
  /** Number of processes in the group. Default: `WORLD_SIZE`, else 1. */
  worldSize?: number;
  /** Rank within this machine. Default: `LOCAL_RANK`, else 0. */
  localRank?: number;
  /** Address of rank 0, which hosts the rendezvous store. Default: `MASTER_ADDR`, else 127.0.0.1. */
  masterAddr?: string;
  /** Port of the rendezvous store on rank 0. Default: `MASTER_PORT`, else 29500. */
  masterPort?: number;
  /**
   * How long the rendezvous and every collective may wait for the other ranks, in milliseconds.
   * A rank that dies is noticed at once; one that hangs, after this. Default: 30 minutes, as PyTorch's.
   */
  timeoutMs?: number;
  /**
   * How long a peer may go without a heartbeat before every rank's pending and later collectives
   * fail with a {@link DistributedError} naming it, in milliseconds. Heartbeats travel on their
   * own connection to the store every tenth of this (at most every second), so a dead machine or
   * a cut link, which close no socket, are noticed in this time however long `timeoutMs` is.
   * Default: 30 seconds.
   */
  heartbeatTimeoutMs?: number;
  /**
   * A secret every rank of the job presents: rank 0's store then answers only processes that
   * prove they know it (a challenge and an HMAC: the secret never crosses the network); any
   * other is refused with a clear {@link DistributedError} and the job goes on undisturbed.
   * Gloo's traffic between the ranks is neither authenticated nor encrypted (see
   * docs/distributed.md). Default: `DENSETORCH_JOB_TOKEN`, else none.
   */
  jobToken?: string;
}

/** Where this process stands in its group. */
export interface GroupInfo {
  /** This process's rank in the group, 0 … worldSize − 1. */
  rank: number;
  /** Number of processes in the group. */
  worldSize: number;
  /** This process's rank among the processes on its host. */
  localRank: number;
  /** The collective backend in use. */
  backend: Backend;
}

function native(): NativeDistributed {
  return addon().distributed;
}

/** Whether this build of the addon can form groups (it was built with gloo's headers). */
export const available: boolean = native().available;

/** Why {@link available} is false (what to install and rebuild), or '' when it is true. */
export const reason: string = native().reason;

/** PyTorch's default collective timeout. */
export const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;

const INIT_KEYS = ['backend', 'rank', 'worldSize', 'localRank', 'masterAddr', 'masterPort', 'timeoutMs', 'heartbeatTimeoutMs', 'jobToken'];

/** The default of {@link InitOptions.heartbeatTimeoutMs}. */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 30 * 1000;

let localRank = 0;

function fromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new RangeError(`Expected the environment variable ${name} to be a non-negative integer but received '${raw}'`);
  return Number(raw);
}

/**
 * Joins the group: resolves once every rank has arrived (rank 0 hosts the rendezvous store at
 * `masterAddr:masterPort`), or rejects with a {@link DistributedError} after `timeoutMs`.
 *
 * @param options - Defaults from RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.
 * @returns This process's rank, the group's size and its local rank.
 * @throws {DistributedError} When the build has no distributed support, a group is already
 *   initialized, the rendezvous fails, or the job does not expect this process (its size differs,
 *   or another process holds its rank).
 * @throws {TypeError | RangeError} For a bad option.
 */
export async function init(options?: InitOptions): Promise<GroupInfo> {
  const o = knownOptions<InitOptions>(options, INIT_KEYS, 'distributed.init');
  const backend = o.backend ?? 'gloo';
  if (backend !== 'gloo' && backend !== 'nccl') throw new TypeError(`Expected backend to be 'gloo' or 'nccl' but received '${String(backend)}'`);
  const worldSize = positiveInt(o.worldSize ?? fromEnv('WORLD_SIZE', 1), 'worldSize');
  const rank = nonNegativeInt(o.rank ?? fromEnv('RANK', 0), 'rank');
  if (rank >= worldSize) throw new RangeError(`Expected rank to be below worldSize (${worldSize}) but received ${rank}`);
  const masterAddr = o.masterAddr ?? (process.env.MASTER_ADDR || '127.0.0.1');
  if (typeof masterAddr !== 'string' || !masterAddr) throw new TypeError(`Expected masterAddr to be a host name or address but received ${String(masterAddr)}`);
  const masterPort = numberIn(o.masterPort ?? fromEnv('MASTER_PORT', 29500), 'masterPort', (x) => Number.isInteger(x) && x >= 1 && x <= 65535, 'integer in [1, 65535]', true);
  const timeoutMs = numberIn(o.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', (x) => x >= 1, '>= 1', true);
  const heartbeatTimeoutMs = numberIn(o.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS, 'heartbeatTimeoutMs', (x) => x >= 100, '>= 100', true);
  const local = nonNegativeInt(o.localRank ?? fromEnv('LOCAL_RANK', 0), 'localRank');
  const jobToken = o.jobToken ?? (process.env.DENSETORCH_JOB_TOKEN || undefined);
  if (jobToken !== undefined && (typeof jobToken !== 'string' || !jobToken)) throw new TypeError('Expected jobToken to be a non-empty string');
  if (!available) throw new DistributedError(reason);
  await native().init({ backend, rank, worldSize, masterAddr, masterPort, timeoutMs: Math.round(timeoutMs), heartbeatTimeoutMs: Math.round(heartbeatTimeoutMs), ...(jobToken ? { jobToken } : {}) });
  localRank = local;
  return info();
}

/** Whether this process is in a group ({@link init} was called and {@link destroy} not yet). */
export function isInitialized(): boolean {
  return native().isInitialized();
}

/**
 * This process's place in its group.
 * @throws {DistributedError} When no group is initialized.
 */
export function info(): GroupInfo {
  const g = native().info();
  return { rank: g.rank, worldSize: g.worldSize, localRank, backend: g.backend };
}

/** Leaves the group (closing its connections); a no-op when there is none. Call it before exiting. */
export function destroy(): void {
  native().destroy();
  localRank = 0;
}

function tensorArg(value: unknown): Tensor {
  if (!(value instanceof Tensor)) throw new TypeError('Expected tensor to be a Tensor');
  return value;
}

/**
 * Reduces `tensor` across every rank, in place (as `torch.distributed.all_reduce`): every rank
 * calls it, in the same order as the other collectives; each ends with the result.
 *
 * @param tensor - A CPU tensor of the same shape and dtype on every rank.
 * @param options - `op`: 'sum' (default), 'mean', 'max' or 'min'.
 * @throws {DistributedError} When a rank is gone or the timeout passes (the message names the rank).
 */
export async function allReduce(tensor: Tensor, options?: { op?: ReduceOp }): Promise<void> {
  const o = knownOptions<{ op?: ReduceOp }>(options, ['op'], 'distributed.allReduce');
  const op = o.op ?? 'sum';
  if (!['sum', 'mean', 'max', 'min'].includes(op)) throw new TypeError(`Expected op to be 'sum', 'mean', 'max' or 'min' but received '${String(op)}'`);
  await native().allReduce(tensorArg(tensor).handle('tensor'), op);
}

/**
 * Copies `tensor` of rank `src` into the same tensor of every other rank, in place.
 * @param options - `src`: the rank whose tensor is sent (default 0).
 * @throws {DistributedError} When a rank is gone or the timeout passes.
 */
export async function broadcast(tensor: Tensor, options?: { src?: number }): Promise<void> {
  const o = knownOptions<{ src?: number }>(options, ['src'], 'distributed.broadcast');
  await native().broadcast(tensorArg(tensor).handle('tensor'), nonNegativeInt(o.src ?? 0, 'src'));
}

/**
 * Resolves once every rank has called it.
 * @throws {DistributedError} When a rank is gone or the timeout passes.
 */
export async function barrier(): Promise<void> {
  await native().barrier();
}

export { shardOrder, shardLength } from './data/shard';
export type { Shard } from './data/shard';
