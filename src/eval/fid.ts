/**
 * Sample quality with a small MNIST classifier: "FID-LeNet" and class statistics.
 *
 * FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
 * Equilibrium", eq. 6) is the Fréchet distance between Gaussians fitted to the features of real and
 * generated images:
 *   d² = |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}).
 * Here the features are the 128-d penultimate activations of the LeNet in src/models/classifier.ts
 * instead of Inception's 2048-d pool3, so the numbers are comparable only with other FID-LeNet numbers
 * from the same shipped classifier, never with Inception FIDs.
 *
 * (Σ₁Σ₂)^{1/2} is not symmetric, but tr((Σ₁Σ₂)^{1/2}) = tr((√Σ₁ Σ₂ √Σ₁)^{1/2}) (the two matrices are
 * similar: Σ₁Σ₂ = √Σ₁ (√Σ₁ Σ₂ √Σ₁) √Σ₁⁻¹ for invertible Σ₁, and by continuity otherwise), and
 * √Σ₁ Σ₂ √Σ₁ is symmetric PSD, so both square roots come from symmetric eigendecompositions in
 * float64: no complex parts to drop and no ε·I to add for singular covariances, unlike scipy's sqrtm
 * in pytorch-fid.
 *
 * No node:* imports; the classifier is passed in.
 */
import { unitToUint8 } from '../io/grid.ts';
import type { LeNet } from '../models/classifier.ts';
import { matmulSquare, sqrtPsd, symmetricEigen, trace } from './linalg.ts';

/** A Gaussian fitted to n feature vectors: mean μ (d) and unbiased covariance Σ (d x d, row-major). */
export interface GaussianStats {
  mu: Float64Array;
  sigma: Float64Array;
  /** number of feature vectors the statistics come from */
  n: number;
}

/**
 * Mean and covariance (divisor n − 1, as numpy's `np.cov` used by pytorch-fid) of n feature vectors
 * of dimension d, row-major, accumulated in float64 (two passes: mean, then centred products).
 */
export function featureStats(features: ArrayLike<number>, n: number, d: number): GaussianStats {
  if (!Number.isInteger(n) || !Number.isInteger(d) || d < 1 || features.length !== n * d) {
    throw new Error(`featureStats: ${features.length} values are not ${n} vectors of dimension ${d}`);
  }
  if (n < 2) throw new Error(`featureStats: a covariance needs at least 2 feature vectors, got ${n}`);
  const mu = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mu[j] += features[i * d + j]!;
  for (let j = 0; j < d; j++) mu[j] /= n;
  const sigma = new Float64Array(d * d);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) row[j] = features[i * d + j]! - mu[j]!;
    for (let j = 0; j < d; j++) {
      const rj = row[j]!;
      if (rj === 0) continue; // ReLU features are sparse
      for (let k = j; k < d; k++) sigma[j * d + k] += rj * row[k]!;
    }
  }
  for (let j = 0; j < d; j++) {
    for (let k = j; k < d; k++) {
      const v = sigma[j * d + k]! / (n - 1);
      sigma[j * d + k] = v;
      sigma[k * d + j] = v;
    }
  }
  return { mu, sigma, n };
}

export interface FrechetDistance {
  /** d² = meanTerm + covTerm (clamped at 0 against rounding) */
  fid: number;
  /** |μ₁ − μ₂|² */
  meanTerm: number;
  /** tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}) */
  covTerm: number;
}

/** The squared Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂) (Heusel et al. 2017, eq. 6). */
export function frechetDistance(a: GaussianStats, b: GaussianStats): FrechetDistance {
  const d = a.mu.length;
  if (b.mu.length !== d || a.sigma.length !== d * d || b.sigma.length !== d * d) {
    throw new Error(`frechetDistance: dimensions differ (μ ${a.mu.length} vs ${b.mu.length}, Σ ${a.sigma.length} vs ${b.sigma.length})`);
  }
  let meanTerm = 0;
  for (let i = 0; i < d; i++) meanTerm += (a.mu[i]! - b.mu[i]!) ** 2;
  // 1. √Σ₁ from the eigendecomposition of Σ₁
  const s1Half = sqrtPsd(a.sigma, d);
  // 2. M = √Σ₁ Σ₂ √Σ₁ (symmetric PSD; symmetrise away the rounding), tr √M = Σ √λ_i(M)
  const m = matmulSquare(matmulSquare(s1Half, b.sigma, d), s1Half, d);
  for (let i = 0; i < d; i++) {
    for (let j = i + 1; j < d; j++) {
      const v = 0.5 * (m[i * d + j]! + m[j * d + i]!);
      m[i * d + j] = v;
      m[j * d + i] = v;
    }
  }
  let trSqrt = 0;
  for (const l of symmetricEigen(m, d).values) trSqrt += Math.sqrt(Math.max(l, 0));
  const covTerm = trace(a.sigma, d) + trace(b.sigma, d) - 2 * trSqrt;
  return { fid: Math.max(0, meanTerm + covTerm), meanTerm, covTerm };
}

/**
 * Run the classifier over images (N, C, S, S) in [-1, 1] (its config's C and S), in batches.
 * @returns features (N, featureDim) and logits (N, numClasses)
 */
export async function classify(
  net: LeNet,
  images: Float32Array,
  opts: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<{ features: Float32Array; logits: Float32Array; n: number }> {
  const per = net.cfg.inChannels * net.cfg.imageSize * net.cfg.imageSize;
  if (images.length % per !== 0 || images.length === 0) {
    throw new Error(`classify: ${images.length} values are not a batch of ${net.cfg.inChannels}x${net.cfg.imageSize}x${net.cfg.imageSize} images`);
  }
  const n = images.length / per;
  const bs = opts.batchSize ?? 500;
  const features = new Float32Array(n * net.cfg.featureDim);
  const logits = new Float32Array(n * net.cfg.numClasses);
  for (let i = 0; i < n; i += bs) {
    const b = Math.min(bs, n - i);
    const out = await net.run(images.subarray(i * per, (i + b) * per));
    features.set(out.features, i * net.cfg.featureDim);
    logits.set(out.logits, i * net.cfg.numClasses);
    opts.onProgress?.(i + b, n);
  }
  return { features, logits, n };
}

/**
 * Samples in [-1, 1] rounded to the 8-bit grid exactly as a saved PNG holds them (torchvision
 * save_image rounding, then x/127.5 − 1 as MNIST): scoring generated samples this way gives the same
 * numbers as saving them and scoring the files.
 */
export function quantizeLikePng(x: Float32Array): Float32Array {
  return x.map((v) => unitToUint8(v) / 127.5 - 1);
}

/** Index of the largest logit per row. */
export function argmax(logits: ArrayLike<number>, numClasses: number): Int32Array {
  const n = logits.length / numClasses;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let k = 1; k < numClasses; k++) if (logits[i * numClasses + k]! > logits[i * numClasses + best]!) best = k;
    out[i] = best;
  }
  return out;
}

/** Fraction of rows whose argmax equals the label. */
export function accuracy(logits: ArrayLike<number>, labels: ArrayLike<number>, numClasses: number): number {
  const pred = argmax(logits, numClasses);
  if (pred.length !== labels.length) throw new Error(`accuracy: ${pred.length} predictions for ${labels.length} labels`);
  let ok = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === labels[i]) ok++;
  return ok / pred.length;
}

/** What the classifier says about a set of samples. */
export interface ClassifierScores {
  n: number;
  /** samples per predicted class (argmax) */
  counts: number[];
  /** classes predicted for at least 1% of the samples (mode coverage; 10 = every digit appears) */
  classesCovered: number;
  /** entropy of the predicted-class histogram in bits (log2(10) ≈ 3.32 when uniform) */
  entropyBits: number;
  /** mean over samples of the max softmax probability */
  meanConfidence: number;
  /** fraction of samples with max softmax probability > `threshold` (0.9: "well-formed digits"), the reject class's excepted */
  confidentFraction: number;
}

/** The confidence above which a sample counts as a well-formed member of its class. */
export const CONFIDENT_THRESHOLD = 0.9;

/**
 * Class histogram, coverage, entropy and confidence from logits (n, numClasses). `rejectClass`: a class meaning
 * "none of the others" (the shape classifier's 'none'); samples it wins are never counted as confident.
 */
export function classifierScores(
  logits: ArrayLike<number>,
  numClasses: number,
  opts: { threshold?: number; rejectClass?: number } = {},
): ClassifierScores {
  const threshold = opts.threshold ?? CONFIDENT_THRESHOLD;
  const n = logits.length / numClasses;
  if (!Number.isInteger(n) || n < 1) throw new Error(`classifierScores: ${logits.length} logits are not rows of ${numClasses}`);
  const counts = new Array<number>(numClasses).fill(0);
  let confSum = 0;
  let confident = 0;
  for (let i = 0; i < n; i++) {
    // softmax max = 1 / Σ_k exp(l_k − l_max)
    let best = 0;
    for (let k = 1; k < numClasses; k++) if (logits[i * numClasses + k]! > logits[i * numClasses + best]!) best = k;
    const lmax = logits[i * numClasses + best]!;
    let z = 0;
    for (let k = 0; k < numClasses; k++) z += Math.exp(logits[i * numClasses + k]! - lmax);
    const conf = 1 / z;
    counts[best]!++;
    confSum += conf;
    if (conf > threshold && best !== opts.rejectClass) confident++;
  }
  let entropyBits = 0;
  for (const c of counts) if (c > 0) entropyBits -= (c / n) * Math.log2(c / n);
  return {
    n,
    counts,
    classesCovered: counts.filter((c) => c >= 0.01 * n).length,
    entropyBits,
    meanConfidence: confSum / n,
    confidentFraction: confident / n,
  };
}
