/**
 * Editing with the shipped model (models/mnist-28), scored by the shipped LeNet (models/lenet-mnist), issue 16:
 *
 *   inpaint  the first --n (500) MNIST test digits with the lower half (rows 14..27) masked: LeNet accuracy of the
 *            inpainted digits against the true labels, for several samplers with and without RePaint resampling;
 *            the kept upper half must equal the input's 8-bit values exactly (the script fails otherwise)
 *   sdedit   the first --n (500) test digits through SDEdit (DDIM-50, η = 0) at strengths 0.2 … 1.0: how often
 *            LeNet gives the edited digit the input's label, and the accuracy against the true labels
 *   invert   the first --n (100) test digits through DDIM inversion and back at 20, 50 and 200 steps:
 *            reconstruction MSE (in [-1, 1] units) and the statistics of x_T
 *
 * Result i draws its randomness from Rng(seed).fold(i), as `ddpm inpaint` / `ddpm edit` --n do. Every result is
 * scored as saved to an 8-bit PNG (quantizeLikePng). Prints progress on stderr, one JSON object per part on stdout,
 * writes docs/editing-<part>.json and, with --images, the example grids docs/editing-<part>.png (first 8 digits).
 *
 *   node --import tsx scripts/measure-editing.ts inpaint [--n 500] [--threads 2] [--batch-size 250] [--images]
 *   node --import tsx scripts/measure-editing.ts sdedit | invert ...
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ddimInvert, sdedit } from '../src/diffusion/edit.ts';
import { inpaint, repaintSchedule } from '../src/diffusion/inpaint.ts';
import { DdimSampler, sampleLoop, type Sampler } from '../src/diffusion/samplers.ts';
import { loadClassifierDir } from '../src/eval/classifier-dir.ts';
import { argmax, classify, quantizeLikePng } from '../src/eval/fid.ts';
import { loadMnist, mnistImages } from '../src/data/mnist.ts';
import { encodePng, makeGrid, unitToUint8 } from '../src/io/image.ts';
import { LeNet } from '../src/models/classifier.ts';
import { Denoiser } from '../src/models/denoiser.ts';
import { nodeRuntime, ort } from '../src/node/ort.ts';
import { PerExampleRng, Rng } from '../src/rng.ts';
import { makeSampler, type SamplerSpec } from '../src/sample/generate.ts';
import { loadModelDir } from '../src/train/checkpoint.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PER = 784;
const SHOW = 8; // digits in the example grids

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    n: { type: 'string' },
    threads: { type: 'string' },
    'batch-size': { type: 'string', default: '250' },
    seed: { type: 'string', default: '0' },
    images: { type: 'boolean', default: false },
    'out-dir': { type: 'string', default: path.join(ROOT, 'docs') },
  },
});
const part = positionals[0];
if (!['inpaint', 'sdedit', 'invert'].includes(part ?? '')) {
  process.stderr.write('usage: node --import tsx scripts/measure-editing.ts inpaint|sdedit|invert [--n N] [--threads T] [--batch-size B] [--images]\n');
  process.exit(2);
}
const n = Number(args.n ?? (part === 'invert' ? 100 : 500));
const batchSize = Number(args['batch-size']);
const seed = Number(args.seed);
const runtime = nodeRuntime({ threads: args.threads === undefined ? undefined : Number(args.threads) });
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const round = (x: number, d = 5) => Number(x.toPrecision(d));

// the shipped model and classifier, the first n test digits and their labels
const model = await loadModelDir(path.join(ROOT, 'models', 'mnist-28'));
// the shipped export of the same EMA weights (what the browser page runs)
const denoiser = await Denoiser.fromOnnx(ort, model.config.model, new Uint8Array(readFileSync(path.join(ROOT, 'models', 'mnist-28', 'model.onnx'))), runtime);
const classifier = await loadClassifierDir();
const lenet = await LeNet.create(ort, classifier.info.model, classifier.weights, runtime);
const x0 = mnistImages('test', 0, n);
const labels = loadMnist('test').labels.subarray(0, n);
const diffusionCfg = model.config.diffusion;

/** LeNet's labels for images in [-1, 1], scored as saved 8-bit PNGs. */
async function predict(images: Float32Array): Promise<Int32Array> {
  const { logits } = await classify(lenet, quantizeLikePng(images));
  return argmax(logits, classifier.info.model.numClasses);
}

const agreement = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let k = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) k++;
  return k / a.length;
};

/** Run `work` over the n digits in batches (`at` picks the batch's part of an array); digit i draws from Rng(seed).fold(i). */
async function batched(label: string, work: (at: (a: Float32Array) => Float32Array, B: number, rng: Rng) => Promise<Float32Array>): Promise<{ out: Float32Array; seconds: number }> {
  const out = new Float32Array(n * PER);
  const root = new Rng(seed);
  const t0 = performance.now();
  for (let s = 0; s < n; s += batchSize) {
    const B = Math.min(batchSize, n - s);
    const rng = new PerExampleRng(Array.from({ length: B }, (_, i) => root.fold(s + i)));
    out.set(await work((a) => a.subarray(s * PER, (s + B) * PER), B, rng), s * PER);
    log(`${label}: ${s + B}/${n} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
  return { out, seconds: (performance.now() - t0) / 1000 };
}

function sampler(spec: SamplerSpec): Sampler {
  return makeSampler(diffusionCfg, spec);
}

/** Rows of SHOW digits each, as a PNG: one row per entry. */
async function writeRows(file: string, rows: Float32Array[]): Promise<void> {
  const grid = new Float32Array(rows.length * SHOW * PER);
  rows.forEach((r, k) => grid.set(r.subarray(0, SHOW * PER), k * SHOW * PER));
  writeFileSync(file, await encodePng(makeGrid(grid, [rows.length * SHOW, 1, 28, 28], { nrow: SHOW })));
  log(`wrote ${file}`);
}

async function measureInpaint(): Promise<Record<string, unknown>> {
  // lower half generated (1), upper half kept (0)
  const mask = new Float32Array(n * PER);
  for (let i = 0; i < n; i++) for (let j = 14 * 28; j < PER; j++) mask[i * PER + j] = 1;
  const masked = x0.map((v, j) => (mask[j] === 1 ? -1 : v)); // what the model is given to keep; the rest is ignored
  const runs: { name: string; spec: SamplerSpec; jump: number; resample: number }[] = [
    { name: 'ddpm-50', spec: { sampler: 'ddpm', steps: 50 }, jump: 1, resample: 1 },
    { name: 'ddpm-50 + RePaint j10 r10', spec: { sampler: 'ddpm', steps: 50 }, jump: 10, resample: 10 },
    { name: 'ddim-50', spec: { sampler: 'ddim', steps: 50, eta: 0 }, jump: 1, resample: 1 },
    { name: 'dpm++-20', spec: { sampler: 'dpm++', steps: 20 }, jump: 1, resample: 1 },
    // a longer chain without resampling (250 of the RePaint run's 410 model calls)
    { name: 'ddpm-250', spec: { sampler: 'ddpm', steps: 250 }, jump: 1, resample: 1 },
  ];
  const only = process.env.INPAINT_RUNS?.split(',');
  const truth = await predict(x0);
  const results: Record<string, unknown>[] = [
    { name: 'original digits (reference)', accuracy: round(agreement(truth, labels)) },
    { name: 'lower half black, not inpainted (reference)', accuracy: round(agreement(await predict(masked), labels)) },
  ];
  const rows = [x0, masked.map((v, j) => (mask[j] === 1 ? 0 : v))]; // the masked half shown grey
  for (const r of runs) {
    if (only && !only.includes(r.name)) continue;
    const s = sampler(r.spec);
    const states = repaintSchedule(s.timesteps.length, r.jump, r.resample);
    let calls = 0;
    for (let k = 1; k < states.length; k++) if (states[k] < states[k - 1]) calls++;
    log(`inpaint ${r.name}: ${calls} model calls per batch`);
    const { out, seconds } = await batched(`inpaint ${r.name}`, (at, B, rng) =>
      inpaint(s, denoiser.predict, { data: at(masked), shape: [B, 1, 28, 28] }, at(mask), rng, { jumpLength: r.jump, jumpNSample: r.resample }),
    );
    // the kept half, as saved: 8-bit values equal to the input's
    let differ = 0;
    for (let j = 0; j < out.length; j++) if (mask[j] === 0 && unitToUint8(out[j]) !== unitToUint8(x0[j])) differ++;
    if (differ > 0) throw new Error(`inpaint ${r.name}: ${differ} kept pixels differ from the input`);
    const pred = await predict(out);
    results.push({
      name: r.name, sampler: r.spec.sampler, steps: s.timesteps.length, jump: r.jump, resample: r.resample, modelCallsPerImage: calls,
      accuracy: round(agreement(pred, labels)), keptPixelsDiffering: differ, keptPixelsChecked: n * 14 * 28, seconds: round(seconds, 4),
    });
    log(`inpaint ${r.name}: accuracy ${(100 * agreement(pred, labels)).toFixed(1)}%, ${seconds.toFixed(0)} s`);
    rows.push(out);
  }
  if (args.images) await writeRows(path.join(args['out-dir'], 'editing-inpaint.png'), rows);
  return { part: 'inpaint', n, mask: 'rows 14..27 of 28 generated (lower half)', results };
}

async function measureSdedit(): Promise<Record<string, unknown>> {
  const spec: SamplerSpec = { sampler: 'ddim', steps: 50, eta: 0 };
  const s = sampler(spec);
  const input = await predict(x0);
  const results: Record<string, unknown>[] = [{ strength: 0, labelAgreement: 1, accuracy: round(agreement(input, labels)) }];
  const rows = [x0];
  for (const strength of [0.2, 0.4, 0.6, 0.8, 1.0]) {
    const { out, seconds } = await batched(`sdedit ${strength}`, (at, B, rng) => sdedit(s, denoiser.predict, { data: at(x0), shape: [B, 1, 28, 28] }, rng, { strength }));
    const pred = await predict(out);
    let se = 0;
    for (let j = 0; j < out.length; j++) se += (out[j] - x0[j]) ** 2;
    results.push({
      strength, stepsRun: Math.floor(50 * strength), labelAgreement: round(agreement(pred, input)), accuracy: round(agreement(pred, labels)),
      mse: round(se / out.length), seconds: round(seconds, 4),
    });
    log(`sdedit ${strength}: agreement ${(100 * agreement(pred, input)).toFixed(1)}%, ${seconds.toFixed(0)} s`);
    rows.push(out);
  }
  if (args.images) await writeRows(path.join(args['out-dir'], 'editing-sdedit.png'), rows);
  return { part: 'sdedit', n, sampler: 'ddim, 50 steps, eta 0 (the last floor(50·strength) steps)', results };
}

async function measureInvert(): Promise<Record<string, unknown>> {
  const results: Record<string, unknown>[] = [];
  const rows = [x0];
  for (const steps of [20, 50, 200]) {
    const s = sampler({ sampler: 'ddim', steps, eta: 0, clip: false }) as DdimSampler;
    const zs: Float32Array[] = [];
    const { out, seconds } = await batched(`invert ${steps}`, async (at, B, rng) => {
      const z = await ddimInvert(s, denoiser.predict, { data: at(x0), shape: [B, 1, 28, 28] });
      zs.push(z);
      return sampleLoop(s, denoiser.predict, [B, 1, 28, 28], rng, { noise: z });
    });
    const z = new Float32Array(n * PER);
    let o = 0;
    for (const b of zs) (z.set(b, o), (o += b.length));
    let se = 0;
    let maxAbs = 0;
    for (let j = 0; j < out.length; j++) {
      se += (out[j] - x0[j]) ** 2;
      maxAbs = Math.max(maxAbs, Math.abs(out[j] - x0[j]));
    }
    const q = quantizeLikePng(out);
    let se8 = 0;
    for (let j = 0; j < out.length; j++) se8 += (q[j] - x0[j]) ** 2;
    const m = z.reduce((a, v) => a + v, 0) / z.length;
    const sd = Math.sqrt(z.reduce((a, v) => a + (v - m) ** 2, 0) / z.length);
    results.push({ steps, mse: round(se / out.length), mse8bit: round(se8 / out.length), maxAbsError: round(maxAbs), xTMean: round(m), xTStd: round(sd), seconds: round(seconds, 4) });
    log(`invert ${steps}: mse ${(se / out.length).toExponential(3)}, ${seconds.toFixed(0)} s`);
    rows.push(z.map((v) => v / 3), out); // x_T shown at 1/3 scale
  }
  if (args.images) await writeRows(path.join(args['out-dir'], 'editing-invert.png'), rows);
  return { part: 'invert', n, sampler: 'ddim, eta 0, no clipping, spacing ddimN (x_0 -> x_T -> x_0)', results };
}

try {
  log(`${part}: ${n} test digits, batch ${batchSize}, ${runtime.threads} thread(s)`);
  const t0 = performance.now();
  const res = part === 'inpaint' ? await measureInpaint() : part === 'sdedit' ? await measureSdedit() : await measureInvert();
  const report = {
    ...res, date: new Date().toISOString(), seed, threads: runtime.threads, batchSize,
    model: 'models/mnist-28', classifier: 'models/lenet-mnist', seconds: round((performance.now() - t0) / 1000, 4),
  };
  if (args.n === undefined) writeFileSync(path.join(args['out-dir'], `editing-${part}.json`), JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(JSON.stringify(report) + '\n');
} finally {
  await denoiser.release();
  await lenet.release();
}
