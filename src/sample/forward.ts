/**
 * The forward process on one image, two ways (Ho et al. 2020 §2): the closed form
 * q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) sampled by reparameterisation (eq. 4, `qSample`), and the
 * Markov chain q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I) iterated from x_0 (eq. 2, `qStep`). Both give
 * x_t with the same distribution; the statistics returned make that visible. No node:* imports.
 *
 * Timesteps are code indices t = 0..T−1 (the paper's t + 1): t = 0 is one step of noise.
 */
import type { GaussianDiffusion } from '../diffusion/gaussian-diffusion.ts';
import type { Rng } from '../rng.ts';

export interface Moments {
  mean: number;
  std: number;
}

export interface ForwardRow {
  t: number;
  alphaBar: number;
  sqrtAlphaBar: number;
  sqrtOneMinusAlphaBar: number;
  /** x_t from the closed form, eq. (4) */
  closed: Float32Array;
  /** x_t from t + 1 chained steps of eq. (2) */
  chain: Float32Array;
  /** pixel mean and std of x_t expected under q(x_t | x_0): √ᾱ·mean(x_0) and √(ᾱ·var(x_0) + 1 − ᾱ) */
  expected: Moments;
  closedStats: Moments;
  chainStats: Moments;
  /** z = (x_t − √ᾱ_t x_0)/√(1 − ᾱ_t), which is N(0, I) under the closed form: mean ≈ 0, std ≈ 1 */
  closedZ: Moments;
  chainZ: Moments;
}

export function moments(x: ArrayLike<number>): Moments {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  const mean = s / x.length;
  let v = 0;
  for (let i = 0; i < x.length; i++) v += (x[i] - mean) ** 2;
  return { mean, std: Math.sqrt(v / x.length) };
}

function zScores(xt: Float32Array, x0: Float32Array, c0: number, c1: number): Float64Array {
  const z = new Float64Array(xt.length);
  for (let i = 0; i < z.length; i++) z[i] = (xt[i] - c0 * x0[i]) / c1;
  return z;
}

/**
 * x_t of one image at each of `ts`, by the closed form and by the chain, with their statistics.
 * @param x0 the image, flat [1, C, H, W] (or any shape with batch 1), values in [−1, 1]
 * @param ts timestep indices in [0, T), in any order
 * @param rng fold(0) draws the closed-form ε (one per t, in order); fold(1) the chain's noise
 */
export function forwardProcess(diffusion: GaussianDiffusion, x0: Float32Array, ts: readonly number[], rng: Rng): ForwardRow[] {
  const T = diffusion.numTimesteps;
  for (const t of ts) if (!Number.isInteger(t) || t < 0 || t >= T) throw new Error(`timestep ${t} is outside [0, ${T})`);
  const shape = [1, x0.length];
  const x0Stats = moments(x0);
  // 1. the chain, run once up to the largest t, captured on the way
  const chainAt = new Map<number, Float32Array>();
  const wanted = new Set(ts);
  const chainRng = rng.fold(1);
  let x = x0;
  const last = Math.max(...ts);
  for (let s = 0; s <= last; s++) {
    x = diffusion.qStep({ data: x, shape }, s, chainRng.normalFloat32(x0.length));
    if (wanted.has(s)) chainAt.set(s, x);
  }
  // 2. the closed form at each t
  const closedRng = rng.fold(0);
  return ts.map((t) => {
    const closed = diffusion.qSample({ data: x0, shape }, t, closedRng.normalFloat32(x0.length));
    const chain = chainAt.get(t)!;
    const alphaBar = diffusion.alphasCumprod[t];
    const c0 = diffusion.sqrtAlphasCumprod[t];
    const c1 = diffusion.sqrtOneMinusAlphasCumprod[t];
    return {
      t,
      alphaBar,
      sqrtAlphaBar: c0,
      sqrtOneMinusAlphaBar: c1,
      closed,
      chain,
      expected: { mean: c0 * x0Stats.mean, std: Math.sqrt(alphaBar * x0Stats.std ** 2 + (1 - alphaBar)) },
      closedStats: moments(closed),
      chainStats: moments(chain),
      closedZ: moments(zScores(closed, x0, c0, c1)),
      chainZ: moments(zScores(chain, x0, c0, c1)),
    };
  });
}
