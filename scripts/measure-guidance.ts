/**
 * Classifier-free guidance on a class-conditional MNIST model (issue 15), scored by the shipped LeNet
 * (models/lenet-mnist): for each guidance scale s, --n DDIM samples (default 2,000 with 50 steps, η = 0), image i of
 * class i mod 10 (200 per class) drawn from Rng(seed).fold(i) as `ddpm sample` draws it, scored as saved 8-bit PNGs:
 *
 *   classAccuracy   the fraction LeNet assigns to the class the image was generated as (overall and per class)
 *   fidLenet        FID-LeNet against the MNIST test set (comparable only at the same n: the shipped unconditional
 *                   models/mnist-28 scores 18.37 at n = 2,000, DDIM-50, seed 0; docs/eval-shipped-fid.json)
 *   confidence      LeNet's mean max-softmax, and the fraction of samples above 0.9
 *
 * s = 0 is the model's unconditional prediction (label "no class"; its accuracy against the assigned classes is
 * chance, ~10%), s = 1 the conditional one. Prints progress on stderr and one JSON object on stdout, writes
 * <out-dir>/<name>.json and <out-dir>/<name>.png: one row per class, for each s (left to right) --show samples of
 * that class, the scales separated by a white column.
 *
 *   node --import tsx scripts/measure-guidance.ts [--checkpoint models/mnist-28-cond] [--n 2000] [--scales 0,1,2,4]
 *       [--steps 50] [--batch-size 250] [--threads 2] [--seed 0] [--show 6] [--out-dir docs] [--name guidance-mnist-28-cond]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { loadClassifierDir } from '../src/eval/classifier-dir.ts';
import { quantizeLikePng } from '../src/eval/fid.ts';
import { scoreSamples } from '../src/eval/score.ts';
import { encodePng, makeGrid } from '../src/io/image.ts';
import { nodeRuntime, ort } from '../src/node/ort.ts';
import { loadModel } from '../src/pipeline/load.ts';
import { DDPMPipeline } from '../src/pipeline/node.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PER = 784;

export interface MeasureGuidanceOptions {
  /** a class-conditional 1x28x28 model with the classes 0..9 (checkpoint/model directory or .onnx) */
  checkpoint: string;
  n: number;
  scales: number[];
  steps: number;
  batchSize: number;
  seed: number;
  threads?: number;
  /** samples per class and scale in the grid */
  show: number;
  outDir: string;
  name: string;
  log?: (line: string) => void;
}

const round = (x: number, d = 5) => (Number.isFinite(x) ? Number(x.toPrecision(d)) : null);

/** Measure every scale; returns the report written to <outDir>/<name>.json (the grid goes to <name>.png). */
export async function measureGuidance(o: MeasureGuidanceOptions): Promise<Record<string, unknown>> {
  const log = o.log ?? ((s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`));
  const runtime = nodeRuntime({ threads: o.threads });
  const model = await loadModel(o.checkpoint);
  const K = model.unet.numClasses;
  const digits = Array.from({ length: 10 }, (_, i) => String(i));
  const names = model.classNames ?? Array.from({ length: K }, (_, i) => String(i));
  if (K !== 10 || JSON.stringify(names) !== JSON.stringify(digits) || model.unet.imageSize !== 28 || model.unet.inChannels !== 1) {
    throw new Error(`${model.file}: needs a class-conditional 1x28x28 model with the classes 0..9 (MNIST, --class-cond), got ${K} classes`);
  }
  if (o.n < 2 * K) throw new Error(`--n ${o.n}: at least ${2 * K} samples (two per class)`);
  const classifier = await loadClassifierDir();
  const labels = Int32Array.from({ length: o.n }, (_, i) => i % K);
  const pipe = await DDPMPipeline.fromLoaded(model, { threads: o.threads });
  const results: Record<string, unknown>[] = [];
  const panels: Float32Array[] = [];
  const t0 = performance.now();
  try {
    for (const s of o.scales) {
      const t1 = performance.now();
      let next = 0.1;
      const res = await pipe.generate({
        n: o.n, sampler: 'ddim', steps: o.steps, eta: 0, seed: o.seed, batchSize: o.batchSize, classLabels: labels, guidanceScale: s,
        onProgress: (done, total) => {
          if (done / total + 1e-9 < next) return;
          next += 0.1;
          log(`s = ${s}: ${done}/${total} model calls (${((performance.now() - t1) / 1000).toFixed(0)} s)`);
        },
      });
      const sampleSec = (performance.now() - t1) / 1000;
      const images = quantizeLikePng(res.samples); // scored as saved PNGs
      const sc = await scoreSamples(images, classifier, ort, runtime, { labels });
      const acc = sc.classAccuracy!;
      results.push({
        guidanceScale: s,
        classAccuracy: round(acc.overall),
        perClassAccuracy: acc.perClass.map((a) => round(a, 4)),
        fidLenet: round(sc.fid.fid),
        meanTerm: round(sc.fid.meanTerm),
        covTerm: round(sc.fid.covTerm),
        meanConfidence: round(sc.classes.meanConfidence),
        confidentFraction: round(sc.classes.confidentFraction),
        classCounts: sc.classes.counts,
        modelCallsPerImage: (s === 0 || s === 1 ? 1 : 2) * o.steps,
        sampleSeconds: round(sampleSec, 4),
      });
      log(`s = ${s}: class accuracy ${(100 * acc.overall).toFixed(2)}%, FID-LeNet ${sc.fid.fid.toFixed(3)}, confidence ${sc.classes.meanConfidence.toFixed(3)}, ${sampleSec.toFixed(0)} s`);
      panels.push(images);
    }
  } finally {
    await pipe.release();
  }

  // the grid: row k = class k; per scale `show` samples of class k (images k, k + K, ...), then a white separator
  const show = Math.min(o.show, Math.floor(o.n / K));
  const cols = o.scales.length * (show + 1) - 1;
  const grid = new Float32Array(K * cols * PER).fill(1);
  for (let k = 0; k < K; k++) {
    panels.forEach((images, j) => {
      for (let c = 0; c < show; c++) {
        const i = k + c * K;
        grid.set(images.subarray(i * PER, (i + 1) * PER), (k * cols + j * (show + 1) + c) * PER);
      }
    });
  }
  mkdirSync(o.outDir, { recursive: true });
  const pngFile = path.join(o.outDir, `${o.name}.png`);
  writeFileSync(pngFile, await encodePng(makeGrid(grid, [K * cols, 1, 28, 28], { nrow: cols })));
  const report = {
    date: new Date().toISOString(),
    model: path.relative(ROOT, model.file) || model.file,
    step: model.step ?? null,
    classifier: 'models/lenet-mnist',
    n: o.n,
    perClass: o.n / K,
    sampler: `ddim, ${o.steps} steps, eta 0`,
    seed: o.seed,
    batchSize: o.batchSize,
    threads: runtime.threads,
    guidance: 'eps(x, none) + s * (eps(x, c) - eps(x, none)), one call on a doubled batch; variance channels from the conditional half',
    results,
    grid: `${path.basename(pngFile)}: rows = classes 0..9; columns: ${show} samples per scale, s = ${o.scales.join(', ')} left to right`,
    seconds: round((performance.now() - t0) / 1000, 4),
  };
  writeFileSync(path.join(o.outDir, `${o.name}.json`), JSON.stringify(report, null, 2) + '\n');
  log(`wrote ${path.join(o.outDir, `${o.name}.json`)} and ${pngFile}`);
  return report;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { values: a } = parseArgs({
    options: {
      checkpoint: { type: 'string', default: path.join(ROOT, 'models', 'mnist-28-cond') },
      n: { type: 'string', default: '2000' },
      scales: { type: 'string', default: '0,1,2,4' },
      steps: { type: 'string', default: '50' },
      'batch-size': { type: 'string', default: '250' },
      seed: { type: 'string', default: '0' },
      threads: { type: 'string' },
      show: { type: 'string', default: '6' },
      'out-dir': { type: 'string', default: path.join(ROOT, 'docs') },
      name: { type: 'string', default: 'guidance-mnist-28-cond' },
    },
  });
  const int = (flag: string, v: string, min: number) => {
    const x = Number(v);
    if (!Number.isSafeInteger(x) || x < min) throw new Error(`--${flag} must be an integer >= ${min}, got '${v}'`);
    return x;
  };
  const scales = a.scales.split(',').map(Number);
  if (scales.some((s) => !Number.isFinite(s) || s < 0)) throw new Error(`--scales must be numbers >= 0, got '${a.scales}'`);
  const report = await measureGuidance({
    checkpoint: a.checkpoint, n: int('n', a.n, 1), scales, steps: int('steps', a.steps, 2), batchSize: int('batch-size', a['batch-size'], 1),
    seed: int('seed', a.seed, 0), threads: a.threads === undefined ? undefined : int('threads', a.threads, 1), show: int('show', a.show, 1),
    outDir: a['out-dir'], name: a.name,
  });
  process.stdout.write(JSON.stringify(report) + '\n');
}
