/**
 * The losses on float64 numbers: the `float64Ops` instance of the shared definitions in
 * loss-formulas.ts, and the numeric API on typed arrays that NLL evaluation and the tests use (the
 * training step traces the same definitions as engine ops, graph-losses.ts).
 *
 * Elementwise functions compute in float64 and return Float64Array; `meanFlat` reduces to one value
 * per example. Results are in nats unless the name says bits (bpd = nats / ln 2, per dimension).
 * Min-SNR-γ weights (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
 * Strategy") are a float64 function of the timestep, defined here for both paths.
 */
import type { MeanType } from './batch.ts';
import * as F from './loss-formulas.ts';
import type { Ops } from './loss-formulas.ts';

export { HALF_BIN, HYBRID_LAMBDA } from './loss-formulas.ts';

/** A float64 operand: a scalar or an array. */
export type Values = number | Float64Array;

/** Values from any array, as float64 (copied unless already a Float64Array). */
export const toFloat64 = (x: ArrayLike<number>): Float64Array => (x instanceof Float64Array ? x : Float64Array.from(x));
const values = (x: number | ArrayLike<number>): Values => (typeof x === 'number' ? x : toFloat64(x));

/** Elements per example when `n` values hold `batchSize` examples. */
function perExampleOf(n: number, batchSize: number): number {
  if (batchSize <= 0 || n % batchSize !== 0) throw new Error(`meanFlat: ${n} elements do not split into ${batchSize} examples`);
  return n / batchSize;
}

/** Examples in `n` values of `perExample` each. */
function examplesOf(n: number, perExample: number): number {
  if (n % perExample !== 0) throw new Error(`meanFlat: ${n} elements do not split into examples of ${perExample}`);
  return n / perExample;
}

/**
 * The float64 instance of {@link Ops}. Arrays are elementwise; an array of n/perExample values (one
 * per example) broadcasts over the perExample elements of each example; numbers broadcast. Any
 * other lengths are an error. The arithmetic is JavaScript's, in float64.
 * @param perExample elements per example (for `meanFlat` and per-example operands)
 */
export function float64Ops(perExample = 1): Ops<Values> {
  // an array operand stretched to n elements (per-example values repeated over their example)
  const stretch = (x: Float64Array, n: number): Float64Array => {
    if (x.length === n) return x;
    if (x.length * perExample !== n) throw new Error(`operand lengths differ: ${x.length} vs ${n}`);
    const out = new Float64Array(n);
    for (let b = 0; b < x.length; b++) out.fill(x[b]!, b * perExample, (b + 1) * perExample);
    return out;
  };
  // Every op has its own loop over plain Float64Arrays, so that V8 compiles each to straight-line code
  // (one shared loop calling the op as a function runs ~4x slower). A scalar is read with stride 0.
  const size = (...xs: Values[]): number => Math.max(1, ...xs.map((x) => (typeof x === 'number' ? 1 : x.length)));
  const arg = (x: Values, n: number): [Float64Array, number] => (typeof x === 'number' ? [Float64Array.of(x), 0] : [stretch(x, n), 1]);
  const result = (out: Float64Array, ...xs: Values[]): Values => (xs.some((x) => typeof x !== 'number') ? out : out[0]!);
  return {
    add: (a, b) => {
      const n = size(a, b), [x, sx] = arg(a, n), [y, sy] = arg(b, n), out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = x[i * sx]! + y[i * sy]!;
      return result(out, a, b);
    },
    sub: (a, b) => {
      const n = size(a, b), [x, sx] = arg(a, n), [y, sy] = arg(b, n), out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = x[i * sx]! - y[i * sy]!;
      return result(out, a, b);
    },
    mul: (a, b) => {
      const n = size(a, b), [x, sx] = arg(a, n), [y, sy] = arg(b, n), out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = x[i * sx]! * y[i * sy]!;
      return result(out, a, b);
    },
    maximum: (a, c) => {
      const n = size(a), [x, sx] = arg(a, n), out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = Math.max(x[i * sx]!, c);
      return result(out, a);
    },
    square: (a) => {
      const n = size(a), [x, sx] = arg(a, n), out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = x[i * sx]! * x[i * sx]!;
      return result(out, a);
    },
    exp: (a) => {
      const n = size(a), [x, sx] = arg(a, n), out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = Math.exp(x[i * sx]!);
      return result(out, a);
    },
    log: (a) => {
      const n = size(a), [x, sx] = arg(a, n), out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = Math.log(x[i * sx]!);
      return result(out, a);
    },
    tanh: (a) => {
      const n = size(a), [x, sx] = arg(a, n), out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i * sx]!);
      return result(out, a);
    },
    less: (a, c) => {
      const n = size(a), [x, sx] = arg(a, n), out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = x[i * sx]! < c ? 1 : 0;
      return result(out, a);
    },
    greater: (a, c) => {
      const n = size(a), [x, sx] = arg(a, n), out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = x[i * sx]! > c ? 1 : 0;
      return result(out, a);
    },
    where: (cond, a, b) => {
      const n = size(cond, a, b), [c, sc] = arg(cond, n), [x, sx] = arg(a, n), [y, sy] = arg(b, n), out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = c[i * sc] ? x[i * sx]! : y[i * sy]!;
      return result(out, cond, a, b);
    },
    meanFlat: (x) => {
      if (typeof x === 'number') return x;
      const B = examplesOf(x.length, perExample);
      const out = new Float64Array(B);
      for (let b = 0; b < B; b++) {
        let s = 0;
        for (let j = b * perExample; j < (b + 1) * perExample; j++) s += x[j]!;
        out[b] = s / perExample;
      }
      return out;
    },
    take: (table, t) => (typeof t === 'number' ? table[t]! : t.map((i) => table[i]!)),
  };
}

/** A numeric operand of the API below: a number broadcasts. */
type Operand = ArrayLike<number> | number;


/** The operands as float64 values, at least one of them an array (so every result is one). */
function operands(...xs: Operand[]): Values[] {
  if (xs.every((x) => typeof x === 'number')) throw new Error('at least one operand must be an array');
  return xs.map(values);
}

const elementwise = float64Ops();

/**
 * KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats ({@link F.normalKl}):
 * ½(−1 + logvar2 − logvar1 + e^{logvar1−logvar2} + (mean1 − mean2)² e^{−logvar2}).
 * Any argument may be a number (broadcast); arrays must have equal length.
 */
export function normalKl(mean1: Operand, logvar1: Operand, mean2: Operand, logvar2: Operand): Float64Array {
  const [m1, lv1, m2, lv2] = operands(mean1, logvar1, mean2, logvar2);
  const o = elementwise;
  return F.normalKl(o, o.sub(m1!, m2!), lv1!, lv2!) as Float64Array;
}

/**
 * A fast approximation of the standard normal CDF (improved-diffusion / Ho et al.):
 * Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715 x³))). Absolute error below 2e-4.
 */
export function approxStandardNormalCdf(x: number): number {
  return F.approxStandardNormalCdf(elementwise, x) as number;
}

/**
 * Log-likelihood (nats) of 8-bit data scaled to [−1, 1] under a Gaussian discretised to the 256
 * bins (Ho et al. §3.3, the decoder L_0), elementwise ({@link F.discretizedGaussianLogLikelihood}):
 * the bins are [x − 1/255, x + 1/255], the outermost extended to ±∞; probabilities are clamped at
 * 1e-12 before the log.
 * @param x data on the 8-bit grid in [−1, 1]
 * @param means Gaussian means, same length as x
 * @param logScales log σ (not log σ²), same length or a number
 */
export function discretizedGaussianLogLikelihood(x: ArrayLike<number>, means: ArrayLike<number>, logScales: Operand): Float64Array {
  const [xs, ms, ls] = operands(x, means, logScales);
  return F.discretizedGaussianLogLikelihood(elementwise, xs!, ms!, ls!) as Float64Array;
}

/**
 * Mean over all non-batch dimensions: `x` holds B equal-sized examples back to back.
 * @returns one float64 value per example
 */
export function meanFlat(x: ArrayLike<number>, batchSize: number): Float64Array {
  return float64Ops(perExampleOf(x.length, batchSize)).meanFlat(toFloat64(x)) as Float64Array;
}

/**
 * Per-example mean squared error over the non-batch dimensions ({@link F.meanSquaredError}): the
 * L_simple of Ho et al. eq. (14) when `pred` is ε_θ and `target` is ε (or x_0, or v).
 */
export function meanSquaredError(pred: ArrayLike<number>, target: ArrayLike<number>, batchSize: number): Float64Array {
  const [p, t] = operands(pred, target);
  return F.meanSquaredError(float64Ops(perExampleOf(pred.length, batchSize)), p!, t!) as Float64Array;
}

/**
 * Min-SNR-γ loss weights (Hang et al. 2023) per example, for an MSE on the given target:
 * ε: min(SNR, γ)/SNR; x_0: min(SNR, γ); v: min(SNR, γ)/(SNR + 1). These all weight the implied x_0
 * error by min(SNR, γ). Where SNR = 0 (a zero-terminal-SNR last step) the ε weight is taken as its
 * limit 1, as diffusers' training scripts do. The training graph looks these up per timestep.
 * @param snr SNR_t = ᾱ_t/(1 − ᾱ_t) per example (or per timestep, for a table)
 * @param gamma the clamp γ (5 in the paper)
 */
export function minSnrWeights(snr: ArrayLike<number>, gamma: number, meanType: MeanType): Float64Array {
  if (!(gamma > 0)) throw new Error(`minSnrWeights: gamma must be positive, got ${gamma}`);
  const out = new Float64Array(snr.length);
  for (let i = 0; i < snr.length; i++) {
    const s = snr[i]!;
    const clipped = Math.min(s, gamma);
    switch (meanType) {
      case 'epsilon':
        out[i] = s === 0 ? 1 : clipped / s;
        break;
      case 'x0':
        out[i] = clipped;
        break;
      case 'v':
        out[i] = clipped / (s + 1);
        break;
    }
  }
  return out;
}

/**
 * L_hybrid = L_simple + λ·T·L_t per example ({@link F.hybridLoss}, Nichol & Dhariwal eq. 16).
 * @param mse L_simple per example
 * @param vbBpd the VLB term L_t per example, in bits/dim ({@link GaussianDiffusion.vbTermsBpd})
 * @param numTimesteps T
 */
export function hybridLoss(mse: ArrayLike<number>, vbBpd: ArrayLike<number>, numTimesteps: number, lambda = F.HYBRID_LAMBDA): Float64Array {
  const [m, vb] = operands(mse, vbBpd);
  return F.hybridLoss(elementwise, m!, vb!, numTimesteps, lambda) as Float64Array;
}
