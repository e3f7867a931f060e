/**
 * The training and evaluation losses, each written ONCE over an abstract arithmetic `Ops<T>`. Two
 * instances give the two uses: float64 arrays (`float64Ops` in losses.ts: NLL evaluation and the
 * numeric reference) and engine tensors (`tensorOps` in graph-losses.ts: traced into the training
 * step's ONNX graph). The constants (the 8-bit bin, λ of the hybrid loss) live here too.
 *
 * Sources: Ho et al. 2020, eq. (5) (VLB as KL terms), eq. (7) (posterior mean), §3.3 (discretised
 * decoder), eq. (14) (L_simple); Nichol & Dhariwal 2021, eq. (16) (L_hybrid = L_simple + λ L_vlb);
 * improved-diffusion's `losses.py` (normal_kl, approx_standard_normal_cdf,
 * discretized_gaussian_log_likelihood) and `_vb_terms_bpd`.
 *
 * The order of the operations is part of each definition: it is the order of the traced graph, so
 * changing it changes the exported training step.
 */
import type { ScheduleTables } from './schedule.ts';

/**
 * Elementwise arithmetic with broadcasting; a `number` operand is a scalar. "Per example" values
 * hold one value for each of the B examples and broadcast over that example's elements.
 */
export interface Ops<T> {
  add(a: T | number, b: T | number): T;
  sub(a: T | number, b: T | number): T;
  mul(a: T | number, b: T | number): T;
  maximum(a: T, b: number): T;
  square(x: T): T;
  exp(x: T): T;
  log(x: T): T;
  tanh(x: T): T;
  /** The mask x < c (a boolean for `where`). */
  less(x: T, c: number): T;
  /** The mask x > c. */
  greater(x: T, c: number): T;
  /** cond ? a : b, elementwise. */
  where(cond: T, a: T, b: T): T;
  /**
   * Mean over all non-batch dimensions: one value per example, shaped like t ([B]); combine it
   * only with other per-example results, not with per-element values.
   */
  meanFlat(x: T): T;
  /** table[t_b] for each example b (t holds B timestep indices), broadcasting over its elements. */
  take(table: ArrayLike<number>, t: T): T;
}

/** Half the width of one 8-bit bin on [−1, 1]: the bins are 2/255 wide. */
export const HALF_BIN = 1 / 255;

/** λ of Nichol & Dhariwal's hybrid objective, eq. (16). */
export const HYBRID_LAMBDA = 0.001;

/** Probabilities are clamped here before the log, as improved-diffusion does. */
const MIN_PROB = 1e-12;

/** Data at or beyond ±EDGE sit in the outermost bins (the grid's extremes are ±1). */
const EDGE = 0.999;

/**
 * KL(N(μ1, e^{lv1}) ‖ N(μ2, e^{lv2})) elementwise, in nats, from the mean difference μ1 − μ2:
 * ½(−1 + lv2 − lv1 + e^{lv1−lv2} + (μ1 − μ2)² e^{−lv2}). Taking the difference as an argument lets
 * a caller form it without cancellation (see {@link vbTermsBpd}).
 */
export function normalKl<T>(o: Ops<T>, meanDiff: T, logvar1: T, logvar2: T): T {
  // the −1 comes last: e^{lv1−lv2} ≈ 1 cancels it, and lv2 − lv1 is exact when the variances agree
  const t = o.add(o.add(o.sub(logvar2, logvar1), o.exp(o.sub(logvar1, logvar2))), o.mul(o.square(meanDiff), o.exp(o.mul(logvar2, -1))));
  return o.mul(o.add(t, -1), 0.5);
}

/**
 * A fast approximation of the standard normal CDF (improved-diffusion / Ho et al.):
 * Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715 x³))). Absolute error below 2e-4.
 */
export function approxStandardNormalCdf<T>(o: Ops<T>, x: T): T {
  const inner = o.mul(o.add(x, o.mul(o.mul(o.square(x), x), 0.044715)), Math.sqrt(2 / Math.PI));
  return o.mul(o.add(o.tanh(inner), 1), 0.5);
}

/**
 * Log-likelihood (nats) of 8-bit data scaled to [−1, 1] under a Gaussian discretised to the 256
 * bins (Ho et al. §3.3, the decoder L_0), elementwise: log ∫ N(y; μ, σ²) dy over
 * [x − 1/255, x + 1/255], with the first bin extended to −∞ (x < −0.999) and the last to +∞
 * (x > 0.999), so the 256 probabilities sum to 1. Uses {@link approxStandardNormalCdf};
 * probabilities are clamped at 1e-12 before the log.
 * @param logScales log σ (not log σ²)
 */
export function discretizedGaussianLogLikelihood<T>(o: Ops<T>, x: T, means: T, logScales: T): T {
  const centered = o.sub(x, means);
  const invStdv = o.exp(o.mul(logScales, -1));
  const cdfPlus = approxStandardNormalCdf(o, o.mul(o.add(centered, HALF_BIN), invStdv));
  const cdfMin = approxStandardNormalCdf(o, o.mul(o.sub(centered, HALF_BIN), invStdv));
  const logProb = (p: T) => o.log(o.maximum(p, MIN_PROB));
  const logCdfPlus = logProb(cdfPlus);
  const logOneMinusCdfMin = logProb(o.sub(1, cdfMin));
  return o.where(o.less(x, -EDGE), logCdfPlus, o.where(o.greater(x, EDGE), logOneMinusCdfMin, logProb(o.sub(cdfPlus, cdfMin))));
}

/**
 * Per-example mean squared error over the non-batch dimensions: the L_simple of Ho et al. eq. (14)
 * when `pred` is ε_θ and `target` is ε (or x_0, or v, for the other parameterisations).
 */
export function meanSquaredError<T>(o: Ops<T>, pred: T, target: T): T {
  return o.meanFlat(o.square(o.sub(target, pred)));
}

/**
 * The VLB term L_t per example in bits/dim (improved-diffusion `_vb_terms_bpd`), eq. (5):
 * KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)) for index t > 0 (the posterior is the first argument),
 * and the decoder NLL −log p_θ(x_0|x_1) on the 8-bit grid at index t = 0.
 * @param tables the schedule the timestep indices `t` refer to
 * @param x0 the data on the 8-bit grid in [−1, 1]
 * @param predX0 x̂_0 from the model output (μ_θ = μ̃_t(x_t, x̂_0), eq. 7)
 * @param logVariance log Σ_θ
 */
export function vbTermsBpd<T>(
  o: Ops<T>,
  tables: Pick<ScheduleTables, 'posteriorMeanCoef1' | 'posteriorMeanCoef2' | 'posteriorLogVarianceClipped'>,
  x0: T,
  xt: T,
  t: T,
  predX0: T,
  logVariance: T,
): T {
  const coef1 = o.take(tables.posteriorMeanCoef1, t);
  const coef2 = o.take(tables.posteriorMeanCoef2, t);
  // μ̃_t − μ_θ = coef1·(x_0 − x̂_0): the x_t terms of eq. (7) cancel, so near-equal means (a good
  // model at small t) keep their precision
  const meanDiff = o.mul(coef1, o.sub(x0, predX0));
  const kl = normalKl(o, meanDiff, o.take(tables.posteriorLogVarianceClipped, t), logVariance);
  const modelMean = o.add(o.mul(coef1, predX0), o.mul(coef2, xt));
  const decoderLl = discretizedGaussianLogLikelihood(o, x0, modelMean, o.mul(logVariance, 0.5));
  return o.where(o.less(t, 1), o.mul(o.meanFlat(decoderLl), -1 / Math.LN2), o.mul(o.meanFlat(kl), 1 / Math.LN2));
}

/**
 * L_hybrid = L_simple + λ·L_vlb per example (Nichol & Dhariwal eq. 16), where L_vlb is estimated
 * from the one sampled term as T·L_t (L_vlb = Σ_t L_t). With λ = 0.001 this is improved-diffusion's
 * `RESCALED_MSE`: mse + vb·T/1000. In training, L_vlb must not update the mean (stop-gradient on
 * μ_θ); numerically it is just this sum.
 * @param mse L_simple per example (weighted or not)
 * @param vbBpd the VLB term L_t per example, in bits/dim ({@link vbTermsBpd})
 * @param numTimesteps T
 */
export function hybridLoss<T>(o: Ops<T>, mse: T, vbBpd: T, numTimesteps: number, lambda = HYBRID_LAMBDA): T {
  return o.add(mse, o.mul(vbBpd, lambda * numTimesteps));
}
