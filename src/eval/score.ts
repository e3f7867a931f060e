/**
 * Scoring a set of MNIST-like images with the shipped classifier: FID-LeNet against the MNIST test statistics
 * (fid.ts), the same FID for real training images at the same n (FID is biased upward at small n, so this is what
 * a perfect generator would score), and the class histogram and confidence. `ddpm eval --fid / --samples` prints
 * and reports this.
 */
import { loadMnist, mnistImages } from '../data/mnist.ts';
import type { OrtModule, RuntimeOptions } from '../engine/runtime.ts';
import { LeNet } from '../models/classifier.ts';
import type { ClassifierDir } from './classifier-dir.ts';
import { argmax, classifierScores, classify, featureStats, frechetDistance, type ClassifierScores, type FrechetDistance } from './fid.ts';

export interface SampleScores {
  /** images scored */
  n: number;
  /** FID-LeNet of the images vs the MNIST test set, with its two terms */
  fid: FrechetDistance;
  /** FID-LeNet of the first `nReal` MNIST training images vs the test set */
  realFid: number;
  nReal: number;
  /** class histogram, coverage, entropy and confidence of the classifier on the images */
  classes: ClassifierScores;
  /**
   * with `labels` (the class each image was generated as, by a class-conditional model): the fraction the
   * classifier assigns to that class, overall and per class (NaN for a class no image asked for)
   */
  classAccuracy?: { overall: number; perClass: number[] };
  /** classifier time, both sets */
  seconds: number;
}

/**
 * Score `images` (n, 1, 28, 28) in [−1, 1] with `classifier` (a LeNet directory) on onnxruntime; with `labels`
 * (one per image, in the classifier's classes), also the class accuracy.
 */
export async function scoreSamples(images: Float32Array, classifier: ClassifierDir, ort: OrtModule, runtime: RuntimeOptions, labels?: ArrayLike<number>): Promise<SampleScores> {
  const t0 = performance.now();
  const net = await LeNet.create(ort, classifier.info.model, classifier.weights, runtime);
  const d = classifier.info.model.featureDim;
  const nReal = Math.min(images.length / 784, loadMnist('train').n);
  let out, real;
  try {
    out = await classify(net, images);
    real = await classify(net, mnistImages('train', 0, nReal));
  } finally {
    await net.release();
  }
  const fid = frechetDistance(featureStats(out.features, out.n, d), classifier.testStats);
  const realFid = frechetDistance(featureStats(real.features, real.n, d), classifier.testStats).fid;
  const K = classifier.info.model.numClasses;
  const classes = classifierScores(out.logits, K);
  const scores: SampleScores = { n: out.n, fid, realFid, nReal, classes, seconds: (performance.now() - t0) / 1000 };
  if (labels) scores.classAccuracy = classAccuracy(argmax(out.logits, K), labels, K);
  return scores;
}

/** How often `predicted` equals the requested `labels`, overall and per requested class (NaN where none was asked). */
export function classAccuracy(predicted: ArrayLike<number>, labels: ArrayLike<number>, numClasses: number): { overall: number; perClass: number[] } {
  if (predicted.length !== labels.length) throw new Error(`classAccuracy: ${predicted.length} predictions for ${labels.length} labels`);
  const hits = new Array<number>(numClasses).fill(0);
  const asked = new Array<number>(numClasses).fill(0);
  let total = 0;
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i]!;
    if (!(Number.isInteger(c) && c >= 0 && c < numClasses)) throw new Error(`classAccuracy: label ${c} is outside [0, ${numClasses})`);
    asked[c]!++;
    if (predicted[i] === c) {
      hits[c]!++;
      total++;
    }
  }
  return { overall: total / labels.length, perClass: hits.map((h, k) => h / asked[k]!) };
}
