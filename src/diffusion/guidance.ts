/**
 * Classifier-free guidance (Ho & Salimans 2022): a class-conditional model ε_θ(x_t, t, y), trained with the label
 * dropped to ∅ ("no class") part of the time, turned into an ordinary {@link DiffusionModel} that every sampler
 * (DDPM, DDIM, DPM-Solver++, the editing loops) runs unchanged:
 *
 *   ε̃(x_t, t, c) = ε(x_t, t, ∅) + s · (ε(x_t, t, c) − ε(x_t, t, ∅))
 *
 * with diffusers' convention for the scale s (`guidance_scale`): s = 0 is the unconditional model, s = 1 the
 * conditional one, s > 1 pushes further towards the class. (Ho & Salimans write (1 + w)·ε_c − w·ε_∅, i.e. s = 1 + w.)
 * Guiding x̂_0 or v instead of ε is the same thing: at a fixed x_t each is an affine function of ε, and the weights
 * (1 − s, s) sum to 1.
 *
 * Both predictions come from ONE model call on a doubled batch [x_t; x_t] with labels [c; ∅], as GLIDE and
 * diffusers do. With learned variances (outChannels = 2C) only the first C channels (the prediction) are guided;
 * the variance channels are the conditional half's, as in GLIDE's sampler (`model_fn` of its text2im notebook,
 * Nichol et al. 2022): the samples are the conditional ones and keep their own step variance, and extrapolating
 * the interpolation v with s > 1 could leave [β̃_t, β_t]. At s = 0 and s = 1 the guided model
 * is exactly the unconditional / conditional one, so it is called once on the plain batch (label ∅, or c), variance
 * included: half the work, and s = 0 then reproduces unconditional sampling from the same model.
 *
 * No node:* imports: the browser runs the same wrapper.
 */
import type { DiffusionModel } from './batch.ts';

/**
 * A class-conditional denoising model: x_t of `shape` [B, C, H, W], the original timestep and the class label of
 * each example (in [0, numClasses], numClasses meaning ∅) → model output [B, outChannels, H, W].
 */
export type ConditionalModel = (
  xt: Float32Array,
  t: Int32Array,
  y: Int32Array,
  shape: readonly number[],
) => Promise<Float32Array> | Float32Array;

/**
 * The scale used when a request gives class labels and no scale: s = 3, GLIDE's and the README example's. (The
 * shipped models/mnist-28-cond is measured at s = 0, 1, 2, 4 in the README.)
 */
export const DEFAULT_GUIDANCE_SCALE = 3;

export interface GuidanceOptions {
  /** the class of each example of the batches the sampler will pass (length B); numClasses means ∅ */
  labels: Int32Array;
  /** the model's number of classes K: label K is ∅ ("no class") */
  numClasses: number;
  /** the guidance scale s (diffusers' `guidance_scale`): 0 unconditional, 1 conditional, > 1 stronger */
  scale: number;
}

/**
 * The guided model ε̃ as a {@link DiffusionModel} for batches of exactly `labels.length` examples (a sampler's
 * batch). See the file comment for the formula, the doubled batch and the variance channels.
 */
export function classifierFreeGuidance(model: ConditionalModel, opts: GuidanceOptions): DiffusionModel {
  const { labels, numClasses: K, scale: s } = opts;
  if (!Number.isInteger(K) || K < 1) throw new Error(`classifier-free guidance needs a class-conditional model, got numClasses ${K}`);
  if (!Number.isFinite(s)) throw new Error(`guidance scale must be a finite number, got ${s}`);
  for (const c of labels) if (!(Number.isInteger(c) && c >= 0 && c <= K)) throw new Error(`class label ${c} is outside [0, ${K}] (${K} = no class)`);
  const B = labels.length;
  const nulls = new Int32Array(B).fill(K);
  const check = (t: Int32Array, shape: readonly number[]) => {
    if (shape[0] !== B || t.length !== B) throw new Error(`guided model: a batch of ${shape[0]} for ${B} class labels`);
  };
  if (s === 0) return (xt, t, shape) => (check(t, shape), model(xt, t, nulls, shape));
  if (s === 1) return (xt, t, shape) => (check(t, shape), model(xt, t, labels, shape));
  const y2 = new Int32Array(2 * B);
  y2.set(labels);
  y2.set(nulls, B);
  return async (xt, t, shape) => {
    check(t, shape);
    const per = xt.length / B; // C·H·W: the prediction's channels
    // 1. one call on [x_t; x_t] with labels [c; ∅]
    const x2 = new Float32Array(2 * xt.length);
    x2.set(xt);
    x2.set(xt, xt.length);
    const t2 = new Int32Array(2 * B);
    t2.set(t);
    t2.set(t, B);
    const out = await model(x2, t2, y2, [2 * B, ...shape.slice(1)]);
    const outPer = out.length / (2 * B); // outChannels·H·W
    if (!Number.isInteger(outPer) || outPer % per !== 0) throw new Error(`guided model: ${out.length} outputs for a batch of 2x${B} of [${shape.slice(1)}]`);
    // 2. per example: guided prediction in the first C channels, the conditional half's variance channels after them
    const guided = new Float32Array(B * outPer);
    for (let b = 0; b < B; b++) guideRow(out, b * outPer, (B + b) * outPer, per, outPer, s, guided, b * outPer);
    return guided;
  };
}

/**
 * One example of the guided model from its two rows of model output: ε̃ = ε_∅ + s·(ε_c − ε_∅) in the first `per`
 * values (the prediction's channels), the conditional row's variance channels after them, written to
 * `into[at ..< at + outPer]`. The rows start at `cond` and `uncond` in `out` (which may be different batches'
 * rows: the server guides images of several requests in one call).
 */
export function guideRow(out: Float32Array, cond: number, uncond: number, per: number, outPer: number, s: number, into: Float32Array, at: number): void {
  for (let i = 0; i < per; i++) {
    const u = out[uncond + i]!;
    into[at + i] = u + s * (out[cond + i]! - u);
  }
  for (let i = per; i < outPer; i++) into[at + i] = out[cond + i]!;
}
