/**
 * Respacing: sampling (or evaluating) with a subset of the training timesteps.
 *
 * Sources: improved-diffusion `respace.py` (`space_timesteps`, `SpacedDiffusion`; Nichol & Dhariwal
 * 2021 §4); diffusers' `timestep_spacing` = leading / trailing / linspace (Lin et al. 2023, Table 2).
 *
 * A respaced process keeps the ᾱ of the kept timesteps t_0 < t_1 < … and recomputes
 * β'_i = 1 − ᾱ_{t_i}/ᾱ_{t_{i−1}} (ᾱ_{t_{−1}} = 1), so that ᾱ'_i = ᾱ_{t_i}: the marginals q(x_t|x_0)
 * are unchanged and every sampler (DDPM, DDIM) runs on the shorter chain as is. The model is still
 * called with the ORIGINAL timestep, `timestepMap[i]` = t_i.
 */
import { GaussianDiffusion } from './gaussian-diffusion.ts';

/** Python's `round()` (and NumPy's): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * improved-diffusion's `space_timesteps`: which of `numTimesteps` steps to keep.
 * - "ddimN": the DDIM paper's fixed stride, range(0, T, stride) with exactly N elements;
 * - "a,b,c" (or [a, b, c]): split the T steps into equal sections (the first T mod k one longer)
 *   and take a, b, c evenly spaced steps from each (fractional stride, Python rounding);
 * - "N": one section of N steps.
 * @returns the kept timesteps, sorted ascending
 */
export function spaceTimesteps(numTimesteps: number, sectionCounts: string | readonly number[]): Int32Array {
  let counts: number[];
  if (typeof sectionCounts === 'string') {
    if (sectionCounts.startsWith('ddim')) {
      const desired = parseCount(sectionCounts.slice(4), sectionCounts);
      for (let stride = 1; stride < numTimesteps; stride++) {
        if (Math.ceil(numTimesteps / stride) === desired) {
          return Int32Array.from({ length: desired }, (_, i) => i * stride);
        }
      }
      throw new Error(`cannot create exactly ${desired} steps from ${numTimesteps} with an integer stride`);
    }
    counts = sectionCounts.split(',').map((c) => parseCount(c, sectionCounts));
  } else {
    counts = [...sectionCounts];
  }
  const sizePer = Math.floor(numTimesteps / counts.length);
  const extra = numTimesteps % counts.length;
  const steps = new Set<number>();
  let startIdx = 0;
  counts.forEach((count, i) => {
    const size = sizePer + (i < extra ? 1 : 0);
    if (size < count) throw new Error(`cannot divide section of ${size} steps into ${count}`);
    const fracStride = count <= 1 ? 1 : (size - 1) / (count - 1);
    let curIdx = 0; // accumulated as a float, as improved-diffusion does
    for (let k = 0; k < count; k++) {
      steps.add(startIdx + roundHalfEven(curIdx));
      curIdx += fracStride;
    }
    startIdx += size;
  });
  return Int32Array.from([...steps].sort((a, b) => a - b));
}

function parseCount(s: string, whole: string): number {
  const v = Number(s.trim());
  if (s.trim() === '' || !Number.isInteger(v) || v < 0) throw new Error(`invalid timestep spacing '${whole}'`);
  return v;
}

/** diffusers' timestep spacings. */
export type DiffusersSpacing = 'leading' | 'trailing' | 'linspace';

/**
 * diffusers' `set_timesteps(numInferenceSteps)` for a spacing, in diffusers' (descending) order:
 * - linspace: round(linspace(0, T−1, N)), reversed;
 * - leading:  (arange(N)·(T div N)) reversed, + stepsOffset (1 in Stable Diffusion configs);
 * - trailing: round(arange(T, 0, −T/N)) − 1.
 * Rounding is NumPy's (half to even).
 */
export function diffusersTimesteps(
  numTrainTimesteps: number,
  numInferenceSteps: number,
  spacing: DiffusersSpacing,
  stepsOffset = 0,
): Int32Array {
  const T = numTrainTimesteps;
  const N = numInferenceSteps;
  if (!Number.isInteger(N) || N < 1 || N > T) throw new Error(`numInferenceSteps must be an integer in [1, ${T}], got ${N}`);
  const out = new Int32Array(N);
  switch (spacing) {
    case 'linspace': {
      const step = N === 1 ? 0 : (T - 1) / (N - 1);
      for (let i = 0; i < N; i++) out[N - 1 - i] = roundHalfEven(i === N - 1 && N > 1 ? T - 1 : i * step);
      break;
    }
    case 'leading': {
      const ratio = Math.floor(T / N);
      for (let i = 0; i < N; i++) out[N - 1 - i] = i * ratio + stepsOffset;
      break;
    }
    case 'trailing': {
      const ratio = T / N;
      for (let i = 0; i < N; i++) out[i] = roundHalfEven(T - i * ratio) - 1;
      break;
    }
    default:
      throw new Error(`unknown spacing '${String(spacing)}'`);
  }
  for (const t of out) {
    if (t < 0 || t >= T) throw new Error(`spacing '${spacing}' produced timestep ${t} outside [0, ${T})`);
  }
  return out;
}

/**
 * diffusers' `DPMSolverMultistepScheduler.set_timesteps(numInferenceSteps)` (descending). Its linspace
 * and leading spacings differ from {@link diffusersTimesteps}: they lay out N + 1 points and drop
 * timestep 0, because the solver's last step goes past the last kept timestep (to σ = 0 or to the
 * first training timestep, `final_sigmas_type`):
 * - linspace: round(linspace(0, T−1, N + 1)) reversed, without its last element (0);
 * - leading:  (arange(N + 1)·(T div (N + 1))) reversed, without 0, + stepsOffset;
 * - trailing: as {@link diffusersTimesteps}.
 * (`lambda_min_clipped` = −∞, diffusers' default, so the last training timestep is T − 1.)
 */
export function dpmSolverTimesteps(
  numTrainTimesteps: number,
  numInferenceSteps: number,
  spacing: DiffusersSpacing,
  stepsOffset = 0,
): Int32Array {
  const T = numTrainTimesteps;
  const N = numInferenceSteps;
  if (!Number.isInteger(N) || N < 1 || N > T) throw new Error(`numInferenceSteps must be an integer in [1, ${T}], got ${N}`);
  if (spacing === 'trailing') return diffusersTimesteps(T, N, spacing, stepsOffset);
  const out = new Int32Array(N);
  if (spacing === 'linspace') {
    // NumPy's linspace: start + k·step, with the last point set to stop
    const step = (T - 1) / N;
    for (let k = 1; k <= N; k++) out[N - k] = roundHalfEven(k === N ? T - 1 : k * step);
  } else if (spacing === 'leading') {
    const ratio = Math.floor(T / (N + 1));
    for (let k = 1; k <= N; k++) out[N - k] = k * ratio + stepsOffset;
  } else {
    throw new Error(`unknown spacing '${String(spacing)}'`);
  }
  for (let k = 0; k < N; k++) {
    if (out[k] < 0 || out[k] >= T) throw new Error(`spacing '${spacing}' produced timestep ${out[k]} outside [0, ${T})`);
    if (k > 0 && out[k] >= out[k - 1]) throw new Error(`${N} ${spacing} steps of ${T} repeat timestep ${out[k]}; use fewer steps`);
  }
  return out;
}

/**
 * Which timesteps to keep:
 * - a string: improved-diffusion's "N", "a,b,c", "ddimN", or diffusers' "leadingN", "trailingN", "linspaceN";
 * - `{ spacing, numSteps, stepsOffset? }`: diffusers' spacing;
 * - an explicit list of timesteps.
 */
export type TimestepSpec =
  | string
  | readonly number[]
  | { readonly spacing: DiffusersSpacing; readonly numSteps: number; readonly stepsOffset?: number };

/**
 * Resolve a {@link TimestepSpec} for a process of `numTimesteps` steps.
 * @returns the kept timesteps, unique and sorted ascending
 */
export function resolveTimestepSpec(numTimesteps: number, spec: TimestepSpec): Int32Array {
  let steps: ArrayLike<number>;
  if (typeof spec === 'string') {
    const m = /^(leading|trailing|linspace)(\d+)$/.exec(spec);
    steps = m
      ? diffusersTimesteps(numTimesteps, Number(m[2]), m[1] as DiffusersSpacing)
      : spaceTimesteps(numTimesteps, spec);
  } else if (Array.isArray(spec)) {
    steps = spec as readonly number[];
  } else {
    const s = spec as { spacing: DiffusersSpacing; numSteps: number; stepsOffset?: number };
    steps = diffusersTimesteps(numTimesteps, s.numSteps, s.spacing, s.stepsOffset ?? 0);
  }
  const unique = [...new Set(Array.from(steps))].sort((a, b) => a - b);
  for (const t of unique) {
    if (!Number.isInteger(t) || t < 0 || t >= numTimesteps) throw new Error(`timestep ${t} is outside [0, ${numTimesteps})`);
  }
  if (unique.length === 0) throw new Error('no timesteps kept');
  return Int32Array.from(unique);
}

/**
 * improved-diffusion's `SpacedDiffusion`: the process restricted to `useTimesteps` (indices of
 * `base`), with β'_i = 1 − ᾱ_{t_i}/ᾱ_{t_{i−1}} and `timestepMap` pointing at the original
 * timesteps (composed with `base.timestepMap`, so respacing twice is fine). Needs ≥ 2 kept steps.
 */
export function respace(base: GaussianDiffusion, useTimesteps: TimestepSpec): GaussianDiffusion {
  const kept = resolveTimestepSpec(base.numTimesteps, useTimesteps);
  const betas = new Float64Array(kept.length);
  const map = new Int32Array(kept.length);
  let lastAlphaCumprod = 1;
  kept.forEach((t, i) => {
    const abar = base.alphasCumprod[t];
    betas[i] = 1 - abar / lastAlphaCumprod;
    lastAlphaCumprod = abar;
    map[i] = base.timestepMap[t];
  });
  return new GaussianDiffusion(betas, { timestepMap: map });
}
