'use strict';
// The shipped type declarations compile for a TypeScript user (strict mode), and keep internals out.
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { ROOT } = require('./helpers');

describe('lint', () => {
  it('ESLint (eslint.config.js: typescript-eslint recommended, no any) reports no problem', function () {
    this.timeout(120000);
    const eslint = path.join(ROOT, 'node_modules', 'eslint', 'bin', 'eslint.js'); // its package exports no bin path
    const r = spawnSync(process.execPath, [eslint, '--max-warnings', '0', '.'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});

describe('type declarations', () => {
  it('test/types/usage.ts compiles with tsc --noEmit --strict against dist/index.d.ts', function () {
    this.timeout(120000);
    const tsc = require.resolve('typescript/bin/tsc');
    const r = spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--target', 'ES2022', '--module', 'commonjs', '--moduleResolution', 'node',
      '--types', 'node', '--skipLibCheck', 'false', path.join(ROOT, 'test', 'types', 'usage.ts')], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
});
