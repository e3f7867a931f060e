/**
 * How many samples of a model trained on shapes (npm run make:shapes) are confidently classified as a shape by the
 * shipped shape classifier (models/shapes-classifier): the quality measure of issue 14, as LeNet's "confident
 * digits" are for MNIST (the same classifierScores: max softmax probability > --threshold, default 0.9).
 *
 *   npm run measure:shapes -- <run dir | checkpoint | model.onnx> [--n 256] [--sampler ddim] [--steps 50] [--eta 1] [--seed 0]
 *   npm run measure:shapes -- <folder of images | grid.png>       score images already made (a grid as
 *                                                                  `ddpm train` / `ddpm sample` write: 32x32 tiles,
 *                                                                  2 pixels apart)
 *   npm run measure:shapes -- --baselines [--n 256]               the measure's own sanity check: fresh shapes,
 *                                                                  uniform noise, Gaussian noise, flat colours,
 *                                                                  shapes under Gaussian noise
 *
 * A model is sampled through DDPMPipeline (its EMA weights; DDIM-50 with η = 1, clipped: `ddpm sample`'s defaults) and
 * scored as saved 8-bit PNGs. Prints one JSON object on stdout (--json FILE also writes it there; --grid FILE
 * writes the scored images as a grid): confidentFraction, the class histogram by name, mean confidence, classes
 * covered, and FID-shapes against the classifier's held-out test shapes with, for scale, the FID of as many fresh
 * real shapes. Progress goes to stderr.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { IMAGE_EXTENSIONS, listImageFiles } from '../src/data/folder.ts';
import { SHAPE_KINDS, renderNotShapes, renderShapes } from '../src/data/shapes.ts';
import { UserError } from '../src/errors.ts';
import { intFlag } from '../src/cli/common.ts';
import { DEFAULT_SHAPES_CLASSIFIER_DIR, loadClassifierDir, type ClassifierDir } from '../src/eval/classifier-dir.ts';
import { CONFIDENT_THRESHOLD, quantizeLikePng } from '../src/eval/fid.ts';
import { scoreSamples } from '../src/eval/score.ts';
import { decodeImage, hwcToChw, writeImageGrid } from '../src/io/image.ts';
import { MAX_BATCH_SIZE, MAX_SAMPLES, MAX_SEED, MAX_T } from '../src/limits.ts';
import { ort } from '../src/node/ort.ts';
import { DDPMPipeline } from '../src/pipeline/node.ts';
import { Rng } from '../src/rng.ts';

/** Fresh real shapes for the reference FID and the baselines: seed 3 (the classifier trained on 1, tested on 2). */
export const REAL_SEED = 3;

const u8ToUnit = (u8: Uint8Array) => Float32Array.from(u8, (v) => v / 127.5 - 1);

export interface ShapesScore {
  source: string;
  n: number;
  threshold: number;
  /** fraction of images put in a shape class (not 'none') with a softmax probability above the threshold */
  confidentFraction: number;
  meanConfidence: number;
  /** images per predicted class */
  classes: Record<string, number>;
  classesCovered: number;
  entropyBits: number;
  /** FID of the images' features vs the classifier's held-out test shapes */
  fidShapes: number;
  /** the same for n fresh real shapes: what a perfect generator would score at this n */
  realFidShapes: number;
  [key: string]: unknown;
}

/** Score images (n, 3, S, S) in [−1, 1], already on the 8-bit grid. */
export async function scoreShapes(images: Float32Array, classifier: ClassifierDir, opts: { source: string; threshold?: number; threads?: number }): Promise<ShapesScore> {
  const { model } = classifier.info;
  const threshold = opts.threshold ?? CONFIDENT_THRESHOLD;
  const names: readonly string[] = (classifier.info.classes as string[] | undefined) ?? SHAPE_KINDS;
  const s = await scoreSamples(images, classifier, ort, { threads: opts.threads }, {
    threshold,
    rejectClass: names.indexOf('none') >= 0 ? names.indexOf('none') : undefined,
    real: (n) => u8ToUnit(renderShapes(REAL_SEED, 0, n, model.imageSize).images),
  });
  const r = (x: number) => Number(x.toPrecision(4));
  return {
    source: opts.source,
    n: s.n,
    threshold,
    confidentFraction: r(s.classes.confidentFraction),
    meanConfidence: r(s.classes.meanConfidence),
    classes: Object.fromEntries(s.classes.counts.map((c, k) => [names[k] ?? String(k), c])),
    classesCovered: s.classes.classesCovered,
    entropyBits: r(s.classes.entropyBits),
    fidShapes: r(s.fid.fid),
    realFidShapes: r(s.realFid),
  };
}

/** Every image file of a folder (recursively, sorted), decoded to RGB; each must be S x S. */
async function readFolder(dir: string, S: number): Promise<Float32Array> {
  const files = await listImageFiles(dir);
  if (files.length === 0) throw new UserError(`${dir}: no ${IMAGE_EXTENSIONS.join('/')} images in it, and it is not a model (no config.json or model.onnx)`);
  const per = 3 * S * S;
  const out = new Uint8Array(files.length * per);
  for (const [i, f] of files.entries()) {
    const img = await decodeImage(path.join(dir, f), { channels: 3 }).catch((e: Error) => {
      throw new UserError(`${path.join(dir, f)}: ${e.message}`);
    });
    if (img.width !== S || img.height !== S) throw new UserError(`${path.join(dir, f)}: ${img.width}x${img.height}, the shape classifier takes ${S}x${S}`);
    hwcToChw(img.data, 3, S, S, out, i * per);
  }
  return u8ToUnit(out);
}

/**
 * The tiles of a grid (makeGrid's layout: `pad` pixels around and between S x S tiles), left to right, top to
 * bottom; tiles that are all padding colour (the unused end of the last row) are left out.
 */
async function readGrid(file: string, S: number, pad = 2): Promise<Float32Array> {
  const img = await decodeImage(file, { channels: 3 }).catch((e: Error) => {
    throw new UserError(`${file}: ${e.message}`);
  });
  const cols = (img.width - pad) / (S + pad);
  const rows = (img.height - pad) / (S + pad);
  if (!Number.isInteger(cols) || !Number.isInteger(rows) || cols < 1 || rows < 1) {
    throw new UserError(`${file}: ${img.width}x${img.height} is not a grid of ${S}x${S} tiles ${pad} pixels apart`);
  }
  const padValue = img.data[0]!;
  const tiles: Uint8Array[] = [];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const hwc = new Uint8Array(S * S * 3);
      for (let y = 0; y < S; y++) {
        const src = ((pad + r * (S + pad) + y) * img.width + pad + c * (S + pad)) * 3;
        hwc.set(img.data.subarray(src, src + S * 3), y * S * 3);
      }
      if (!hwc.every((v) => v === padValue)) tiles.push(hwcToChw(hwc, 3, S, S));
    }
  }
  const out = new Uint8Array(tiles.length * 3 * S * S);
  tiles.forEach((t, i) => out.set(t, i * t.length));
  return u8ToUnit(out);
}

/** n images that are not shapes, and shapes under noise, to check that the measure tells them apart. */
function baselineSets(n: number, S: number): Record<string, Float32Array> {
  const per = 3 * S * S;
  const rng = new Rng(REAL_SEED).fold(1);
  const real = u8ToUnit(renderShapes(REAL_SEED, 0, n, S).images);
  const uniform = rng.fold(0).uniformFloat32(n * per).map((u) => 2 * u - 1);
  const gaussian = rng.fold(1).normalFloat32(n * per).map((z) => Math.max(-1, Math.min(1, 0.5 * z)));
  const flat = new Float32Array(n * per);
  const colours = rng.fold(2).uniformFloat32(n * 3);
  for (let i = 0; i < n * 3; i++) flat.fill(2 * colours[i]! - 1, i * S * S, (i + 1) * S * S);
  const noisy = (sigma: number, k: number) => {
    const z = rng.fold(k).normalFloat32(n * per);
    return quantizeLikePng(real.map((v, i) => Math.max(-1, Math.min(1, v + sigma * z[i]!))));
  };
  return {
    'real shapes (seed 3)': real,
    'real shapes in any visible colours (seed 3)': u8ToUnit(renderShapes(REAL_SEED, 0, n, S, 'visible').images),
    'not-shapes (seed 3: noise, fields, noisy shapes, blends)': u8ToUnit(renderNotShapes(REAL_SEED, 0, n, S)),
    'uniform noise': quantizeLikePng(uniform),
    'Gaussian noise (σ 0.5, clipped)': quantizeLikePng(gaussian),
    'flat colours (background only)': quantizeLikePng(flat),
    'real shapes + Gaussian noise σ 0.1': noisy(0.1, 3),
    'real shapes + Gaussian noise σ 0.3': noisy(0.3, 4),
  };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      n: { type: 'string' },
      sampler: { type: 'string', default: 'ddim' },
      steps: { type: 'string' },
      eta: { type: 'string' },
      seed: { type: 'string' },
      'batch-size': { type: 'string' },
      threads: { type: 'string' },
      threshold: { type: 'string' },
      classifier: { type: 'string', default: DEFAULT_SHAPES_CLASSIFIER_DIR },
      baselines: { type: 'boolean', default: false },
      grid: { type: 'string' },
      json: { type: 'string' },
    },
  });
  const log = (s: string) => process.stderr.write(`${s}\n`);
  if (positionals.length !== (values.baselines ? 0 : 1)) {
    throw new UserError('usage: npm run measure:shapes -- <run dir | checkpoint | model.onnx | folder of images | grid.png> [--n 256] [--steps 50] | --baselines');
  }
  const n = intFlag(values.n, 'n', 256, 2, MAX_SAMPLES);
  const threads = values.threads === undefined ? os.availableParallelism() : intFlag(values.threads, 'threads', 1, 1, 1024);
  const threshold = values.threshold === undefined ? CONFIDENT_THRESHOLD : Number(values.threshold);
  if (!(threshold >= 0 && threshold < 1)) throw new UserError(`--threshold: expected a number in [0, 1), got '${values.threshold}'`);
  const classifier = await loadClassifierDir(values.classifier).catch((e: Error) => {
    throw new UserError(e.message);
  });
  const S = classifier.info.model.imageSize;
  const t0 = performance.now();

  if (values.baselines) {
    const results = [];
    for (const [name, images] of Object.entries(baselineSets(n, S))) {
      const s = await scoreShapes(images, classifier, { source: name, threshold, threads });
      log(`${name}: ${(100 * s.confidentFraction).toFixed(1)}% confident`);
      results.push(s);
    }
    const out = { classifier: values.classifier, testAccuracy: classifier.info.testAccuracy, results };
    await emit(out, values.json);
    return;
  }

  // a run directory of `ddpm train` holds its model in checkpoint/
  const given = positionals[0]!;
  const runCheckpoint = path.join(given, 'checkpoint');
  const source = (await fsp.stat(path.join(runCheckpoint, 'config.json')).catch(() => undefined)) ? runCheckpoint : given;
  const st = await fsp.stat(source).catch(() => {
    throw new UserError(`${source}: no such file or directory`);
  });
  let images: Float32Array;
  const info: Record<string, unknown> = {};
  const isModel = st.isDirectory()
    ? (await fsp.readdir(source)).some((f) => f === 'config.json' || f === 'model.onnx' || f === 'latest')
    : source.endsWith('.onnx');
  if (isModel) {
    const pipe = await DDPMPipeline.fromPretrained(source, { threads });
    try {
      const [C, H] = pipe.imageShape;
      if (C !== 3 || H !== S) throw new UserError(`${source}: the model makes ${C}x${H}x${H} images; the shape classifier takes 3x${S}x${S}`);
      const sampler = values.sampler as 'ddim' | 'ddpm' | 'dpm++';
      if (!['ddim', 'ddpm', 'dpm++'].includes(sampler)) throw new UserError(`--sampler: ddim, ddpm or dpm++, got '${values.sampler}'`);
      const steps = values.steps === undefined ? undefined : intFlag(values.steps, 'steps', 50, 2, MAX_T);
      const seed = intFlag(values.seed, 'seed', 0, 0, MAX_SEED);
      const batchSize = intFlag(values['batch-size'], 'batch-size', 64, 1, MAX_BATCH_SIZE);
      const eta = values.eta === undefined ? undefined : Number(values.eta);
      if (eta !== undefined && !(sampler === 'ddim' && eta >= 0 && eta <= 1)) throw new UserError(`--eta: a number in [0, 1], with --sampler ddim; got '${values.eta}'`);
      log(`sampling ${n} images from ${source} (step ${pipe.source.step ?? '?'}) with ${sampler}${steps ? `-${steps}` : ''}, ${threads} thread(s)`);
      let last = 0;
      const out = await pipe.generate({
        n, sampler, steps, eta, seed, batchSize,
        onProgress: (done, total) => {
          if (performance.now() - last > 10_000) {
            last = performance.now();
            log(`  ${done}/${total} model calls`);
          }
        },
      });
      images = quantizeLikePng(out.samples);
      Object.assign(info, { step: pipe.source.step, sampler, steps: out.timesteps.length, ...(eta !== undefined ? { eta } : {}), seed, sampleSeconds: Math.round((performance.now() - t0) / 100) / 10 });
    } finally {
      await pipe.release();
    }
  } else if (st.isDirectory()) {
    images = await readFolder(source, S);
  } else {
    images = await readGrid(source, S);
  }
  const count = images.length / (3 * S * S);
  if (count < 2) throw new UserError(`${source}: ${count} image(s); the measure needs at least 2`);
  if (values.grid) await writeImageGrid(values.grid, images, [count, 3, S, S]);
  const score = await scoreShapes(images, classifier, { source, threshold, threads });
  log(`${source}: ${(100 * score.confidentFraction).toFixed(1)}% of ${count} confidently classified as a shape`);
  await emit({ ...score, ...info, date: new Date().toISOString(), machine: `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores` }, values.json);
}

async function emit(out: unknown, file: string | undefined): Promise<void> {
  const text = JSON.stringify(out, null, 2) + '\n';
  process.stdout.write(text);
  if (file) await fsp.writeFile(file, text);
}

if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  try {
    await main();
  } catch (e) {
    const err = e as Error & { code?: string; exitCode?: number };
    if (err.name === 'UserError' || err.code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}
