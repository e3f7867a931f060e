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
import { classifierScores, classify, featureStats, frechetDistance, type ClassifierScores, type FrechetDistance } from './fid.ts';

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
  /** classifier time, both sets */
  seconds: number;
}

/** Score `images` (n, 1, 28, 28) in [−1, 1] with `classifier` (a LeNet directory) on onnxruntime. */
export async function scoreSamples(images: Float32Array, classifier: ClassifierDir, ort: OrtModule, runtime: RuntimeOptions): Promise<SampleScores> {
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
  const classes = classifierScores(out.logits, classifier.info.model.numClasses);
  return { n: out.n, fid, realFid, nReal, classes, seconds: (performance.now() - t0) / 1000 };
}
