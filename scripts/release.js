#!/usr/bin/env node
// Builds and publishes densetorch to an npm registry, as sharp ships: the platform packages first
// (npm/<platform>/: the prebuilt addon; npm/libtorch-<platform>/: LibTorch's runtime libraries),
// then the main package, whose optionalDependencies pin them to its own version.
//
//   npm run release -- --registry <url> [--from-build] [--tag <dist-tag>] [--dry-run] [--out <dir>]
//
// The addon is compiled by prebuildify (--napi --strip: one binary for every Node release);
// --from-build takes the local build instead when its build stamp says it is up to date (what the
// test suite does, to compile once). --dry-run packs everything and publishes nothing.
// Prints each package's size; --out keeps the tarballs (default: a temporary folder).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');

const root = path.resolve(__dirname, '..');

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28, ...options });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${(r.stdout || '').slice(-4000)}\n${(r.stderr || '').slice(-4000)}`);
  return r.stdout || '';
}

const npm = (args, options) => run(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, options);

/** The shared libraries `file` needs (DT_NEEDED), from readelf. */
function needed(file) {
  return [...run('readelf', ['-d', file]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
}

/** The libraries of `libDir` the addon loads, directly or through each other. */
function runtimeLibraries(addon, libDir) {
  const take = new Set();
  const visit = (file) => {
    for (const name of needed(file)) {
      const candidate = path.join(libDir, name);
      if (!take.has(name) && fs.existsSync(candidate)) {
        take.add(name);
        visit(candidate);
      }
    }
  };
  visit(addon);
  return [...take].sort();
}

/** LibTorch's license text: next to a Python install (dist-info), else inside the cached wheel. */
function libtorchLicense(lt) {
  const parent = path.dirname(lt.root);
  for (const entry of fs.existsSync(parent) ? fs.readdirSync(parent) : []) {
    const file = path.join(parent, entry, 'licenses', 'LICENSE');
    if (/^torch-.*\.dist-info$/.test(entry) && fs.existsSync(file)) return fs.readFileSync(file);
  }
  const wheels = path.join(require('../dist/libtorch.js').cacheDir(), 'wheels');
  const wheel = fs.existsSync(wheels) && fs.readdirSync(wheels).find((f) => f.startsWith(`torch-${lt.version.split('+')[0]}`) && f.endsWith('.whl'));
  if (wheel) {
    const script = 'import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nn = [x for x in z.namelist() if x.endswith(".dist-info/licenses/LICENSE") or x.endswith(".dist-info/LICENSE")][0]\nsys.stdout.buffer.write(z.read(n))';
    return Buffer.from(run(process.env.PYTHON || 'python3', ['-c', script, path.join(wheels, wheel)], { encoding: 'latin1' }), 'latin1');
  }
  throw new Error(`cannot find LibTorch's LICENSE for ${lt.root}: it must ship with the libraries`);
}

/** Copies npm/<folder>/package.json into a fresh staging folder with the release's version. */
function stage(work, folder, version) {
  const dir = path.join(work, folder);
  fs.mkdirSync(dir, { recursive: true });
  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'npm', folder, 'package.json'), 'utf8'));
  manifest.version = version;
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return { dir, name: manifest.name };
}

/** The addon binary for the platform package: prebuildify's, or the up-to-date local build. */
function buildAddon(fromBuild) {
  if (fromBuild) {
    run(process.execPath, [path.join(__dirname, 'build-native.js')], { stdio: 'inherit' });
    return path.join(root, 'build', 'Release', 'densetorch.node');
  }
  const finder = require('../dist/libtorch.js');
  const lt = finder.findLibTorch({ fetch: true, log: console.log });
  const gloo = require('../dist/gloo.js').findGloo({ fetch: true, log: console.log });
  if (!gloo.found) throw new Error(`a release must include distributed training: ${gloo.reason}`);
  const prefix = path.dirname(path.dirname(process.execPath));
  const nodedir = fs.existsSync(path.join(prefix, 'include', 'node', 'common.gypi')) ? { npm_config_nodedir: prefix } : {};
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-prebuildify-'));
  run(process.execPath, [require.resolve('prebuildify/bin.js'), '--napi', '--strip', '--tag-libc', '--out', out], {
    stdio: 'inherit',
    env: { ...process.env, ...nodedir, DENSETORCH_LIBTORCH_ROOT: lt.root, DENSETORCH_GLOO_ROOT: gloo.includeDir, JOBS: String(os.availableParallelism()) },
  });
  require('./native-config.js').writeRecord(path.join(root, 'build', 'Release'), lt);
  const dir = path.join(out, 'prebuilds', `${process.platform}-${process.arch}`);
  return path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.node')));
}

/** Packs a folder into `out`; returns the tarball and its sizes. */
function pack(dir, out) {
  const [info] = JSON.parse(npm(['pack', '--json', '--pack-destination', out], { cwd: dir }));
  return { tarball: path.join(out, info.filename), name: info.name, size: info.size, unpackedSize: info.unpackedSize };
}

function main() {
  const { values } = parseArgs({
    options: {
      registry: { type: 'string' }, 'from-build': { type: 'boolean', default: false }, tag: { type: 'string' },
      'dry-run': { type: 'boolean', default: false }, out: { type: 'string' },
    },
  });
  if (!values.registry && !values['dry-run']) throw new Error('usage: npm run release -- --registry <url> [--from-build] [--tag <dist-tag>] [--dry-run] [--out <dir>]');
  run(process.execPath, [path.join(__dirname, 'build-ts.js')], { stdio: 'inherit' });
  const { platformTag, PLATFORMS, addonPackage, libtorchPackage } = require('../dist/platform.js');
  const { checkManifest } = require('./check-manifest.js');
  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  checkManifest(manifest, PLATFORMS);
  const tag = platformTag();
  if (!PLATFORMS.some((p) => p.tag === tag && p.status === 'released')) throw new Error(`${tag} is not a released platform (see lib/platform.ts)`);
  const version = manifest.version;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-release-'));
  const out = values.out ? path.resolve(values.out) : path.join(work, 'tarballs');
  fs.mkdirSync(out, { recursive: true });

  // The addon package: prebuilds/<platform>-<arch>/densetorch.napi.<libc>.node (node-gyp-build's
  // naming) and the LibTorch release it was built against.
  const built = buildAddon(values['from-build']);
  const record = JSON.parse(fs.readFileSync(path.join(root, 'build', 'Release', 'libtorch.json'), 'utf8'));
  const addon = stage(work, tag, version);
  const prebuilds = path.join(addon.dir, 'prebuilds', `${process.platform}-${process.arch}`);
  fs.mkdirSync(prebuilds, { recursive: true });
  const binary = path.join(prebuilds, `densetorch.napi${tag.endsWith('-gnu') ? '.glibc' : tag.endsWith('-musl') ? '.musl' : ''}.node`);
  fs.copyFileSync(built, binary);
  if (values['from-build'] && process.platform === 'linux') run('strip', ['--strip-all', binary]);
  fs.writeFileSync(path.join(prebuilds, 'libtorch.json'), `${JSON.stringify(record)}\n`);

  // The LibTorch package: the libraries the addon loads (and theirs), the version, the license.
  const lt = require('../dist/libtorch.js').findLibTorch({ fetch: false });
  if (lt.version !== record.version) throw new Error(`the addon was built against LibTorch ${record.version} but ${lt.version} was found`);
  const libs = stage(work, `libtorch-${tag}`, version);
  fs.mkdirSync(path.join(libs.dir, 'lib'));
  const files = runtimeLibraries(built, lt.libDir);
  for (const f of files) fs.copyFileSync(path.join(lt.libDir, f), path.join(libs.dir, 'lib', f));
  fs.writeFileSync(path.join(libs.dir, 'libtorch.json'), `${JSON.stringify({ version: lt.version, libraries: files })}\n`);
  fs.writeFileSync(path.join(libs.dir, 'LICENSE'), libtorchLicense(lt));
  if (addon.name !== addonPackage(tag) || libs.name !== libtorchPackage(tag)) throw new Error('npm/ folder names and lib/platform.ts disagree');

  const packed = [pack(addon.dir, out), pack(libs.dir, out)];
  packed.push(pack(root, out)); // prepack: TypeScript, and the manifest check
  for (const p of packed) console.log(`${p.name}@${version}: ${(p.size / 1e6).toFixed(1)} MB packed, ${(p.unpackedSize / 1e6).toFixed(1)} MB unpacked (${path.basename(p.tarball)})`);
  if (values['dry-run']) {
    console.log(`dry run: nothing published; tarballs in ${out}`);
    return packed;
  }
  for (const p of packed) {
    const started = Date.now();
    npm(['publish', p.tarball, '--registry', values.registry, '--access', 'public', ...(values.tag ? ['--tag', values.tag] : [])], { stdio: 'inherit' });
    console.log(`published ${p.name}@${version} to ${values.registry} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  if (!values.out) fs.rmSync(work, { recursive: true, force: true });
  return packed;
}

if (require.main === module) {
  try {
    main();
  } catch (err) {
    console.error(`release: ${err.message}`);
    process.exit(1);
  }
}

module.exports = { main, runtimeLibraries };
