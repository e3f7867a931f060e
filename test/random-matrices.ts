/** Random test matrices for the linear algebra and FID tests. */
import { fromEigen } from '../src/eval/linalg.ts';
import type { Rng } from '../src/rng.ts';

/** A random n x n orthogonal matrix: modified Gram–Schmidt on the columns of a Gaussian matrix. */
export function randomOrthogonal(n: number, rng: Rng): Float64Array {
  const q = rng.normalFloat64(n * n);
  for (let k = 0; k < n; k++) {
    for (let j = 0; j < k; j++) {
      let dot = 0;
      for (let i = 0; i < n; i++) dot += q[i * n + j]! * q[i * n + k]!;
      for (let i = 0; i < n; i++) q[i * n + k]! -= dot * q[i * n + j]!;
    }
    let norm = 0;
    for (let i = 0; i < n; i++) norm += q[i * n + k]! ** 2;
    norm = Math.sqrt(norm);
    for (let i = 0; i < n; i++) q[i * n + k]! /= norm;
  }
  return q;
}

/** Q diag(λ) Qᵀ. */
export function compose(q: Float64Array, lambda: ArrayLike<number>): Float64Array {
  return fromEigen({ values: Float64Array.from(lambda), vectors: q, sweeps: 0 }, (l) => l);
}
