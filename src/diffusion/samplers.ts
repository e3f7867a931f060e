/**
 * Samplers: DDPM ancestral sampling and DDIM, on any respacing, plus the explicit sampling loop.
 *
 * Sources: Ho et al. 2020, Algorithm 2 (ancestral sampling); J. Song, C. Meng, S. Ermon, "Denoising
 * Diffusion Implicit Models", ICLR 2021, eq. (12) (the update) and eq. (16) (σ_t(η)); improved-
 * diffusion's `p_sample` / `ddim_sample`; diffusers' `step(modelOutput, t, sample)` interface.
 *
 * A sampler holds only its (respaced) process and options. `step` takes the model output at the
 * ORIGINAL timestep `t` (one of `sampler.timesteps`, in the order given there) and returns x at the
 * next kept timestep. The loop ({@link sampleLoop}) is written out and takes the model, so any
 * backend plugs in, and reports every step for progressive output. It is a state machine
 * ({@link sampleSteps}, a {@link SamplingProcess}) that yields its model calls, so a server can run many
 * loops, each at its own step, in shared model calls.
 */
import { batchDims, numel, type ShapedArray, type DiffusionModel, type MeanType, type VarType } from './batch.ts';
import { GaussianDiffusion, splitModelOutput } from './gaussian-diffusion.ts';
import { respace, type TimestepSpec } from './respace.ts';
import { processX0InPlace, type X0Processing } from './thresholding.ts';
import type { Rng } from '../rng.ts';

/** What one sampler step returns. */
export interface SamplerStepOutput {
  /** x at the next (smaller) kept timestep; the final sample after the last step. */
  readonly prevSample: Float32Array;
  /** x̂_0 predicted at this step (after clipping / thresholding). */
  readonly predX0: Float32Array;
}

/** A sampler: `step` maps the model output at x_t to x at the next kept timestep. */
export interface Sampler {
  /** The (respaced) process being stepped through. */
  readonly diffusion: GaussianDiffusion;
  /** Original timestep indices in sampling order (descending); the model is called with these. */
  readonly timesteps: Int32Array;
  /**
   * One reverse step.
   * @param modelOutput the model's output at (x, t)
   * @param t the original timestep, one of `timesteps`
   * @param x x_t [B, C, ...]
   * @param rng noise source (not consumed by deterministic steps)
   */
  step(modelOutput: Float32Array, t: number, x: ShapedArray, rng: Rng): SamplerStepOutput;
  /**
   * Drop any state carried from one step to the next (a multistep solver's previous x̂_0). Every loop
   * calls it before its first step; samplers without state need not define it.
   */
  reset?(): void;
}

/** Options shared by the samplers. */
export interface SamplerOptions extends X0Processing {
  readonly meanType: MeanType;
  /** Which timesteps to keep (default: all). */
  readonly timesteps?: TimestepSpec;
}

/** Options of {@link DdpmSampler}. */
export interface DdpmSamplerOptions extends SamplerOptions {
  readonly varType: VarType;
}

/**
 * DDIM's η when none is given: 1, the DDPM posterior variance at each kept step (ancestral sampling on the
 * respaced chain; η = 0 is the deterministic DDIM path, which inversion and interpolation ask for explicitly).
 * At 50 steps on the same weights, η = 1 gave more recognisable samples than η = 0 at the same cost: 84.8% against
 * 79.2% confident digits for the shipped MNIST model (FID-LeNet 24.1 against 23.9, n = 500), and 71.5% against
 * 62.5% confident shapes for a 15-minute shapes model (n = 256; docs/shapes-experiments.md, round 4).
 */
export const DEFAULT_DDIM_ETA = 1;

/** Options of {@link DdimSampler}. */
export interface DdimSamplerOptions extends SamplerOptions {
  /** η ∈ [0, 1]: 0 is deterministic DDIM, 1 has the DDPM posterior variance (Song et al. eq. 16). */
  readonly eta: number;
  /** Only needed to split a learnedRange output (the variance half is ignored); default fixedSmall. */
  readonly varType?: VarType;
  /**
   * diffusers' `set_alpha_to_one`: the ᾱ the last step goes to (diffusers' `final_alpha_cumprod`) is 1
   * when true (default; the last step returns x̂_0), or the base process's ᾱ at its first timestep
   * when false.
   */
  readonly setAlphaToOne?: boolean;
  /**
   * diffusers' `use_clipped_model_output`: re-derive ε̂ from the clipped / thresholded x̂_0 (default
   * true, as improved-diffusion's `ddim_sample` always does). When false, ε̂ is the model's own ε
   * (converted from x_0 or v before clipping), which is diffusers' default.
   */
  readonly useClippedModelOutput?: boolean;
}

/**
 * Holds the (respaced) process and maps original timesteps to its indices; subclasses implement `step`.
 */
export abstract class BaseSampler implements Sampler {
  readonly diffusion: GaussianDiffusion;
  readonly timesteps: Int32Array;
  private readonly indexOf = new Map<number, number>();

  constructor(base: GaussianDiffusion, spec: TimestepSpec | undefined) {
    this.diffusion = spec === undefined ? base : respace(base, spec);
    const map = this.diffusion.timestepMap;
    this.timesteps = Int32Array.from(map).reverse();
    map.forEach((t, i) => this.indexOf.set(t, i));
  }

  /** The index in the (respaced) process of an original timestep. */
  protected index(t: number): number {
    const i = this.indexOf.get(t);
    if (i === undefined) throw new Error(`timestep ${t} is not one of this sampler's timesteps`);
    return i;
  }

  abstract step(modelOutput: Float32Array, t: number, x: ShapedArray, rng: Rng): SamplerStepOutput;
}

/**
 * DDPM ancestral sampling (Ho et al. Algorithm 2, improved-diffusion `p_sample`):
 * x_{t−1} = μ_θ(x_t, t) + σ_t z, z ~ N(0, I), with no noise at the last step. On a respaced process
 * the β are the respaced ones (β'_i = 1 − ᾱ_{t_i}/ᾱ_{t_{i−1}}).
 */
export class DdpmSampler extends BaseSampler {
  readonly options: DdpmSamplerOptions;

  constructor(base: GaussianDiffusion, options: DdpmSamplerOptions) {
    super(base, options.timesteps);
    this.options = options;
  }

  step(modelOutput: Float32Array, t: number, x: ShapedArray, rng: Rng): SamplerStepOutput {
    const i = this.index(t);
    const out = this.diffusion.pMeanVariance(modelOutput, x, i, this.options);
    if (i === 0) return { prevSample: out.mean, predX0: out.predX0 };
    const z = rng.normalFloat32(x.data.length);
    const prevSample = new Float32Array(x.data.length);
    for (let j = 0; j < prevSample.length; j++) {
      prevSample[j] = out.mean[j] + Math.exp(0.5 * out.logVariance[j]) * z[j];
    }
    return { prevSample, predX0: out.predX0 };
  }
}

/**
 * σ_t(η) of DDIM, Song et al. eq. (16): η·√((1 − ᾱ_{t−1})/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_{t−1}), at index
 * `i` of `diffusion` (with ᾱ_{t−1} the previous KEPT step's ᾱ on a respaced process, unless given).
 * For η = 1 and consecutive steps σ² equals the DDPM posterior variance β̃_t.
 */
export function ddimSigma(diffusion: GaussianDiffusion, i: number, eta: number, abarPrev = diffusion.alphasCumprodPrev[i]): number {
  const abar = diffusion.alphasCumprod[i];
  return eta * Math.sqrt((1 - abarPrev) / (1 - abar)) * Math.sqrt(1 - abar / abarPrev);
}

/**
 * DDIM (Song et al. 2021, improved-diffusion `ddim_sample`, diffusers' `DDIMScheduler`), eq. (12):
 * x_{t−1} = √ᾱ_{t−1} x̂_0 + √(1 − ᾱ_{t−1} − σ_t²)·ε̂ + σ_t z, with σ_t from eq. (16) and ε̂ re-derived
 * from the (clipped) x̂_0 unless `useClippedModelOutput` is false. After the last kept step ᾱ_{t−1}
 * is `finalAlphaCumprod` (diffusers' `set_alpha_to_one`). η = 0 is deterministic and draws no noise.
 */
export class DdimSampler extends BaseSampler {
  readonly options: DdimSamplerOptions;
  /** ᾱ after the last step: 1 with `setAlphaToOne` (default), else the base process's ᾱ at its first timestep. */
  readonly finalAlphaCumprod: number;

  constructor(base: GaussianDiffusion, options: DdimSamplerOptions) {
    super(base, options.timesteps);
    if (!(options.eta >= 0 && options.eta <= 1)) throw new Error(`DDIM eta must be in [0, 1], got ${options.eta}`);
    this.options = options;
    this.finalAlphaCumprod = (options.setAlphaToOne ?? true) ? 1 : base.alphasCumprod[0];
  }

  step(modelOutput: Float32Array, t: number, x: ShapedArray, rng: Rng): SamplerStepOutput {
    const d = this.diffusion;
    const i = this.index(t);
    const { B } = batchDims(x);
    const n = x.data.length;
    const { meanType } = this.options;
    // 1. x̂_0 from the model output; the model's own ε̂ (before clipping) if asked for; then clip / threshold
    const { output } = splitModelOutput(modelOutput, n, B, this.options.varType ?? 'fixedSmall');
    const predX0 = d.predictX0(output, x, i, meanType);
    let eps: Float32Array | null = null;
    if (this.options.useClippedModelOutput === false) {
      eps = meanType === 'epsilon' ? output : meanType === 'v' ? d.predictEpsFromV(x, i, output) : d.predictEpsFromX0(x, i, predX0);
    }
    processX0InPlace(predX0, B, this.options);
    // 2. otherwise ε̂ consistent with the processed x̂_0 (eq. 4 solved for ε)
    eps ??= d.predictEpsFromX0(x, i, predX0);
    // 3. σ_t (eq. 16) and the update (eq. 12)
    const abarPrev = i > 0 ? d.alphasCumprodPrev[i] : this.finalAlphaCumprod;
    const sigma = ddimSigma(d, i, this.options.eta, abarPrev);
    const c0 = Math.sqrt(abarPrev);
    const cEps = Math.sqrt(Math.max(0, 1 - abarPrev - sigma * sigma));
    const prevSample = new Float32Array(n);
    for (let j = 0; j < n; j++) prevSample[j] = c0 * predX0[j] + cEps * eps[j];
    if (sigma > 0) {
      const z = rng.normalFloat32(n);
      for (let j = 0; j < n; j++) prevSample[j] += sigma * z[j];
    }
    return { prevSample, predX0 };
  }
}

/** What {@link sampleLoop} reports after each step. */
export interface SampleLoopStep {
  /** 0-based step number. */
  readonly step: number;
  /** Number of steps. */
  readonly total: number;
  /** The original timestep of this step. */
  readonly t: number;
  /** x_t, the input of this step. */
  readonly xt: Float32Array;
  /** x̂_0 predicted at this step. */
  readonly predX0: Float32Array;
  /** The step's output (x at the next kept timestep). */
  readonly prevSample: Float32Array;
}

/** Options of {@link sampleLoop}. */
export interface SampleLoopOptions {
  /**
   * x at the first step's timestep: x_T by default, `rng.normalFloat32(numel(shape))`, drawn before
   * any step; with `startStep` = k, x at `sampler.timesteps[k]` (e.g. a noised image, SDEdit).
   */
  readonly noise?: Float32Array;
  /** Skip the first k steps and start at `sampler.timesteps[k]` (default 0); `noise` is then required. */
  readonly startStep?: number;
  /** Called after every step (may be async, e.g. to write a frame). */
  readonly onStep?: (s: SampleLoopStep) => void | Promise<void>;
}

/** A model call that a sampling process asks for: the output at x (of `shape` [B, C, ...]), every example at `t`. */
export interface ModelCall {
  readonly kind: 'model';
  readonly x: Float32Array;
  /** the original timestep of every example */
  readonly t: number;
  readonly shape: readonly number[];
}

/** A sampling process's report after one of its steps; the driver resumes it with nothing. */
export interface StepReport<S> {
  readonly kind: 'step';
  readonly step: S;
}

/**
 * A sampling loop as a state machine (a generator): it yields the model calls it needs, is resumed with their
 * outputs, and yields a report after each step; it returns its samples. {@link runProcess} drives one with a
 * model; the server (src/serve/) drives many at once, each image at its own step, in shared model calls. All the
 * randomness is drawn from the process's own `rng`, in the same order whoever drives it.
 */
export type SamplingProcess<S, R = Float32Array> = Generator<ModelCall | StepReport<S>, R, Float32Array | undefined>;

/** Inside a process: ask for the model's output at (x, t) and get it back. */
export function* callModel(x: Float32Array, t: number, shape: readonly number[]): Generator<ModelCall, Float32Array, Float32Array | undefined> {
  const output = yield { kind: 'model', x, t, shape };
  if (output === undefined) throw new Error('a sampling process was resumed without the model output it asked for');
  return output;
}

/**
 * Drive a process to its end with `model` (called with the process's timestep for every example), awaiting
 * `onStep` at each report.
 */
export async function runProcess<S, R>(process: SamplingProcess<S, R>, model: DiffusionModel, onStep?: (s: S) => void | Promise<void>): Promise<R> {
  try {
    let r = process.next();
    while (!r.done) {
      const ev = r.value;
      if (ev.kind === 'model') {
        r = process.next(await model(ev.x, new Int32Array(ev.shape[0]!).fill(ev.t), ev.shape));
      } else {
        if (onStep) await onStep(ev.step);
        r = process.next(undefined);
      }
    }
    return r.value;
  } finally {
    process.return(undefined as R); // a model or onStep that threw leaves the process suspended: close it
  }
}

/**
 * The sampling loop (improved-diffusion `p_sample_loop_progressive` / `ddim_sample_loop_progressive`) as a
 * {@link SamplingProcess}: x_T ~ N(0, I); for each t in `sampler.timesteps`: output = model(x_t, t),
 * x ← step(output, t, x_t). Resets the sampler's state first. With `startStep` it runs only the last steps.
 * @param shape [B, C, ...] of the samples
 * @returns the final samples x_0
 */
export function* sampleSteps(
  sampler: Sampler,
  shape: readonly number[],
  rng: Rng,
  opts: Omit<SampleLoopOptions, 'onStep'> = {},
): SamplingProcess<SampleLoopStep> {
  const n = numel(shape);
  const total = sampler.timesteps.length;
  const start = opts.startStep ?? 0;
  if (!Number.isInteger(start) || start < 0 || start >= total) throw new Error(`startStep must be an integer in [0, ${total}), got ${start}`);
  if (start > 0 && !opts.noise) throw new Error('startStep needs the x to start from (noise)');
  let x = opts.noise ?? rng.normalFloat32(n);
  if (x.length !== n) throw new Error(`noise has ${x.length} elements, shape [${shape.join(', ')}] needs ${n}`);
  sampler.reset?.();
  for (let k = start; k < total; k++) {
    const t = sampler.timesteps[k];
    const output = yield* callModel(x, t, shape);
    const out = sampler.step(output, t, { data: x, shape }, rng);
    yield { kind: 'step', step: { step: k, total, t, xt: x, predX0: out.predX0, prevSample: out.prevSample } };
    x = out.prevSample;
  }
  return x;
}

/**
 * The sampling loop ({@link sampleSteps}) run with `model`: x_T ~ N(0, I); for each t in `sampler.timesteps`:
 * output = model(x_t, t), x ← step(output, t, x_t). Resets the sampler's state first. With `startStep` it runs
 * only the last steps (from a given x_t).
 * @param shape [B, C, ...] of the samples
 * @returns the final samples x_0
 */
export function sampleLoop(
  sampler: Sampler,
  model: DiffusionModel,
  shape: readonly number[],
  rng: Rng,
  opts: SampleLoopOptions = {},
): Promise<Float32Array> {
  return runProcess(sampleSteps(sampler, shape, rng, opts), model, opts.onStep);
}
