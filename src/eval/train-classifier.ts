/**
 * Train the FID-LeNet classifier (src/models/classifier.ts) on MNIST with our own engine and write
 * `models/lenet-mnist/` (weights, config with the measured test accuracy, MNIST test-set feature
 * statistics). Run: `npm run train:classifier -- [--epochs 4] [--threads 1] [--out dir]`.
 *
 * Recipe: cross-entropy (log-softmax), AdamW (lr 1e-3, weight decay 1e-4) with a cosine decay to 0,
 * batch 128, random shifts of up to ±2 pixels as augmentation; deterministic for a given seed and
 * thread count. All randomness derives from the seed: fold(0) init, fold(1) data order, fold(2) shifts.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { BatchLoader } from '../data/loader.ts';
import { loadMnist, mnistDataset, mnistImages } from '../data/mnist.ts';
import { adamw } from '../engine/optim.ts';
import type { ParamValue } from '../engine/tree.ts';
import type { OrtModule, RuntimeOptions } from '../engine/runtime.ts';
import { cast, less, logSoftmax, max, mean, mul, neg, sub, sum, type Tensor } from '../engine/tensor.ts';
import { TrainStep } from '../engine/train_step.ts';
import { LENET_MNIST, LeNet, initLeNet, lenet, type LeNetConfig } from '../models/classifier.ts';
import { Rng } from '../rng.ts';
import { DEFAULT_CLASSIFIER_DIR, saveClassifierDir } from './classifier-dir.ts';
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

/** Translate each 28x28 image of a batch by (dy, dx) ∈ [−shift, shift]², filling with background (−1). */
export function randomShift(x: Float32Array, n: number, shift: number, rng: Rng): Float32Array {
  if (shift === 0) return x;
  const out = new Float32Array(x.length).fill(-1);
  for (let i = 0; i < n; i++) {
    const dy = rng.integer(2 * shift + 1) - shift;
    const dx = rng.integer(2 * shift + 1) - shift;
    const o = i * 784;
    for (let y = Math.max(0, dy); y < Math.min(28, 28 + dy); y++) {
      for (let xx = Math.max(0, dx); xx < Math.min(28, 28 + dx); xx++) out[o + y * 28 + xx] = x[o + (y - dy) * 28 + (xx - dx)]!;
    }
  }
  return out;
}

/** Cross-entropy training of a fresh LeNet on the 60k MNIST training images. */
export async function trainClassifier(
  ort: OrtModule,
  cfg: LeNetConfig,
  opts: ClassifierTrainOptions,
  runtime: RuntimeOptions = {},
): Promise<Record<string, ParamValue>> {
  const { batchSize: B, epochs } = opts;
  const rng = new Rng(opts.seed);
  const K = cfg.numClasses;
  const step = await TrainStep.create(
    ort,
    {
      params: initLeNet(cfg, rng.fold(0)),
      inputs: { x: { shape: [B, 1, 28, 28] }, y: { shape: [B, K] } },
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
  const loader = new BatchLoader(mnistDataset('train'), { batchSize: B, shuffle: true, rng: rng.fold(1) });
  const steps = epochs * loader.batchesPerEpoch;
  const y = new Float32Array(B * K);
  let window = { loss: 0, acc: 0, n: 0, t0: performance.now() };
  for (let s = 0; s < steps; s++) {
    const batch = loader.next();
    const x = randomShift(batch.x, B, opts.shift, rng.fold(2).fold(s));
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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      epochs: { type: 'string' },
      'batch-size': { type: 'string' },
      lr: { type: 'string' },
      shift: { type: 'string' },
      seed: { type: 'string' },
      threads: { type: 'string' },
      out: { type: 'string' },
    },
  });
  const num = (v: string | undefined, dflt: number, name: string) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got '${v}'`);
    return n;
  };
  const d = DEFAULT_CLASSIFIER_TRAINING;
  const opts: ClassifierTrainOptions = {
    ...d,
    epochs: num(values.epochs, d.epochs, 'epochs'),
    batchSize: num(values['batch-size'], d.batchSize, 'batch-size'),
    lr: num(values.lr, d.lr, 'lr'),
    shift: num(values.shift, d.shift, 'shift'),
    seed: num(values.seed, d.seed, 'seed'),
  };
  const threads = num(values.threads, os.availableParallelism(), 'threads');
  const out = values.out ?? DEFAULT_CLASSIFIER_DIR;
  const ort = (await import('onnxruntime-node')) as unknown as OrtModule;
  const runtime: RuntimeOptions = { threads };
  const cfg = LENET_MNIST;

  // 1. train
  const t0 = performance.now();
  process.stderr.write(`training LeNet on MNIST: ${JSON.stringify(opts)}, ${threads} thread(s)\n`);
  const weights = await trainClassifier(ort, cfg, {
    ...opts,
    onLog: (l) =>
      process.stderr.write(
        `step ${l.step}/${l.steps} epoch ${l.epoch}  loss ${l.loss.toFixed(4)}  train acc ${(100 * l.trainAcc).toFixed(2)}%  ${l.imgPerSec.toFixed(0)} img/s\n`,
      ),
  }, runtime);
  const trainSeconds = (performance.now() - t0) / 1000;

  // 2. test accuracy and test-set feature statistics
  const net = await LeNet.create(ort, cfg, weights, runtime);
  const test = loadMnist('test');
  const testOut = await classify(net, mnistImages('test', 0, test.n));
  const testAccuracy = accuracy(testOut.logits, test.labels, cfg.numClasses);
  const testStats = featureStats(testOut.features, testOut.n, cfg.featureDim);
  process.stderr.write(`test accuracy ${(100 * testAccuracy).toFixed(2)}% (${test.n} images), trained in ${trainSeconds.toFixed(0)} s\n`);

  // 3. reference FIDs of real data: what a perfect generator would score at these sample sizes
  const train10k = await classify(net, mnistImages('train', 0, 10000));
  const train2k = featureStats(train10k.features.subarray(0, 2000 * cfg.featureDim), 2000, cfg.featureDim);
  const test2k = featureStats(testOut.features.subarray(0, 2000 * cfg.featureDim), 2000, cfg.featureDim);
  const reference = {
    'train[0:10000] vs test (10000)': frechetDistance(featureStats(train10k.features, 10000, cfg.featureDim), testStats).fid,
    'train[0:2000] vs test (10000)': frechetDistance(train2k, testStats).fid,
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
      features: `fc1 after ReLU (${cfg.featureDim}-d): the penultimate layer`,
      inputScaling: 'x / 127.5 - 1 (MNIST uint8 -> [-1, 1], as the diffusion models)',
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
  });
  process.stderr.write(`wrote ${out}\n`);
}

if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  await main();
}
