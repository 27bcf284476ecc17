'use strict';
// Two "hosts" on one machine: two network namespaces joined by a veth pair, each end with its
// own address, the link optionally shaped by tc (rate; delay and loss where the kernel has netem). Used by the
// distributed tests (test/34-hosts.test.js) and `npm run bench -- --distributed --netem`.
// Needs root and iproute2 (`ip`, `tc`); `available()` says why not where they are missing.
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');

/** Why two hosts cannot be made here, or '' when they can. */
function unavailable() {
  if (process.platform !== 'linux') return 'network namespaces are Linux-only';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'creating network namespaces needs root';
  for (const tool of ['ip', 'tc']) {
    try {
      execFileSync(tool, ['-V'], { stdio: 'ignore' });
    } catch {
      return `'${tool}' (iproute2) is not installed`;
    }
  }
  return '';
}

function run(args) {
  execFileSync(args[0], args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Creates hosts A and B (namespaces `dt<pid><tag>a|b`, addresses 10.<x>.<y>.1 and .2/24) and
 * returns their handle. `link` shapes both directions: { rate: '1gbit', delay?: '0.5ms', loss?: '1%' }.
 */
function createHosts({ tag = '', link } = {}) {
  const id = `${process.pid % 100000}${tag}`;
  const names = [`dt${id}a`, `dt${id}b`];
  const devs = [`dv${id}a`, `dv${id}b`];
  const subnet = `10.${200 + (process.pid % 50)}.${(process.pid >> 6) % 250}`;
  const addrs = [`${subnet}.1`, `${subnet}.2`];
  const hosts = {
    names, devs, addrs,
    /** Spawns `command` inside host `i` (its network only; the file system is shared). */
    spawn(i, command, args, options) {
      return spawn('ip', ['netns', 'exec', names[i], command, ...args], options);
    },
    /**
     * Shapes both ends: `rate` alone with a token bucket (tbf: every Linux kernel has it), with
     * `delay` or `loss` through netem (kernels built with sch_netem; see {@link netemMissing}).
     */
    shape(l) {
      for (let i = 0; i < 2; i += 1) {
        let qdisc;
        if (l.delay || l.loss) {
          qdisc = ['netem'];
          if (l.delay) qdisc.push('delay', l.delay);
          if (l.rate) qdisc.push('rate', l.rate);
          if (l.loss) qdisc.push('loss', l.loss);
        } else {
          // A bucket of 1 ms at the rate (at least 64 KiB): shaped, yet wide enough for the timer.
          const burst = Math.max(65536, Math.round(bitsPerSecond(l.rate) / 8 / 1000));
          qdisc = ['tbf', 'rate', l.rate, 'burst', String(burst), 'latency', '100ms'];
        }
        run(['ip', 'netns', 'exec', names[i], 'tc', 'qdisc', 'replace', 'dev', devs[i], 'root', ...qdisc]);
      }
    },
    /** Takes host `i`'s end of the link down (a cut cable: no socket is closed). */
    cut(i = 1) {
      run(['ip', '-n', names[i], 'link', 'set', devs[i], 'down']);
    },
    /** Removes both namespaces (and with them the link). */
    remove() {
      for (const n of names) {
        try {
          run(['ip', 'netns', 'del', n]);
        } catch {
          // already gone
        }
      }
    },
  };
  try {
    for (const n of names) run(['ip', 'netns', 'add', n]);
    run(['ip', 'link', 'add', devs[0], 'netns', names[0], 'type', 'veth', 'peer', 'name', devs[1], 'netns', names[1]]);
    for (let i = 0; i < 2; i += 1) {
      run(['ip', '-n', names[i], 'addr', 'add', `${addrs[i]}/24`, 'dev', devs[i]]);
      run(['ip', '-n', names[i], 'link', 'set', devs[i], 'up']);
      run(['ip', '-n', names[i], 'link', 'set', 'lo', 'up']);
    }
    if (link) hosts.shape(link);
  } catch (err) {
    hosts.remove();
    throw new Error(`could not create the two hosts: ${err.stderr ? err.stderr.toString().trim() : err.message}`);
  }
  return hosts;
}

/** '100mbit', '1gbit', '10gbit' -> bits per second. */
function bitsPerSecond(rate) {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)bit$/i.exec(rate);
  if (!m) throw new Error(`rate must look like 1gbit, got '${rate}'`);
  return Number(m[1]) * { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase()];
}

/** Why links cannot be given a delay or a loss here (no netem in this kernel), or ''. */
function netemMissing() {
  const h = createHosts({ tag: 'q' });
  try {
    h.shape({ delay: '1ms' });
    return '';
  } catch (err) {
    return `tc netem is not available (${err.stderr ? err.stderr.toString().trim() : err.message}; the kernel lacks sch_netem): links are shaped by rate only`;
  } finally {
    h.remove();
  }
}

/** Whether namespace `name` still exists (for the tests' clean-up checks). */
function exists(name) {
  return fs.existsSync(`/run/netns/${name}`);
}

module.exports = { unavailable, createHosts, exists, netemMissing, bitsPerSecond };
