/**
 * Weight files: reading them through the native reader (safetensors, or a PyTorch .pth state
 * dict read by the restricted unpickler), with torchvision's legacy key names made current.
 */
import * as path from 'node:path';
import { describe } from './errors';
import { addon, NativeWeightFile } from './native';

// torchvision's published weights use 'norm.1' / 'conv.2' inside dense layers; its loader renames
// them with this pattern (num_batches_tracked added: files re-saved by newer PyTorch carry it).
export const LEGACY_KEY = /^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$/;

/** A non-empty path argument, resolved. */
export function pathArg(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`Expected ${what} to be a non-empty string but received ${describe(value)}`);
  return path.resolve(value);
}

/** The tensors (legacy names renamed) and metadata of a weight file; the caller disposes the tensors. */
export async function readWeightFile(file: string): Promise<NativeWeightFile> {
  const weights = await addon().readWeights(file);
  const renamed: NativeWeightFile['tensors'] = {};
  for (const [name, t] of Object.entries(weights.tensors)) renamed[name.replace(LEGACY_KEY, '$1$2')] = t;
  return { tensors: renamed, metadata: weights.metadata };
}
