'use strict';
// Two hosts on one machine (network namespaces joined by a veth pair, scripts/netns.js), one
// rank each through `densetorch launch --nnodes 2`: the weights equal a 2-process run on one
// host, and a link cut mid-epoch fails both ranks with a DistributedError within the heartbeat
// timeout instead of hanging. Root only (CI runs as root); skips with its reason elsewhere.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { ROOT } = require('./helpers');
const netns = require('../scripts/netns.js');
const { freePort } = require('../scripts/check-package.js');
const dt = require('..');

const CLI = path.join(ROOT, 'dist', 'cli.js');
const WORKER = path.join(__dirname, 'fixtures', 'dist-worker.js');
// One thread per rank in every run compared: thread counts change float summation order.
const ONE_THREAD = { OMP_NUM_THREADS: '1' };

/** Waits for a child to exit; kills it (and fails) after `ms`. */
function exited(child, ms, what) {
  let text = '';
  child.stdout?.on('data', (d) => { text += d; });
  child.stderr?.on('data', (d) => { text += d; });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ code: null, hung: true, text: `${what} still running after ${ms} ms (killed)\n${text}` });
    }, ms);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, hung: false, text });
    });
  });
}

async function stateDict(file) {
  const model = await dt.load(file);
  return model.stateDict();
}

function maxDiff(a, b) {
  let worst = 0;
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
  for (const key of Object.keys(a)) {
    const x = a[key].toArray();
    const y = b[key].toArray();
    for (let i = 0; i < x.length; i += 1) worst = Math.max(worst, Math.abs(Number(x[i]) - Number(y[i])));
  }
  return worst;
}

describe('two hosts over a veth pair (network namespaces)', function () {
  this.timeout(300_000);
  const why = netns.unavailable() || (dt.distributed.available ? '' : dt.distributed.reason);
  let hosts;
  const dirs = [];
  const mkdir = (name) => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), `densetorch-${name}-`));
    dirs.push(d);
    return d;
  };
  before(function () {
    if (why) this.skip();
    hosts = netns.createHosts({ link: { rate: '1gbit' } });
  });
  after(() => {
    if (hosts) hosts.remove();
    dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
  });
  if (why) it(`skipped: ${why}`, function () { this.skip(); });

  it('launch --nnodes 2 (one rank per host) ends with the weights of a 2-process run on one host, bitwise', async () => {
    const twoHosts = mkdir('hosts');
    const port = 29000 + (process.pid % 1000);
    const node = (i) => hosts.spawn(i, process.execPath, [CLI, 'launch', '--nproc-per-node', '1', '--nnodes', '2', '--node-rank', String(i),
      '--master-addr', hosts.addrs[0], '--master-port', String(port), WORKER], { cwd: ROOT, env: { ...process.env, ...ONE_THREAD, DT_MODE: 'steps', DT_OUT: twoHosts } });
    const runs = await Promise.all([0, 1].map((i) => exited(node(i), 120_000, `host ${i}`)));
    runs.forEach((r) => assert.equal(r.code, 0, r.text));

    const oneHost = mkdir('host');
    const local = spawn(process.execPath, [CLI, 'launch', '--nproc-per-node', '2', '--master-port', String(await freePort()), WORKER], {
      cwd: ROOT, env: { ...process.env, ...ONE_THREAD, DT_MODE: 'steps', DT_OUT: oneHost },
    });
    const r = await exited(local, 120_000, 'one host');
    assert.equal(r.code, 0, r.text);
    const diff = maxDiff(await stateDict(path.join(twoHosts, 'steps.safetensors')), await stateDict(path.join(oneHost, 'steps.safetensors')));
    console.log(`      2 hosts vs 2 processes on one host: max |difference| of the weights ${diff}`);
    assert.equal(diff, 0);
  });

  it('a link cut mid-epoch fails both ranks with DistributedError naming the cause within the heartbeat timeout (no hang)', async () => {
    const out = mkdir('linkcut');
    const heartbeatMs = 3000;
    const port = 29000 + ((process.pid + 500) % 1000);
    const children = [0, 1].map((i) => hosts.spawn(i, process.execPath, [WORKER], {
      cwd: ROOT,
      env: {
        ...process.env, RANK: String(i), WORLD_SIZE: '2', LOCAL_RANK: '0', MASTER_ADDR: hosts.addrs[0], MASTER_PORT: String(port),
        DT_MODE: 'linkcut', DT_OUT: out, DT_HEARTBEAT_MS: String(heartbeatMs), DT_TIMEOUT_MS: '600000',
      },
    }));
    // Cut host 1's end once both ranks are training.
    let cutAt = 0;
    const batches = [0, 0];
    const cut = new Promise((resolve) => {
      children.forEach((child, i) => child.stdout.on('data', (d) => {
        batches[i] += (String(d).match(/^batch /gm) || []).length;
        if (!cutAt && batches[0] >= 3 && batches[1] >= 3) {
          hosts.cut(1);
          cutAt = Date.now();
          resolve();
        }
      }));
    });
    const ends = children.map((child, i) => exited(child, 90_000, `rank ${i}`));
    await cut;
    const results = await Promise.all(ends);
    results.forEach((r) => assert.ok(!r.hung, r.text));
    const reports = [0, 1].map((rank) => JSON.parse(fs.readFileSync(path.join(out, `rank${rank}.json`), 'utf8')));
    const seconds = reports.map((rep) => ((rep.at - cutAt) / 1000).toFixed(1));
    console.log(`      link cut -> DistributedError: rank 0 after ${seconds[0]} s, rank 1 after ${seconds[1]} s (heartbeat timeout ${heartbeatMs / 1000} s)`);
    for (const [rank, rep] of reports.entries()) {
      assert.equal(rep.outcome, 'rejected');
      assert.equal(rep.name, 'DistributedError', rep.message);
      assert.match(rep.message, new RegExp(`failed on rank ${rank} of 2`));
      assert.match(rep.message, rank === 0 ? /rank 1 sent no heartbeat for 3000 ms/ : /lost the group's store on rank 0 at .*no answer within 3000 ms/);
      // Bounded by the heartbeat timeout (plus one heartbeat and the store's own timeout on rank 1), not by the 10-minute collective timeout.
      assert.ok(rep.at - cutAt < 3 * heartbeatMs + 5000, `rank ${rank} took ${rep.at - cutAt} ms`);
    }
  });
});
