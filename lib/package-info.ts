/**
 * Facts about this package, read once from package.json: its version and the torch release it
 * pins (the LibTorch that is fetched when none is found, and that a prebuilt binary expects).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The package folder (the parent of dist/). */
export const PACKAGE_ROOT = path.resolve(__dirname, '..');

const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string; libtorch: string };

/** densetorch's version. */
export const PACKAGE_VERSION: string = manifest.version;

/** The torch release densetorch pins (package.json's `libtorch` field). */
export const PINNED_TORCH_VERSION: string = manifest.libtorch;

/** Metadata key of the model config in a saved .safetensors file (JSON of DenseNetConfig). */
export const METADATA_CONFIG_KEY = 'densetorch.config';

/** Metadata key of the class names (a JSON array; label i is entry i). */
export const METADATA_CLASSES_KEY = 'densetorch.classes';

/** Metadata key of the densetorch version that wrote the file. */
export const METADATA_VERSION_KEY = 'densetorch.version';
