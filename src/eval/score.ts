/**
 * Scoring a set of MNIST-like images with the shipped classifier: FID-LeNet against the MNIST test statistics
 * (fid.ts), the same FID for real training images at the same n (FID is biased upward at small n, so this is what
 * a perfect generator would score), and the class histogram and confidence. `ddpm eval --fid / --samples` prints
 * and reports this; scripts/measure-shapes.ts does the same for shapes with models/shapes-classifier.
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

export interface ScoreOptions {
  /** `n` real images (n, C, S, S) in [−1, 1] for the reference FID, from the classifier's training distribution
   *  (default: the first n MNIST training images, at most 60,000) */
  real?: (n: number) => Float32Array;
  /** max softmax probability above which a sample counts as confidently classified (default 0.9) */
  threshold?: number;
  /** a class meaning "none of the others", never counted as confident (the shape classifier's last class) */
  rejectClass?: number;
  /** the class each image was generated as (by a class-conditional model), in the classifier's classes: adds the class accuracy */
  labels?: ArrayLike<number>;
}

/**
 * Score `images` (n, C, S, S) in [−1, 1] with `classifier` (a LeNet directory; MNIST's by default) on onnxruntime;
 * with `opts.labels`, also the class accuracy.
 */
export async function scoreSamples(images: Float32Array, classifier: ClassifierDir, ort: OrtModule, runtime: RuntimeOptions, opts: ScoreOptions = {}): Promise<SampleScores> {
  const t0 = performance.now();
  const { model } = classifier.info;
  const net = await LeNet.create(ort, model, classifier.weights, runtime);
  const d = model.featureDim;
  const n = images.length / (model.inChannels * model.imageSize * model.imageSize);
  const real = opts.real ?? ((k: number) => mnistImages('train', 0, Math.min(k, loadMnist('train').n)));
  let out, realOut;
  try {
    out = await classify(net, images);
    realOut = await classify(net, real(n));
  } finally {
    await net.release();
  }
  const fid = frechetDistance(featureStats(out.features, out.n, d), classifier.testStats);
  const realFid = frechetDistance(featureStats(realOut.features, realOut.n, d), classifier.testStats).fid;
  const classes = classifierScores(out.logits, model.numClasses, { threshold: opts.threshold, rejectClass: opts.rejectClass });
  const scores: SampleScores = { n: out.n, fid, realFid, nReal: realOut.n, classes, seconds: (performance.now() - t0) / 1000 };
  if (opts.labels) scores.classAccuracy = classAccuracy(argmax(out.logits, model.numClasses), opts.labels, model.numClasses);
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
