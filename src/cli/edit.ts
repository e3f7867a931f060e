/**
 * `ddpm edit`: image-to-image (SDEdit, Meng et al. 2022): noise the image to t ≈ strength·T, then denoise it with
 * any sampler. The work is src/diffusion/edit.ts.
 */
import { Command } from 'commander';
import { sdedit, sdeditStartStep } from '../diffusion/edit.ts';
import { encodePng } from '../io/image.ts';
import { ensureExecutionProvider } from '../node/ort.ts';
import { UserError, addExamples, addRuntimeOptions, checkModelFits, formatDuration } from './common.ts';
import {
  CHECKPOINT_HELP, addCountOptions, addSamplerOptions, checkPngOut, checkResults, describeSampler, inBatches, inputHeader, progressBar,
  readModelImage, repeat, resultImage, samplerFor, type SamplerFlags,
} from './edit-shared.ts';
import { describeModel, loadModel, openDenoiser } from '../pipeline/load.ts';
import { writeOutputs } from './output.ts';

interface EditOptions extends SamplerFlags {
  checkpoint?: string;
  image: string;
  strength: string;
  out: string;
  n: number;
  seed: number;
  batchSize: number;
  threads?: number;
  ep?: string;
}

export function editCommand(): Command {
  const cmd = new Command('edit')
    .description('image-to-image (SDEdit, Meng et al. 2022): noise the image to t = strength·T, then denoise it with the model')
    .option('--checkpoint <path>', CHECKPOINT_HELP)
    .requiredOption('--image <file>', "a PNG, JPEG or WebP image, converted to the model's channels and size (resized and centre-cropped if needed)")
    .option('--strength <x>', 'in (0, 1]: how much noise is added; 0.2 keeps the image close, 1 keeps little of it', '0.6')
    .requiredOption('--out <file>', 'the result (.png); with --n > 1 a grid of the results');
  addSamplerOptions(cmd, 'ddim');
  addCountOptions(cmd);
  addRuntimeOptions(cmd);
  addExamples(
    cmd,
    [
      'ddpm edit --image sketch.png --strength 0.6 --out edited.png',
      'ddpm edit --image sketch.png --strength 0.4 --sampler dpm++ --steps 20 --n 8 --seed 1 --out variations.png',
    ],
    `The sampler runs its last floor(strength·steps) steps (diffusers' img2img rule) from q(x_t | x_0) at the first of
them, so --strength 0.6 with 50 DDIM steps runs 30 steps from t = 580 of T = 1000.`,
  );
  cmd.action(async (opts: EditOptions) => {
    await runEdit(opts);
  });
  return cmd;
}

/** --strength as a number in (0, 1]. */
function parseStrength(v: string): number {
  const s = Number(v);
  if (v.trim() === '' || !(s > 0 && s <= 1)) throw new UserError(`--strength must be a number in (0, 1], got '${v}'`);
  return s;
}

async function runEdit(opts: EditOptions): Promise<void> {
  // 1. options that need no model, the output and the execution provider, the input's header
  const strength = parseStrength(opts.strength);
  await checkPngOut(opts.out);
  await ensureExecutionProvider(opts.ep);
  const imageIn = { file: opts.image, header: await inputHeader('--image', opts.image) };

  // 2. the model and the sampler; the strength must keep at least one of its steps
  const t0 = performance.now();
  const model = await loadModel(opts.checkpoint);
  const sampler = samplerFor(model, opts);
  const steps = sampler.timesteps.length;
  let start: number;
  try {
    start = sdeditStartStep(steps, strength);
  } catch (e) {
    throw new UserError(`--strength: ${(e as Error).message}`);
  }
  checkModelFits(model.unet, 'sample', Math.min(opts.batchSize, opts.n), model.file);
  checkResults(opts.n, model);
  const { inChannels: c, imageSize: s } = model.unet;
  const image = await readModelImage('--image', imageIn, model);
  const denoiser = await openDenoiser(model, opts);
  const loadSec = (performance.now() - t0) / 1000;
  const batches = Math.ceil(opts.n / opts.batchSize);
  process.stdout.write(
    `editing ${opts.image} (${opts.n} result(s)): strength ${strength}, ${describeSampler(opts, sampler)}: the last ${steps - start} from t = ${sampler.timesteps[start]}` +
      `, ${batches} batch(es), seed ${opts.seed}; model ${model.file} (${describeModel(model)})\n`,
  );

  // 3. SDEdit, in batches
  const bar = progressBar(batches * (steps - start));
  const t1 = performance.now();
  let done = 0;
  let results: Float32Array;
  try {
    results = await inBatches(opts.n, opts.batchSize, opts.seed, c * s * s, (B, rng) =>
      sdedit(sampler, denoiser.predict, { data: repeat(image, B), shape: [B, c, s, s] }, rng, { strength, onStep: () => bar.update(++done) }),
    );
  } finally {
    bar.stop();
    await denoiser.release();
  }
  const sec = (performance.now() - t1) / 1000;

  // 4. the result
  await writeOutputs([{ flag: '--out', file: opts.out, data: await encodePng(resultImage(results, [opts.n, c, s, s])) }]);
  process.stdout.write(`done: ${opts.n} result(s) in ${sec.toFixed(2)} s${sec >= 60 ? ` (${formatDuration(sec)})` : ''}; load ${loadSec.toFixed(2)} s; wrote ${opts.out}\n`);
}
