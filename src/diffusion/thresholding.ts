/**
 * Processing of the predicted x_0 before it is used for the next step: static clipping to [−1, 1]
 * (Ho et al.'s samplers, improved-diffusion's `clip_denoised`) and dynamic thresholding (Saharia et
 * al. 2022, "Photorealistic Text-to-Image Diffusion Models…" (Imagen), §2.3).
 */

/** Imagen's dynamic thresholding: per sample, s = max(1, min(percentile_p(|x_0|), maxValue)). */
export interface DynamicThreshold {
  /** p in (0, 1], e.g. 0.995 (Imagen) */
  readonly percentile: number;
  /** Upper bound on s (diffusers' `sample_max_value`); default Infinity, i.e. Imagen's rule. */
  readonly maxValue?: number;
}

/** How to process a predicted x_0. */
export interface X0Processing {
  /** Clip x_0 to [−1, 1]. */
  readonly clipDenoised?: boolean;
  /** Dynamic thresholding (applied before clipping; its output already lies in [−1, 1]). */
  readonly dynamicThreshold?: DynamicThreshold;
}

/** Clip every value to [−1, 1] in place; returns `x`. */
export function clipInPlace(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) x[i] = Math.min(1, Math.max(-1, x[i]));
  return x;
}

/**
 * The p-quantile of `values` with linear interpolation between order statistics
 * (torch.quantile / numpy.quantile's default `linear` method). Sorts a copy.
 */
export function quantile(values: ArrayLike<number>, p: number): number {
  if (values.length === 0) throw new Error('quantile of an empty array');
  const sorted = Float64Array.from(values).sort();
  const pos = p * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

/**
 * Dynamic thresholding in place, per example: s = clamp(quantile(|x_0|, p), 1, maxValue);
 * x_0 ← clip(x_0, −s, s)/s. Examples whose values already lie in [−1, 1] up to the percentile
 * are only clipped (s = 1).
 * @param x predicted x_0 for `batchSize` equal-sized examples back to back
 */
export function dynamicThresholdInPlace(x: Float32Array, batchSize: number, opts: DynamicThreshold): Float32Array {
  const p = opts.percentile;
  if (!(p > 0 && p <= 1)) throw new Error(`dynamic threshold percentile must be in (0, 1], got ${p}`);
  const maxValue = opts.maxValue ?? Infinity;
  const per = x.length / batchSize;
  const abs = new Float64Array(per);
  for (let b = 0; b < batchSize; b++) {
    const row = x.subarray(b * per, (b + 1) * per);
    for (let j = 0; j < per; j++) abs[j] = Math.abs(row[j]);
    const s = Math.min(Math.max(quantile(abs, p), 1), maxValue);
    for (let j = 0; j < per; j++) row[j] = Math.min(s, Math.max(-s, row[j])) / s;
  }
  return x;
}

/** Apply {@link X0Processing} to a predicted x_0 in place; returns `x`. */
export function processX0InPlace(x: Float32Array, batchSize: number, opts: X0Processing): Float32Array {
  if (opts.dynamicThreshold) dynamicThresholdInPlace(x, batchSize, opts.dynamicThreshold);
  if (opts.clipDenoised) clipInPlace(x);
  return x;
}
