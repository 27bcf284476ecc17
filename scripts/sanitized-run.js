'use strict';
// Runs mocha against a sanitizer build of the addon (scripts/test-asan.js, scripts/test-tsan.js):
// the build must exist, the sanitizer runtimes are preloaded (Node itself is not instrumented),
// and the run's exit code is mocha's (non-zero on any sanitizer report).
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

/**
 * @param {object} o
 * @param {string} o.name - 'address' or 'thread' (DENSETORCH_SANITIZER for the tests)
 * @param {string} o.buildDir - e.g. 'build-asan'
 * @param {string} o.buildScript - the npm script that makes it
 * @param {string[]} o.runtimes - runtime libraries to preload, e.g. ['libasan.so']
 * @param {Record<string, string>} o.env - more environment variables
 * @param {string[]} o.mochaArgs - arguments for mocha
 */
function runSanitized({ name, buildDir, buildScript, runtimes, env, mochaArgs }) {
  const addon = path.join(root, buildDir, 'Release', 'densetorch.node');
  if (!fs.existsSync(addon)) {
    console.error(`No ${name} sanitizer build at ${addon}; run \`npm run ${buildScript}\` first.`);
    process.exit(2);
  }
  const cxx = process.env.CXX || 'c++';
  const runtime = (lib) => execFileSync(cxx, [`-print-file-name=${lib}`], { encoding: 'utf8' }).trim();
  console.log(`densetorch: running mocha ${mochaArgs.join(' ')} with ${addon} under the ${name} sanitizer`);
  const mocha = path.join(root, 'node_modules', 'mocha', 'bin', 'mocha.js');
  const r = spawnSync(process.execPath, [mocha, ...mochaArgs], {
    cwd: root,
    env: { ...process.env, DENSETORCH_ADDON: addon, DENSETORCH_SANITIZER: name, LD_PRELOAD: runtimes.map(runtime).join(' '), ...env },
    stdio: 'inherit',
  });
  process.exit(r.status ?? 1);
}

module.exports = { runSanitized };
