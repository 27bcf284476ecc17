'use strict';
// The documentation matches the code: docs/api.md is what `npm run docs` generates from the
// TSDoc, and docs/configuration.md lists every DENSETORCH_* environment variable the code reads.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { ROOT } = require('./helpers');

/** Files under `dir` (relative to the root) whose names end with one of `exts`, recursively. */
function filesUnder(dir, exts) {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(path.join(ROOT, d), { withFileTypes: true })) {
      const rel = path.join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'results' && e.name !== 'node_modules') walk(rel);
      } else if (exts.some((x) => e.name.endsWith(x))) out.push(rel);
    }
  };
  walk(dir);
  return out;
}

/**
 * Every DENSETORCH_* variable the code reads: process.env.X / env.X / env['X'] in JavaScript and
 * TypeScript, getenv("X") / env_flag("X" / env_choice("X" in C++. Returns Map(name -> first file).
 */
function variablesRead() {
  const sources = [
    ...filesUnder('lib', ['.ts']), ...filesUnder('scripts', ['.js']), ...filesUnder('bench', ['.js']),
    ...filesUnder('native', ['.cpp', '.cc', '.h', '.inc']), 'test/helpers.js',
  ];
  const patterns = [
    /\benv(?:\.|\[['"])(DENSETORCH_[A-Z0-9_]+)/g,
    /\b(?:getenv|env_flag|env_choice)\(\s*"(DENSETORCH_[A-Z0-9_]+)"/g,
  ];
  const found = new Map();
  for (const file of sources) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    for (const re of patterns) {
      for (const m of text.matchAll(re)) if (!found.has(m[1])) found.set(m[1], file);
    }
  }
  return found;
}

describe('documentation', () => {
  it('docs/api.md and docs/api/*.md are what `npm run docs` generates from the TSDoc (typedoc, every export documented)', function () {
    this.timeout(120000);
    const r = spawnSync(process.execPath, ['scripts/docs.js', '--check'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    console.log(`      ${r.stdout.trim()}`);
  });

  it('docs/configuration.md has a row for every DENSETORCH_* environment variable the code reads', () => {
    const table = fs.readFileSync(path.join(ROOT, 'docs', 'configuration.md'), 'utf8');
    // The first cell of each table row names one variable or several.
    const firstCells = table.split('\n').filter((l) => l.startsWith('|')).map((l) => l.split('|')[1]);
    const documented = new Set(firstCells.flatMap((cell) => [...cell.matchAll(/`(DENSETORCH_[A-Z0-9_]+)`/g)].map((m) => m[1])));
    const read = variablesRead();
    assert.ok(read.size >= 15, `found only ${read.size} variables read: the scan is broken`);
    const missing = [...read].filter(([name]) => !documented.has(name)).map(([name, file]) => `${name} (read in ${file})`);
    assert.deepEqual(missing, [], `docs/configuration.md lacks: ${missing.join(', ')}`);
    console.log(`      ${read.size} variables read, all in the table`);
  });

  it('README.md stays a front page: at most 250 lines, and its links into docs/ resolve', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    assert.ok(readme.split('\n').length <= 250, `README.md has ${readme.split('\n').length} lines`);
    const links = [...readme.matchAll(/\]\((docs\/[^)#]+)(?:#[^)]*)?\)/g)].map((m) => m[1]);
    assert.ok(links.length >= 10);
    for (const link of links) assert.ok(fs.existsSync(path.join(ROOT, link)), `README links to ${link}, which does not exist`);
  });

  it('links between docs/ pages resolve', () => {
    const broken = [];
    for (const file of filesUnder('docs', ['.md'])) {
      const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
      for (const m of text.matchAll(/\]\(([^)#:\s]+\.md)(?:#[^)]*)?\)/g)) {
        if (!fs.existsSync(path.join(ROOT, path.dirname(file), m[1]))) broken.push(`${file} -> ${m[1]}`);
      }
    }
    assert.deepEqual(broken, []);
  });
});
