/**
 * `densetorch launch`: starts the workers of one machine of a data-parallel job with torchrun's
 * environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
 * MASTER_PORT, TORCHELASTIC_RESTART_COUNT), forwards their output line by line with a rank
 * prefix and, when one worker fails, stops the others and either starts them all again (up to
 * `maxRestarts` times, torchrun's elastic semantics) or reports which rank failed.
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
  /**
   * How many times the workers are all stopped and started again after one fails (torchrun's
   * `--max-restarts`); each round's workers see TORCHELASTIC_RESTART_COUNT = the round (0 first).
   * A worker of a multi-machine job fails as soon as a peer does (a closed connection or a lost
   * heartbeat), so every machine's launcher restarts once per failure of the job and the count is
   * the job's. Workers resume with `fit({ checkpoint, resumeFrom: 'auto' })`. Default 0.
   */
  maxRestarts?: number;
  /** The job's secret, passed to the workers as DENSETORCH_JOB_TOKEN (see `distributed.init`'s `jobToken`). */
  jobToken?: string;
}

/** How a launch ended. */
export interface LaunchResult {
  /** 0 when every worker exited 0. */
  exitCode: number;
  /** The first worker that failed in the last round, when one did. */
  failed?: { rank: number; code: number | null; signal: NodeJS.Signals | null };
  /** Rounds started again after a failure. */
  restarts: number;
}

/**
 * The OpenMP/LibTorch threads each worker gets when OMP_NUM_THREADS is not set: the machine's
 * cores shared out evenly (torchrun uses 1), at least 1.
 */
export function threadsPerWorker(nproc: number, cores = os.availableParallelism ? os.availableParallelism() : os.cpus().length): number {
  return Math.max(1, Math.floor(cores / nproc));
}

/** The environment of local worker `local` in restart round `restart` (torchrun's variables). */
export function workerEnv(o: LaunchOptions, local: number, restart = 0): NodeJS.ProcessEnv {
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
    TORCHELASTIC_RESTART_COUNT: String(restart),
    TORCHELASTIC_MAX_RESTARTS: String(o.maxRestarts ?? 0),
    ...(o.jobToken ? { DENSETORCH_JOB_TOKEN: o.jobToken } : {}),
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

/** How one round of workers ended. */
interface Round {
  /** The first worker that failed (the one that stopped the others), when one did. */
  failed?: LaunchResult['failed'];
  /** Whether any worker ended other than with exit code 0 (one stopped by a signal too). */
  anyFailed: boolean;
}

/**
 * Runs the workers of this machine until all have exited. When one exits non-zero or is killed,
 * the others get SIGTERM (SIGKILL after `killAfterMs`); then, while restarts are left, all start
 * again, else the result names the failed rank. SIGINT and SIGTERM sent to the launcher are
 * passed on to the workers and end the job (no restart).
 */
export async function launch(o: LaunchOptions): Promise<LaunchResult> {
  const stderr = o.stderr ?? process.stderr;
  const maxRestarts = o.maxRestarts ?? 0;
  const control = { interrupted: false, stopAll: (_signal: NodeJS.Signals): void => {} };
  const onSignal = (signal: NodeJS.Signals) => (): void => {
    control.interrupted = true;
    control.stopAll(signal);
  };
  const onInt = onSignal('SIGINT');
  const onTerm = onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    for (let restart = 0; ; restart += 1) {
      const round = await runRound(o, restart, control);
      if (!round.anyFailed) return { exitCode: 0, restarts: restart };
      if (control.interrupted || restart >= maxRestarts) return { exitCode: 1, failed: round.failed, restarts: restart };
      stderr.write(`densetorch launch: restarting every worker of this machine (restart ${restart + 1} of ${maxRestarts})\n`);
    }
  } finally {
    process.removeListener('SIGINT', onInt);
    process.removeListener('SIGTERM', onTerm);
  }
}

function runRound(o: LaunchOptions, restart: number, control: { interrupted: boolean; stopAll: (signal: NodeJS.Signals) => void }): Promise<Round> {
  const stdout = o.stdout ?? process.stdout;
  const stderr = o.stderr ?? process.stderr;
  const nodeRank = o.nodeRank ?? 0;
  const workers: { rank: number; child: ChildProcess; exited: boolean }[] = [];
  let failed: LaunchResult['failed'];
  let stopping = false;
  control.stopAll = (signal: NodeJS.Signals): void => {
    if (stopping && signal === 'SIGTERM') return;
    stopping = true;
    for (const w of workers) if (!w.exited) w.child.kill(signal);
    const timer = setTimeout(() => {
      for (const w of workers) if (!w.exited) w.child.kill('SIGKILL');
    }, o.killAfterMs ?? 5000);
    timer.unref();
  };
  return new Promise((resolve) => {
    let running = o.nprocPerNode;
    for (let local = 0; local < o.nprocPerNode; local += 1) {
      const rank = nodeRank * o.nprocPerNode + local;
      const child = spawn(process.execPath, o.command, { env: workerEnv(o, local, restart), stdio: ['ignore', 'pipe', 'pipe'] });
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
          control.stopAll('SIGTERM');
        }
        running -= 1;
        if (running === 0) {
          resolve({ failed, anyFailed: workers.some((w) => w.child.exitCode !== 0) });
        }
      });
    }
  });
}
