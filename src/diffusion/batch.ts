/**
 * Batches on flat typed arrays: the shared vocabulary of the diffusion module.
 *
 * A batch is a row-major Float32Array with a shape [B, C, ...] (channels at dim 1, as in
 * improved-diffusion's NCHW). Functions take the primary batch as a {@link ShapedArray} (it carries the
 * shape) and same-shaped companions (noise, ε, x_0) as bare Float32Arrays; they return bare
 * Float32Arrays of the primary's shape. Per-example quantities are Float64Array of length B.
 */

/**
 * A batch: flat row-major data with its shape [B, C, ...]. (Named to stay distinct from the data
 * loader's `Batch` when both are re-exported from the package root.)
 */
export interface ShapedArray {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

/** Timesteps, one per example (length B), or a single number used for every example. Indices are 0..T-1. */
export type Timesteps = Int32Array | readonly number[] | number;

/** What the model predicts: ε (Ho et al.), x_0, or v = √ᾱ ε − √(1−ᾱ) x_0 (Salimans & Ho 2022). */
export type MeanType = 'epsilon' | 'x0' | 'v';

/**
 * The reverse-process variance: `fixedSmall` = β̃_t (posterior variance), `fixedLarge` = β_t (with
 * β̃_1 at t = 0), `learnedRange` = a learned interpolation in log space (Nichol & Dhariwal eq. 15).
 */
export type VarType = 'fixedSmall' | 'fixedLarge' | 'learnedRange';

/**
 * A denoising model on batches: x_t of `shape` and the timestep per example → model output
 * (ε, x_0 or v, with twice the channels for `learnedRange`). Any backend can be plugged in.
 * The timesteps are indices of the ORIGINAL (unrespaced) process.
 */
export type DiffusionModel = (
  xt: Float32Array,
  t: Int32Array,
  shape: readonly number[],
) => Promise<Float32Array> | Float32Array;

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

/**
 * Check a batch and return its batch size B and elements per example.
 * @throws if `data.length` does not match the shape or the shape has no batch dimension
 */
export function batchDims(x: ShapedArray): { B: number; perExample: number } {
  if (x.shape.length < 1) throw new Error('a batch needs a shape [B, ...]');
  const n = numel(x.shape);
  if (x.data.length !== n) {
    throw new Error(`batch data has ${x.data.length} elements but shape [${x.shape.join(', ')}] has ${n}`);
  }
  const B = x.shape[0];
  return { B, perExample: B === 0 ? 0 : n / B };
}

/** Throw unless `a` has `n` elements. */
export function checkLength(a: ArrayLike<number>, n: number, what: string): void {
  if (a.length !== n) throw new Error(`${what} has ${a.length} elements, expected ${n}`);
}

/**
 * Timesteps as an Int32Array of length B, each checked to be an integer in [0, T).
 */
export function resolveTimesteps(t: Timesteps, B: number, T: number): Int32Array {
  const out = new Int32Array(B);
  if (typeof t === 'number') {
    out.fill(t);
  } else {
    if (t.length !== B) throw new Error(`got ${t.length} timesteps for a batch of ${B}`);
    for (let i = 0; i < B; i++) out[i] = t[i];
  }
  const src = typeof t === 'number' ? [t] : t;
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    if (!Number.isInteger(v) || v < 0 || v >= T) throw new Error(`timestep ${v} is outside [0, ${T})`);
  }
  return out;
}
