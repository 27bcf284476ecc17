#!/usr/bin/env node
// Packaging check: npm pack the package (with its prebuilt binary), install the tarball into an
// empty project with --ignore-scripts (no compiler, no install script), then require densetorch
// there, build a small DenseNet and run a forward pass with the prebuilt binary.
// Prints the tarball size and the install time. Exit code 0 when everything holds.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function sh(cmd, args, cwd, env = {}) {
  const base = { ...process.env };
  delete base.DENSETORCH_ADDON; // the point is the packaged prebuilt binary, not a developer override
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...base, ...env }, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function main() {
  // Always (re)made from the current build: a prebuilt binary left from older sources must not
  // be what gets tested. Quick when the build is up to date (no compile).
  sh('npm', ['run', 'build:prebuild'], root);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-pack-'));
  const packed = JSON.parse(sh('npm', ['pack', '--json', '--pack-destination', work], root))[0];
  const tarball = path.join(work, packed.filename);
  const size = fs.statSync(tarball).size;
  const heavy = packed.files.filter((f) => /^(build|build-cmake|node_modules|test|bench\/results)\//.test(f.path) || /(^|\/)libtorch\/|\.so(\.\d+)*$|\.whl$/.test(f.path));
  console.log(`tarball ${packed.filename}: ${(size / 1e6).toFixed(2)} MB packed, ${(packed.unpackedSize / 1e6).toFixed(2)} MB unpacked, ${packed.files.length} files`);
  if (heavy.length) throw new Error(`the tarball holds files it should not: ${heavy.map((f) => f.path).join(', ')}`);
  if (!packed.files.some((f) => f.path.startsWith('prebuilds/') && f.path.endsWith('.node'))) throw new Error('the tarball has no prebuilt binary');
  for (const needed of ['dist/index.js', 'dist/index.d.ts', 'dist/cli.js', 'binding.gyp', 'CMakeLists.txt', 'native/core/densenet.cpp']) {
    if (!packed.files.some((f) => f.path === needed)) throw new Error(`the tarball lacks ${needed}`);
  }

  const project = path.join(work, 'project');
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'densetorch-user', version: '1.0.0', private: true }));
  const started = Date.now();
  // No compiler may run: --ignore-scripts, and CC/CXX point at a command that fails.
  sh('npm', ['install', tarball, '--ignore-scripts', '--no-audit', '--no-fund'], project, { CC: 'false', CXX: 'false' });
  const installSeconds = (Date.now() - started) / 1000;
  console.log(`npm install <tarball> --ignore-scripts: ${installSeconds.toFixed(1)} s`);
  if (fs.existsSync(path.join(project, 'node_modules', 'densetorch', 'build'))) throw new Error('a build folder appeared: something compiled');

  const script = `
    const dt = require('densetorch');
    const m = dt.densenetCifar({ depth: 10, growthRate: 4 }).eval();
    const y = m.forward(dt.tensor(new Float32Array(2 * 3 * 32 * 32).fill(0.5), [2, 3, 32, 32]));
    console.log(JSON.stringify({ shape: y.shape, libtorch: dt.versions.libtorch }));`;
  const out = JSON.parse(sh(process.execPath, ['-e', script], project).trim().split('\n').pop());
  // The installed CLI says which addon file was loaded.
  const doctor = sh('npx', ['--no-install', 'densetorch', 'doctor'], project);
  out.addon = (/^addon: (\S+)/m.exec(doctor) || [])[1] || '';
  if (JSON.stringify(out.shape) !== '[2,10]') throw new Error(`unexpected output shape ${out.shape}`);
  if (!/[/\\]prebuilds[/\\]/.test(out.addon)) throw new Error(`the addon was not the prebuilt one: ${out.addon}`);
  console.log(`forward pass from the installed package: output [${out.shape}], addon ${path.relative(project, out.addon)}, LibTorch ${out.libtorch}`);
  fs.rmSync(work, { recursive: true, force: true });
  return { size, installSeconds, addon: out.addon };
}

if (require.main === module) {
  try {
    main();
    console.log('package check passed');
  } catch (err) {
    console.error(`package check failed: ${err.message}`);
    process.exit(1);
  }
}

module.exports = { main };
