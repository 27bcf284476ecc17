'use strict';
// The good-guest tests again, against a ThreadSanitizer build of the addon (npm run build:tsan,
// npm run test:tsan): any data race, lock-order inversion or misuse of a lock that TSan sees in
// densetorch's threads (the JS thread, the compute thread, libuv's pool, evaluate's threads)
// fails the run.
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { ROOT } = require('./helpers');

/** Why this machine cannot build with ThreadSanitizer, or null when it can. */
function missing() {
  if (process.platform !== 'linux' || process.arch !== 'x64') return `ThreadSanitizer runs are set up for linux-x64 (this is ${process.platform}-${process.arch})`;
  const runtime = spawnSync(process.env.CXX || 'c++', ['-print-file-name=libtsan.so'], { encoding: 'utf8' });
  if (runtime.status !== 0 || !runtime.stdout.trim().startsWith('/')) return 'the C++ compiler has no libtsan (Debian: libtsan2)';
  if (spawnSync('cmake', ['--version']).status !== 0) return 'no cmake on PATH (the sanitizer builds use cmake-js)';
  return null;
}

describe('ThreadSanitizer', () => {
  it('the good-guest tests (deadlock reproducer, 3 x 300-call stress, libuv pool, callbacks) pass against a ThreadSanitizer build with no report', function () {
    this.timeout(1800000); // the build takes about 1.5 minutes on 2 cores, the run about 1
    const reason = missing();
    if (reason) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const build = spawnSync(npm, ['run', 'build:tsan'], { cwd: ROOT, encoding: 'utf8', timeout: 1200000 });
    assert.equal(build.status, 0, `npm run build:tsan failed:\n${(build.stdout + build.stderr).slice(-3000)}`);
    const run = spawnSync(process.execPath, ['scripts/test-tsan.js', 'test/23-good-guest.test.js'], { cwd: ROOT, encoding: 'utf8', timeout: 1200000 });
    const output = run.stdout + run.stderr;
    assert.doesNotMatch(output, /WARNING: ThreadSanitizer/, output.slice(-6000));
    assert.equal(run.status, 0, output.slice(-6000));
    const passing = /(\d+) passing/.exec(output);
    assert.ok(passing && Number(passing[1]) >= 7, `the good-guest tests ran under TSan: ${passing ? passing[0] : 'no summary'}`);
    console.log(`      ${passing[0]} under ThreadSanitizer, no report`);
  });
});
