/**
 * DistributedSampler's rule for the data sets sharded on the JS side (streamed ones), and the
 * shard of this process. Kept apart from lib/distributed.ts so that importing it does not load
 * the addon (the CLI loads it only for commands that need it).
 */
import { addon } from '../native';

/** The share of a data set one rank reads (internal: streamed data sets apply it to their order). */
export interface Shard {
  /** Which share this rank reads. */
  rank: number;
  /** Number of shares. */
  worldSize: number;
  /** Whether the tail that does not fill a share equally is dropped (else padded by repeating). */
  dropLast: boolean;
}

/** @internal The shard of this process when a group is initialized, else undefined. */
export function currentShard(dropLast: boolean): Shard | undefined {
  const d = addon().distributed;
  if (!d.available || !d.isInitialized()) return undefined;
  const { rank, worldSize } = d.info();
  return { rank, worldSize, dropLast };
}

/**
 * The indices rank `shard.rank` takes from one epoch's `order`, as PyTorch's DistributedSampler:
 * padded by repeating the first indices up to a multiple of the world size (or cut down to one
 * with `dropLast`), then every worldSize-th index from the rank. With `pad` false (evaluation)
 * nothing is repeated or cut, so that the shards together hold each sample once.
 */
export function shardOrder(order: readonly number[], shard: Shard, pad: boolean): number[] {
  const { rank, worldSize: w } = shard;
  let all = [...order];
  if (pad && shard.dropLast) {
    all = all.slice(0, Math.floor(all.length / w) * w);
  } else if (pad && all.length > 0) {
    const total = Math.ceil(all.length / w) * w;
    for (let i = 0; all.length < total; i += 1) all.push(order[i % order.length]);
  }
  return all.filter((_, i) => i % w === rank);
}

/** Samples per epoch of a shard of a data set of `n` samples (training: padded or cut). */
export function shardLength(n: number, shard: Shard): number {
  return shard.dropLast ? Math.floor(n / shard.worldSize) : Math.ceil(n / shard.worldSize);
}
