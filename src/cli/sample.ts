/** `ddpm sample`: options in, images out; the sampling is DDPMPipeline's (src/pipeline/). */
import path from 'node:path';
import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';
import { encodeGif, encodePng, makeGrid } from '../io/image.ts';
import type { Sampler } from '../diffusion/samplers.ts';
import type { ExecutionProvider } from '../engine/runtime.ts';
import { DEFAULT_GUIDANCE_SCALE } from '../diffusion/guidance.ts';
import { MAX_BATCH_SIZE, MAX_GRID_PIXELS, MAX_GUIDANCE_SCALE, MAX_SAMPLES, MAX_SEED, MAX_T } from '../limits.ts';
import { ensureExecutionProvider } from '../node/ort.ts';
import { SHIPPED_MODEL_NAMES, describeModel, loadModel, type LoadedModel } from '../pipeline/load.ts';
import { DDPMPipeline } from '../pipeline/node.ts';
import { pipelineSampler, type PipelineGenerateOptions, type PipelineOutput } from '../pipeline/pipeline.ts';
import { DEFAULT_DDIM_ETA, SAMPLER_KINDS, SPACINGS, type SamplerKind } from '../sample/generate.ts';
import { trajectoryFrames, trajectoryGrid } from '../sample/trajectory.ts';
import { UserError, addExamples, addRuntimeOptions, checkModelFits, checkOutputMemory, formatDuration, parseFloatArg, parseIntArg } from './common.ts';
import { checkOutputDir, checkOutputFile, writeOutputs, type Output } from './output.ts';

interface SampleOptions {
  checkpoint?: string;
  n: number;
  sampler: SamplerKind;
  steps?: number;
  eta?: number;
  spacing: string;
  seed: number;
  out: string;
  outDir?: string;
  nrow?: number;
  trajectory?: string;
  trajectorySamples: number;
  frames?: number;
  batchSize: number;
  clip: boolean;
  class?: string;
  guidance?: number;
  threads?: number;
  ep?: string;
}

export function sampleCommand(): Command {
  const cmd = new Command('sample')
    .description('generate images from a trained model: DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) or DDIM (Song et al. 2021)')
    .option('--checkpoint <path>', `the model: a checkpoint or run directory, a checkpoint file (.safetensors, as the page downloads), a .onnx from \`ddpm export\`, or a shipped model (${SHIPPED_MODEL_NAMES.join(', ')}) (default: mnist-28; with --class, mnist-28-cond)`)
    .option('--n <n>', 'number of images', parseIntArg('--n', 1, MAX_SAMPLES), 64)
    .addOption(new Option('--sampler <name>', 'ddpm (ancestral), ddim or dpm++ (DPM-Solver++(2M))').choices(SAMPLER_KINDS).default('ddim'))
    .option('--steps <n>', 'sampling steps, respaced from T (default: 50 for ddim, 20 for dpm++, T (1000) for ddpm)', parseIntArg('--steps', 2, MAX_T))
    .option('--eta <x>', 'DDIM η in [0, 1]: 1 = DDPM posterior variance, 0 deterministic (default: 1)', parseFloatArg('--eta', 0, 1))
    .option('--spacing <name|list>', `kept timesteps: ${SPACINGS.join(', ')}, or section counts like 10,10,5 (auto: ddimN for ddim, N for ddpm, linspace for dpm++)`, 'auto')
    .option('--seed <n>', 'random seed; image i always uses stream i, whatever --n and --batch-size', parseIntArg('--seed', 0, MAX_SEED), 0)
    .option('--out <file>', 'the sample grid (.png)', 'samples.png')
    .option('--out-dir <dir>', 'also write every image as its own PNG (sample_00000.png, ...), e.g. for `ddpm eval --samples`')
    .option('--nrow <n>', 'images per grid row (default: ceil(sqrt(n)))', parseIntArg('--nrow', 1, MAX_SAMPLES))
    .option('--trajectory <file>', 'also draw x_t (above) and the predicted x_0 (below) along the reverse process: .png grid or animated .gif')
    .option('--trajectory-samples <n>', 'images shown in the trajectory', parseIntArg('--trajectory-samples', 1, MAX_SAMPLES), 4)
    .option('--frames <n>', 'recorded steps for --trajectory (default: 10 for .png, every step up to 100 for .gif)', parseIntArg('--frames', 1, MAX_T))
    .option('--batch-size <n>', 'images per model call', parseIntArg('--batch-size', 1, MAX_BATCH_SIZE), 64)
    .option('--clip', 'clip the predicted x_0 to [-1, 1] at every step (default)')
    .option('--no-clip', 'do not clip the predicted x_0')
    .option('--class <value>', `class-conditional models: the class (its number or name), or 'all' for a grid with one row per class (--n images per class, default: ${DEFAULT_PER_CLASS}); left out, the images are unconditional`)
    .option('--guidance <x>', `classifier-free guidance scale with --class: 0 unconditional, 1 conditional, > 1 stronger (default: ${DEFAULT_GUIDANCE_SCALE})`, parseFloatArg('--guidance', 0, MAX_GUIDANCE_SCALE));
  addRuntimeOptions(cmd);
  addExamples(cmd, [
    'ddpm sample --n 16 --out samples.png',
    'ddpm sample --checkpoint mnist-28-cond --class 7 --guidance 3 --n 16 --out sevens.png',
    'ddpm sample --checkpoint runs/my-images --n 16 --trajectory reverse.gif --out my-images.png',
  ]);
  cmd.action(async (opts: SampleOptions, command: Command) => {
    // --class all counts --n per class, with its own default
    const perClass = opts.class === 'all' && command.getOptionValueSource('n') === 'default' ? { n: DEFAULT_PER_CLASS } : {};
    await runSample({ ...opts, ...perClass, clip: opts.clip ?? true });
  });
  return cmd;
}

function checkExt(flag: string, file: string, exts: readonly string[]): string {
  const ext = path.extname(file).toLowerCase();
  if (!exts.includes(ext)) throw new UserError(`${flag} must end in ${exts.join(' or ')}, got '${file}'`);
  return ext;
}

/** Images per class of `--class all` without --n. */
const DEFAULT_PER_CLASS = 8;

/** What --class asks for: every image of one class, or `perClass` images of each class (one grid row each). */
type ClassRequest = { kind: 'one'; label: number; name: string } | { kind: 'all'; perClass: number };

/**
 * --class and --guidance against the model: a class-conditional model, a class that it has (by number or name), a
 * scale only with a class. Undefined when the images are unconditional.
 */
function classRequest(model: LoadedModel, opts: SampleOptions): ClassRequest | undefined {
  if (opts.class === undefined) {
    if (opts.guidance !== undefined) throw new UserError('--guidance needs --class (the class to guide towards)');
    return undefined;
  }
  const K = model.unet.numClasses;
  if (K === 0) throw new UserError(`--class: ${model.file} is an unconditional model (it was not trained with --class-cond)`);
  const names = model.classNames ?? Array.from({ length: K }, (_, i) => String(i));
  if (opts.class === 'all') {
    if (opts.nrow !== undefined) throw new UserError('--nrow does not apply to --class all (one row per class, --n images each)');
    return { kind: 'all', perClass: opts.n };
  }
  const byName = names.indexOf(opts.class);
  const label = byName >= 0 ? byName : /^\d+$/.test(opts.class) ? Number(opts.class) : NaN;
  if (!(Number.isSafeInteger(label) && label < K)) {
    const list = K > 12 ? `${names.slice(0, 12).join(', ')}, ...` : names.join(', ');
    throw new UserError(`--class ${opts.class}: the model has classes 0..${K - 1} (${list}), or 'all'`);
  }
  return { kind: 'one', label, name: names[label]! };
}

/** Side of a grid of `count` images of side `size` (makeGrid's default padding of 2). */
const gridSide = (count: number, size: number) => count * (size + 2) + 2;

/**
 * Before any work: the model at the batch size, the samples (and trajectory) in memory, and the PNG grids must
 * fit (--n 1e8 used to load the model, then fail allocating the samples).
 */
function checkSampleSize(model: LoadedModel, opts: SampleOptions, frames: number, guided: boolean): void {
  const { inChannels: c, imageSize: s } = model.unet;
  // guidance runs the model on a doubled batch (conditional and unconditional halves)
  checkModelFits(model.unet, 'sample', (guided ? 2 : 1) * Math.min(opts.batchSize, opts.n), model.file);
  const k = opts.trajectory ? Math.min(opts.trajectorySamples, opts.n) : 0;
  checkOutputMemory(c * s * s * (5 * opts.n + 8 * k * frames), `--n ${opts.n}: ${opts.n} samples${k > 0 ? ` and a ${k}x${frames} trajectory` : ''} of ${c}x${s}x${s}`);
  const cols = Math.min(opts.nrow ?? Math.ceil(Math.sqrt(opts.n)), opts.n);
  const grid = gridSide(cols, s) * gridSide(Math.ceil(opts.n / cols), s);
  if (grid > MAX_GRID_PIXELS) {
    throw new UserError(`--n ${opts.n}: the grid of ${s}x${s} images would have ${grid.toLocaleString('en-US')} pixels, over the ${MAX_GRID_PIXELS.toLocaleString('en-US')} a PNG grid may have (MAX_GRID_PIXELS); lower --n`);
  }
  if (k > 0 && gridSide(frames, s) * gridSide(2 * k, s) > MAX_GRID_PIXELS) {
    throw new UserError(`--trajectory: ${k} image(s) x ${frames} frames of ${s}x${s} exceed the ${MAX_GRID_PIXELS.toLocaleString('en-US')}-pixel grid limit (MAX_GRID_PIXELS); lower --trajectory-samples or --frames`);
  }
}

async function runSample(opts: SampleOptions): Promise<void> {
  // 1. options that need no model
  checkExt('--out', opts.out, ['.png']);
  const trajExt = opts.trajectory ? checkExt('--trajectory', opts.trajectory, ['.png', '.gif']) : undefined;
  if (opts.frames !== undefined && !opts.trajectory) throw new UserError('--frames needs --trajectory');
  if (opts.trajectory && path.resolve(opts.trajectory) === path.resolve(opts.out)) throw new UserError(`--trajectory and --out name the same file: ${opts.out}`);
  // every output path and the execution provider before the model is read (sampling can take hours)
  await checkOutputFile('--out', opts.out);
  if (opts.outDir !== undefined) await checkOutputDir('--out-dir', opts.outDir);
  if (opts.trajectory) await checkOutputFile('--trajectory', opts.trajectory);
  await ensureExecutionProvider(opts.ep);

  // 2. the model's configs, then the sampler (validates --steps/--spacing/--eta against T)
  const t0 = performance.now();
  // a class without --checkpoint: the shipped class-conditional model
  const model = await loadModel(opts.checkpoint, { classConditional: opts.class !== undefined });
  const cls = classRequest(model, opts);
  if (cls?.kind === 'all') {
    const n = cls.perClass * model.unet.numClasses;
    if (n > MAX_SAMPLES) throw new UserError(`--class all: ${cls.perClass} images for each of ${model.unet.numClasses} classes is ${n}, over the limit of ${MAX_SAMPLES} (--n)`);
    opts = { ...opts, n, nrow: cls.perClass };
  }
  const guidance = cls ? (opts.guidance ?? DEFAULT_GUIDANCE_SCALE) : undefined;
  const request: PipelineGenerateOptions = {
    n: opts.n, sampler: opts.sampler, steps: opts.steps, spacing: opts.spacing, eta: opts.eta, clip: opts.clip, seed: opts.seed, batchSize: opts.batchSize,
    ...(cls ? { classLabels: cls.kind === 'one' ? cls.label : Int32Array.from({ length: opts.n }, (_, i) => Math.floor(i / cls.perClass)), guidanceScale: guidance } : {}),
  };
  let sampler: Sampler;
  try {
    sampler = pipelineSampler(model.diffusion, request);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  const steps = sampler.timesteps.length;
  const frames = opts.frames ?? (trajExt === '.gif' ? Math.min(steps, 100) : 10);
  checkSampleSize(model, opts, frames, guidance !== undefined && guidance !== 0 && guidance !== 1);
  const pipe = await DDPMPipeline.fromLoaded(model, { threads: opts.threads, executionProvider: opts.ep as ExecutionProvider | undefined });
  const loadSec = (performance.now() - t0) / 1000;
  const imageShape = pipe.imageShape;
  const batches = Math.ceil(opts.n / opts.batchSize);
  const what = !cls ? '' : cls.kind === 'one' ? ` of class ${cls.name}${cls.name !== String(cls.label) ? ` (${cls.label})` : ''}` : ` (${cls.perClass} per class, one row each)`;
  process.stdout.write(
    `sampling ${opts.n} image(s)${what} with ${opts.sampler}${opts.sampler === 'ddim' ? ` (eta ${opts.eta ?? DEFAULT_DDIM_ETA})` : ''}, ${steps} steps, ` +
      (guidance !== undefined ? `guidance ${guidance}, ` : '') +
      `${batches} batch(es) of <= ${Math.min(opts.batchSize, opts.n)}, seed ${opts.seed}; model ${model.file} (${describeModel(model)})\n`,
  );

  // 3. sample, with a progress bar on a terminal
  const tty = Boolean(process.stderr.isTTY);
  const bar = new cliProgress.SingleBar(
    { format: ' {bar} {percentage}% | step {value}/{total} | ETA {eta_formatted}', hideCursor: true, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  if (tty) bar.start(batches * steps, 0);
  const t1 = performance.now();
  let result: PipelineOutput;
  try {
    result = await pipe.generate({
      ...request,
      trajectory: opts.trajectory ? { samples: opts.trajectorySamples, frames } : undefined,
      onProgress: (done) => {
        if (tty) bar.update(done);
      },
    });
  } finally {
    if (tty) bar.stop();
    await pipe.release();
  }
  const sampleSec = (performance.now() - t1) / 1000;

  // 4. images: all encoded in memory, then written all or nothing (writeOutputs), so a failure (a full disk) leaves
  //    neither a grid without its --out-dir files nor part of a --out-dir set
  const outputs: Output[] = [];
  const written = [opts.out];
  if (opts.outDir) {
    // one file per image, 8-bit like the grid, so any tool (and `ddpm eval --samples`) can score them
    for (const [i, img] of result.images.entries()) {
      const file = path.join(opts.outDir, `sample_${String(i).padStart(5, '0')}.png`);
      outputs.push({ flag: '--out-dir', file, data: await encodePng(img) });
    }
    written.push(`${result.images.length} PNG file(s) in ${opts.outDir}`);
  }
  if (opts.trajectory && result.trajectory) {
    const data = trajExt === '.gif' ? encodeGif(trajectoryFrames(result.trajectory, imageShape)) : await encodePng(trajectoryGrid(result.trajectory, imageShape));
    outputs.push({ flag: '--trajectory', file: opts.trajectory, data });
    written.push(`${opts.trajectory} (${result.trajectory.samples} image(s), ${result.trajectory.steps.length} steps, t = ${result.trajectory.t[0]}..${result.trajectory.t.at(-1)})`);
  }
  const grid = makeGrid(result.samples, result.shape, { nrow: opts.nrow ?? Math.ceil(Math.sqrt(opts.n)) });
  outputs.push({ flag: '--out', file: opts.out, data: await encodePng(grid) });
  await writeOutputs(outputs);
  const ips = opts.n / sampleSec;
  process.stdout.write(
    `done: ${opts.n} image(s) in ${sampleSec.toFixed(2)} s${sampleSec >= 60 ? ` (${formatDuration(sampleSec)})` : ''}: ${ips.toFixed(2)} img/s, ` +
      `${((opts.n * steps) / sampleSec).toFixed(1)} img·steps/s, ${((sampleSec * 1000) / result.modelCalls).toFixed(1)} ms per model call; ` +
      `load ${loadSec.toFixed(2)} s; wrote ${written.join(', ')}\n`,
  );
}
