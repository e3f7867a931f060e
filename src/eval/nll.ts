/**
 * Negative log-likelihood in bits/dim: the variational bound of Ho et al. 2020 (eq. 5; the full
 * sum L_T + Σ_t L_{t−1} + L_0, with the discretised decoder of §3.3), evaluated with all T steps by
 * {@link GaussianDiffusion.calcBpdLoop} (improved-diffusion's `calc_bpd_loop`), averaged over images.
 *
 * Ho et al. report ≤ 3.70 bits/dim on CIFAR10 test with fixedLarge (Table 2); on MNIST, numbers from
 * the same bound are only comparable at the same T, schedule, variance type and test images.
 *
 * Randomness is per image: image i draws the ε of every q(x_t|x_0) from `rng.fold(i)`, so a result
 * does not depend on the batch size (up to the model's rounding across batch sizes). No node:* imports.
 */
import type { DiffusionModel, MeanType, ShapedArray, VarType } from '../diffusion/batch.ts';
import type { GaussianDiffusion } from '../diffusion/gaussian-diffusion.ts';
import { PerExampleRng, Rng } from '../rng.ts';

export interface NllOptions {
  meanType: MeanType;
  varType: VarType;
  /** clip x̂_0 to [−1, 1] in the VLB terms (default true, as calc_bpd_loop) */
  clipDenoised?: boolean;
  /** images per model call (default 64) */
  batchSize?: number;
  /** source of the noise; image i uses `rng.fold(i)` */
  rng: Rng;
  /** after every model evaluation: `done` of `total` (= batches × T) */
  onProgress?: (done: number, total: number) => void;
}

export interface NllResult {
  n: number;
  /** mean total bound over images, bits/dim */
  meanBpd: number;
  /** standard error of that mean: sample standard deviation / √n (NaN for n = 1) */
  stderrBpd: number;
  /** per image total bound, bits/dim */
  perImage: Float64Array;
  /** means over images of the parts: prior L_T, decoder L_0, and Σ_{t≥1} L_t */
  priorBpd: number;
  decoderBpd: number;
  vbBpd: number;
  /** model evaluations made (batches × T) */
  modelCalls: number;
}

/** Mean and standard error of the mean (sample sd / √n; NaN for n < 2). */
export function meanAndStderr(x: ArrayLike<number>): { mean: number; stderr: number } {
  const n = x.length;
  let m = 0;
  for (let i = 0; i < n; i++) m += x[i]!;
  m /= n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (x[i]! - m) ** 2;
  return { mean: m, stderr: n > 1 ? Math.sqrt(ss / (n - 1) / n) : NaN };
}

/**
 * The NLL bound of `images` ([n, C, H, W] on the 8-bit grid scaled to [−1, 1]) under `model`, in
 * batches; costs T model evaluations per batch.
 */
export async function evaluateNll(diffusion: GaussianDiffusion, model: DiffusionModel, images: ShapedArray, opts: NllOptions): Promise<NllResult> {
  const [n, ...rest] = images.shape;
  const per = rest.reduce((a, b) => a * b, 1);
  if (!(n! >= 1) || images.data.length !== n! * per) throw new Error(`evaluateNll: ${images.data.length} values do not match shape [${images.shape}]`);
  const batchSize = opts.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size must be a positive integer, got ${batchSize}`);
  const T = diffusion.numTimesteps;
  const batches = Math.ceil(n! / batchSize);
  const total = batches * T;
  const perImage = new Float64Array(n!);
  let prior = 0;
  let decoder = 0;
  let vb = 0;
  let done = 0;
  for (let b = 0; b < batches; b++) {
    const start = b * batchSize;
    const B = Math.min(batchSize, n! - start);
    const x0 = { data: images.data.subarray(start * per, (start + B) * per), shape: [B, ...rest] };
    const out = await diffusion.calcBpdLoop(model, x0, {
      meanType: opts.meanType,
      varType: opts.varType,
      clipDenoised: opts.clipDenoised ?? true,
      rng: new PerExampleRng(Array.from({ length: B }, (_, i) => opts.rng.fold(start + i))),
      onProgress: () => opts.onProgress?.(++done, total),
    });
    for (let i = 0; i < B; i++) {
      perImage[start + i] = out.totalBpd[i]!;
      prior += out.priorBpd[i]!;
      decoder += out.vb[i * T]!; // t = 0: the decoder term L_0
      for (let t = 1; t < T; t++) vb += out.vb[i * T + t]!;
    }
  }
  const { mean, stderr } = meanAndStderr(perImage);
  return { n: n!, meanBpd: mean, stderrBpd: stderr, perImage, priorBpd: prior / n!, decoderBpd: decoder / n!, vbBpd: vb / n!, modelCalls: total };
}
