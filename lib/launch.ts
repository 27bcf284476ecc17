/**
 * `densetorch launch`: starts the workers of one machine of a data-parallel job with torchrun's
 * environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
 * MASTER_PORT), forwards their output line by line with a rank prefix and, when one worker
 * fails, stops the others and reports which rank failed.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as os from 'node:os';
import { Readable, Writable } from 'node:stream';

/** What to launch on this machine. */
export interface LaunchOptions {
  /** Workers on this machine. */
  nprocPerNode: number;
  /** Machines in the job. Default 1. */
  nnodes?: number;
  /** This machine's index, 0-based. Default 0. */
  nodeRank?: number;
  /** Address of rank 0's machine. Default 127.0.0.1. */
  masterAddr?: string;
  /** Port of the rendezvous store on rank 0. Default 29500. */
  masterPort?: number;
  /** The program every worker runs and its arguments (run with this Node). */
  command: string[];
  /** Extra environment for the workers. */
  env?: NodeJS.ProcessEnv;
  /** Where the prefixed output goes. Default: this process's stdout and stderr. */
  stdout?: Writable;
  stderr?: Writable;
  /** Grace period between SIGTERM and SIGKILL when stopping workers. Default 5000 ms. */
  killAfterMs?: number;
}

/** How a launch ended. */
export interface LaunchResult {
  /** 0 when every worker exited 0. */
  exitCode: number;
  /** The first worker that failed, when one did. */
  failed?: { rank: number; code: number | null; signal: NodeJS.Signals | null };
}

/**
 * The OpenMP/LibTorch threads each worker gets when OMP_NUM_THREADS is not set: the machine's
 * cores shared out evenly (torchrun uses 1), at least 1.
 */
export function threadsPerWorker(nproc: number, cores = os.availableParallelism ? os.availableParallelism() : os.cpus().length): number {
  return Math.max(1, Math.floor(cores / nproc));
}

/** The environment of local worker `local` (torchrun's variables). */
export function workerEnv(o: LaunchOptions, local: number): NodeJS.ProcessEnv {
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  const base = { ...process.env, ...o.env };
  return {
    ...base,
    RANK: String(nodeRank * o.nprocPerNode + local),
    WORLD_SIZE: String(nnodes * o.nprocPerNode),
    LOCAL_RANK: String(local),
    LOCAL_WORLD_SIZE: String(o.nprocPerNode),
    GROUP_RANK: String(nodeRank),
    MASTER_ADDR: o.masterAddr ?? '127.0.0.1',
    MASTER_PORT: String(o.masterPort ?? 29500),
    OMP_NUM_THREADS: base.OMP_NUM_THREADS ?? String(threadsPerWorker(o.nprocPerNode)),
  };
}

/** Copies `from` to `to` line by line, each line prefixed; a last partial line is flushed at the end. */
function prefixLines(from: Readable, to: Writable, prefix: string): void {
  let pending = '';
  from.setEncoding('utf8');
  from.on('data', (chunk: string) => {
    const lines = (pending + chunk).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) to.write(`${prefix}${line}\n`);
  });
  from.on('end', () => {
    if (pending) to.write(`${prefix}${pending}\n`);
  });
}

/**
 * Runs the workers of this machine until all have exited. When one exits non-zero or is killed,
 * the others get SIGTERM (SIGKILL after `killAfterMs`) and the result names the failed rank.
 * SIGINT and SIGTERM sent to the launcher are passed on to the workers.
 */
export function launch(o: LaunchOptions): Promise<LaunchResult> {
  const stdout = o.stdout ?? process.stdout;
  const stderr = o.stderr ?? process.stderr;
  const nodeRank = o.nodeRank ?? 0;
  const workers: { rank: number; child: ChildProcess; exited: boolean }[] = [];
  let failed: LaunchResult['failed'];
  let stopping = false;
  const stopAll = (signal: NodeJS.Signals): void => {
    if (stopping && signal === 'SIGTERM') return;
    stopping = true;
    for (const w of workers) if (!w.exited) w.child.kill(signal);
    const timer = setTimeout(() => {
      for (const w of workers) if (!w.exited) w.child.kill('SIGKILL');
    }, o.killAfterMs ?? 5000);
    timer.unref();
  };
  const onSignal = (signal: NodeJS.Signals) => () => stopAll(signal);
  const onInt = onSignal('SIGINT');
  const onTerm = onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  return new Promise((resolve) => {
    let running = o.nprocPerNode;
    for (let local = 0; local < o.nprocPerNode; local += 1) {
      const rank = nodeRank * o.nprocPerNode + local;
      const child = spawn(process.execPath, o.command, { env: workerEnv(o, local), stdio: ['ignore', 'pipe', 'pipe'] });
      const worker = { rank, child, exited: false };
      workers.push(worker);
      prefixLines(child.stdout!, stdout, `[rank ${rank}] `);
      prefixLines(child.stderr!, stderr, `[rank ${rank}] `);
      child.on('error', (err) => stderr.write(`densetorch launch: rank ${rank} could not start: ${err.message}\n`));
      child.on('close', (code, signal) => {
        worker.exited = true;
        if ((code !== 0 || signal) && !failed && !stopping) {
          failed = { rank, code, signal };
          stderr.write(`densetorch launch: rank ${rank} (pid ${child.pid}) ${signal ? `was killed by ${signal}` : `exited with code ${code}`}; stopping the other workers\n`);
          stopAll('SIGTERM');
        }
        running -= 1;
        if (running === 0) {
          process.removeListener('SIGINT', onInt);
          process.removeListener('SIGTERM', onTerm);
          const anyFailed = workers.some((w) => w.child.exitCode !== 0);
          resolve({ exitCode: failed || anyFailed ? 1 : 0, failed });
        }
      });
    }
  });
}
