/**
 * Editing an existing image with a trained model: image-to-image (SDEdit) and DDIM inversion.
 *
 * Sources: C. Meng, Y. He, Y. Song, J. Song, J. Wu, J.-Y. Zhu, S. Ermon, "SDEdit: Guided Image
 * Synthesis and Editing with Stochastic Differential Equations", ICLR 2022 (noise the input to an
 * intermediate t, then run the reverse process from there); J. Song, C. Meng, S. Ermon, "Denoising
 * Diffusion Implicit Models", ICLR 2021, §4.3 and eq. (14) (DDIM as an ODE, run backwards to encode);
 * diffusers' img2img `get_timesteps` and `DDIMInverseScheduler`.
 */
import { batchDims, type DiffusionModel, type ShapedArray } from './batch.ts';
import { splitModelOutput, type GaussianDiffusion } from './gaussian-diffusion.ts';
import { runProcess, sampleSteps, type DdimSampler, type SampleLoopStep, type Sampler, type SamplingProcess } from './samplers.ts';
import type { Rng } from '../rng.ts';

/** The index in `diffusion` (a possibly respaced process) of an original timestep. */
export function keptIndex(diffusion: GaussianDiffusion, t: number): number {
  const i = diffusion.timestepMap.indexOf(t);
  if (i < 0) throw new Error(`timestep ${t} is not one of the process's timesteps`);
  return i;
}

/**
 * How many of a sampler's `numSteps` steps SDEdit skips for a strength (diffusers' img2img
 * `get_timesteps`): it runs the last ⌊strength·N⌋ steps, so it starts at the kept timestep ≈ strength·T.
 * @param strength in (0, 1]; 1 starts at the first timestep (from q(x_T | x_0), not pure noise)
 */
export function sdeditStartStep(numSteps: number, strength: number): number {
  if (!(strength > 0 && strength <= 1)) throw new Error(`strength must be in (0, 1], got ${strength}`);
  const kept = Math.min(Math.floor(numSteps * strength), numSteps);
  if (kept < 1) throw new Error(`strength ${strength} keeps no step of ${numSteps}; raise the strength or the number of steps`);
  return numSteps - kept;
}

/** Options of {@link sdedit}. */
export interface SdeditOptions {
  /** In (0, 1]: how far into the forward process the image is taken (see {@link sdeditStartStep}). */
  readonly strength: number;
  /** ε of q(x_t | x_0); default `rng.normalFloat32(n)`, drawn before any step. */
  readonly noise?: Float32Array;
  readonly onStep?: (s: SampleLoopStep) => void | Promise<void>;
}

/**
 * Image-to-image (SDEdit): x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (q(x_t | x_0), Ho et al. eq. 4) at the
 * sampler's kept timestep t ≈ strength·T, then the sampler's reverse steps from t on. Works with
 * any {@link Sampler} (multistep ones start at first order, as after a reset).
 * @param image x_0 [B, C, ...] in the model's range ([−1, 1])
 * @returns the edited images, image's shape
 */
export function sdedit(
  sampler: Sampler,
  model: DiffusionModel,
  image: ShapedArray,
  rng: Rng,
  opts: SdeditOptions,
): Promise<Float32Array> {
  return runProcess(sdeditSteps(sampler, image, rng, opts), model, opts.onStep);
}

/** {@link sdedit} as a {@link SamplingProcess}: it yields its model calls and a report after every step. */
export function* sdeditSteps(sampler: Sampler, image: ShapedArray, rng: Rng, opts: Omit<SdeditOptions, 'onStep'>): SamplingProcess<SampleLoopStep> {
  batchDims(image);
  const start = sdeditStartStep(sampler.timesteps.length, opts.strength);
  const i = keptIndex(sampler.diffusion, sampler.timesteps[start]);
  const noise = opts.noise ?? rng.normalFloat32(image.data.length);
  const xt = sampler.diffusion.qSample(image, i, noise);
  return yield* sampleSteps(sampler, image.shape, rng, { noise: xt, startStep: start });
}

/** What {@link ddimInvert} reports after each step. */
export interface InvertStep {
  /** 0-based step number. */
  readonly step: number;
  readonly total: number;
  /** The original timestep x was moved to (and the model called with). */
  readonly t: number;
  /** x at timestep t. */
  readonly x: Float32Array;
}

/**
 * DDIM inversion: the deterministic DDIM ODE (η = 0) run from x_0 up to x_T over the sampler's kept
 * timesteps t_0 < t_1 < … (ascending), so that `sampleLoop(sampler, model, shape, rng, { noise: x_T })`
 * gives the image back up to the discretisation error. Each step moves x from the level ᾱ_cur (the
 * previous kept ᾱ; at first the sampler's `finalAlphaCumprod`, 1 unless `setAlphaToOne` is false) to
 * ᾱ_{t_k} with the model evaluated at (x, t_k), as diffusers' `DDIMInverseScheduler` does:
 *   ε̂ = the model's ε at (x, t_k) (converted from x_0 or v with ᾱ_{t_k}),
 *   x̂_0 = (x − √(1 − ᾱ_cur) ε̂)/√ᾱ_cur,  x ← √ᾱ_{t_k} x̂_0 + √(1 − ᾱ_{t_k}) ε̂   (Song et al. eq. 12, η = 0).
 * x̂_0 is not clipped or thresholded (that would make the map non-invertible), so decode with a
 * sampler that does not clip either.
 * @param sampler a DDIM sampler with η = 0: its timesteps, meanType, varType and final ᾱ
 * @param image x_0 [B, C, ...]
 * @returns x_T, image's shape
 */
export async function ddimInvert(
  sampler: DdimSampler,
  model: DiffusionModel,
  image: ShapedArray,
  opts: { readonly onStep?: (s: InvertStep) => void | Promise<void> } = {},
): Promise<Float32Array> {
  if (sampler.options.eta !== 0) throw new Error(`DDIM inversion needs the deterministic sampler (eta = 0), got eta = ${sampler.options.eta}`);
  const { B } = batchDims(image);
  const d = sampler.diffusion;
  const { meanType } = sampler.options;
  const n = image.data.length;
  const shape = image.shape;
  const total = sampler.timesteps.length;
  let x = Float32Array.from(image.data);
  let abarCur = sampler.finalAlphaCumprod;
  for (let k = 0; k < total; k++) {
    const t = sampler.timesteps[total - 1 - k];
    const i = keptIndex(d, t);
    const raw = await model(x, new Int32Array(B).fill(t), shape);
    // 1. the model's ε at (x, t_k)
    const { output: per } = splitModelOutput(raw, n, B, sampler.options.varType ?? 'fixedSmall');
    const xb: ShapedArray = { data: x, shape };
    const eps = meanType === 'epsilon' ? per : meanType === 'v' ? d.predictEpsFromV(xb, i, per) : d.predictEpsFromX0(xb, i, per);
    // 2. x̂_0 at the current level, then eq. (12) with η = 0 to the level of t_k
    const a = d.alphasCumprod[i];
    const cx = 1 / Math.sqrt(abarCur);
    const ce = Math.sqrt(1 - abarCur);
    const next = new Float32Array(n);
    for (let j = 0; j < n; j++) {
      const x0 = (x[j] - ce * eps[j]) * cx;
      next[j] = Math.sqrt(a) * x0 + Math.sqrt(1 - a) * eps[j];
    }
    x = next;
    abarCur = a;
    if (opts.onStep) await opts.onStep({ step: k, total, t, x });
  }
  return x;
}
