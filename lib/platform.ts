/**
 * Which platform this process runs on, in the names of densetorch's per-platform npm packages
 * (`@densetorch/<tag>` holds the prebuilt addon, `@densetorch/libtorch-<tag>` LibTorch's runtime
 * libraries), and what each platform's support is.
 */
import { familySync, GLIBC, MUSL } from 'detect-libc';

/** A platform tag: `<os>-<cpu>[-<libc or toolchain>]`, as the npm/ folders and package names. */
export type PlatformTag = 'linux-x64-gnu' | 'linux-arm64-gnu' | 'darwin-arm64' | 'win32-x64-msvc';

/** What a platform has: a package built and tested by the suite, or only its package layout. */
export interface PlatformSupport {
  /** The platform. */
  tag: PlatformTag;
  /** 'released': binaries built, tested and published; 'layout': the package folder exists, nothing is built for it yet. */
  status: 'released' | 'layout';
}

/** Every platform densetorch has a package folder for (npm/<tag>/), and its status. */
export const PLATFORMS: readonly PlatformSupport[] = Object.freeze([
  { tag: 'linux-x64-gnu', status: 'released' },
  { tag: 'linux-arm64-gnu', status: 'layout' },
  { tag: 'darwin-arm64', status: 'layout' },
  { tag: 'win32-x64-msvc', status: 'layout' },
]);

/** This process's platform tag (any string: it may be one densetorch has no package for). */
export function platformTag(platform: string = process.platform, arch: string = process.arch): string {
  if (platform === 'linux') {
    const family = familySync();
    return `linux-${arch}-${family === MUSL ? 'musl' : family === GLIBC ? 'gnu' : 'unknown'}`;
  }
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

/** The npm package of the prebuilt addon for a platform. */
export function addonPackage(tag: string): string {
  return `@densetorch/${tag}`;
}

/** The npm package of LibTorch's runtime libraries for a platform. */
export function libtorchPackage(tag: string): string {
  return `@densetorch/libtorch-${tag}`;
}

/** The platforms with released packages, for messages. */
export function releasedPlatforms(): string[] {
  return PLATFORMS.filter((p) => p.status === 'released').map((p) => p.tag);
}
