/**
 * Train a LeNet classifier (src/models/classifier.ts) with our own engine and write its directory
 * (weights, config with the measured test accuracy, test-set feature statistics):
 *
 *   npm run train:classifier -- [--epochs 4] [--threads 1] [--out dir]          MNIST -> models/lenet-mnist
 *   npm run train:shapes-classifier -- [--epochs 20] [--threads 1] [--out dir]  shapes -> models/shapes-classifier
 *
 * (the second is `--data shapes`). The shapes are drawn by src/data/shapes.ts at 32x32: --train-n (10,000) images
 * of seed 1 to train on, a third of them under faint Gaussian noise (σ ≤ 0.1), and --test-n (10,000) of seed 2 to
 * test on, so neither overlaps `npm run make:shapes`'s default seed 0. A sixth class, 'none', learns what is not
 * one clean shape (noise, smooth colour fields, shapes under heavy noise, two shapes blended: renderNotShapes), 0.4
 * x --train-n of them, so that noise is not confidently called a shape.
 *
 * Recipe: cross-entropy (log-softmax), AdamW (lr 1e-3, weight decay 1e-4) with a cosine decay to 0,
 * batch 128, random shifts of up to ±2 pixels as augmentation for digits (none for shapes, whose
 * positions are random already); deterministic for a given seed and thread count. All randomness
 * derives from the seed: fold(0) init, fold(1) data order, fold(2) shifts.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { BatchLoader, uint8Dataset, type Dataset } from '../data/loader.ts';
import { loadMnist, mnistDataset, mnistImages } from '../data/mnist.ts';
import { MIN_VISIBLE_RGB_DISTANCE, NOT_SHAPE_KINDS, SHAPE_KINDS, renderNotShapes, renderShapes } from '../data/shapes.ts';
import { adamw } from '../engine/optim.ts';
import type { ParamValue } from '../engine/tree.ts';
import type { OrtModule, RuntimeOptions } from '../engine/runtime.ts';
import { cast, less, logSoftmax, max, mean, mul, neg, sub, sum, type Tensor } from '../engine/tensor.ts';
import { TrainStep } from '../engine/train_step.ts';
import { LENET_MNIST, LENET_SHAPES, LeNet, initLeNet, lenet, type LeNetConfig } from '../models/classifier.ts';
import { Rng } from '../rng.ts';
import { DEFAULT_CLASSIFIER_DIR, DEFAULT_SHAPES_CLASSIFIER_DIR, saveClassifierDir } from './classifier-dir.ts';
import { accuracy, classify, featureStats, frechetDistance } from './fid.ts';

export interface ClassifierTrainOptions {
  epochs: number;
  batchSize: number;
  lr: number;
  weightDecay: number;
  /** max |shift| in pixels of the random translation (0 = no augmentation) */
  shift: number;
  seed: number;
  onLog?: (l: { step: number; steps: number; epoch: number; loss: number; trainAcc: number; imgPerSec: number }) => void;
}

export const DEFAULT_CLASSIFIER_TRAINING: ClassifierTrainOptions = { epochs: 4, batchSize: 128, lr: 1e-3, weightDecay: 1e-4, shift: 2, seed: 0 };

/**
 * Translate each image (C, S, S) of a batch of n by (dy, dx) ∈ [−shift, shift]², filling with background (−1,
 * MNIST's black).
 */
export function randomShift(x: Float32Array, n: number, shift: number, rng: Rng, channels = 1, size = 28): Float32Array {
  if (shift === 0) return x;
  const S = size;
  const out = new Float32Array(x.length).fill(-1);
  for (let i = 0; i < n; i++) {
    const dy = rng.integer(2 * shift + 1) - shift;
    const dx = rng.integer(2 * shift + 1) - shift;
    for (let c = 0; c < channels; c++) {
      const o = (i * channels + c) * S * S;
      for (let y = Math.max(0, dy); y < Math.min(S, S + dy); y++) {
        for (let xx = Math.max(0, dx); xx < Math.min(S, S + dx); xx++) out[o + y * S + xx] = x[o + (y - dy) * S + (xx - dx)]!;
      }
    }
  }
  return out;
}

/** Cross-entropy training of a fresh LeNet on a labelled dataset (the 60k MNIST training images by default). */
export async function trainClassifier(
  ort: OrtModule,
  cfg: LeNetConfig,
  opts: ClassifierTrainOptions,
  runtime: RuntimeOptions = {},
  data: Dataset = mnistDataset('train'),
): Promise<Record<string, ParamValue>> {
  const { batchSize: B, epochs } = opts;
  const rng = new Rng(opts.seed);
  const K = cfg.numClasses;
  const [C, S] = [cfg.inChannels, cfg.imageSize];
  if (data.channels !== C || data.height !== S || data.width !== S || !data.labels) {
    throw new Error(`trainClassifier: the data must be labelled ${C}x${S}x${S} images, got ${data.channels}x${data.height}x${data.width}${data.labels ? '' : ' without labels'}`);
  }
  const step = await TrainStep.create(
    ort,
    {
      params: initLeNet(cfg, rng.fold(0)),
      inputs: { x: { shape: [B, C, S, S] }, y: { shape: [B, K] } },
      loss: (p, inp: Record<string, Tensor>) => {
        const { logits } = lenet(cfg, p as unknown as Record<string, Tensor>, inp.x!);
        const y = inp.y!; // one-hot (B, K)
        const loss = neg(mean(sum(mul(y, logSoftmax(logits)), 1))); // mean −log p(label)
        // correct when the label's logit is the max (ties count as correct; they do not occur in practice)
        const wrong = cast(less(sum(mul(y, logits), 1), max(logits, 1)), 'float32');
        return { loss, aux: { acc: sub(1, mean(wrong)) } };
      },
      optimizer: adamw({ weightDecay: opts.weightDecay }),
    },
    runtime,
  );
  const loader = new BatchLoader(data, { batchSize: B, shuffle: true, rng: rng.fold(1) });
  const steps = epochs * loader.batchesPerEpoch;
  const y = new Float32Array(B * K);
  let window = { loss: 0, acc: 0, n: 0, t0: performance.now() };
  for (let s = 0; s < steps; s++) {
    const batch = loader.next();
    const x = randomShift(batch.x, B, opts.shift, rng.fold(2).fold(s), C, S);
    y.fill(0);
    for (let i = 0; i < B; i++) y[i * K + batch.labels![i]!] = 1;
    const lr = opts.lr * 0.5 * (1 + Math.cos((Math.PI * s) / steps)); // cosine decay to 0
    const r = await step.step({ x, y }, lr);
    window.loss += r.loss;
    window.acc += r.aux.acc!;
    window.n++;
    if ((s + 1) % 100 === 0 || s + 1 === steps) {
      const sec = (performance.now() - window.t0) / 1000;
      opts.onLog?.({ step: s + 1, steps, epoch: batch.epoch, loss: window.loss / window.n, trainAcc: window.acc / window.n, imgPerSec: (window.n * B) / sec });
      window = { loss: 0, acc: 0, n: 0, t0: performance.now() };
    }
  }
  const params = Object.fromEntries(step.paramsByPath());
  await step.release();
  return params;
}

/** What a classifier is trained and tested on. */
interface ClassifierTask {
  cfg: LeNetConfig;
  out: string;
  epochs: number;
  shift: number;
  train: Dataset;
  test: { images: Float32Array; labels: Uint8Array; n: number; name: string };
  /** images the classifier must put in its last class (shapes only) */
  reject?: Float32Array;
  /** more labelled test sets, each reported as `<name>Accuracy` */
  extraTests?: { images: Float32Array; labels: Uint8Array; n: number; name: string }[];
  info: Record<string, unknown>;
  meta: { kind: string; split: string };
}

const unit = (u8: Uint8Array) => Float32Array.from(u8, (v) => v / 127.5 - 1);
const concatU8 = (a: Uint8Array, b: Uint8Array) => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
};

function classifierTask(data: string, trainN: number, testN: number): ClassifierTask {
  if (data === 'mnist') {
    const test = loadMnist('test');
    return {
      cfg: LENET_MNIST, out: DEFAULT_CLASSIFIER_DIR, epochs: DEFAULT_CLASSIFIER_TRAINING.epochs, shift: DEFAULT_CLASSIFIER_TRAINING.shift,
      train: mnistDataset('train'),
      test: { images: mnistImages('test', 0, test.n), labels: test.labels, n: test.n, name: 'test' },
      info: { inputScaling: 'x / 127.5 - 1 (MNIST uint8 -> [-1, 1], as the diffusion models)' },
      meta: { kind: 'lenet-mnist', split: 'mnist-test' },
    };
  }
  if (data === 'shapes') {
    const cfg = LENET_SHAPES;
    const S = cfg.imageSize;
    const per = 3 * S * S;
    // half the shapes in the data's colours, half in any visible colour pair (shapes.ts ShapeColours): the data's
    // luma-contrast rule alone taught the first classifier that a clean shape of low luma contrast is 'none'
    const half = 5 * Math.floor(trainN / 10);
    const train = renderShapes(1, 0, half, S);
    const visible = renderShapes(1, half, trainN - half, S, 'visible');
    train.images = concatU8(train.images, visible.images);
    train.labels = concatU8(train.labels, visible.labels);
    // faint noise on every third shape: a sample a little off the 8-bit grid of a clean render is still a shape
    const rng = new Rng(1).fold(1);
    for (let i = 0; i < trainN; i += 3) {
      const sigma = 12.75 * rng.uniform(); // ≤ 0.1 in [−1, 1] units
      for (let p = i * per; p < (i + 1) * per; p++) train.images[p] = Math.max(0, Math.min(255, Math.round(train.images[p]! + sigma * rng.normal())));
    }
    const nNone = Math.round(0.4 * trainN);
    const images = new Uint8Array((trainN + nNone) * per);
    images.set(train.images);
    images.set(renderNotShapes(1, 0, nNone, S), trainN * per);
    const labels = new Uint8Array(trainN + nNone).fill(SHAPE_KINDS.length);
    labels.set(train.labels);
    const test = renderShapes(2, 0, testN, S);
    const testVisible = renderShapes(2, 0, testN, S, 'visible');
    return {
      cfg, out: DEFAULT_SHAPES_CLASSIFIER_DIR, epochs: 20, shift: 0, // 14,000 images an epoch: 20 reach 99.9% on test shapes
      train: uint8Dataset(images, { n: trainN + nNone, channels: 3, height: S, width: S }, labels),
      test: { images: unit(test.images), labels: test.labels, n: testN, name: 'test' },
      reject: unit(renderNotShapes(2, 0, Math.round(0.2 * testN), S)),
      extraTests: [{ images: unit(testVisible.images), labels: testVisible.labels, n: testN, name: 'visibleTest' }],
      info: {
        classes: [...SHAPE_KINDS, 'none'],
        inputScaling: 'x / 127.5 - 1 (RGB uint8 -> [-1, 1], as the diffusion models)',
        data:
          `src/data/shapes.ts at ${S}x${S}: train images 0..${half - 1} of seed 1 in the data's colours and ${half}..${trainN - 1} ` +
          `in any visible colours (RGB distance ≥ ${MIN_VISIBLE_RGB_DISTANCE}; every third image under Gaussian noise of σ ≤ 0.1) ` +
          `and not-shapes 0..${nNone - 1} of seed 1 as class 'none' (${NOT_SHAPE_KINDS.join(', ')}); test images 0..${testN - 1} of seed 2 ` +
          `in the data's colours (testAccuracy) and in visible colours (visibleTestAccuracy)`,
      },
      meta: { kind: 'lenet-shapes', split: `shapes-seed2-${testN}` },
    };
  }
  throw new Error(`--data must be mnist or shapes, got '${data}'`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      data: { type: 'string', default: 'mnist' },
      epochs: { type: 'string' },
      'batch-size': { type: 'string' },
      lr: { type: 'string' },
      shift: { type: 'string' },
      seed: { type: 'string' },
      threads: { type: 'string' },
      out: { type: 'string' },
      'train-n': { type: 'string' },
      'test-n': { type: 'string' },
    },
  });
  const num = (v: string | undefined, dflt: number, name: string) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got '${v}'`);
    return n;
  };
  const task = classifierTask(values.data!, num(values['train-n'], 10000, 'train-n'), num(values['test-n'], 10000, 'test-n'));
  const d = DEFAULT_CLASSIFIER_TRAINING;
  const opts: ClassifierTrainOptions = {
    ...d,
    epochs: num(values.epochs, task.epochs, 'epochs'),
    batchSize: num(values['batch-size'], d.batchSize, 'batch-size'),
    lr: num(values.lr, d.lr, 'lr'),
    shift: num(values.shift, task.shift, 'shift'),
    seed: num(values.seed, d.seed, 'seed'),
  };
  const threads = num(values.threads, os.availableParallelism(), 'threads');
  const out = values.out ?? task.out;
  const ort = (await import('onnxruntime-node')) as unknown as OrtModule;
  const runtime: RuntimeOptions = { threads };
  const { cfg, test } = task;

  // 1. train
  const t0 = performance.now();
  process.stderr.write(`training LeNet on ${values.data} (${task.train.n} images): ${JSON.stringify(opts)}, ${threads} thread(s)\n`);
  const weights = await trainClassifier(ort, cfg, {
    ...opts,
    onLog: (l) =>
      process.stderr.write(
        `step ${l.step}/${l.steps} epoch ${l.epoch}  loss ${l.loss.toFixed(4)}  train acc ${(100 * l.trainAcc).toFixed(2)}%  ${l.imgPerSec.toFixed(0)} img/s\n`,
      ),
  }, runtime, task.train);
  const trainSeconds = (performance.now() - t0) / 1000;

  // 2. test accuracy and test-set feature statistics
  const per = cfg.inChannels * cfg.imageSize * cfg.imageSize;
  const net = await LeNet.create(ort, cfg, weights, runtime);
  const testOut = await classify(net, test.images);
  const testAccuracy = accuracy(testOut.logits, test.labels, cfg.numClasses);
  const testStats = featureStats(testOut.features, testOut.n, cfg.featureDim);
  process.stderr.write(`test accuracy ${(100 * testAccuracy).toFixed(2)}% (${test.n} images), trained in ${trainSeconds.toFixed(0)} s\n`);
  let rejectAccuracy: number | undefined;
  if (task.reject) {
    const none = cfg.numClasses - 1;
    const r = await classify(net, task.reject);
    rejectAccuracy = accuracy(r.logits, new Uint8Array(r.n).fill(none), cfg.numClasses);
    process.stderr.write(`held-out not-shapes (seed 2) put in class 'none': ${(100 * rejectAccuracy).toFixed(2)}% (${r.n} images)\n`);
  }

  const extraAccuracy: Record<string, number> = {};
  for (const t of task.extraTests ?? []) {
    const r = await classify(net, t.images);
    extraAccuracy[`${t.name}Accuracy`] = accuracy(r.logits, t.labels, cfg.numClasses);
    process.stderr.write(`${t.name} accuracy ${(100 * extraAccuracy[`${t.name}Accuracy`]!).toFixed(2)}% (${t.n} images)\n`);
  }

  // 3. reference FIDs of real data: what a perfect generator would score at these sample sizes
  const nRef = Math.min(10000, task.train.n);
  const trainX = new Float32Array(nRef * per);
  task.train.getBatch(Array.from({ length: nRef }, (_, i) => i), trainX);
  const trainRef = await classify(net, trainX);
  const train2k = featureStats(trainRef.features.subarray(0, 2000 * cfg.featureDim), 2000, cfg.featureDim);
  const test2k = featureStats(testOut.features.subarray(0, 2000 * cfg.featureDim), 2000, cfg.featureDim);
  const reference = {
    [`train[0:${nRef}] vs test (${test.n})`]: frechetDistance(featureStats(trainRef.features, nRef, cfg.featureDim), testStats).fid,
    [`train[0:2000] vs test (${test.n})`]: frechetDistance(train2k, testStats).fid,
    'train[0:2000] vs test[0:2000]': frechetDistance(train2k, test2k).fid,
  };
  process.stderr.write(`reference FID-LeNet of real data: ${JSON.stringify(reference)}\n`);
  await net.release();

  if (testAccuracy < 0.99) throw new Error(`test accuracy ${(100 * testAccuracy).toFixed(2)}% is below 99%; not writing ${out}`);
  const args = process.argv.slice(2).join(' ');
  await saveClassifierDir(out, {
    info: {
      model: cfg,
      testAccuracy,
      testImages: test.n,
      ...extraAccuracy,
      ...(rejectAccuracy === undefined ? {} : { rejectAccuracy, rejectImages: task.reject!.length / per }),
      features: `fc1 after ReLU (${cfg.featureDim}-d): the penultimate layer`,
      inputScaling: '',
      ...task.info,
      referenceFid: reference,
      training: {
        command: `npm run train:classifier${args ? ` -- ${args}` : ''}`,
        date: new Date().toISOString(),
        seconds: Math.round(trainSeconds),
        threads,
        machine: `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores`,
        ...opts,
      },
    },
    weights,
    testStats,
  }, task.meta);
  process.stderr.write(`wrote ${out}\n`);
}

if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  await main();
}
