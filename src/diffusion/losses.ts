/**
 * Numeric loss functions on typed arrays (no autodiff): the reference that the engine's ops for
 * training mirror one-to-one, and what NLL evaluation uses.
 *
 * Sources: Ho et al. 2020, eq. (5) (VLB as KL terms), eq. (13) and §3.3 (discretised decoder),
 * eq. (14) (L_simple); Nichol & Dhariwal 2021, eq. (16) (L_hybrid = L_simple + λ L_vlb);
 * improved-diffusion's `losses.py` (normal_kl, approx_standard_normal_cdf,
 * discretized_gaussian_log_likelihood); Hang et al. 2023, "Efficient Diffusion Training via
 * Min-SNR Weighting Strategy" (min-SNR-γ).
 *
 * Elementwise functions compute in float64 and return Float64Array; `meanFlat` reduces to one value
 * per example. Results are in nats unless the name says bits (bpd = nats / ln 2, per dimension).
 */
import type { MeanType } from './batch.ts';

type Operand = ArrayLike<number> | number;

function lengthOf(...xs: Operand[]): number {
  let n = -1;
  for (const x of xs) {
    if (typeof x === 'number') continue;
    if (n >= 0 && x.length !== n) throw new Error(`operand lengths differ: ${n} vs ${x.length}`);
    n = x.length;
  }
  if (n < 0) throw new Error('at least one operand must be an array');
  return n;
}

const at = (x: Operand, i: number): number => (typeof x === 'number' ? x : x[i]);

/**
 * KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats:
 * ½(−1 + logvar2 − logvar1 + e^{logvar1−logvar2} + (mean1 − mean2)² e^{−logvar2}).
 * Any argument may be a number (broadcast); arrays must have equal length.
 */
export function normalKl(mean1: Operand, logvar1: Operand, mean2: Operand, logvar2: Operand): Float64Array {
  const n = lengthOf(mean1, logvar1, mean2, logvar2);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const lv1 = at(logvar1, i);
    const lv2 = at(logvar2, i);
    const d = at(mean1, i) - at(mean2, i);
    out[i] = 0.5 * (-1 + lv2 - lv1 + Math.exp(lv1 - lv2) + d * d * Math.exp(-lv2));
  }
  return out;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/**
 * A fast approximation of the standard normal CDF (improved-diffusion / Ho et al.):
 * Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715 x³))). Absolute error below 2e-4.
 */
export function approxStandardNormalCdf(x: number): number {
  return 0.5 * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
}

/** Half the width of one 8-bit bin on [−1, 1]: the bins are 2/255 wide. */
export const HALF_BIN = 1 / 255;

/**
 * Log-likelihood (nats) of 8-bit data scaled to [−1, 1] under a Gaussian discretised to the 256
 * bins (Ho et al. §3.3, the decoder L_0): log ∫ N(y; μ, σ²) dy over [x − 1/255, x + 1/255], with the
 * first bin extended to −∞ (x < −0.999) and the last to +∞ (x > 0.999), so the 256 probabilities
 * sum to 1. Uses {@link approxStandardNormalCdf}; probabilities are clamped at 1e-12 before the log,
 * as improved-diffusion does.
 * @param x data on the 8-bit grid in [−1, 1]
 * @param means Gaussian means, same length as x
 * @param logScales log σ (not log σ²), same length or a number
 */
export function discretizedGaussianLogLikelihood(
  x: ArrayLike<number>,
  means: ArrayLike<number>,
  logScales: Operand,
): Float64Array {
  const n = lengthOf(x, means, logScales);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const xi = x[i];
    const centered = xi - means[i];
    const invStdv = Math.exp(-at(logScales, i));
    const cdfPlus = approxStandardNormalCdf(invStdv * (centered + HALF_BIN));
    const cdfMin = approxStandardNormalCdf(invStdv * (centered - HALF_BIN));
    if (xi < -0.999) {
      out[i] = Math.log(Math.max(cdfPlus, 1e-12));
    } else if (xi > 0.999) {
      out[i] = Math.log(Math.max(1 - cdfMin, 1e-12));
    } else {
      out[i] = Math.log(Math.max(cdfPlus - cdfMin, 1e-12));
    }
  }
  return out;
}

/**
 * Mean over all non-batch dimensions: `x` holds B equal-sized examples back to back.
 * @returns one float64 value per example
 */
export function meanFlat(x: ArrayLike<number>, batchSize: number): Float64Array {
  if (batchSize <= 0 || x.length % batchSize !== 0) {
    throw new Error(`meanFlat: ${x.length} elements do not split into ${batchSize} examples`);
  }
  const per = x.length / batchSize;
  const out = new Float64Array(batchSize);
  for (let b = 0; b < batchSize; b++) {
    let s = 0;
    for (let j = b * per; j < (b + 1) * per; j++) s += x[j];
    out[b] = s / per;
  }
  return out;
}

/**
 * Per-example mean squared error over the non-batch dimensions: the L_simple of Ho et al. eq. (14)
 * when `pred` is ε_θ and `target` is ε (or x_0, or v, for the other parameterisations).
 */
export function meanSquaredError(pred: ArrayLike<number>, target: ArrayLike<number>, batchSize: number): Float64Array {
  const n = lengthOf(pred, target);
  const sq = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const d = pred[i] - target[i];
    sq[i] = d * d;
  }
  return meanFlat(sq, batchSize);
}

/**
 * Min-SNR-γ loss weights (Hang et al. 2023) per example, for an MSE on the given target:
 * ε: min(SNR, γ)/SNR; x_0: min(SNR, γ); v: min(SNR, γ)/(SNR + 1). These all weight the implied x_0
 * error by min(SNR, γ). Where SNR = 0 (a zero-terminal-SNR last step) the ε weight is taken as its
 * limit 1, as diffusers' training scripts do.
 * @param snr SNR_t = ᾱ_t/(1 − ᾱ_t) per example
 * @param gamma the clamp γ (5 in the paper)
 */
export function minSnrWeights(snr: ArrayLike<number>, gamma: number, meanType: MeanType): Float64Array {
  if (!(gamma > 0)) throw new Error(`minSnrWeights: gamma must be positive, got ${gamma}`);
  const out = new Float64Array(snr.length);
  for (let i = 0; i < snr.length; i++) {
    const s = snr[i];
    const clipped = Math.min(s, gamma);
    switch (meanType) {
      case 'epsilon':
        out[i] = s === 0 ? 1 : clipped / s;
        break;
      case 'x0':
        out[i] = clipped;
        break;
      case 'v':
        out[i] = clipped / (s + 1);
        break;
    }
  }
  return out;
}

/** λ of Nichol & Dhariwal's hybrid objective, eq. (16). */
export const HYBRID_LAMBDA = 0.001;

/**
 * L_hybrid = L_simple + λ·L_vlb per example (Nichol & Dhariwal eq. 16), where L_vlb is estimated
 * from the one sampled term as T·L_t (L_vlb = Σ_t L_t). With λ = 0.001 this is improved-diffusion's
 * `RESCALED_MSE`: mse + vb·T/1000. In training, L_vlb must not update the mean (stop-gradient on
 * μ_θ); numerically it is just this sum.
 * @param mse L_simple per example
 * @param vbBpd the VLB term L_t per example, in bits/dim ({@link GaussianDiffusion.vbTermsBpd})
 * @param numTimesteps T
 */
export function hybridLoss(
  mse: ArrayLike<number>,
  vbBpd: ArrayLike<number>,
  numTimesteps: number,
  lambda = HYBRID_LAMBDA,
): Float64Array {
  const n = lengthOf(mse, vbBpd);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = mse[i] + lambda * numTimesteps * vbBpd[i];
  return out;
}
