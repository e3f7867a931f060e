/**
 * Generating images: a sampler (DDPM, Ho et al. 2020 Algorithm 2; DDIM, Song et al. 2021; or
 * DPM-Solver++(2M), Lu et al. 2022) on a respaced process, run over a large request in batches, with an optional record of x_t and x̂_0
 * along the reverse process. Shared by `ddpm sample` and the browser (no node:* imports; the model is
 * any `DiffusionModel`, e.g. `Denoiser.predict`).
 *
 * Randomness is per image: image i draws x_T and every step's noise from `Rng(seed).fold(i)`, so an
 * image does not depend on --n or the batch size (up to the model's float rounding across batch sizes).
 */
import type { DiffusionModel } from '../diffusion/batch.ts';
import { GaussianDiffusion } from '../diffusion/gaussian-diffusion.ts';
import { DpmSolverSampler } from '../diffusion/dpm-solver.ts';
import { dpmSolverTimesteps, type TimestepSpec } from '../diffusion/respace.ts';
import { DEFAULT_DDIM_ETA, DdimSampler, DdpmSampler, sampleLoop, type SampleLoopStep, type Sampler } from '../diffusion/samplers.ts';
import { PerExampleRng, Rng } from '../rng.ts';
import type { DiffusionConfig } from '../diffusion/config.ts';

export { DEFAULT_DDIM_ETA };

export type SamplerKind = 'ddpm' | 'ddim' | 'dpm++';
export const SAMPLER_KINDS: readonly SamplerKind[] = ['ddpm', 'ddim', 'dpm++'];

/**
 * How the kept timesteps are chosen for `steps` < T:
 * - auto: improved-diffusion's "ddimN" (fixed stride) for DDIM, "N" (evenly spread, first and last kept) for DDPM,
 *   diffusers' linspace for DPM-Solver++ (its scheduler's default);
 * - uniform: "N"; ddim: "ddimN"; leading / trailing / linspace: diffusers' spacings (Lin et al. 2023, Table 2),
 *   for DPM-Solver++ those of its scheduler (linspace and leading lay out N + 1 points and drop t = 0);
 * - a list of section counts "a,b,c" (improved-diffusion): a, b, c steps from equal thirds of [0, T).
 */
export const SPACINGS = ['auto', 'uniform', 'ddim', 'leading', 'trailing', 'linspace'] as const;

export interface SamplerSpec {
  sampler: SamplerKind;
  /** kept timesteps; default T for DDPM (the full chain), min(50, T) for DDIM, min(20, T) for DPM-Solver++ */
  steps?: number;
  /** one of {@link SPACINGS} or section counts "a,b,c"; default 'auto' */
  spacing?: string;
  /** DDIM η in [0, 1] (Song et al. eq. 16); default {@link DEFAULT_DDIM_ETA}. DDPM and DPM-Solver++ only accept undefined. */
  eta?: number;
  /** clip x̂_0 to [−1, 1] at every step (default true) */
  clip?: boolean;
}

export function defaultSteps(kind: SamplerKind, T: number): number {
  return kind === 'ddpm' ? T : Math.min(kind === 'dpm++' ? 20 : 50, T);
}

/** The timesteps to keep, as a respacing spec (undefined = all T). Throws a message naming the option at fault. */
export function timestepSpec(kind: SamplerKind, T: number, steps: number | undefined, spacing = 'auto'): TimestepSpec | undefined {
  if (/^\d+(,\d+)*$/.test(spacing)) {
    const sum = spacing.split(',').reduce((a, c) => a + Number(c), 0);
    if (steps !== undefined && steps !== sum) throw new Error(`--spacing ${spacing} already sets ${sum} steps; leave out --steps`);
    if (sum < 2 || sum > T) throw new Error(`--spacing ${spacing}: needs between 2 and ${T} steps in all, got ${sum}`);
    return spacing;
  }
  if (!(SPACINGS as readonly string[]).includes(spacing)) {
    throw new Error(`--spacing must be one of ${SPACINGS.join(', ')} or section counts like 10,10,5; got '${spacing}'`);
  }
  const n = steps ?? defaultSteps(kind, T);
  if (!Number.isInteger(n) || n < 2 || n > T) throw new Error(`--steps must be an integer in [2, ${T}] (T = ${T}), got ${n}`);
  const mode = spacing === 'auto' ? { ddpm: 'uniform', ddim: 'ddim', 'dpm++': 'linspace' }[kind] : spacing;
  if (n === T && (mode === 'uniform' || mode === 'ddim')) return undefined; // the full chain
  if (kind === 'dpm++' && (mode === 'linspace' || mode === 'leading')) return Array.from(dpmSolverTimesteps(T, n, mode));
  switch (mode) {
    case 'uniform':
      return String(n);
    case 'ddim':
      return `ddim${n}`;
    default:
      return `${mode}${n}`;
  }
}

/** A sampler for a model's diffusion config. Throws a plain Error with a user-facing message on bad options. */
export function makeSampler(diffusion: Pick<DiffusionConfig, 'schedule' | 'meanType' | 'varType'>, spec: SamplerSpec): Sampler {
  const base = GaussianDiffusion.fromConfig(diffusion.schedule);
  const timesteps = timestepSpec(spec.sampler, base.numTimesteps, spec.steps, spec.spacing);
  const clipDenoised = spec.clip ?? true;
  const { meanType, varType } = diffusion;
  if (spec.sampler === 'ddpm') {
    if (spec.eta !== undefined) throw new Error('--eta applies to --sampler ddim only (DDPM is DDIM with η = 1)');
    return new DdpmSampler(base, { meanType, varType, timesteps, clipDenoised });
  }
  if (spec.sampler === 'dpm++') {
    if (spec.eta !== undefined) throw new Error('--eta applies to --sampler ddim only (DPM-Solver++ is deterministic)');
    return new DpmSolverSampler(base, { meanType, varType, timesteps, clipDenoised });
  }
  if (spec.sampler !== 'ddim') throw new Error(`--sampler must be one of ${SAMPLER_KINDS.join(', ')}, got '${String(spec.sampler)}'`);
  const eta = spec.eta ?? DEFAULT_DDIM_ETA;
  if (!(eta >= 0 && eta <= 1)) throw new Error(`--eta must be in [0, 1], got ${eta}`);
  try {
    return new DdimSampler(base, { meanType, varType, eta, timesteps, clipDenoised });
  } catch (e) {
    // "ddimN" needs an integer stride s with ceil(T/s) = N, which some N lack
    throw new Error(`${(e as Error).message}; choose another --steps or --spacing uniform`);
  }
}

/** `frames` step indices out of `total`, evenly spaced, first and last included (all when frames >= total). */
export function evenSteps(total: number, frames: number): number[] {
  if (frames >= total) return Array.from({ length: total }, (_, i) => i);
  if (frames <= 1) return [total - 1];
  const out = new Set<number>();
  for (let i = 0; i < frames; i++) out.add(Math.round((i * (total - 1)) / (frames - 1)));
  return [...out];
}

/** x_t and x̂_0 of the first `samples` images at chosen steps of the reverse process. */
export interface Trajectory {
  samples: number;
  /** 0-based step numbers (in sampling order) that were recorded */
  steps: number[];
  /** the original timestep t of each recorded step */
  t: number[];
  /** per recorded step: x_t, the step's input, [samples, C, H, W] */
  xt: Float32Array[];
  /** per recorded step: x̂_0 predicted at that step (after clipping), [samples, C, H, W] */
  predX0: Float32Array[];
}

export interface GenerateOptions {
  /** the denoiser, called with original timesteps */
  model: DiffusionModel;
  /**
   * the model for the batch of images [start, start + size) instead of `model`, when it depends on which images
   * they are (their class labels under classifier-free guidance, diffusion/guidance.ts)
   */
  modelForBatch?: (start: number, size: number) => DiffusionModel;
  sampler: Sampler;
  /** [C, H, W] of one image */
  imageShape: readonly [number, number, number];
  n: number;
  seed: number;
  /** images per model call (default 64) */
  batchSize?: number;
  /** record x_t and x̂_0 of the first `samples` images at step numbers `steps` (see {@link evenSteps}) */
  trajectory?: { samples: number; steps: readonly number[] };
  /** after every model call; `done` of `total` calls (batches × steps) */
  onProgress?: (done: number, total: number) => void;
  /**
   * after every step of every batch, awaited (diffusers' `callback_on_step_end`): x_t and x̂_0 of the batch.
   * Throwing stops the generation with that error.
   */
  onStep?: (s: GenerateStep) => void | Promise<void>;
  /** checked after every step: once aborted, the generation stops with `signal.reason` */
  signal?: AbortSignal;
}

/** One step of one batch: {@link SampleLoopStep} and where the batch sits in the request. */
export interface GenerateStep extends SampleLoopStep {
  /** batch number, from 0 */
  readonly batch: number;
  /** index of the batch's first image in the request */
  readonly start: number;
  /** [B, C, H, W] of xt and predX0 */
  readonly shape: readonly [number, number, number, number];
}

export interface GenerateResult {
  /** [n, C, H, W], in [−1, 1] when clipping (the final x̂_0 is clipped) */
  samples: Float32Array;
  shape: [number, number, number, number];
  trajectory?: Trajectory;
  /** model calls made (batches × steps) */
  modelCalls: number;
}

/** Sample `n` images in batches (Algorithm 2 / DDIM via `sampleLoop`). */
export async function generate(opts: GenerateOptions): Promise<GenerateResult> {
  const { model, sampler, imageShape, n } = opts;
  const batchSize = opts.batchSize ?? 64;
  if (!Number.isInteger(n) || n < 1) throw new Error(`n must be a positive integer, got ${n}`);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size must be a positive integer, got ${batchSize}`);
  const per = imageShape[0] * imageShape[1] * imageShape[2];
  const steps = sampler.timesteps.length;
  const batches = Math.ceil(n / batchSize);
  const total = batches * steps;
  const samples = new Float32Array(n * per);
  const root = new Rng(opts.seed);
  opts.signal?.throwIfAborted();

  // 1. trajectory buffers for the first k images (which may span batches when the batch is small)
  const tr = opts.trajectory;
  const k = tr ? Math.min(tr.samples, n) : 0;
  const recordAt = new Map<number, number>((tr?.steps ?? []).map((s, j) => [s, j]));
  for (const s of recordAt.keys()) if (!Number.isInteger(s) || s < 0 || s >= steps) throw new Error(`trajectory step ${s} is outside [0, ${steps})`);
  const trajectory: Trajectory | undefined =
    tr && k > 0
      ? {
          samples: k,
          steps: [...recordAt.keys()],
          t: [...recordAt.keys()].map((s) => sampler.timesteps[s]),
          xt: [...recordAt.keys()].map(() => new Float32Array(k * per)),
          predX0: [...recordAt.keys()].map(() => new Float32Array(k * per)),
        }
      : undefined;

  // 2. the batches
  let done = 0;
  for (let b = 0; b < batches; b++) {
    const start = b * batchSize;
    const B = Math.min(batchSize, n - start);
    const rng = new PerExampleRng(Array.from({ length: B }, (_, i) => root.fold(start + i)));
    const keep = Math.max(0, Math.min(B, k - start)); // images of this batch in the trajectory
    const shape = [B, ...imageShape] as const;
    const x = await sampleLoop(sampler, opts.modelForBatch ? opts.modelForBatch(start, B) : model, shape, rng, {
      onStep: async (s) => {
        const j = recordAt.get(s.step);
        if (trajectory && keep > 0 && j !== undefined) {
          trajectory.xt[j].set(s.xt.subarray(0, keep * per), start * per);
          trajectory.predX0[j].set(s.predX0.subarray(0, keep * per), start * per);
        }
        opts.onProgress?.(++done, total);
        if (opts.onStep) await opts.onStep({ ...s, batch: b, start, shape });
        opts.signal?.throwIfAborted();
      },
    });
    samples.set(x, start * per);
  }
  return { samples, shape: [n, ...imageShape], trajectory, modelCalls: total };
}
