/**
 * The diffusion API as free functions under the paper's / improved-diffusion's names, for users who
 * prefer `qSample(diffusion, x0, t, ε)` to `diffusion.qSample(x0, t, ε)`. Each is the method of the
 * same name on {@link GaussianDiffusion} (which holds only the schedule tables), so there is one
 * implementation; the schedule helpers return β_1..β_T in float64.
 */
import type { DiffusionModel, MeanType, ShapedArray, Timesteps } from './batch.ts';
import { GaussianDiffusion, type CalcBpdOptions, type CalcBpdOutput, type PMeanVarianceOptions, type PMeanVarianceOutput } from './gaussian-diffusion.ts';
import { betasForSchedule } from './schedule.ts';

type Common = { T?: number; rescaleZeroTerminalSnr?: boolean };

/** Ho et al.'s linear β from 1e-4 to 0.02 (at T = 1000; both ends scaled by 1000/T otherwise). */
export const linear = (opts: Common & { betaStart?: number; betaEnd?: number } = {}): Float64Array => betasForSchedule({ kind: 'linear', ...opts } as never);
/** Nichol & Dhariwal's cosine schedule (s = 0.008, β ≤ 0.999), eq. (17). */
export const cosine = (opts: Common & { s?: number; maxBeta?: number } = {}): Float64Array => betasForSchedule({ kind: 'cosine', ...opts } as never);
/** diffusers' sigmoid schedule. */
export const sigmoid = (opts: Common & { betaStart?: number; betaEnd?: number } = {}): Float64Array => betasForSchedule({ kind: 'sigmoid', ...opts } as never);
/** diffusers' scaled_linear schedule (linear in √β). */
export const scaledLinear = (opts: Common & { betaStart?: number; betaEnd?: number } = {}): Float64Array => betasForSchedule({ kind: 'scaledLinear', ...opts } as never);

/** q(x_t|x_0) = N(√ᾱ_t x_0, (1−ᾱ_t) I), eq. (4). */
export const qMeanVariance = (d: GaussianDiffusion, x0: ShapedArray, t: Timesteps) => d.qMeanVariance(x0, t);
/** x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, eq. (4), with one t per example. */
export const qSample = (d: GaussianDiffusion, x0: ShapedArray, t: Timesteps, noise: Float32Array): Float32Array => d.qSample(x0, t, noise);
/** One step of the chain: x_t = √α_t x_{t−1} + √β_t ε, eq. (2). */
export const qStep = (d: GaussianDiffusion, xPrev: ShapedArray, t: Timesteps, noise: Float32Array): Float32Array => d.qStep(xPrev, t, noise);
/** q(x_{t−1}|x_t, x_0): mean μ̃_t and variance β̃_t, eq. (6)–(7). */
export const qPosteriorMeanVariance = (d: GaussianDiffusion, x0: ShapedArray, xt: Float32Array, t: Timesteps) => d.qPosteriorMeanVariance(x0, xt, t);
/** p_θ(x_{t−1}|x_t): mean, variance, log-variance and x̂_0 from a model output. */
export const pMeanVariance = (d: GaussianDiffusion, modelOutput: Float32Array, xt: ShapedArray, t: Timesteps, opts: PMeanVarianceOptions): PMeanVarianceOutput =>
  d.pMeanVariance(modelOutput, xt, t, opts);
/** x̂_0 = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t, eq. (15). */
export const predictX0FromEps = (d: GaussianDiffusion, xt: ShapedArray, t: Timesteps, eps: Float32Array): Float32Array => d.predictX0FromEps(xt, t, eps);
/** ε = (x_t − √ᾱ_t x_0)/√(1−ᾱ_t). */
export const predictEpsFromX0 = (d: GaussianDiffusion, xt: ShapedArray, t: Timesteps, x0: Float32Array): Float32Array => d.predictEpsFromX0(xt, t, x0);
/** v = √ᾱ_t ε − √(1−ᾱ_t) x_0 (Salimans & Ho 2022). */
export const getVelocity = (d: GaussianDiffusion, x0: ShapedArray, t: Timesteps, noise: Float32Array): Float32Array => d.getVelocity(x0, t, noise);
/** x_0 = √ᾱ_t x_t − √(1−ᾱ_t) v. */
export const predictX0FromV = (d: GaussianDiffusion, xt: ShapedArray, t: Timesteps, v: Float32Array): Float32Array => d.predictX0FromV(xt, t, v);
/** ε = √(1−ᾱ_t) x_t + √ᾱ_t v. */
export const predictEpsFromV = (d: GaussianDiffusion, xt: ShapedArray, t: Timesteps, v: Float32Array): Float32Array => d.predictEpsFromV(xt, t, v);
/** x̂_0 from a model output of any mean type. */
export const predictX0 = (d: GaussianDiffusion, output: Float32Array, xt: ShapedArray, t: Timesteps, meanType: MeanType): Float32Array => d.predictX0(output, xt, t, meanType);
/** Total NLL bound per image in bits/dim (prior + all T VLB terms), improved-diffusion's calc_bpd_loop. */
export const calcBpdLoop = (d: GaussianDiffusion, model: DiffusionModel, x0: ShapedArray, opts: CalcBpdOptions): Promise<CalcBpdOutput> => d.calcBpdLoop(model, x0, opts);
