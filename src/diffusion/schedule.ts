/**
 * Noise schedules β_1..β_T and the tables derived from them, all in float64.
 *
 * Sources: Ho et al. 2020 (linear schedule, §4); Nichol & Dhariwal 2021, "Improved Denoising
 * Diffusion Probabilistic Models", eq. (17) (cosine schedule); diffusers' `scaled_linear` (Stable
 * Diffusion) and `sigmoid` (GeoDiff) schedules; Lin et al. 2023, "Common Diffusion Noise Schedules
 * and Sample Steps are Flawed", Algorithm 1 (zero-terminal-SNR rescaling).
 *
 * Indexing follows improved-diffusion: arrays are indexed 0..T-1 and index t is the paper's t+1,
 * so `alphasCumprod[t]` = ᾱ_{t+1} = ∏_{i=1}^{t+1} α_i (a product up to t+1, never up to T), and
 * `alphasCumprodPrev[0]` = ᾱ_0 = 1.
 *
 * Schedules must never change once released: checkpoints store only the config.
 */

import { MAX_T } from '../limits.ts';
import { describeValue } from '../describe.ts';

/** Schedule families. */
export type ScheduleKind = 'linear' | 'scaledLinear' | 'sigmoid' | 'cosine';

interface ScheduleCommon {
  /** Number of diffusion steps T. */
  readonly T: number;
  /** Rescale β so that ᾱ_T = 0 (zero terminal SNR, Lin et al. 2023, Alg. 1). */
  readonly rescaleZeroTerminalSnr: boolean;
}

/**
 * Ho et al.'s linear β. `betaStart`/`betaEnd` are the values AT T = 1000; for another T both ends
 * are multiplied by 1000/T (improved-diffusion's `get_named_beta_schedule("linear", T)`), so the
 * schedule keeps the same shape in the limit of many steps.
 */
export interface LinearScheduleConfig extends ScheduleCommon {
  readonly kind: 'linear';
  readonly betaStart: number;
  readonly betaEnd: number;
}

/** β = linspace(√betaStart, √betaEnd, T)² (diffusers `scaled_linear`; not rescaled with T). */
export interface ScaledLinearScheduleConfig extends ScheduleCommon {
  readonly kind: 'scaledLinear';
  readonly betaStart: number;
  readonly betaEnd: number;
}

/** β = sigmoid(linspace(-6, 6, T))·(betaEnd − betaStart) + betaStart (diffusers `sigmoid`; not rescaled with T). */
export interface SigmoidScheduleConfig extends ScheduleCommon {
  readonly kind: 'sigmoid';
  readonly betaStart: number;
  readonly betaEnd: number;
}

/**
 * Nichol & Dhariwal's cosine schedule, eq. (17): ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s)·π/2),
 * β_t = min(1 − ᾱ(t)/ᾱ(t−1), maxBeta).
 */
export interface CosineScheduleConfig extends ScheduleCommon {
  readonly kind: 'cosine';
  readonly s: number;
  readonly maxBeta: number;
}

/** A complete, JSON-serialisable schedule config (every field present). */
export type ScheduleConfig =
  | LinearScheduleConfig
  | ScaledLinearScheduleConfig
  | SigmoidScheduleConfig
  | CosineScheduleConfig;

/**
 * What a user may write: `kind` plus any of that kind's fields; the rest take defaults. The type
 * lists every field of every kind; {@link scheduleConfig} rejects a field the kind does not have.
 */
export interface ScheduleConfigInput {
  readonly kind: ScheduleKind;
  readonly T?: number;
  readonly rescaleZeroTerminalSnr?: boolean;
  readonly betaStart?: number;
  readonly betaEnd?: number;
  readonly s?: number;
  readonly maxBeta?: number;
}

const COMMON_DEFAULTS = { T: 1000, rescaleZeroTerminalSnr: false };

/** Defaults per kind; also the list of keys each kind accepts. */
const DEFAULTS: { readonly [K in ScheduleKind]: Extract<ScheduleConfig, { kind: K }> } = {
  linear: { kind: 'linear', ...COMMON_DEFAULTS, betaStart: 1e-4, betaEnd: 0.02 },
  scaledLinear: { kind: 'scaledLinear', ...COMMON_DEFAULTS, betaStart: 0.00085, betaEnd: 0.012 },
  sigmoid: { kind: 'sigmoid', ...COMMON_DEFAULTS, betaStart: 1e-4, betaEnd: 0.02 },
  cosine: { kind: 'cosine', ...COMMON_DEFAULTS, s: 0.008, maxBeta: 0.999 },
};

/**
 * Validate a schedule config (e.g. parsed from JSON or a checkpoint) and fill in defaults.
 * Unknown keys, a missing or unknown `kind`, and values of the wrong type are errors.
 * `scheduleConfig(JSON.parse(JSON.stringify(c)))` deep-equals `c` for any valid `c`.
 * @param input `{ kind, ...fields }`
 * @returns the complete config
 */
export function scheduleConfig(input: unknown): ScheduleConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new Error('schedule config must be an object');
  }
  const obj = input as Record<string, unknown>;
  const kind = obj.kind;
  if (typeof kind !== 'string' || !Object.prototype.hasOwnProperty.call(DEFAULTS, kind)) {
    throw new Error(`schedule config: unknown kind ${describeValue(kind)} (expected one of ${Object.keys(DEFAULTS).join(', ')})`);
  }
  const defaults = DEFAULTS[kind as ScheduleKind] as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = { ...defaults };
  for (const [key, value] of Object.entries(obj)) {
    if (!Object.hasOwn(defaults, key)) {
      throw new Error(`schedule config (${kind}): unknown key '${key}' (allowed: ${Object.keys(defaults).join(', ')})`);
    }
    if (typeof value !== typeof defaults[key]) {
      throw new Error(`schedule config (${kind}): '${key}' must be a ${typeof defaults[key]}, got ${describeValue(value)}`);
    }
    out[key] = value;
  }
  const c = out as unknown as ScheduleConfig;
  if (!Number.isInteger(c.T) || c.T < 2 || c.T > MAX_T) throw new Error(`schedule config: T must be an integer in [2, ${MAX_T}] (MAX_T), got ${c.T}`);
  if (c.kind === 'cosine') {
    if (!(c.s >= 0 && Number.isFinite(c.s))) throw new Error(`schedule config: s must be >= 0, got ${c.s}`);
    if (!(c.maxBeta > 0 && c.maxBeta <= 1)) throw new Error(`schedule config: maxBeta must be in (0, 1], got ${c.maxBeta}`);
  } else if (!(c.betaStart > 0 && c.betaEnd > 0 && Number.isFinite(c.betaStart) && Number.isFinite(c.betaEnd))) {
    throw new Error(`schedule config: betaStart and betaEnd must be positive, got ${c.betaStart}, ${c.betaEnd}`);
  }
  checkBetas(computeBetas(c), c); // e.g. the linear schedule at T < 20, where 0.02·1000/T > 1
  return c;
}

/**
 * NumPy's `linspace(start, stop, num)` in float64: start + i·step, with the last value exactly `stop`.
 */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = start + i * step;
  out[num - 1] = stop;
  return out;
}

/**
 * β for a cumulative-product function ᾱ(τ) on τ ∈ [0, 1] (improved-diffusion's
 * `betas_for_alpha_bar`): β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), maxBeta).
 */
export function betasForAlphaBar(T: number, alphaBar: (tau: number) => number, maxBeta: number): Float64Array {
  const betas = new Float64Array(T);
  for (let i = 0; i < T; i++) {
    betas[i] = Math.min(1 - alphaBar((i + 1) / T) / alphaBar(i / T), maxBeta);
  }
  return betas;
}

/**
 * Zero-terminal-SNR rescaling (Lin et al. 2023, Algorithm 1): shift and scale √ᾱ so that
 * √ᾱ_T = 0 while √ᾱ_1 is unchanged, then recover β. The last β becomes exactly 1.
 * With it, ε-prediction is undefined at the last step (x_0 = (x_T − √(1−ᾱ)ε)/√ᾱ divides by 0);
 * use v-prediction (Lin et al. §3.2).
 */
export function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const T = betas.length;
  const sqrtAbar = new Float64Array(T);
  let abar = 1;
  for (let i = 0; i < T; i++) {
    abar *= 1 - betas[i];
    sqrtAbar[i] = Math.sqrt(abar);
  }
  const first = sqrtAbar[0];
  const last = sqrtAbar[T - 1];
  const scale = first / (first - last);
  const out = new Float64Array(T);
  let prev = 1;
  for (let i = 0; i < T; i++) {
    const a = (sqrtAbar[i] - last) * scale;
    const abarI = a * a;
    out[i] = i === 0 ? 1 - abarI : 1 - abarI / prev;
    prev = abarI;
  }
  return out;
}

/**
 * β_1..β_T (indexed 0..T-1) for a schedule config, in float64.
 * @throws if a β falls outside (0, 1] (e.g. the linear schedule at very small T, where 0.02·1000/T > 1)
 */
export function betasForSchedule(config: ScheduleConfig): Float64Array {
  return computeBetas(scheduleConfig(config)); // scheduleConfig has checked the betas
}

function computeBetas(c: ScheduleConfig): Float64Array {
  const T = c.T;
  let betas: Float64Array;
  switch (c.kind) {
    case 'linear': {
      const scale = 1000 / T;
      betas = linspace(scale * c.betaStart, scale * c.betaEnd, T);
      break;
    }
    case 'scaledLinear': {
      betas = linspace(Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd), T).map((b) => b * b);
      break;
    }
    case 'sigmoid': {
      betas = linspace(-6, 6, T).map((x) => (1 / (1 + Math.exp(-x))) * (c.betaEnd - c.betaStart) + c.betaStart);
      break;
    }
    case 'cosine': {
      const s = c.s;
      // Nichol & Dhariwal eq. (17): f(t) = cos²((t/T + s)/(1 + s) · π/2)
      betas = betasForAlphaBar(T, (tau) => Math.cos(((tau + s) / (1 + s)) * (Math.PI / 2)) ** 2, c.maxBeta);
      break;
    }
  }
  if (c.rescaleZeroTerminalSnr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

function checkBetas(betas: Float64Array, c?: ScheduleConfig): void {
  if (betas.length < 2) throw new Error(`need at least 2 diffusion steps, got ${betas.length}`);
  for (let i = 0; i < betas.length; i++) {
    if (!(betas[i] > 0 && betas[i] <= 1)) {
      if (!c) throw new Error(`betas[${i}] = ${betas[i]} is outside (0, 1]`);
      const hint = c.kind === 'linear' ? ` (the linear schedule scales β by 1000/T: use T >= ${Math.ceil(1000 * c.betaEnd)})` : '';
      throw new Error(`schedule config: ${c.kind} schedule with T = ${c.T} gives betas[${i}] = ${betas[i]}, outside (0, 1]${hint}`);
    }
  }
}

/** Every table derived from β; all Float64Array of length T, indexed 0..T-1 (index t = paper's t+1). */
export interface ScheduleTables {
  /** T, the number of steps. */
  readonly numTimesteps: number;
  /** β_t. */
  readonly betas: Float64Array;
  /** α_t = 1 − β_t. */
  readonly alphas: Float64Array;
  /** ᾱ_t = ∏_{i=1}^{t} α_i (Ho et al., eq. 4). */
  readonly alphasCumprod: Float64Array;
  /** ᾱ_{t−1}, with ᾱ_0 = 1. */
  readonly alphasCumprodPrev: Float64Array;
  /** ᾱ_{t+1}, with 0 after the last step. */
  readonly alphasCumprodNext: Float64Array;
  /** √ᾱ_t: the mean coefficient of q(x_t | x_0), eq. (4). */
  readonly sqrtAlphasCumprod: Float64Array;
  /** √(1 − ᾱ_t): the standard deviation of q(x_t | x_0), eq. (4). */
  readonly sqrtOneMinusAlphasCumprod: Float64Array;
  /** log(1 − ᾱ_t). */
  readonly logOneMinusAlphasCumprod: Float64Array;
  /** 1/√ᾱ_t (Infinity where ᾱ_t = 0, i.e. the last step of a zero-terminal-SNR schedule). */
  readonly sqrtRecipAlphasCumprod: Float64Array;
  /** √(1/ᾱ_t − 1). */
  readonly sqrtRecipm1AlphasCumprod: Float64Array;
  /** β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, the variance of q(x_{t−1} | x_t, x_0), eq. (7); 0 at index 0. */
  readonly posteriorVariance: Float64Array;
  /** log β̃_t with the index-0 entry (log 0) replaced by the index-1 entry. */
  readonly posteriorLogVarianceClipped: Float64Array;
  /** √ᾱ_{t−1}·β_t/(1 − ᾱ_t): the x_0 coefficient of μ̃_t, eq. (7). */
  readonly posteriorMeanCoef1: Float64Array;
  /** √α_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t): the x_t coefficient of μ̃_t, eq. (7). */
  readonly posteriorMeanCoef2: Float64Array;
  /** SNR_t = ᾱ_t/(1 − ᾱ_t) (Kingma et al. 2021), used by min-SNR-γ weighting. */
  readonly snr: Float64Array;
}

/**
 * Compute every schedule table from β in float64 (improved-diffusion's `GaussianDiffusion.__init__`).
 * @param betas β_1..β_T, each in (0, 1], T ≥ 2
 */
export function scheduleTables(betas: Float64Array): ScheduleTables {
  checkBetas(betas);
  const T = betas.length;
  const mk = () => new Float64Array(T);
  const t = {
    numTimesteps: T,
    betas: Float64Array.from(betas),
    alphas: mk(),
    alphasCumprod: mk(),
    alphasCumprodPrev: mk(),
    alphasCumprodNext: mk(),
    sqrtAlphasCumprod: mk(),
    sqrtOneMinusAlphasCumprod: mk(),
    logOneMinusAlphasCumprod: mk(),
    sqrtRecipAlphasCumprod: mk(),
    sqrtRecipm1AlphasCumprod: mk(),
    posteriorVariance: mk(),
    posteriorLogVarianceClipped: mk(),
    posteriorMeanCoef1: mk(),
    posteriorMeanCoef2: mk(),
    snr: mk(),
  };
  let abar = 1;
  for (let i = 0; i < T; i++) {
    const beta = betas[i];
    const alpha = 1 - beta;
    const abarPrev = abar;
    abar *= alpha;
    t.alphas[i] = alpha;
    t.alphasCumprod[i] = abar;
    t.alphasCumprodPrev[i] = abarPrev;
    if (i > 0) t.alphasCumprodNext[i - 1] = abar;
    t.sqrtAlphasCumprod[i] = Math.sqrt(abar);
    t.sqrtOneMinusAlphasCumprod[i] = Math.sqrt(1 - abar);
    t.logOneMinusAlphasCumprod[i] = Math.log(1 - abar);
    t.sqrtRecipAlphasCumprod[i] = Math.sqrt(1 / abar);
    t.sqrtRecipm1AlphasCumprod[i] = Math.sqrt(1 / abar - 1);
    // eq. (7)
    t.posteriorVariance[i] = (beta * (1 - abarPrev)) / (1 - abar);
    t.posteriorMeanCoef1[i] = (beta * Math.sqrt(abarPrev)) / (1 - abar);
    t.posteriorMeanCoef2[i] = ((1 - abarPrev) * Math.sqrt(alpha)) / (1 - abar);
    t.snr[i] = abar / (1 - abar);
  }
  t.alphasCumprodNext[T - 1] = 0;
  // The posterior variance is 0 at the start of the chain; clip its log by repeating index 1.
  for (let i = 0; i < T; i++) {
    t.posteriorLogVarianceClipped[i] = Math.log(t.posteriorVariance[i === 0 ? 1 : i]);
  }
  return t;
}
