#!/usr/bin/env node
// Release check through a real registry: starts verdaccio on a free loopback port with a
// temporary storage folder, publishes densetorch there with `scripts/release.js --from-build`
// (the platform packages, then the main package), publishes two packages of other platforms as
// fixtures, then, in an empty project, with install scripts blocked, no compiler and no Python on
// PATH and no LibTorch anywhere else, runs `npm install densetorch --registry <local>` and a
// forward pass. Checks that npm installed only this platform's packages and that the addon and
// LibTorch came from them. Prints the package sizes and the install time.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function sh(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, ...options });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${(r.stdout || '').slice(-3000)}\n${(r.stderr || '').slice(-3000)}`);
  return r.stdout || '';
}

/** A TCP port on loopback that was free a moment ago. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts verdaccio with its storage under `dir`, proxying other packages to npm's registry. */
async function startRegistry(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const upstream = sh('npm', ['config', 'get', 'registry'], { cwd: root }).trim() || 'https://registry.npmjs.org/';
  const config = [
    `storage: ${path.join(dir, 'storage')}`,
    'auth:',
    '  htpasswd:',
    `    file: ${path.join(dir, 'htpasswd')}`,
    'uplinks:',
    '  upstream:',
    `    url: ${upstream}`,
    '    timeout: 60s',
    'packages:',
    "  '@densetorch/*':",
    '    access: $all',
    '    publish: $authenticated',
    "  'densetorch':",
    '    access: $all',
    '    publish: $authenticated',
    "  '**':",
    '    access: $all',
    '    proxy: upstream',
    'max_body_size: 2gb',
    'log: { type: stdout, format: pretty, level: warn }',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'config.yaml'), config);
  const bin = require.resolve('verdaccio/bin/verdaccio');
  const child = spawn(process.execPath, [bin, '--config', path.join(dir, 'config.yaml'), '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const url = `http://127.0.0.1:${port}/`;
  for (let i = 0; i < 200; i += 1) {
    try {
      const res = await fetch(`${url}-/ping`);
      if (res.ok) return { url, port, child, output: () => output };
    } catch { /* not listening yet */ }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill();
  throw new Error(`verdaccio did not start:\n${output}`);
}

/** Registers a user with the registry; returns an npm config file that authenticates as it. */
async function userConfig(registry, dir) {
  const res = await fetch(`${registry.url}-/user/org.couchdb.user:release`, {
    method: 'PUT', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'release', password: 'release-password', type: 'user', roles: [] }),
  });
  const body = await res.json();
  if (!res.ok || !body.token) throw new Error(`cannot add a user to the registry: ${res.status} ${JSON.stringify(body)}`);
  const file = path.join(dir, 'npmrc');
  fs.writeFileSync(file, `registry=${registry.url}\n//127.0.0.1:${registry.port}/:_authToken=${body.token}\n`);
  return file;
}

/** Publishes npm/<folder>'s manifest at `version` with only a README: a package of another platform. */
function publishFixture(folder, version, registry, env, dir) {
  const out = path.join(dir, 'fixtures', folder);
  fs.mkdirSync(out, { recursive: true });
  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'npm', folder, 'package.json'), 'utf8'));
  fs.writeFileSync(path.join(out, 'package.json'), JSON.stringify({ ...manifest, version, files: ['README.md'] }, null, 2));
  fs.writeFileSync(path.join(out, 'README.md'), 'A test fixture of another platform: npm must not install it here.\n');
  sh('npm', ['publish', '--registry', registry.url, '--access', 'public'], { cwd: out, env });
  return manifest.name;
}

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'densetorch-registry-'));
  const registry = await startRegistry(path.join(work, 'registry'));
  try {
    const env = { ...process.env, npm_config_userconfig: await userConfig(registry, work) };
    delete env.DENSETORCH_ADDON;
    const started = Date.now();
    const release = sh(process.execPath, [path.join(__dirname, 'release.js'), '--registry', registry.url, '--from-build'], { cwd: root, env });
    const releaseSeconds = (Date.now() - started) / 1000;
    const sizes = [...release.matchAll(/^(\S+)@\S+: ([\d.]+) MB packed, ([\d.]+) MB unpacked/gm)].map((m) => ({ name: m[1], packedMB: Number(m[2]), unpackedMB: Number(m[3]) }));
    const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    const others = ['linux-arm64-gnu', 'darwin-arm64'].map((f) => publishFixture(f, version, registry, env, work));

    // The user's machine: node and nothing else on PATH (no compiler, no Python), scripts blocked,
    // no LibTorch in LIBTORCH, a Python or densetorch's cache.
    const bin = path.join(work, 'bin');
    fs.mkdirSync(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    const project = path.join(work, 'project');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'densetorch-user', version: '1.0.0', private: true }));
    fs.writeFileSync(path.join(project, '.npmrc'), `registry=${registry.url}\n`);
    const userEnv = {
      PATH: bin, HOME: process.env.HOME, npm_config_cache: path.join(os.homedir(), '.npm'), DENSETORCH_CACHE: path.join(work, 'empty-cache'),
      CC: 'false', CXX: 'false', PYTHON: path.join(work, 'no-python'),
    };
    const npmCli = path.join(sh('npm', ['root', '-g']).trim(), 'npm', 'bin', 'npm-cli.js');
    const installStarted = Date.now();
    sh(process.execPath, [npmCli, 'install', 'densetorch', '--registry', registry.url, '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: project, env: userEnv });
    const installSeconds = (Date.now() - installStarted) / 1000;
    const scoped = fs.readdirSync(path.join(project, 'node_modules', '@densetorch')).sort();
    const script = `
      const dt = require('densetorch');
      const m = dt.densenetCifar({ depth: 10, growthRate: 4 }).eval();
      const y = m.forward(dt.tensor(new Float32Array(2 * 3 * 32 * 32).fill(0.5), [2, 3, 32, 32]));
      console.log(JSON.stringify({ shape: y.shape, libtorch: dt.versions.libtorch }));`;
    const forward = JSON.parse(sh(process.execPath, ['-e', script], { cwd: project, env: userEnv }).trim().split('\n').pop());
    const doctor = sh(process.execPath, [path.join(project, 'node_modules', 'densetorch', 'dist', 'cli.js'), 'doctor'], { cwd: project, env: userEnv });
    const addon = (/^addon: (\S+)/m.exec(doctor) || [])[1] || '';
    const libtorch = (/^loaded LibTorch (\S+) from (\S+);/m.exec(doctor) || []).slice(1);
    return { sizes, releaseSeconds, installSeconds, scoped, others, forward, addon, libtorch, doctor };
  } finally {
    registry.child.kill();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().then((r) => {
    for (const s of r.sizes) console.log(`${s.name}: ${s.packedMB} MB packed, ${s.unpackedMB} MB unpacked`);
    console.log(`release ${r.releaseSeconds.toFixed(1)} s; npm install densetorch ${r.installSeconds.toFixed(1)} s; installed ${r.scoped.map((s) => `@densetorch/${s}`).join(', ')}`);
    console.log(`forward pass [${r.forward.shape}], addon ${r.addon}, LibTorch ${r.libtorch.join(' from ')}`);
  }).catch((err) => {
    console.error(`package check failed: ${err.message}`);
    process.exit(1);
  });
}

module.exports = { main, freePort };
