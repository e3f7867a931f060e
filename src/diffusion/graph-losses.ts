/**
 * The training objectives as engine ops, so they compile into the training step together with the
 * model, its gradient and the optimiser. Each loss is the shared definition in loss-formulas.ts,
 * traced through the `tensorOps` instance; the numeric path (losses.ts, gaussian-diffusion.ts)
 * evaluates the same definitions in float64 (a test checks that both agree).
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
import * as F from './loss-formulas.ts';
import type { Ops } from './loss-formulas.ts';
import { minSnrWeights } from './losses.ts';

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

/**
 * The engine-tensor instance of {@link Ops} for a batch of rank `rank` ([B, C, H, W]: 4): `take`
 * gives per-example values shaped [B, 1, ..., 1] (once per table and timestep tensor, so repeated
 * lookups share their nodes), and `meanFlat` reduces axes 1..rank−1 to [B].
 */
export function tensorOps(rank: number): Ops<Tensor> {
  const axes = Array.from({ length: rank - 1 }, (_, i) => i + 1);
  const lookups = new Map<Tensor, Map<ArrayLike<number>, Tensor>>(); // t -> table -> table[t]
  const take = (table: ArrayLike<number>, t: Tensor): Tensor => {
    let byTable = lookups.get(t);
    if (!byTable) lookups.set(t, (byTable = new Map()));
    let v = byTable.get(table);
    if (!v) byTable.set(table, (v = reshape(gather(constant(table, [table.length]), t), [t.shape[0]!, ...axes.map(() => 1)])));
    return v;
  };
  return { add, sub, mul, maximum, square, exp, log, tanh, less, greater, where, meanFlat: (x) => mean(x, axes), take };
}

/** KL(N(μ1, e^{lv1}) ‖ N(μ2, e^{lv2})), elementwise, in nats ({@link F.normalKl}). */
export function normalKlGraph(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor): Tensor {
  return F.normalKl(tensorOps(mean1.rank), sub(mean1, mean2), logvar1, logvar2);
}

/**
 * log-likelihood of x (on the 8-bit grid scaled to [−1, 1]) under a Gaussian discretised into bins of
 * width 2/255, with the outermost bins extended to ±∞ (Ho et al. §3.3), elementwise, in nats
 * ({@link F.discretizedGaussianLogLikelihood}).
 */
export function discretizedGaussianLogLikelihoodGraph(x: Tensor, means: Tensor, logScales: Tensor): Tensor {
  return F.discretizedGaussianLogLikelihood(tensorOps(x.rank), x, means, logScales);
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
  const o = tensorOps(x0.rank);
  const C = x0.shape[1] as number;
  // 1. x_t ~ q(x_t | x_0), eq. (4)
  const sqrtAc = o.take(diffusion.sqrtAlphasCumprod, t);
  const sqrt1mAc = o.take(diffusion.sqrtOneMinusAlphasCumprod, t);
  const xt = add(mul(sqrtAc, x0), mul(sqrt1mAc, noise));
  // 2. the model, called with the timestep as a float
  const out = model(xt, cast(t, 'float32'));
  const learned = opts.varType === 'learnedRange';
  const pred = learned ? slice(out, 1, 0, C) : out;
  // 3. L_simple against the chosen target, weighted per timestep by min-SNR-γ if asked
  const target = opts.meanType === 'epsilon' ? noise : opts.meanType === 'x0' ? x0 : sub(mul(sqrtAc, noise), mul(sqrt1mAc, x0));
  const msePer = F.meanSquaredError(o, pred, target); // (B)
  let weighted = msePer;
  if (opts.minSnrGamma !== undefined) {
    const w = minSnrWeights(diffusion.snr, opts.minSnrGamma, opts.meanType); // per timestep
    weighted = mul(msePer, gather(constant(w, [w.length]), t));
  }
  const result: GraphLosses = { loss: mean(weighted), mse: mean(msePer) };
  if (!learned) return result;

  // 4. L_vlb term with the mean frozen (N&D §3.1): only the variance learns from it.
  const frozen = concat([stopGradient(pred), slice(out, 1, C, 2 * C)], 1);
  const vbPer = vbTermsBpdGraph(diffusion, frozen, x0, xt, t, opts.meanType); // (B)
  const total = F.hybridLoss(o, weighted, vbPer, diffusion.numTimesteps, opts.lambdaVlb);
  return { loss: mean(total), mse: mean(msePer), vb: mean(vbPer) };
}

/**
 * The VLB term per example in bits/dim ({@link F.vbTermsBpd}) for a learnedRange model output
 * [B, 2C, ...]: KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)) for t > 0 and the decoder NLL
 * −log p_θ(x_0|x_1) at t = 0.
 */
export function vbTermsBpdGraph(diffusion: GaussianDiffusion, modelOutput: Tensor, x0: Tensor, xt: Tensor, t: Tensor, meanType: MeanType): Tensor {
  const o = tensorOps(x0.rank);
  const C = x0.shape[1] as number;
  const eps = slice(modelOutput, 1, 0, C);
  const v = slice(modelOutput, 1, C, 2 * C);
  // x̂_0 from the model output
  let predX0: Tensor;
  if (meanType === 'x0') predX0 = eps;
  else if (meanType === 'epsilon') predX0 = sub(mul(o.take(diffusion.sqrtRecipAlphasCumprod, t), xt), mul(o.take(diffusion.sqrtRecipm1AlphasCumprod, t), eps));
  else predX0 = sub(mul(o.take(diffusion.sqrtAlphasCumprod, t), xt), mul(o.take(diffusion.sqrtOneMinusAlphasCumprod, t), eps));
  // N&D eq. (15): log Σ = frac·log β_t + (1 − frac)·log β̃_t, frac = (v + 1)/2
  const frac = mul(add(v, 1), 0.5);
  const modelLogVar = add(mul(frac, o.take(diffusion.logBetas, t)), mul(sub(1, frac), o.take(diffusion.posteriorLogVarianceClipped, t)));
  return F.vbTermsBpd(o, diffusion, x0, xt, t, predX0, modelLogVar);
}
