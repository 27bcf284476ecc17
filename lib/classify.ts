/**
 * Classification answers: softmax probabilities and the most probable classes of logits, with
 * class names when the model knows them. Shared by DenseNet.classify and the serving predictor.
 */
import type { Tensor } from './tensor';

/** One class of a {@link DenseNet.classify} answer. */
export interface ClassScore {
  /** Class index. */
  label: number;
  /** Its name, when the model knows its classes ({@link DenseNet.classes}); else null. */
  className: string | null;
  /** Softmax probability. */
  probability: number;
}

/** One image's answer of {@link DenseNet.classify}. */
export interface Classification {
  /** The file, when the input was a path. */
  file?: string;
  /** The `topK` most probable classes, most probable first. */
  top: ClassScore[];
}

/** Softmax over each row of logits [N, C] and the `k` most probable classes of each row. */
export function topClasses(logits: Tensor, k: number, classes: readonly string[] | undefined): ClassScore[][] {
  const [n, c] = logits.shape;
  const values = logits.toArray() as Float32Array;
  const out: ClassScore[][] = [];
  for (let i = 0; i < n; i++) {
    const row = values.subarray(i * c, (i + 1) * c);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    const exp = Array.from(row, (v) => Math.exp(v - max));
    const sum = exp.reduce((a, b) => a + b, 0);
    out.push(exp.map((e, label) => ({ label, className: classes?.[label] ?? null, probability: e / sum }))
      .sort((a, b) => b.probability - a.probability || a.label - b.label).slice(0, Math.min(k, c)));
  }
  return out;
}

