/**
 * DPM-Solver++ (multistep, orders 1 and 2) in the {@link Sampler} interface.
 *
 * Source: C. Lu, Y. Zhou, F. Bao, J. Chen, C. Li, J. Zhu, "DPM-Solver++: Fast Solver for Guided
 * Sampling of Diffusion Probabilistic Models", 2022 (arXiv:2211.01095), Algorithm 2 (DPM-Solver++(2M));
 * conventions, option names and the golden values in the tests from diffusers'
 * `DPMSolverMultistepScheduler` (algorithm_type "dpmsolver++").
 *
 * The diffusion ODE in data-prediction form, for the VP process x_t = α_t x_0 + σ_t ε with
 * α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t) and the half log-SNR λ_t = log(α_t/σ_t), has the exact solution
 *   x_t = (σ_t/σ_s) x_s + σ_t ∫_{λ_s}^{λ_t} e^λ x̂_0(x_λ, λ) dλ.
 * With h = λ_t − λ_s:
 * - order 1 (x̂_0 constant over the step; this is DDIM with η = 0):
 *     x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) D0,   D0 = x̂_0(x_s, s);
 * - order 2, multistep (Algorithm 2): with the previous step's x̂_0 (m1, made at s' > s) and
 *   r0 = h_{k−1}/h_k = (λ_s − λ_{s'})/h, D1 = (m0 − m1)/r0, and
 *     midpoint: x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) (D0 + D1/2)
 *               (= Algorithm 2's D_i = (1 + 1/(2r)) m0 − 1/(2r) m1),
 *     heun:     x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) D0 + α_t ((e^{−h} − 1)/h + 1) D1.
 * The last step goes to σ = 0 (`final_sigmas_type` "zero": x_0 = D0, always first order) or to the
 * first training timestep ("sigma_min").
 *
 * State: 2M needs the x̂_0 of the previous step. The sampler keeps it (with the index it was made at)
 * and uses it only if the previous call was at the next-higher kept timestep on a batch of the same
 * size; `reset()` drops it and every loop calls `reset()` first. So one sampler serves any number of
 * loops one after the other, but not two interleaved loops.
 */
import { batchDims, type ShapedArray, type VarType } from './batch.ts';
import { GaussianDiffusion, splitModelOutput } from './gaussian-diffusion.ts';
import { BaseSampler, type SamplerOptions, type SamplerStepOutput } from './samplers.ts';
import { processX0InPlace } from './thresholding.ts';
import type { Rng } from '../rng.ts';

/** Where the last step goes (diffusers' `final_sigmas_type`). */
export type FinalSigmasType = 'zero' | 'sigma_min';

/** Options of {@link DpmSolverSampler} (diffusers' names in camelCase). */
export interface DpmSolverOptions extends SamplerOptions {
  /** `solver_order`: 1 (DDIM) or 2 (DPM-Solver++(2M), default). */
  readonly solverOrder?: 1 | 2;
  /** `solver_type` of the second-order update: 'midpoint' (default) or 'heun'. */
  readonly solverType?: 'midpoint' | 'heun';
  /** `lower_order_final`: first order at the last step when there are fewer than 15 steps (default true). */
  readonly lowerOrderFinal?: boolean;
  /**
   * `final_sigmas_type`: 'zero' (default) ends at σ = 0, so the last step returns x̂_0; 'sigma_min'
   * ends at the base process's first timestep (ᾱ of t = 0).
   */
  readonly finalSigmasType?: FinalSigmasType;
  /** Only needed to split a learnedRange output (the ε / x_0 / v half is used); default fixedSmall. */
  readonly varType?: VarType;
}

/** α = √ᾱ, σ = √(1 − ᾱ), λ = log α − log σ of one noise level. */
function vp(abar: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = Math.sqrt(abar);
  const sigma = Math.sqrt(1 - abar);
  return { alpha, sigma, lambda: Math.log(alpha) - Math.log(sigma) };
}

/**
 * DPM-Solver++ with data prediction ("dpmsolver++"), multistep, order 1 or 2. `predX0` of each step
 * is the data prediction D0 = x̂_0 after clipping / thresholding (diffusers thresholds it the same way).
 */
export class DpmSolverSampler extends BaseSampler {
  readonly options: DpmSolverOptions;
  readonly solverOrder: 1 | 2;
  /** ᾱ after the last step: 1 for 'zero', the base process's ᾱ at t = 0 for 'sigma_min'. */
  readonly finalAlphaCumprod: number;
  /** The previous step's index in {@link diffusion} and its x̂_0 (m1 of the 2M update). */
  private last: { index: number; predX0: Float32Array } | null = null;

  constructor(base: GaussianDiffusion, options: DpmSolverOptions) {
    super(base, options.timesteps);
    const order = options.solverOrder ?? 2;
    if (order !== 1 && order !== 2) throw new Error(`DPM-Solver++ solverOrder must be 1 or 2, got ${String(order)}`);
    const fin = options.finalSigmasType ?? 'zero';
    if (fin !== 'zero' && fin !== 'sigma_min') throw new Error(`finalSigmasType must be 'zero' or 'sigma_min', got '${String(fin)}'`);
    const type = options.solverType ?? 'midpoint';
    if (type !== 'midpoint' && type !== 'heun') throw new Error(`solverType must be 'midpoint' or 'heun', got '${String(type)}'`);
    this.options = options;
    this.solverOrder = order;
    this.finalAlphaCumprod = fin === 'zero' ? 1 : base.alphasCumprod[0];
  }

  reset(): void {
    this.last = null;
  }

  step(modelOutput: Float32Array, t: number, x: ShapedArray, _rng: Rng): SamplerStepOutput {
    const d = this.diffusion;
    const i = this.index(t);
    const { B } = batchDims(x);
    const n = x.data.length;
    // 1. data prediction D0 = x̂_0(x_s, s) from ε, x_0 or v (learned variance: the first half), clipped / thresholded
    const { output } = splitModelOutput(modelOutput, n, B, this.options.varType ?? 'fixedSmall');
    const m0 = processX0InPlace(d.predictX0(output, x, i, this.options.meanType), B, this.options);
    const prev = this.last;
    this.last = { index: i, predX0: m0 };

    // 2. noise levels: s = this step, t = the next kept timestep (or the final level), s' = the previous step
    const abarT = i > 0 ? d.alphasCumprod[i - 1] : this.finalAlphaCumprod;
    const out = new Float32Array(n);
    if (abarT === 1) {
      // σ_t = 0: λ_t = ∞, e^{−h} = 0 and the update is x_t = α_t D0 = D0 at any order
      out.set(m0);
      return { prevSample: out, predX0: m0 };
    }
    const s = vp(d.alphasCumprod[i]);
    const tt = vp(abarT);
    const h = tt.lambda - s.lambda;
    const cx = tt.sigma / s.sigma; // σ_t/σ_s
    const cd = -tt.alpha * Math.expm1(-h); // −α_t (e^{−h} − 1)

    // 3. first or second order (the first step of a loop, lower_order_final, or no usable history: first)
    //    (h = 0 when the last kept timestep is 0 and the final level is 'sigma_min': then x_t = x_s)
    const last = i === 0 && (this.options.lowerOrderFinal ?? true) && this.timesteps.length < 15;
    const usable = this.solverOrder === 2 && !last && prev !== null && prev.index === i + 1 && prev.predX0.length === n;
    const r0 = usable ? (s.lambda - vp(d.alphasCumprod[i + 1]).lambda) / h : NaN; // h_{k−1}/h_k
    if (!(usable && h > 0 && r0 > 0 && Number.isFinite(r0))) {
      for (let j = 0; j < n; j++) out[j] = cx * x.data[j] + cd * m0[j];
      return { prevSample: out, predX0: m0 };
    }
    const m1 = prev!.predX0;
    // D1 = (m0 − m1)/r0; midpoint: cd·(D0 + D1/2); heun: cd·D0 + α_t((e^{−h} − 1)/h + 1)·D1
    const c1 = (this.options.solverType ?? 'midpoint') === 'midpoint' ? (0.5 * cd) / r0 : (tt.alpha * (Math.expm1(-h) / h + 1)) / r0;
    for (let j = 0; j < n; j++) out[j] = cx * x.data[j] + cd * m0[j] + c1 * (m0[j] - m1[j]);
    return { prevSample: out, predX0: m0 };
  }
}
