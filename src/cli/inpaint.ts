/**
 * `ddpm inpaint`: fill the white part of a mask with the model, keeping the rest of the image exactly, optionally
 * with RePaint's resampling (Lugmayr et al. 2022). The work is src/diffusion/inpaint.ts.
 */
import { Command } from 'commander';
import { inpaint, repaintSchedule } from '../diffusion/inpaint.ts';
import { ensureExecutionProvider } from '../node/ort.ts';
import { encodePng } from '../io/image.ts';
import { UserError, addExamples, addRuntimeOptions, checkModelFits, formatDuration, parseIntArg } from './common.ts';
import {
  CHECKPOINT_HELP, addCountOptions, addSamplerOptions, checkMaskSize, checkPngOut, checkResults, describeSampler, inBatches, inputHeader, progressBar,
  readMask, readModelImage, repeat, resultImage, samplerFor, type SamplerFlags,
} from './edit-shared.ts';
import { describeModel, loadModel, openDenoiser } from '../pipeline/load.ts';
import { writeOutputs } from './output.ts';

interface InpaintOptions extends SamplerFlags {
  checkpoint?: string;
  image: string;
  mask: string;
  out: string;
  jump: number;
  resample: number;
  n: number;
  seed: number;
  batchSize: number;
  threads?: number;
  ep?: string;
}

export function inpaintCommand(): Command {
  const cmd = new Command('inpaint')
    .description('fill the white part of a mask with the model and keep the rest of the image exactly (RePaint, Lugmayr et al. 2022)')
    .option('--checkpoint <path>', CHECKPOINT_HELP)
    .requiredOption('--image <file>', "a PNG, JPEG or WebP image, converted to the model's channels and size (resized and centre-cropped if needed)")
    .requiredOption('--mask <file>', 'an image of the same size: white (luma >= 50%) = generate, darker = keep')
    .requiredOption('--out <file>', 'the result (.png); with --n > 1 a grid of the results')
    .option('--jump <n>', "RePaint's jump length: go back n steps at each resampling", parseIntArg('--jump', 1, 100_000), 10)
    .option('--resample <n>', "RePaint's resamplings: each jump is passed n times (1 = none; the paper uses 10)", parseIntArg('--resample', 1, 1000), 1);
  // DDIM-50 as `ddpm sample` (0.6 s for a digit on 2 cores); all T = 1000 DDPM steps took 12 s
  addSamplerOptions(cmd, 'ddim');
  addCountOptions(cmd);
  addRuntimeOptions(cmd);
  addExamples(
    cmd,
    [
      'ddpm inpaint --image digit.png --mask lower-half.png --out filled.png',
      'ddpm inpaint --image digit.png --mask lower-half.png --sampler ddpm --steps 250 --resample 10 --n 4 --out repaint.png',
    ],
    `At every reverse step the pixels to keep are replaced by a fresh sample of q(x_t | x_0), and by the input itself
at the end, so they are the input's 8-bit values exactly. With --resample r > 1, the merged image is sent back
--jump steps r - 1 times at every --jump-th step and denoised again, which blends the generated part with the
kept one; it costs about r times the model calls. Works with every sampler: DDIM with 50 steps by default, as
ddpm sample; RePaint (the second example) uses ddpm.`,
  );
  cmd.action(async (opts: InpaintOptions) => {
    await runInpaint(opts);
  });
  return cmd;
}

async function runInpaint(opts: InpaintOptions): Promise<void> {
  // 1. the output and the execution provider, then the inputs' headers (a mask of another size) before the model
  await checkPngOut(opts.out);
  await ensureExecutionProvider(opts.ep);
  const imageIn = { file: opts.image, header: await inputHeader('--image', opts.image) };
  const maskIn = { file: opts.mask, header: await inputHeader('--mask', opts.mask) };
  checkMaskSize(maskIn, imageIn);

  // 2. the model, the sampler and RePaint's schedule
  const t0 = performance.now();
  const model = await loadModel(opts.checkpoint);
  const sampler = samplerFor(model, opts);
  const N = sampler.timesteps.length;
  if (opts.resample > 1 && opts.jump >= N) throw new UserError(`--jump ${opts.jump} must be below the number of steps (${N}) when --resample is above 1`);
  const states = repaintSchedule(N, opts.jump, opts.resample);
  let calls = 0;
  for (let k = 1; k < states.length; k++) if (states[k] < states[k - 1]) calls++;
  checkModelFits(model.unet, 'sample', Math.min(opts.batchSize, opts.n), model.file);
  checkResults(opts.n, model);

  // 3. the image and the mask at the model's size
  const { inChannels: c, imageSize: s } = model.unet;
  const image = await readModelImage('--image', imageIn, model);
  const mask = await readMask(maskIn, model);
  const generated = mask.reduce((a, v) => a + v, 0);
  if (generated === 0) process.stderr.write(`note: --mask ${opts.mask} has no white pixel: the result is the image itself\n`);
  const denoiser = await openDenoiser(model, opts);
  const loadSec = (performance.now() - t0) / 1000;
  const batches = Math.ceil(opts.n / opts.batchSize);
  process.stdout.write(
    `inpainting ${opts.n} result(s) of ${opts.image}: ${generated} of ${s * s} pixels generated; ${describeSampler(opts, sampler)}` +
      (opts.resample > 1 ? `, RePaint jump ${opts.jump} x ${opts.resample}` : '') +
      ` (${calls} model calls per batch, ${batches} batch(es)), seed ${opts.seed}; model ${model.file} (${describeModel(model)})\n`,
  );

  // 4. inpaint, in batches
  const bar = progressBar(batches * (states.length - 1));
  const t1 = performance.now();
  let done = 0;
  let results: Float32Array;
  try {
    results = await inBatches(opts.n, opts.batchSize, opts.seed, c * s * s, (B, rng) =>
      inpaint(sampler, denoiser.predict, { data: repeat(image, B), shape: [B, c, s, s] }, repeat(mask, B), rng, {
        jumpLength: opts.jump,
        jumpNSample: opts.resample,
        onStep: () => bar.update(++done),
      }),
    );
  } finally {
    bar.stop();
    await denoiser.release();
  }
  const sec = (performance.now() - t1) / 1000;

  // 5. the result
  await writeOutputs([{ flag: '--out', file: opts.out, data: await encodePng(resultImage(results, [opts.n, c, s, s])) }]);
  process.stdout.write(`done: ${opts.n} result(s) in ${sec.toFixed(2)} s${sec >= 60 ? ` (${formatDuration(sec)})` : ''}; load ${loadSec.toFixed(2)} s; wrote ${opts.out}\n`);
}
