/**
 * Finding LibTorch, and fetching the pinned one when none is present.
 *
 * Order (the README's LibTorch section): the `LIBTORCH` environment variable, then an importable Python `torch`,
 * then the densetorch cache, then (only when fetching is allowed: build and `densetorch setup`)
 * the pinned torch wheel downloaded with pip and unpacked into the cache. A torch wheel's `torch/`
 * folder has the same layout as an official libtorch archive (`lib/`, `include/`, `share/`), so
 * both are treated alike.
 *
 * This module is used by the build scripts before the addon exists, so it must not load it.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LibTorchNotFoundError } from './errors';
import { PINNED_TORCH_VERSION } from './package-info';
import { libtorchPackage, platformTag } from './platform';

/** The torch version that densetorch is pinned to and fetches when no LibTorch is found. */
export { PINNED_TORCH_VERSION };

/**
 * SHA-256 of the torch wheels densetorch pins, by file name. A fetched wheel whose name is
 * listed must match; other names (another Python or platform) rely on pip's own hash check.
 */
export const PINNED_WHEEL_SHA256: Readonly<Record<string, string>> = {
  'torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl': '6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b',
};

/** SHA-256 of a file, hex. */
export function sha256File(file: string): string {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(1 << 20);
    let n: number;
    while ((n = fs.readSync(fd, buffer, 0, buffer.length, null)) > 0) hash.update(buffer.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** Throws if `wheel` is a pinned file whose checksum differs; returns what was checked. */
export function verifyWheel(wheel: string): string {
  const expected = PINNED_WHEEL_SHA256[path.basename(wheel)];
  if (!expected) return `no pinned checksum for ${path.basename(wheel)} (pip checked it against its index)`;
  const actual = sha256File(wheel);
  if (actual !== expected) {
    throw new LibTorchNotFoundError(`checksum mismatch for ${wheel}: expected sha256 ${expected}, got ${actual}. Delete the file and run \`npx densetorch setup\` again.`);
  }
  return `sha256 ${actual} matches the pinned checksum`;
}

/** Where a LibTorch installation was found ('package': the npm package `@densetorch/libtorch-<platform>`, runtime libraries only). */
export type LibTorchSource = 'env' | 'package' | 'python' | 'cache';

/** A LibTorch installation on disk. */
export interface LibTorchInstall {
  /** Root folder: has `lib/`, `include/` and `share/cmake/Torch`. */
  readonly root: string;
  /** Full version string, e.g. `2.13.0+cpu`. */
  readonly version: string;
  /** Which step of the search found it. */
  readonly source: LibTorchSource;
  /** Folder of the shared libraries. */
  readonly libDir: string;
  /** Include folders for a compiler (empty for the runtime-only npm package). */
  readonly includeDirs: readonly string[];
  /** Whether the libraries include CUDA support (libtorch_cuda). */
  readonly cuda: boolean;
}

/** Options of {@link findLibTorch}. */
export interface FindOptions {
  /** Download and unpack the pinned wheel when nothing is found. Default false. */
  readonly fetch?: boolean;
  /** Progress messages (fetching, unpacking). Default: none. */
  readonly log?: (message: string) => void;
  /** Loading, not building: the runtime-only npm package counts too (see {@link searchLibTorch}). Default false. */
  readonly runtime?: boolean;
}

/** The densetorch cache folder: `DENSETORCH_CACHE`, else `$XDG_CACHE_HOME/densetorch`, else `~/.cache/densetorch`. */
export function cacheDir(): string {
  const explicit = process.env.DENSETORCH_CACHE;
  if (explicit) return path.resolve(explicit);
  const xdg = process.env.XDG_CACHE_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache');
  return path.join(base, 'densetorch');
}

/** The torch requirement that is fetched: `DENSETORCH_TORCH_SPEC` or `torch==<pinned>`. */
export function torchSpec(): string {
  return process.env.DENSETORCH_TORCH_SPEC || `torch==${PINNED_TORCH_VERSION}`;
}

function pythonExecutable(): string {
  return process.env.PYTHON || 'python3';
}

const LIB_NAME = process.platform === 'darwin' ? 'libtorch.dylib' : 'libtorch.so';

/** Reads the version of a LibTorch root, or undefined when the folder is not one. */
function readVersion(root: string): string | undefined {
  const buildVersion = path.join(root, 'build-version');
  if (fs.existsSync(buildVersion)) return fs.readFileSync(buildVersion, 'utf8').trim();
  const versionPy = path.join(root, 'version.py');
  if (fs.existsSync(versionPy)) {
    const match = /__version__\s*=\s*['"]([^'"]+)['"]/.exec(fs.readFileSync(versionPy, 'utf8'));
    if (match) return match[1];
  }
  const header = path.join(root, 'include', 'torch', 'headeronly', 'version.h');
  if (fs.existsSync(header)) {
    const text = fs.readFileSync(header, 'utf8');
    const part = (name: string) => new RegExp(`#define TORCH_VERSION_${name} (\\d+)`).exec(text)?.[1];
    const [major, minor, patch] = [part('MAJOR'), part('MINOR'), part('PATCH')];
    if (major && minor && patch) return `${major}.${minor}.${patch}`;
  }
  return undefined;
}

/** Describes `root` if it is a usable LibTorch folder (also accepts a folder holding `torch/`). */
export function inspectLibTorch(root: string, source: LibTorchSource): LibTorchInstall | undefined {
  for (const candidate of [root, path.join(root, 'torch'), path.join(root, 'libtorch')]) {
    const libDir = path.join(candidate, 'lib');
    if (!fs.existsSync(path.join(libDir, LIB_NAME))) continue;
    if (!fs.existsSync(path.join(candidate, 'include', 'torch'))) continue;
    const version = readVersion(candidate);
    if (!version) continue;
    const resolved = path.resolve(candidate);
    return {
      root: resolved,
      version,
      source,
      libDir: path.join(resolved, 'lib'),
      includeDirs: [
        path.join(resolved, 'include'),
        path.join(resolved, 'include', 'torch', 'csrc', 'api', 'include'),
      ],
      cuda: fs.existsSync(path.join(resolved, 'lib', LIB_NAME.replace('torch', 'torch_cuda'))),
    };
  }
  return undefined;
}

/** The folder of an importable Python `torch` package, found without importing it (fast). */
function pythonTorchDir(): string | undefined {
  const script =
    'import importlib.util as u\n' +
    's = u.find_spec("torch")\n' +
    'print(s.submodule_search_locations[0] if s and s.submodule_search_locations else "")';
  const result = spawnSync(pythonExecutable(), ['-c', script], { encoding: 'utf8', timeout: 30_000 });
  if (result.status !== 0 || !result.stdout) return undefined;
  const dir = result.stdout.trim();
  return dir || undefined;
}

/** The cache folder that holds the unpacked pinned LibTorch. */
export function cachedLibTorchDir(): string {
  const tag = torchSpec().replace(/[^A-Za-z0-9.+-]+/g, '-');
  return path.join(cacheDir(), 'libtorch', tag);
}

/** One candidate tried during the search, for messages and `densetorch doctor`. */
export interface SearchStep {
  readonly source: LibTorchSource;
  readonly where: string;
  readonly found: LibTorchInstall | undefined;
}

/**
 * LibTorch's runtime libraries from the npm package `@densetorch/libtorch-<platform>` (installed
 * as an optional dependency, as sharp installs libvips): `lib/` and a `libtorch.json` naming the
 * version. Enough to load the addon, not to compile one.
 */
export function packagedLibTorch(): SearchStep {
  const name = libtorchPackage(platformTag());
  let manifest: string;
  try {
    manifest = require.resolve(`${name}/package.json`);
  } catch {
    return { source: 'package', where: `${name}: not installed`, found: undefined };
  }
  const root = path.dirname(manifest);
  const record = path.join(root, 'libtorch.json');
  const version = fs.existsSync(record) ? (JSON.parse(fs.readFileSync(record, 'utf8')) as { version?: string }).version : undefined;
  const libDir = path.join(root, 'lib');
  if (!version || !fs.existsSync(path.join(libDir, LIB_NAME))) return { source: 'package', where: `${root}: incomplete (no libtorch.json or lib/${LIB_NAME})`, found: undefined };
  return { source: 'package', where: root, found: { root, version, source: 'package', libDir, includeDirs: [], cuda: false } };
}

/**
 * Looks in every place, in order, without fetching; returns what each step found. With
 * `runtime: true` (loading the addon, not building it) the npm package of LibTorch's runtime
 * libraries is looked at right after `LIBTORCH`.
 */
export function searchLibTorch(options: { runtime?: boolean } = {}): SearchStep[] {
  const steps: SearchStep[] = [];
  const env = process.env.LIBTORCH;
  if (env) steps.push({ source: 'env', where: env, found: inspectLibTorch(env, 'env') });
  if (options.runtime) steps.push(packagedLibTorch());
  const py = pythonTorchDir();
  steps.push({ source: 'python', where: py ?? `${pythonExecutable()}: no importable torch`, found: py ? inspectLibTorch(py, 'python') : undefined });
  const cached = cachedLibTorchDir();
  const complete = fs.existsSync(path.join(cached, '.complete'));
  steps.push({ source: 'cache', where: cached, found: complete ? inspectLibTorch(cached, 'cache') : undefined });
  return steps;
}

/**
 * Finds LibTorch in the documented order. With `fetch: true`, downloads and unpacks the pinned
 * wheel into the cache when nothing is found. Throws {@link LibTorchNotFoundError} otherwise.
 * `LIBTORCH`, when set, must point at a usable LibTorch: it is never silently skipped.
 */
export function findLibTorch(options: FindOptions = {}): LibTorchInstall {
  const steps = searchLibTorch({ runtime: options.runtime });
  checkEnvStep(steps);
  const hit = steps.find((s) => s.found)?.found;
  if (hit) return hit;
  if (options.fetch) return fetchLibTorch(options.log ?? (() => undefined));
  throw new LibTorchNotFoundError(
    'LibTorch was not found. Looked at: ' +
      steps.map((s) => `${s.source} (${s.where})`).join('; ') +
      '. Run `npx densetorch setup` to fetch LibTorch ' + PINNED_TORCH_VERSION +
      ` into ${cacheDir()}, or set LIBTORCH to an unzipped libtorch or a torch Python package folder.`,
  );
}

/** Throws when `LIBTORCH` is set but is not a LibTorch folder: it is never silently skipped. */
export function checkEnvStep(steps: readonly SearchStep[]): void {
  const env = steps.find((s) => s.source === 'env');
  if (env && !env.found) {
    throw new LibTorchNotFoundError(
      `LIBTORCH is set to '${env.where}', which is not a LibTorch folder (expected lib/${LIB_NAME}, ` +
        'include/torch and a version file). Point it at an unzipped libtorch or a torch Python package folder, or unset it.',
    );
  }
}

function run(command: string, args: string[], what: string): void {
  const result = spawnSync(command, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.error || result.status !== 0) {
    const reason = result.error ? result.error.message : `exit code ${result.status}`;
    throw new LibTorchNotFoundError(
      `${what} failed (${command} ${args.join(' ')}: ${reason}). Install Python 3 with pip, or download ` +
        'libtorch yourself and set LIBTORCH to its folder.',
    );
  }
}

/**
 * Downloads the pinned torch wheel with pip (no dependencies) into `<cache>/wheels` and unpacks
 * its LibTorch part (lib, include, share, version.py) into the cache, atomically: the folder is
 * assembled under a temporary name, marked complete and renamed into place.
 */
export function fetchLibTorch(log: (message: string) => void): LibTorchInstall {
  const wheels = path.join(cacheDir(), 'wheels');
  fs.mkdirSync(wheels, { recursive: true });
  const spec = torchSpec();
  log(`densetorch: fetching ${spec} with pip into ${wheels}`);
  run(pythonExecutable(), ['-m', 'pip', 'download', spec, '--no-deps', '--only-binary=:all:', '--progress-bar', 'on', '-d', wheels], 'pip download');
  const version = spec.split('==')[1];
  const wheel = fs
    .readdirSync(wheels)
    .filter((f) => f.startsWith('torch-') && f.endsWith('.whl') && (!version || f.startsWith(`torch-${version}`)))
    .sort()
    .pop();
  if (!wheel) throw new LibTorchNotFoundError(`pip download of ${spec} left no torch wheel in ${wheels}.`);
  log(`densetorch: ${verifyWheel(path.join(wheels, wheel))}`);
  const target = cachedLibTorchDir();
  const staging = `${target}.partial-${process.pid}`;
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(staging, { recursive: true });
  log(`densetorch: unpacking ${wheel} into ${target}`);
  const unpack =
    'import sys, zipfile, os\n' +
    'z = zipfile.ZipFile(sys.argv[1])\n' +
    'keep = ("torch/lib/", "torch/include/", "torch/share/")\n' +
    'names = [n for n in z.namelist() if n.startswith(keep) or n == "torch/version.py"]\n' +
    'for n in names:\n' +
    '    z.extract(n, sys.argv[2])\n' +
    'for n in names:\n' +
    '    info = z.getinfo(n)\n' +
    '    mode = (info.external_attr >> 16) & 0o777\n' +
    '    if mode: os.chmod(os.path.join(sys.argv[2], n), mode)\n';
  run(pythonExecutable(), ['-c', unpack, path.join(wheels, wheel), staging], 'unpacking the torch wheel');
  const unpacked = path.join(staging, 'torch');
  fs.writeFileSync(path.join(unpacked, '.complete'), `${wheel}\n`);
  fs.rmSync(target, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.renameSync(unpacked, target);
  fs.rmSync(staging, { recursive: true, force: true });
  const found = inspectLibTorch(target, 'cache');
  if (!found) throw new LibTorchNotFoundError(`The unpacked wheel in ${target} is not a usable LibTorch.`);
  return found;
}

/** `major.minor.patch` of a version string (drops local tags such as `+cpu`). */
export function releaseOf(version: string): string {
  return version.split('+')[0];
}
