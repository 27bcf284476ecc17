'use strict';
// Two hosts on one machine (network namespaces joined by a veth pair, scripts/netns.js), one
// rank each through `densetorch launch --nnodes 2`: the weights equal a 2-process run on one
// host; with --max-restarts a killed rank is restarted on both machines and the job ends with the
// same weights; a third host claiming a taken rank is refused; a link cut mid-epoch fails both
// ranks with a DistributedError within the heartbeat timeout instead of hanging. Root only (CI
// runs as root); skips with its reason elsewhere.
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

  /** `densetorch launch --nnodes 2` of the 'steps' job, one rank per host; resolves with both launchers' exits. */
  function launchOnHosts(out, port, { extra = [], env = {} } = {}) {
    const node = (i) => hosts.spawn(i, process.execPath, [CLI, 'launch', '--nproc-per-node', '1', '--nnodes', '2', '--node-rank', String(i),
      '--master-addr', hosts.addrs[0], '--master-port', String(port), ...extra, WORKER], { cwd: ROOT, env: { ...process.env, ...ONE_THREAD, DT_MODE: 'steps', DT_OUT: out, ...env } });
    return Promise.all([0, 1].map((i) => exited(node(i), 180_000, `host ${i}`)));
  }
  let twoHosts;

  it('launch --nnodes 2 (one rank per host) ends with the weights of a 2-process run on one host, bitwise', async () => {
    twoHosts = mkdir('hosts');
    const runs = await launchOnHosts(twoHosts, 29000 + (process.pid % 1000));
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

  it('launch --max-restarts 1 on both hosts: rank 1 killed inside epoch 2, both machines restart once (the job\'s count) and finish with the uninterrupted weights', async function () {
    if (!twoHosts) this.skip();
    const out = mkdir('hosts-elastic');
    const runs = await launchOnHosts(out, 29000 + ((process.pid + 250) % 1000), { extra: ['--max-restarts', '1'], env: { DT_KILL_AT: '2,3' } });
    runs.forEach((r) => assert.equal(r.code, 0, r.text));
    runs.forEach((r) => assert.match(r.text, /restarting every worker of this machine \(restart 1 of 1\)/));
    const rounds = [0, 1].map((rank) => JSON.parse(fs.readFileSync(path.join(out, `rank${rank}-round1.json`), 'utf8')));
    rounds.forEach((round) => assert.equal(round.restart, 1));
    const killedAt = Number(fs.readFileSync(path.join(out, 'killed-at'), 'utf8'));
    console.log(`      2 hosts: killed -> first batch after the restart ${((rounds[0].first.at - killedAt) / 1000).toFixed(1)} s, resumed at epoch ${rounds[0].first.epoch} batch ${rounds[0].first.batch}`);
    const diff = maxDiff(await stateDict(path.join(twoHosts, 'steps.safetensors')), await stateDict(path.join(out, 'steps.safetensors')));
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
    // Once both ranks are training: a third process on host 1 claiming rank 1 is refused, then
    // host 1's end of the link is cut.
    const batches = [0, 0];
    const training = new Promise((resolve) => {
      children.forEach((child, i) => child.stdout.on('data', (d) => {
        batches[i] += (String(d).match(/^batch /gm) || []).length;
        if (batches[0] >= 3 && batches[1] >= 3) resolve();
      }));
    });
    const ends = children.map((child, i) => exited(child, 90_000, `rank ${i}`));
    await training;
    const intruder = await exited(hosts.spawn(1, process.execPath, [WORKER], {
      cwd: ROOT, env: { ...process.env, RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '0', MASTER_ADDR: hosts.addrs[0], MASTER_PORT: String(port), DT_MODE: 'linkcut', DT_OUT: out },
    }), 60_000, 'the third host');
    assert.equal(intruder.code, 1, intruder.text);
    assert.match(intruder.text, /rank 1 of the job at .* is taken by another process: this one was not expected/);
    hosts.cut(1);
    const cutAt = Date.now();
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
