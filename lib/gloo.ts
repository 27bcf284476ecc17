/**
 * Finding gloo's headers for the distributed part of the addon, and fetching them when missing.
 *
 * LibTorch ships c10d's headers and has Gloo compiled into libtorch_cpu, but not gloo's own
 * headers, which `ProcessGroupGloo.hpp` includes. Order: `DENSETORCH_GLOO_INCLUDE` (a folder
 * holding `gloo/`), the system's `/usr/include` (Debian/Ubuntu: `libgloo-dev`), the densetorch
 * cache, then (only when fetching is allowed: the build) Debian's `libgloo-dev` package
 * downloaded with `apt-get download` and unpacked with `dpkg -x` into the cache, without root.
 * Only headers are used: the addon links LibTorch's own Gloo, never the system's libgloo.
 * `DENSETORCH_DISTRIBUTED=0` builds without distributed support.
 *
 * Used by the build scripts before the addon exists, so it must not load it.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cacheDir } from './libtorch';

/** Where gloo's headers were found. */
export type GlooSource = 'env' | 'system' | 'cache' | 'fetched';

/** Result of {@link findGloo}: an include folder (holding `gloo/`), or why there is none. */
export type GlooHeaders =
  | { readonly found: true; readonly includeDir: string; readonly source: GlooSource }
  | { readonly found: false; readonly reason: string };

/** Options of {@link findGloo}. */
export interface FindGlooOptions {
  /** Fetch Debian's libgloo-dev into the cache when nothing is found. Default false. */
  readonly fetch?: boolean;
  /** Progress messages. Default: none. */
  readonly log?: (message: string) => void;
}

const MARKER = path.join('gloo', 'allreduce_ring.h');

/** The cache folder that holds fetched gloo headers (its `usr/include` holds `gloo/`). */
export function cachedGlooDir(): string {
  return path.join(cacheDir(), 'gloo');
}

function hasGloo(includeDir: string): boolean {
  return fs.existsSync(path.join(includeDir, MARKER));
}

/** Finds gloo's headers in the documented order, fetching them when allowed. Never throws. */
export function findGloo(options: FindGlooOptions = {}): GlooHeaders {
  const toggle = process.env.DENSETORCH_DISTRIBUTED;
  if (toggle === '0' || toggle === 'false') return { found: false, reason: 'DENSETORCH_DISTRIBUTED=0 was set at build time' };
  const explicit = process.env.DENSETORCH_GLOO_INCLUDE;
  if (explicit) {
    if (hasGloo(explicit)) return { found: true, includeDir: path.resolve(explicit), source: 'env' };
    return { found: false, reason: `DENSETORCH_GLOO_INCLUDE=${explicit} holds no ${MARKER}` };
  }
  if (hasGloo('/usr/include')) return { found: true, includeDir: '/usr/include', source: 'system' };
  const cached = path.join(cachedGlooDir(), 'usr', 'include');
  if (hasGloo(cached)) return { found: true, includeDir: cached, source: 'cache' };
  const missing = "gloo's headers were not found (DENSETORCH_GLOO_INCLUDE, /usr/include, the densetorch cache)";
  if (!options.fetch) return { found: false, reason: missing };
  const fetched = fetchGloo(options.log ?? (() => undefined));
  return fetched.found ? fetched : { found: false, reason: `${missing}, and fetching them failed: ${fetched.reason}` };
}

/**
 * Downloads Debian's libgloo-dev with `apt-get download` (no root needed; when the system's package
 * lists are empty, they are first read into a private folder of the cache) and unpacks it with
 * `dpkg -x` into the cache, atomically (staging folder, then rename).
 */
export function fetchGloo(log: (message: string) => void): GlooHeaders {
  for (const tool of ['apt-get', 'dpkg']) {
    const probe = spawnSync(tool, ['--version'], { stdio: 'ignore' });
    if (probe.error || probe.status !== 0) return { found: false, reason: `${tool} is not available` };
  }
  const target = cachedGlooDir();
  // Staged beside the target (same file system, so the final rename is atomic).
  const staging = `${target}.partial-${process.pid}`;
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(staging, { recursive: true });
  try {
    log(`densetorch: fetching gloo's headers (Debian's libgloo-dev) into ${target}`);
    const findDeb = () => fs.readdirSync(staging).find((f) => f.startsWith('libgloo-dev_') && f.endsWith('.deb'));
    let download = spawnSync('apt-get', ['download', '-q', 'libgloo-dev'], { cwd: staging, encoding: 'utf8', timeout: 120_000 });
    if (!findDeb()) {
      // The system's package lists may be empty (no `apt-get update` yet, which needs root):
      // read them into a private folder of the cache instead, then download from there.
      const apt = path.join(cacheDir(), 'apt');
      for (const dir of ['lists/partial', 'cache/archives/partial']) fs.mkdirSync(path.join(apt, dir), { recursive: true });
      const options = ['-q', '-o', `Dir::State::Lists=${path.join(apt, 'lists')}`, '-o', `Dir::Cache=${path.join(apt, 'cache')}`, '-o', 'Debug::NoLocking=1'];
      log("densetorch: apt-get download found no libgloo-dev; reading the package lists into the densetorch cache");
      const update = spawnSync('apt-get', [...options, 'update'], { encoding: 'utf8', timeout: 300_000 });
      if (update.status === 0) download = spawnSync('apt-get', [...options, 'download', 'libgloo-dev'], { cwd: staging, encoding: 'utf8', timeout: 120_000 });
    }
    const deb = findDeb();
    if (!deb) {
      const why = (download.stderr || download.error?.message || `exit code ${download.status}`).trim().split('\n').pop();
      return { found: false, reason: `apt-get download libgloo-dev failed (${why}); install libgloo-dev or set DENSETORCH_GLOO_INCLUDE` };
    }
    const unpacked = path.join(staging, 'root');
    const unpack = spawnSync('dpkg', ['-x', path.join(staging, deb), unpacked], { encoding: 'utf8', timeout: 120_000 });
    if (unpack.status !== 0 || !hasGloo(path.join(unpacked, 'usr', 'include'))) {
      return { found: false, reason: `dpkg -x ${deb} failed (${(unpack.stderr || '').trim() || `exit code ${unpack.status}`})` };
    }
    fs.writeFileSync(path.join(unpacked, '.complete'), `${deb}\n`);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(unpacked, target);
    return { found: true, includeDir: path.join(target, 'usr', 'include'), source: 'fetched' };
  } catch (err) {
    return { found: false, reason: (err as Error).message };
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}
