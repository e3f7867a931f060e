/**
 * Inpainting with a known region, with RePaint's resampling, around any {@link Sampler}.
 *
 * Source: A. Lugmayr, M. Danelljan, A. Romero, F. Yu, R. Timofte, L. Van Gool, "RePaint: Inpainting
 * using Denoising Diffusion Probabilistic Models", CVPR 2022, Algorithm 1 and §4.2 (the jump
 * schedule, `get_schedule_jump` in the authors' code, `jump_length` / `jump_n_sample` in diffusers).
 *
 * Each reverse step x_t → x_{t−1} is the sampler's step on the whole image; then the known pixels
 * are replaced by a fresh sample of q(x_{t−1} | x_0) = N(√ᾱ_{t−1} x_0, (1 − ᾱ_{t−1}) I) (Algorithm 1,
 * lines 5–8), and after the last step by x_0 itself, so the known region of the output IS the input.
 * Resampling (lines 9–10): at some steps the merged x_{t−1} is sent forward again with
 * q(x_t | x_{t−1}) = N(√(1 − β_t) x_{t−1}, β_t I) and denoised again, which lets the generated part
 * harmonise with the known part. On a respaced process "t − 1" is the next kept timestep and β is
 * the respaced β'_i = 1 − ᾱ_{t_i}/ᾱ_{t_{i−1}}, so both q's are those of the short chain.
 *
 * Mask convention: 1 (white) = generate, 0 = keep.
 */
import { batchDims, type DiffusionModel, type ShapedArray } from './batch.ts';
import { callModel, runProcess, type Sampler, type SamplingProcess } from './samplers.ts';
import type { Rng } from '../rng.ts';

/**
 * RePaint's jump schedule as a sequence of states, each a kept index of the sampler's process
 * (N − 1 = x_T … 0 = the last noisy level) or −1 for the final x_0. Consecutive states differ by one:
 * a decrease is a reverse step, an increase a forward q step. With jump length j and r samples per
 * jump, the states 0, j, 2j, … (below N − j) are each left upwards r − 1 times, by j steps
 * (the authors' `get_schedule_jump` with its other options off; r = 1 is plain replacement).
 * @returns N − 1, …, −1; N + (number of jump states)·(r − 1)·j reverse steps in all
 */
export function repaintSchedule(numSteps: number, jumpLength: number, jumpNSample: number): Int32Array {
  const N = numSteps;
  for (const [name, v] of [['number of steps', N], ['jump length', jumpLength], ['jump_n_sample', jumpNSample]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`RePaint ${name} must be a positive integer, got ${v}`);
  }
  if (jumpLength >= N && jumpNSample > 1) throw new Error(`RePaint jump length ${jumpLength} must be below the number of steps ${N}`);
  const jumps = new Map<number, number>();
  for (let j = 0; j < N - jumpLength; j += jumpLength) jumps.set(j, jumpNSample - 1);
  const states = [N - 1];
  let s = N - 1;
  while (s >= 0) {
    s -= 1;
    states.push(s);
    const left = jumps.get(s) ?? 0;
    if (left > 0) {
      jumps.set(s, left - 1);
      for (let k = 0; k < jumpLength; k++) states.push(++s);
    }
  }
  return Int32Array.from(states);
}

/** Options of {@link inpaint}. */
export interface InpaintOptions {
  /** RePaint's jump length j (default 1). */
  readonly jumpLength?: number;
  /** RePaint's jump_n_sample r: each jump is passed r times, so r − 1 resamplings (default 1: none). */
  readonly jumpNSample?: number;
  /** x_T; default `rng.normalFloat32(n)`, drawn before any step. */
  readonly noise?: Float32Array;
  /** Called after every reverse or forward move. */
  readonly onStep?: (s: InpaintStep) => void | Promise<void>;
}

/** What {@link inpaint} reports after each move. */
export interface InpaintStep {
  /** 0-based move number, of `total`. */
  readonly step: number;
  readonly total: number;
  /** 'reverse': a sampler step then the known region replaced; 'forward': a q step (resampling). */
  readonly direction: 'reverse' | 'forward';
  /** The original timestep of the new x (−1 for the final x_0). */
  readonly t: number;
  /** The new x. */
  readonly x: Float32Array;
}

/**
 * Expand a mask to the image's size: either the same shape as the image, or one channel
 * ([B, 1, ...]) shared by the image's C channels. Values must lie in [0, 1].
 */
export function expandMask(mask: Float32Array, image: ShapedArray): Float32Array {
  const { B } = batchDims(image);
  const n = image.data.length;
  const C = image.shape.length > 1 ? image.shape[1] : 1;
  for (let j = 0; j < mask.length; j++) {
    if (!(mask[j] >= 0 && mask[j] <= 1)) throw new Error(`mask values must be in [0, 1], got ${mask[j]} at ${j}`);
  }
  if (mask.length === n) return mask;
  if (B > 0 && mask.length * C === n) {
    const plane = mask.length / B;
    const out = new Float32Array(n);
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) out.set(mask.subarray(b * plane, (b + 1) * plane), (b * C + c) * plane);
    }
    return out;
  }
  throw new Error(`mask has ${mask.length} elements; the image [${image.shape.join(', ')}] needs ${n} (or ${n / C} for one channel)`);
}

/**
 * Inpaint: generate where `mask` is 1 and keep `image` where it is 0, with any sampler, optionally
 * with RePaint's resampling. Where the mask is exactly 0 the output equals `image` bit for bit;
 * fractional mask values blend m·generated + (1 − m)·known at every step.
 * @param image x_0 [B, C, ...] in the model's range, the known pixels (the rest is ignored)
 * @param mask 1 = generate; image's shape or one channel [B, 1, ...]
 * @returns the inpainted images, image's shape
 */
export function inpaint(
  sampler: Sampler,
  model: DiffusionModel,
  image: ShapedArray,
  mask: Float32Array,
  rng: Rng,
  opts: InpaintOptions = {},
): Promise<Float32Array> {
  return runProcess(inpaintSteps(sampler, image, mask, rng, opts), model, opts.onStep);
}

/** {@link inpaint} as a {@link SamplingProcess}: it yields its model calls and a report after every move. */
export function* inpaintSteps(
  sampler: Sampler,
  image: ShapedArray,
  mask: Float32Array,
  rng: Rng,
  opts: Omit<InpaintOptions, 'onStep'> = {},
): SamplingProcess<InpaintStep> {
  batchDims(image);
  const m = expandMask(mask, image);
  const d = sampler.diffusion;
  const n = image.data.length;
  const shape = image.shape;
  const N = d.numTimesteps;
  const states = repaintSchedule(N, opts.jumpLength ?? 1, opts.jumpNSample ?? 1);
  let x = opts.noise ?? rng.normalFloat32(n);
  if (x.length !== n) throw new Error(`noise has ${x.length} elements, the image needs ${n}`);
  const total = states.length - 1;
  sampler.reset?.();
  for (let k = 1; k < states.length; k++) {
    const from = states[k - 1];
    const to = states[k];
    if (to < from) {
      // 1. reverse: the sampler's step x_{t_from} → x_{t_to} on the whole image (Algorithm 1, line 7) …
      const t = d.timestepMap[from];
      const output = yield* callModel(x, t, shape);
      const unknown = sampler.step(output, t, { data: x, shape }, rng).prevSample;
      // … the known part from q(x_{t_to} | x_0), eq. (4) (line 5), or x_0 itself at the end …
      const known = to >= 0 ? d.qSample(image, to, rng.normalFloat32(n)) : image.data;
      // … merged (line 8)
      x = new Float32Array(n);
      for (let j = 0; j < n; j++) {
        const mj = m[j];
        x[j] = mj === 0 ? known[j] : mj === 1 ? unknown[j] : mj * unknown[j] + (1 - mj) * known[j];
      }
    } else {
      // 2. forward (resampling, line 10): x_{t_to} ~ q(x_{t_to} | x_{t_from}) on the respaced chain, eq. (2);
      //    the sampler's multistep history belongs to the old trajectory, so drop it
      x = d.qStep({ data: x, shape }, to, rng.normalFloat32(n));
      sampler.reset?.();
    }
    yield { kind: 'step', step: { step: k - 1, total, direction: to < from ? 'reverse' : 'forward', t: to >= 0 ? d.timestepMap[to] : -1, x } };
  }
  return x;
}
