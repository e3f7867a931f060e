/**
 * Gaussian diffusion: the forward process q, its posterior, the reverse process p_θ, the losses and
 * the NLL, on flat typed arrays.
 *
 * Sources: J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020
 * (equation numbers below are theirs unless noted); A. Nichol, P. Dhariwal, "Improved Denoising
 * Diffusion Probabilistic Models", ICML 2021 ("N&D"); the structure and names follow OpenAI's
 * improved-diffusion `gaussian_diffusion.py`.
 *
 * Glossary (code ↔ symbol ↔ where). Index t in code is the paper's t+1 (arrays run 0..T-1).
 *   betas                      β_t                          forward variances, eq. (2)
 *   alphas                     α_t = 1 − β_t                §2
 *   alphasCumprod              ᾱ_t = ∏_{i=1}^{t} α_i         eq. (4)
 *   alphasCumprodPrev          ᾱ_{t−1} (ᾱ_0 = 1)
 *   sqrtAlphasCumprod          √ᾱ_t                          mean of q(x_t|x_0), eq. (4)
 *   sqrtOneMinusAlphasCumprod  √(1−ᾱ_t)                      std of q(x_t|x_0), eq. (4)
 *   sqrtRecipAlphasCumprod     1/√ᾱ_t                        x_0 from ε, eq. (15)
 *   sqrtRecipm1AlphasCumprod   √(1/ᾱ_t − 1)                  x_0 from ε, eq. (15)
 *   posteriorVariance          β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t)·β_t  variance of q(x_{t−1}|x_t,x_0), eq. (7)
 *   posteriorMeanCoef1         √ᾱ_{t−1}β_t/(1−ᾱ_t)            x_0 coefficient of μ̃_t, eq. (7)
 *   posteriorMeanCoef2         √α_t(1−ᾱ_{t−1})/(1−ᾱ_t)         x_t coefficient of μ̃_t, eq. (7)
 *   snr                        ᾱ_t/(1−ᾱ_t)                   signal-to-noise ratio
 *   qSample                    x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε      eq. (4); Algorithm 1
 *   qStep                      x_t = √α_t x_{t−1} + √β_t ε      eq. (2)
 *   qPosteriorMeanVariance     μ̃_t(x_t, x_0), β̃_t             eq. (6)–(7)
 *   pMeanVariance              μ_θ(x_t, t), Σ_θ(x_t, t)        eq. (1), (11); N&D eq. (15)
 *   predictX0FromEps           x̂_0 = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t     eq. (15)
 *   getVelocity                v = √ᾱ_t ε − √(1−ᾱ_t) x_0       Salimans & Ho 2022, §4
 *   vbTermsBpd                 L_{t−1} (KL) or L_0 (decoder)    eq. (5), in bits/dim
 *   priorBpd                   L_T = KL(q(x_T|x_0) ‖ N(0, I))    eq. (5)
 *
 * The error-prone spots: ᾱ_t is a product up to t (not T); the VLB terms are
 * KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)) (posterior first); μ̃'s x_0 coefficient is
 * √ᾱ_{t−1}β_t/(1−ᾱ_t); and with ε-prediction μ_θ = (x_t − β_t/√(1−ᾱ_t)·ε_θ)/√α_t (eq. 11), which is
 * what μ̃_t(x_t, x̂_0(ε_θ)) computes.
 *
 * The object holds only the schedule tables (and, if respaced, the map to the original timesteps);
 * every method is a pure function of its arguments. The model is passed in.
 */
import {
  batchDims,
  checkLength,
  resolveTimesteps,
  type ShapedArray,
  type DiffusionModel,
  type MeanType,
  type Timesteps,
  type VarType,
} from './batch.ts';
import { vbTermsBpd as vbTermsBpdOf } from './loss-formulas.ts';
import { float64Ops, hybridLoss, toFloat64, meanFlat, meanSquaredError, minSnrWeights, normalKl, HYBRID_LAMBDA } from './losses.ts';
import {
  betasForSchedule,
  scheduleConfig,
  scheduleTables,
  type ScheduleConfig,
  type ScheduleConfigInput,
  type ScheduleTables,
} from './schedule.ts';
import { processX0InPlace, type X0Processing } from './thresholding.ts';
import type { Rng } from '../rng.ts';

const LN2 = Math.LN2;

/** Options of {@link GaussianDiffusion.pMeanVariance}. */
export interface PMeanVarianceOptions extends X0Processing {
  readonly meanType: MeanType;
  readonly varType: VarType;
}

/** Output of {@link GaussianDiffusion.pMeanVariance}; every array has x_t's shape. */
export interface PMeanVarianceOutput {
  /** μ_θ(x_t, t) */
  readonly mean: Float32Array;
  /** Σ_θ(x_t, t) */
  readonly variance: Float32Array;
  /** log Σ_θ(x_t, t) (for fixedSmall at t = 0 the clipped log, as in improved-diffusion) */
  readonly logVariance: Float32Array;
  /** x̂_0 after clipping / thresholding */
  readonly predX0: Float32Array;
}

/** Options of the per-batch VLB term and the NLL loop. */
export interface VbOptions {
  readonly meanType: MeanType;
  readonly varType: VarType;
  /** Clip x̂_0 to [−1, 1] (default false for training terms, true for {@link GaussianDiffusion.calcBpdLoop}). */
  readonly clipDenoised?: boolean;
}

/** Options of {@link GaussianDiffusion.trainingLosses}. */
export interface TrainingLossOptions {
  readonly meanType: MeanType;
  readonly varType: VarType;
  /** Min-SNR-γ weighting of the MSE (Hang et al. 2023); off when undefined. */
  readonly minSnrGamma?: number;
  /** λ of the hybrid loss (used with `learnedRange` only); default 0.001. */
  readonly lambdaVlb?: number;
}

/** Per-example training losses. */
export interface TrainingLosses {
  /** The objective per example: weight·mse (+ λ·T·vb for learnedRange). */
  readonly loss: Float64Array;
  /** L_simple: MSE of the prediction against its target (ε, x_0 or v), before weighting. */
  readonly mse: Float64Array;
  /** The VLB term L_t in bits/dim (learnedRange only). */
  readonly vb?: Float64Array;
  /** The MSE weight per example (all 1 without min-SNR). */
  readonly weight: Float64Array;
}

/** Options of {@link GaussianDiffusion.calcBpdLoop}. */
export interface CalcBpdOptions extends VbOptions {
  /** Source of the noise ε for every q(x_t|x_0) draw (consumed for t = T−1 down to 0). */
  readonly rng: Rng;
  /** Called after each timestep with (done, total = T). */
  readonly onProgress?: (done: number, total: number) => void;
}

/** Output of {@link GaussianDiffusion.calcBpdLoop}: per image (length B), or [B, T] indexed [b·T + t]. */
export interface CalcBpdOutput {
  /** Total NLL bound in bits/dim: priorBpd + Σ_t vb[t]. */
  readonly totalBpd: Float64Array;
  /** L_T in bits/dim. */
  readonly priorBpd: Float64Array;
  /** [B, T]: L_{t} in bits/dim for t = 0..T−1 (t = 0 is the decoder NLL L_0). */
  readonly vb: Float64Array;
  /** [B, T]: mean squared error of x̂_0. */
  readonly xstartMse: Float64Array;
  /** [B, T]: mean squared error of ε̂ (derived from x̂_0) against the ε used. */
  readonly mse: Float64Array;
}

/**
 * The schedule tables of a Gaussian diffusion process plus pure methods for q, p_θ and the losses.
 * Construct with {@link GaussianDiffusion.fromConfig} or from raw β.
 */
export class GaussianDiffusion implements ScheduleTables {
  readonly numTimesteps: number;
  readonly betas: Float64Array;
  readonly alphas: Float64Array;
  readonly alphasCumprod: Float64Array;
  readonly alphasCumprodPrev: Float64Array;
  readonly alphasCumprodNext: Float64Array;
  readonly sqrtAlphasCumprod: Float64Array;
  readonly sqrtOneMinusAlphasCumprod: Float64Array;
  readonly logOneMinusAlphasCumprod: Float64Array;
  readonly sqrtRecipAlphasCumprod: Float64Array;
  readonly sqrtRecipm1AlphasCumprod: Float64Array;
  readonly posteriorVariance: Float64Array;
  readonly posteriorLogVarianceClipped: Float64Array;
  readonly posteriorMeanCoef1: Float64Array;
  readonly posteriorMeanCoef2: Float64Array;
  readonly snr: Float64Array;
  /** log β_t: the upper end of the learnedRange interpolation. */
  readonly logBetas: Float64Array;
  /** fixedLarge variance: [β̃_1, β_2, …, β_T] (improved-diffusion: β̃ at t = 0 for a better decoder NLL). */
  readonly fixedLargeVariance: Float64Array;
  // Coefficient tables for the parameterisation conversions (precomputed once).
  private readonly negSqrtRecipm1AlphasCumprod: Float64Array;
  private readonly negSqrtOneMinusAlphasCumprod: Float64Array;
  private readonly epsFromX0CoefXt: Float64Array;
  private readonly epsFromX0CoefX0: Float64Array;
  private readonly logFixedLargeVariance: Float64Array;
  /** The original timestep index the model is called with at each index of this process (identity unless respaced). */
  readonly timestepMap: Int32Array;
  /** The config this process came from (null when built from raw β or respaced). */
  readonly config: ScheduleConfig | null;

  /**
   * @param betas β_1..β_T in float64, each in (0, 1], T ≥ 2
   * @param opts.timestepMap model timestep per index (set by {@link respace})
   * @param opts.config the schedule config that produced `betas`, kept for checkpoints
   */
  constructor(betas: Float64Array, opts: { timestepMap?: Int32Array; config?: ScheduleConfig } = {}) {
    const t = scheduleTables(betas);
    this.numTimesteps = t.numTimesteps;
    this.betas = t.betas;
    this.alphas = t.alphas;
    this.alphasCumprod = t.alphasCumprod;
    this.alphasCumprodPrev = t.alphasCumprodPrev;
    this.alphasCumprodNext = t.alphasCumprodNext;
    this.sqrtAlphasCumprod = t.sqrtAlphasCumprod;
    this.sqrtOneMinusAlphasCumprod = t.sqrtOneMinusAlphasCumprod;
    this.logOneMinusAlphasCumprod = t.logOneMinusAlphasCumprod;
    this.sqrtRecipAlphasCumprod = t.sqrtRecipAlphasCumprod;
    this.sqrtRecipm1AlphasCumprod = t.sqrtRecipm1AlphasCumprod;
    this.posteriorVariance = t.posteriorVariance;
    this.posteriorLogVarianceClipped = t.posteriorLogVarianceClipped;
    this.posteriorMeanCoef1 = t.posteriorMeanCoef1;
    this.posteriorMeanCoef2 = t.posteriorMeanCoef2;
    this.snr = t.snr;
    this.logBetas = t.betas.map(Math.log);
    this.fixedLargeVariance = Float64Array.from(t.betas);
    this.fixedLargeVariance[0] = t.posteriorVariance[1];
    this.logFixedLargeVariance = this.fixedLargeVariance.map(Math.log);
    this.negSqrtRecipm1AlphasCumprod = t.sqrtRecipm1AlphasCumprod.map((c) => -c);
    this.negSqrtOneMinusAlphasCumprod = t.sqrtOneMinusAlphasCumprod.map((c) => -c);
    this.epsFromX0CoefXt = t.sqrtOneMinusAlphasCumprod.map((c) => 1 / c);
    this.epsFromX0CoefX0 = t.sqrtAlphasCumprod.map((c, i) => -c / t.sqrtOneMinusAlphasCumprod[i]);
    const T = this.numTimesteps;
    if (opts.timestepMap) {
      checkLength(opts.timestepMap, T, 'timestepMap');
      this.timestepMap = Int32Array.from(opts.timestepMap);
    } else {
      this.timestepMap = new Int32Array(T).map((_, i) => i);
    }
    this.config = opts.config ?? null;
  }

  /** The process for a schedule config (validated, defaults filled in). */
  static fromConfig(input: ScheduleConfigInput | ScheduleConfig): GaussianDiffusion {
    const config = scheduleConfig(input);
    return new GaussianDiffusion(betasForSchedule(config), { config });
  }

  // ---------------------------------------------------------------- forward process q

  /**
   * q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), eq. (4).
   * @returns mean, variance and log-variance, each of x_0's shape
   */
  qMeanVariance(x0: ShapedArray, t: Timesteps): { mean: Float32Array; variance: Float32Array; logVariance: Float32Array } {
    const { B, perExample } = batchDims(x0);
    const ts = resolveTimesteps(t, B, this.numTimesteps);
    const n = x0.data.length;
    const mean = new Float32Array(n);
    const variance = new Float32Array(n);
    const logVariance = new Float32Array(n);
    for (let b = 0; b < B; b++) {
      const ti = ts[b];
      const c = this.sqrtAlphasCumprod[ti];
      const v = 1 - this.alphasCumprod[ti];
      const lv = this.logOneMinusAlphasCumprod[ti];
      for (let j = b * perExample; j < (b + 1) * perExample; j++) {
        mean[j] = c * x0.data[j];
        variance[j] = v;
        logVariance[j] = lv;
      }
    }
    return { mean, variance, logVariance };
  }

  /**
   * Sample x_t ~ q(x_t | x_0) in closed form, eq. (4): x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.
   * @param x0 clean data [B, ...]
   * @param t one timestep per example (or one for all)
   * @param noise ε ~ N(0, I), same size as x0
   */
  qSample(x0: ShapedArray, t: Timesteps, noise: Float32Array): Float32Array {
    return this.combine(x0, t, noise, this.sqrtAlphasCumprod, this.sqrtOneMinusAlphasCumprod, 'noise');
  }

  /**
   * One step of the forward chain, eq. (2): x_t = √α_t x_{t−1} + √β_t ε, i.e. x_t ~ q(x_t | x_{t−1}).
   * `qStep(x_0, 0, ε)` draws x at index 0 (the paper's x_1); t chained steps from x_0 are
   * distributed as `qSample(x_0, t − 1, ·)`.
   * @param xPrev x_{t−1} [B, ...]
   */
  qStep(xPrev: ShapedArray, t: Timesteps, noise: Float32Array): Float32Array {
    const { B, perExample } = batchDims(xPrev);
    const ts = resolveTimesteps(t, B, this.numTimesteps);
    checkLength(noise, xPrev.data.length, 'noise');
    const out = new Float32Array(xPrev.data.length);
    for (let b = 0; b < B; b++) {
      const a = Math.sqrt(this.alphas[ts[b]]);
      const s = Math.sqrt(this.betas[ts[b]]);
      for (let j = b * perExample; j < (b + 1) * perExample; j++) out[j] = a * xPrev.data[j] + s * noise[j];
    }
    return out;
  }

  // ---------------------------------------------------------------- posterior

  /**
   * The forward-process posterior q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I), eq. (6)–(7):
   * μ̃_t = √ᾱ_{t−1}β_t/(1−ᾱ_t)·x_0 + √α_t(1−ᾱ_{t−1})/(1−ᾱ_t)·x_t.
   * @returns mean, variance and the clipped log-variance, each of x_0's shape
   */
  qPosteriorMeanVariance(
    x0: ShapedArray,
    xt: Float32Array,
    t: Timesteps,
  ): { mean: Float32Array; variance: Float32Array; logVarianceClipped: Float32Array } {
    const { B, perExample } = batchDims(x0);
    const ts = resolveTimesteps(t, B, this.numTimesteps);
    const mean = this.combine(x0, ts, xt, this.posteriorMeanCoef1, this.posteriorMeanCoef2, 'xt');
    const variance = this.gather(this.posteriorVariance, ts, perExample);
    const logVarianceClipped = this.gather(this.posteriorLogVarianceClipped, ts, perExample);
    return { mean, variance, logVarianceClipped };
  }

  // ---------------------------------------------------------------- parameterisation conversions

  /** x̂_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1)·ε, eq. (15) (eq. 4 solved for x_0). */
  predictX0FromEps(xt: ShapedArray, t: Timesteps, eps: Float32Array): Float32Array {
    return this.combine(xt, t, eps, this.sqrtRecipAlphasCumprod, this.negSqrtRecipm1AlphasCumprod, 'eps');
  }

  /**
   * ε̂ = (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t) (eq. 4 solved for ε). Written with √ᾱ rather than 1/√ᾱ so it
   * stays finite at ᾱ_t = 0 (zero terminal SNR).
   */
  predictEpsFromX0(xt: ShapedArray, t: Timesteps, x0: Float32Array): Float32Array {
    return this.combine(xt, t, x0, this.epsFromX0CoefXt, this.epsFromX0CoefX0, 'x0');
  }

  /** v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans & Ho 2022), the v-prediction target. */
  getVelocity(x0: ShapedArray, t: Timesteps, noise: Float32Array): Float32Array {
    return this.combine(x0, t, noise, this.negSqrtOneMinusAlphasCumprod, this.sqrtAlphasCumprod, 'noise');
  }

  /** x̂_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v. */
  predictX0FromV(xt: ShapedArray, t: Timesteps, v: Float32Array): Float32Array {
    return this.combine(xt, t, v, this.sqrtAlphasCumprod, this.negSqrtOneMinusAlphasCumprod, 'v');
  }

  /** ε̂ = √(1 − ᾱ_t) x_t + √ᾱ_t v. */
  predictEpsFromV(xt: ShapedArray, t: Timesteps, v: Float32Array): Float32Array {
    return this.combine(xt, t, v, this.sqrtOneMinusAlphasCumprod, this.sqrtAlphasCumprod, 'v');
  }

  // ---------------------------------------------------------------- reverse process p_θ

  /**
   * p_θ(x_{t−1} | x_t) = N(μ_θ, Σ_θ) from a model output, eq. (1):
   * 1. variance: fixedSmall β̃_t, fixedLarge [β̃_1, β_2..β_T], or learnedRange
   *    log Σ = frac·log β_t + (1 − frac)·log β̃_t (clipped), frac = (v + 1)/2 (N&D eq. 15);
   * 2. x̂_0 from the output (ε: eq. 15; x_0: as is; v: √ᾱ x_t − √(1−ᾱ) v), then clipped/thresholded;
   * 3. μ_θ = μ̃_t(x_t, x̂_0), eq. (7) (for ε this equals eq. 11 when nothing is clipped).
   * @param modelOutput [B, C, ...] (or [B, 2C, ...] for learnedRange: the second half of the
   *   channels holds v ∈ [−1, 1])
   * @param xt x_t [B, C, ...]
   */
  pMeanVariance(modelOutput: Float32Array, xt: ShapedArray, t: Timesteps, opts: PMeanVarianceOptions): PMeanVarianceOutput {
    const { B, perExample } = batchDims(xt);
    const ts = resolveTimesteps(t, B, this.numTimesteps);
    const n = xt.data.length;
    const { output, varValues } = splitModelOutput(modelOutput, n, B, opts.varType);

    // 1. variance
    let variance: Float32Array;
    let logVariance: Float32Array;
    if (opts.varType === 'learnedRange') {
      variance = new Float32Array(n);
      logVariance = new Float32Array(n);
      for (let b = 0; b < B; b++) {
        const minLog = this.posteriorLogVarianceClipped[ts[b]];
        const maxLog = this.logBetas[ts[b]];
        for (let j = b * perExample; j < (b + 1) * perExample; j++) {
          const frac = (varValues![j] + 1) / 2;
          const lv = frac * maxLog + (1 - frac) * minLog;
          logVariance[j] = lv;
          variance[j] = Math.exp(lv);
        }
      }
    } else if (opts.varType === 'fixedLarge') {
      variance = this.gather(this.fixedLargeVariance, ts, perExample);
      logVariance = this.gather(this.logFixedLargeVariance, ts, perExample);
    } else if (opts.varType === 'fixedSmall') {
      variance = this.gather(this.posteriorVariance, ts, perExample);
      logVariance = this.gather(this.posteriorLogVarianceClipped, ts, perExample);
    } else {
      throw new Error(`unknown varType '${String(opts.varType)}'`);
    }

    // 2. predicted x_0
    const predX0 = this.predictX0(output, xt, ts, opts.meanType);
    processX0InPlace(predX0, B, opts);

    // 3. mean = μ̃_t(x_t, x̂_0), eq. (7)
    const mean = this.combine({ data: predX0, shape: xt.shape }, ts, xt.data, this.posteriorMeanCoef1, this.posteriorMeanCoef2, 'xt');
    return { mean, variance, logVariance, predX0 };
  }

  /** x̂_0 from a (mean part of a) model output, before clipping. */
  predictX0(output: Float32Array, xt: ShapedArray, t: Timesteps, meanType: MeanType): Float32Array {
    switch (meanType) {
      case 'epsilon':
        return this.predictX0FromEps(xt, t, output);
      case 'x0':
        checkLength(output, xt.data.length, 'model output');
        return Float32Array.from(output);
      case 'v':
        return this.predictX0FromV(xt, t, output);
      default:
        throw new Error(`unknown meanType '${String(meanType)}'`);
    }
  }

  // ---------------------------------------------------------------- losses

  /**
   * The regression target of L_simple for a parameterisation: ε (`noise` itself, not a copy),
   * x_0 (`x0.data` itself), or v (a new array).
   */
  trainingTarget(meanType: MeanType, x0: ShapedArray, t: Timesteps, noise: Float32Array): Float32Array {
    switch (meanType) {
      case 'epsilon':
        checkLength(noise, x0.data.length, 'noise');
        return noise;
      case 'x0':
        return x0.data;
      case 'v':
        return this.getVelocity(x0, t, noise);
      default:
        throw new Error(`unknown meanType '${String(meanType)}'`);
    }
  }

  /**
   * The VLB term per example in bits/dim (improved-diffusion `_vb_terms_bpd`), eq. (5):
   * L_{t−1} = KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)) for index t > 0, and the decoder NLL
   * L_0 = −log p_θ(x_0|x_1) (discretised Gaussian on the 8-bit grid) at index t = 0.
   * @param modelOutput the model's output at (x_t, t)
   * @param x0 the data, on the 8-bit grid scaled to [−1, 1]
   * @param xt x_t (e.g. `qSample(x0, t, ε)`)
   * @returns output (bits/dim per example) and the x̂_0 used
   */
  vbTermsBpd(
    modelOutput: Float32Array,
    x0: ShapedArray,
    xt: Float32Array,
    t: Timesteps,
    opts: VbOptions,
  ): { output: Float64Array; predX0: Float32Array } {
    const { B, perExample } = batchDims(x0);
    const ts = resolveTimesteps(t, B, this.numTimesteps);
    checkLength(xt, x0.data.length, 'xt');
    // Everything in float64: x̂_0 and log Σ_θ are never rounded to float32, and the shared definition
    // forms μ̃_t − μ_θ without cancellation (loss-formulas.ts)
    const p = this.pMeanLogVariance64(modelOutput, { data: xt, shape: x0.shape }, ts, opts.meanType, opts.varType, opts.clipDenoised ?? false);
    const output = vbTermsBpdOf(float64Ops(perExample), this, toFloat64(x0.data), toFloat64(xt), toFloat64(ts), p.predX0, p.logVariance) as Float64Array;
    return { output, predX0: Float32Array.from(p.predX0) };
  }

  /**
   * x̂_0 (clipped if asked) and log Σ_θ of {@link pMeanVariance}, in float64 (for the VLB terms).
   * Rounding `predX0` to float32 gives pMeanVariance's `predX0` (clipping to ±1 commutes with rounding).
   */
  private pMeanLogVariance64(
    modelOutput: Float32Array,
    xt: ShapedArray,
    ts: Int32Array,
    meanType: MeanType,
    varType: VarType,
    clip: boolean,
  ): { predX0: Float64Array; logVariance: Float64Array } {
    const { B, perExample } = batchDims(xt);
    const n = xt.data.length;
    const { output, varValues } = splitModelOutput(modelOutput, n, B, varType);
    const predX0 = new Float64Array(n);
    const logVariance = new Float64Array(n);
    for (let b = 0; b < B; b++) {
      const t = ts[b];
      // x̂_0 from ε (eq. 15), x_0, or v; then log Σ: fixed, or N&D eq. (15)
      let ca: number;
      let cb: number;
      if (meanType === 'epsilon') [ca, cb] = [this.sqrtRecipAlphasCumprod[t], this.negSqrtRecipm1AlphasCumprod[t]];
      else if (meanType === 'v') [ca, cb] = [this.sqrtAlphasCumprod[t], this.negSqrtOneMinusAlphasCumprod[t]];
      else if (meanType === 'x0') [ca, cb] = [0, 1];
      else throw new Error(`unknown meanType '${String(meanType)}'`);
      const minLog = this.posteriorLogVarianceClipped[t];
      const maxLog = this.logBetas[t];
      for (let j = b * perExample; j < (b + 1) * perExample; j++) {
        const x = ca * xt.data[j] + cb * output[j];
        predX0[j] = clip ? Math.min(1, Math.max(-1, x)) : x;
        if (varType === 'learnedRange') {
          const frac = (varValues![j] + 1) / 2;
          logVariance[j] = frac * maxLog + (1 - frac) * minLog;
        } else if (varType === 'fixedLarge') {
          logVariance[j] = this.logFixedLargeVariance[t];
        } else if (varType === 'fixedSmall') {
          logVariance[j] = minLog;
        } else {
          throw new Error(`unknown varType '${String(varType)}'`);
        }
      }
    }
    return { predX0, logVariance };
  }

  /**
   * The prior term L_T = KL(q(x_T | x_0) ‖ N(0, I)) per example in bits/dim (improved-diffusion
   * `_prior_bpd`). Not trained; small for a good schedule.
   */
  priorBpd(x0: ShapedArray): Float64Array {
    const { B } = batchDims(x0);
    const q = this.qMeanVariance(x0, this.numTimesteps - 1);
    return meanFlat(normalKl(q.mean, q.logVariance, 0, 0), B).map((v) => v / LN2);
  }

  /**
   * Training losses per example for one model evaluation (improved-diffusion `training_losses`,
   * numerically): x_t = qSample(x_0, t, ε); mse = ‖output − target‖² averaged over non-batch dims
   * (L_simple, eq. 14), weighted by min-SNR-γ if asked; for learnedRange, plus λ·T·L_t
   * ({@link hybridLoss}; in training the L_t term must see μ_θ through a stop-gradient).
   * @param modelOutput the model's output at (qSample(x0, t, noise), t)
   */
  trainingLosses(
    modelOutput: Float32Array,
    x0: ShapedArray,
    t: Timesteps,
    noise: Float32Array,
    opts: TrainingLossOptions,
  ): TrainingLosses {
    const { B } = batchDims(x0);
    const ts = resolveTimesteps(t, B, this.numTimesteps);
    const n = x0.data.length;
    const { output } = splitModelOutput(modelOutput, n, B, opts.varType);
    const target = this.trainingTarget(opts.meanType, x0, ts, noise);
    const mse = meanSquaredError(output, target, B);
    const weight =
      opts.minSnrGamma === undefined
        ? new Float64Array(B).fill(1)
        : minSnrWeights(Array.from(ts, (ti) => this.snr[ti]), opts.minSnrGamma, opts.meanType);
    const loss = mse.map((m, b) => weight[b] * m);
    if (opts.varType !== 'learnedRange') return { loss, mse, weight };
    const xt = this.qSample(x0, ts, noise);
    const vb = this.vbTermsBpd(modelOutput, x0, xt, ts, { meanType: opts.meanType, varType: opts.varType, clipDenoised: false }).output;
    return { loss: hybridLoss(loss, vb, this.numTimesteps, opts.lambdaVlb ?? HYBRID_LAMBDA), mse, vb, weight };
  }

  // ---------------------------------------------------------------- NLL

  /**
   * The full variational bound per image in bits/dim (improved-diffusion `calc_bpd_loop`): for
   * t = T−1 down to 0, draw ε (from `opts.rng`), x_t = qSample(x_0, t, ε), evaluate the model and
   * the VLB term; total = priorBpd + Σ_t vb_t. Costs T model evaluations.
   * Unlike improved-diffusion, the [B, T] outputs are indexed by t ascending (vb[b·T + 0] is L_0).
   * @param model called with the original timestep (`timestepMap[t]`) for each index t
   * @param x0 data on the 8-bit grid scaled to [−1, 1]
   */
  async calcBpdLoop(model: DiffusionModel, x0: ShapedArray, opts: CalcBpdOptions): Promise<CalcBpdOutput> {
    const { B } = batchDims(x0);
    const T = this.numTimesteps;
    const n = x0.data.length;
    const vb = new Float64Array(B * T);
    const xstartMse = new Float64Array(B * T);
    const mse = new Float64Array(B * T);
    const vbOpts: VbOptions = { meanType: opts.meanType, varType: opts.varType, clipDenoised: opts.clipDenoised ?? true };
    const modelT = new Int32Array(B);
    for (let t = T - 1; t >= 0; t--) {
      const noise = opts.rng.normalFloat32(n);
      const xt = this.qSample(x0, t, noise);
      modelT.fill(this.timestepMap[t]);
      const out = await model(xt, Int32Array.from(modelT), x0.shape);
      const terms = this.vbTermsBpd(out, x0, xt, t, vbOpts);
      const eps = this.predictEpsFromX0({ data: xt, shape: x0.shape }, t, terms.predX0);
      const x0Err = meanSquaredError(terms.predX0, x0.data, B);
      const epsErr = meanSquaredError(eps, noise, B);
      for (let b = 0; b < B; b++) {
        vb[b * T + t] = terms.output[b];
        xstartMse[b * T + t] = x0Err[b];
        mse[b * T + t] = epsErr[b];
      }
      opts.onProgress?.(T - t, T);
    }
    const priorBpd = this.priorBpd(x0);
    const totalBpd = new Float64Array(B);
    for (let b = 0; b < B; b++) {
      let s = priorBpd[b];
      for (let t = 0; t < T; t++) s += vb[b * T + t];
      totalBpd[b] = s;
    }
    return { totalBpd, priorBpd, vb, xstartMse, mse };
  }

  // ---------------------------------------------------------------- helpers

  /** out = a[t]·x + b[t]·y per example, computed in float64 and stored as float32. */
  private combine(
    x: ShapedArray,
    t: Timesteps,
    y: Float32Array,
    a: Float64Array,
    b: Float64Array,
    yName: string,
  ): Float32Array {
    const { B, perExample } = batchDims(x);
    const ts = resolveTimesteps(t, B, this.numTimesteps);
    checkLength(y, x.data.length, yName);
    const out = new Float32Array(x.data.length);
    for (let i = 0; i < B; i++) {
      const ca = a[ts[i]];
      const cb = b[ts[i]];
      for (let j = i * perExample; j < (i + 1) * perExample; j++) out[j] = ca * x.data[j] + cb * y[j];
    }
    return out;
  }

  /** table[t_b] broadcast over each example's elements. */
  private gather(table: Float64Array, ts: Int32Array, perExample: number): Float32Array {
    const out = new Float32Array(ts.length * perExample);
    for (let b = 0; b < ts.length; b++) out.fill(table[ts[b]], b * perExample, (b + 1) * perExample);
    return out;
  }
}

/**
 * Split a model output into its mean part and (for learnedRange) the variance values: with
 * channels at dim 1, each example's first C channels are the mean part and the next C the
 * variance part.
 */
export function splitModelOutput(
  modelOutput: Float32Array,
  n: number,
  B: number,
  varType: VarType,
): { output: Float32Array; varValues: Float32Array | null } {
  if (varType !== 'learnedRange') {
    checkLength(modelOutput, n, 'model output');
    return { output: modelOutput, varValues: null };
  }
  checkLength(modelOutput, 2 * n, 'model output (learnedRange: twice the channels)');
  const per = n / B;
  const output = new Float32Array(n);
  const varValues = new Float32Array(n);
  for (let b = 0; b < B; b++) {
    output.set(modelOutput.subarray(2 * b * per, 2 * b * per + per), b * per);
    varValues.set(modelOutput.subarray(2 * b * per + per, 2 * (b + 1) * per), b * per);
  }
  return { output, varValues };
}
