/**
 * The training objectives as engine ops, so they compile into the training step together with the
 * model, its gradient and the optimiser. They mirror the numeric versions in `gaussian-diffusion.ts`
 * / `losses.ts` term by term (a test checks that both agree).
 *
 * Ho et al. 2020, Algorithm 1: x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε (eq. 4), L_simple = ‖ε − ε_θ(x_t, t)‖² (eq. 14).
 * Nichol & Dhariwal 2021: learned variances (eq. 15) and L_hybrid = L_simple + λ L_vlb with the mean
 * frozen inside L_vlb (§3.1). Hang et al. 2023: min-SNR-γ weights.
 */
import {
  add,
  cast,
  concat,
  constant,
  exp,
  gather,
  greater,
  less,
  log,
  maximum,
  mean,
  mul,
  reshape,
  slice,
  square,
  stopGradient,
  sub,
  tanh,
  where,
  type Tensor,
} from '../engine/tensor.ts';
import type { MeanType, VarType } from './batch.ts';
import type { GaussianDiffusion } from './gaussian-diffusion.ts';
import { HYBRID_LAMBDA } from './losses.ts';

export interface GraphLossOptions {
  meanType: MeanType;
  varType: VarType;
  /** Min-SNR-γ weighting of the MSE term; off when undefined. */
  minSnrGamma?: number;
  /** λ of the hybrid loss (learnedRange only); default 0.001. */
  lambdaVlb?: number;
}

/** The model as a traced function of (x_t, t as float32 [B]). */
export type GraphModel = (xt: Tensor, t: Tensor) => Tensor;

export interface GraphLosses {
  /** mean over the batch of the objective */
  loss: Tensor;
  /** mean over the batch of L_simple (unweighted MSE) */
  mse: Tensor;
  /** mean over the batch of the VLB term in bits/dim (learnedRange only) */
  vb?: Tensor;
}

/** Per-example table lookup: table[t] reshaped to broadcast over [B, C, H, W]. */
function at(table: ArrayLike<number>, t: Tensor, rank: number): Tensor {
  const tab = constant(Array.from(table), [table.length]);
  const B = t.shape[0]!;
  return reshape(gather(tab, t), [B, ...new Array<number>(rank - 1).fill(1)]);
}

/** KL(N(μ1, e^{lv1}) ‖ N(μ2, e^{lv2})), elementwise, in nats. */
export function normalKlGraph(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor): Tensor {
  // 0.5·(−1 + lv2 − lv1 + e^{lv1−lv2} + (μ1−μ2)²·e^{−lv2})
  const t = add(add(sub(logvar2, logvar1), exp(sub(logvar1, logvar2))), mul(square(sub(mean1, mean2)), exp(mul(logvar2, -1))));
  return mul(add(t, -1), 0.5);
}

/** Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715x³))), as improved-diffusion's approx_standard_normal_cdf. */
function approxStandardNormalCdf(x: Tensor): Tensor {
  const inner = mul(add(x, mul(mul(square(x), x), 0.044715)), Math.sqrt(2 / Math.PI));
  return mul(add(tanh(inner), 1), 0.5);
}

/**
 * log-likelihood of x (on the 8-bit grid scaled to [−1, 1]) under a Gaussian discretised into bins of
 * width 2/255, with the outermost bins extended to ±∞ (Ho et al. §3.3), elementwise, in nats.
 */
export function discretizedGaussianLogLikelihoodGraph(x: Tensor, means: Tensor, logScales: Tensor): Tensor {
  const centered = sub(x, means);
  const invStdv = exp(mul(logScales, -1));
  const cdfPlus = approxStandardNormalCdf(mul(add(centered, 1 / 255), invStdv));
  const cdfMin = approxStandardNormalCdf(mul(sub(centered, 1 / 255), invStdv));
  const logCdfPlus = log(maximum(cdfPlus, 1e-12));
  const logOneMinusCdfMin = log(maximum(sub(1, cdfMin), 1e-12));
  const cdfDelta = sub(cdfPlus, cdfMin);
  return where(less(x, -0.999), logCdfPlus, where(greater(x, 0.999), logOneMinusCdfMin, log(maximum(cdfDelta, 1e-12))));
}

/**
 * The training losses for a batch: x0 [B, C, H, W], t int64 [B] (indices into `diffusion`'s tables,
 * which must be unrespaced), noise ε [B, C, H, W].
 */
export function trainingLossesGraph(
  diffusion: GaussianDiffusion,
  model: GraphModel,
  x0: Tensor,
  t: Tensor,
  noise: Tensor,
  opts: GraphLossOptions,
): GraphLosses {
  const r = x0.rank;
  const B = x0.shape[0]!;
  const C = x0.shape[1] as number;
  // 1. x_t ~ q(x_t | x_0), eq. (4)
  const sqrtAc = at(diffusion.sqrtAlphasCumprod, t, r);
  const sqrt1mAc = at(diffusion.sqrtOneMinusAlphasCumprod, t, r);
  const xt = add(mul(sqrtAc, x0), mul(sqrt1mAc, noise));
  // 2. the model, called with the timestep as a float
  const out = model(xt, cast(t, 'float32'));
  const learned = opts.varType === 'learnedRange';
  const pred = learned ? slice(out, 1, 0, C) : out;
  // 3. L_simple against the chosen target
  const target = opts.meanType === 'epsilon' ? noise : opts.meanType === 'x0' ? x0 : sub(mul(sqrtAc, noise), mul(sqrt1mAc, x0));
  const axes = Array.from({ length: r - 1 }, (_, i) => i + 1);
  const msePer = mean(square(sub(target, pred)), axes); // (B)
  let weighted = msePer;
  if (opts.minSnrGamma !== undefined) {
    const gamma = opts.minSnrGamma;
    const w = Array.from(diffusion.alphasCumprod, (a) => {
      const snr = a / (1 - a);
      const m = Math.min(snr, gamma);
      return opts.meanType === 'epsilon' ? m / snr : opts.meanType === 'x0' ? m : m / (snr + 1);
    });
    weighted = mul(msePer, reshape(at(w, t, 2), [B]));
  }
  const result: GraphLosses = { loss: mean(weighted), mse: mean(msePer) };
  if (!learned) return result;

  // 4. L_vlb term with the mean frozen (N&D §3.1): only the variance learns from it.
  const frozen = concat([stopGradient(pred), slice(out, 1, C, 2 * C)], 1);
  const vbPer = vbTermsBpdGraph(diffusion, frozen, x0, xt, t, opts.meanType); // (B)
  const lambda = opts.lambdaVlb ?? HYBRID_LAMBDA;
  // L_vlb = Σ_t L_t = T·E_t[L_t], so λ·L_vlb per sample is λ·T·vb
  const total = add(weighted, mul(vbPer, lambda * diffusion.numTimesteps));
  return { loss: mean(total), mse: mean(msePer), vb: mean(vbPer) };
}

/**
 * The VLB term per example in bits/dim for a learnedRange model output [B, 2C, ...]:
 * KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)) for t > 0 and the decoder NLL −log p_θ(x_0|x_1) at t = 0.
 */
export function vbTermsBpdGraph(diffusion: GaussianDiffusion, modelOutput: Tensor, x0: Tensor, xt: Tensor, t: Tensor, meanType: MeanType): Tensor {
  const r = x0.rank;
  const C = x0.shape[1] as number;
  const eps = slice(modelOutput, 1, 0, C);
  const v = slice(modelOutput, 1, C, 2 * C);
  const coef1 = at(diffusion.posteriorMeanCoef1, t, r);
  const coef2 = at(diffusion.posteriorMeanCoef2, t, r);
  const postLogVar = at(diffusion.posteriorLogVarianceClipped, t, r);
  // true posterior, eq. (6)-(7)
  const trueMean = add(mul(coef1, x0), mul(coef2, xt));
  // predicted x_0, then μ_θ = μ̃(x_t, x̂_0)
  let predX0: Tensor;
  if (meanType === 'x0') predX0 = eps;
  else if (meanType === 'epsilon') predX0 = sub(mul(at(diffusion.sqrtRecipAlphasCumprod, t, r), xt), mul(at(diffusion.sqrtRecipm1AlphasCumprod, t, r), eps));
  else predX0 = sub(mul(at(diffusion.sqrtAlphasCumprod, t, r), xt), mul(at(diffusion.sqrtOneMinusAlphasCumprod, t, r), eps));
  const modelMean = add(mul(coef1, predX0), mul(coef2, xt));
  // N&D eq. (15): log Σ = frac·log β_t + (1 − frac)·log β̃_t, frac = (v + 1)/2
  const logBetas = at(Array.from(diffusion.betas, Math.log), t, r);
  const frac = mul(add(v, 1), 0.5);
  const modelLogVar = add(mul(frac, logBetas), mul(sub(1, frac), postLogVar));
  const axes = Array.from({ length: r - 1 }, (_, i) => i + 1);
  const kl = mul(mean(normalKlGraph(trueMean, postLogVar, modelMean, modelLogVar), axes), 1 / Math.LN2);
  const nll = mul(mean(discretizedGaussianLogLikelihoodGraph(x0, modelMean, mul(modelLogVar, 0.5)), axes), -1 / Math.LN2);
  const isZero = less(t, 1);
  return where(isZero, nll, kl);
}
