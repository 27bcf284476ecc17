/**
 * Named training recipes for `densetorch train --recipe NAME`: tested sets of command-line
 * options for one data set. Options given on the command line win over the recipe's.
 */
import type { Command } from 'commander';

/** The command-line options a recipe may set (the train command's option names). */
export interface RecipeOptions {
  /** --model. */
  model?: string;
  /** --depth. */
  depth?: number;
  /** --growth-rate. */
  growthRate?: number;
  /** --epochs. */
  epochs?: number;
  /** --batch-size. */
  batchSize?: number;
  /** --lr. */
  lr?: number;
  /** --weight-decay. */
  weightDecay?: number;
  /** --schedule. */
  schedule?: 'constant' | 'multistep' | 'cosine';
  /** --warmup-epochs. */
  warmupEpochs?: number;
  /** --label-smoothing. */
  labelSmoothing?: number;
  /** --augment. */
  augment?: 'none' | 'cifar' | 'trivialaugment' | 'randaugment';
  /** --random-erasing. */
  randomErasing?: number;
  /** --ema-decay. */
  emaDecay?: number;
  /** --mixup-alpha. */
  mixupAlpha?: number;
  /** --cutmix-alpha. */
  cutmixAlpha?: number;
}

/** A recipe: the data set it is for and its options. */
export interface Recipe {
  /** The --dataset it was made for. */
  dataset: string;
  /** What it is and what it reached (docs/training.md has the runs). */
  description: string;
  /** The options it sets. */
  options: RecipeOptions;
}

/** The recipes by name. */
export const RECIPES = {
  fashion: {
    dataset: 'fashion-mnist',
    description: 'DenseNet-BC (L=40, k=12) for Fashion-MNIST in under an hour on two cores: label smoothing, a weight average, cosine with warm-up, no augmentation (18 epochs; crop, flip and random erasing held this small model back)',
    options: {
      model: 'cifar', depth: 40, growthRate: 12, epochs: 18, batchSize: 64, lr: 0.1, weightDecay: 5e-4,
      schedule: 'cosine', warmupEpochs: 1, labelSmoothing: 0.1, augment: 'none', randomErasing: 0, emaDecay: 0.999,
    },
  },
} satisfies Record<string, Recipe>;

/** A recipe's name. */
export type RecipeName = keyof typeof RECIPES;

/**
 * The train command's options with `--recipe`'s filled in where the command line left an option
 * at its default. @internal
 */
export function withRecipe<T extends { recipe?: RecipeName; dataset?: string }>(flags: T, command: Command): T {
  if (flags.recipe === undefined) return flags;
  const recipe: Recipe = RECIPES[flags.recipe];
  if (flags.dataset !== recipe.dataset && command.getOptionValueSource('dataset') === 'cli') {
    throw new Error(`--recipe ${flags.recipe} is made for --dataset ${recipe.dataset}, not ${flags.dataset}`);
  }
  const out: Record<string, unknown> = { ...flags, dataset: recipe.dataset };
  for (const [key, value] of Object.entries(recipe.options)) {
    const source = command.getOptionValueSource(key);
    if (source !== 'cli' && source !== 'env') out[key] = value;
  }
  return out as T;
}
