/**
 * What `ddpm inpaint`, `ddpm edit` and `ddpm invert` share: reading the user's image (and mask) at the model's
 * size and channels, the sampler flags, the output grid, a progress bar. The editing itself lives in
 * src/diffusion/inpaint.ts and src/diffusion/edit.ts.
 */
import path from 'node:path';
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import type { Sampler } from '../diffusion/samplers.ts';
import { readImageHeader, type ImageHeader } from '../io/image.ts';
import { decodeMask, decodeModelImage, modelDecodeSize } from '../io/model-image.ts';

export { resultImage } from '../io/model-image.ts';
import { MAX_BATCH_SIZE, MAX_GRID_PIXELS, MAX_SAMPLES, MAX_SEED, MAX_T } from '../limits.ts';
import { PerExampleRng, Rng } from '../rng.ts';
import { DEFAULT_DDIM_ETA, SAMPLER_KINDS, SPACINGS, makeSampler, type SamplerKind } from '../sample/generate.ts';
import { UserError, checkImageInput, checkOutputMemory, parseFloatArg, parseIntArg } from './common.ts';
import { SHIPPED_MODEL_NAMES, type LoadedModel } from '../pipeline/load.ts';
import { checkOutputFile } from './output.ts';

/** The sampler flags of the editing commands (as `ddpm sample`'s). */
export interface SamplerFlags {
  sampler: SamplerKind;
  steps?: number;
  spacing: string;
  eta?: number;
  clip?: boolean;
}

/** --sampler, --steps, --spacing, --eta, --clip/--no-clip with `defaultKind`. */
export function addSamplerOptions(cmd: Command, defaultKind: SamplerKind): Command {
  return cmd
    .addOption(new Option('--sampler <name>', 'ddpm (ancestral), ddim or dpm++ (DPM-Solver++(2M))').choices(SAMPLER_KINDS).default(defaultKind))
    .option('--steps <n>', 'sampling steps, respaced from T (default: 50 for ddim, as ddpm sample; 20 for dpm++; T (1000) for ddpm)', parseIntArg('--steps', 2, MAX_T))
    .option('--spacing <name|list>', `kept timesteps: ${SPACINGS.join(', ')}, or section counts like 10,10,5`, 'auto')
    .option('--eta <x>', 'DDIM η in [0, 1] (default: 1)', parseFloatArg('--eta', 0, 1))
    .option('--clip', 'clip the predicted x_0 to [-1, 1] at every step (default)')
    .option('--no-clip', 'do not clip the predicted x_0');
}

/** --n, --seed, --batch-size: several results per input, image i from random stream i. */
export function addCountOptions(cmd: Command): Command {
  return cmd
    .option('--n <n>', 'results per input image, each from its own random stream', parseIntArg('--n', 1, MAX_SAMPLES), 1)
    .option('--seed <n>', 'random seed; result i always uses stream i, whatever --n and --batch-size', parseIntArg('--seed', 0, MAX_SEED), 0)
    .option('--batch-size <n>', 'images per model call', parseIntArg('--batch-size', 1, MAX_BATCH_SIZE), 64);
}

/** --checkpoint of the commands that read a model (the shipped mnist-28 by default). */
export const CHECKPOINT_HELP =
  `the model: a checkpoint or run directory, a checkpoint file (.safetensors, as the page downloads), a .onnx from \`ddpm export\`, or a shipped model (${SHIPPED_MODEL_NAMES.join(', ')}) (default: mnist-28)`;

/** The model's sampler for the flags; bad flags as a UserError. */
export function samplerFor(model: LoadedModel, f: SamplerFlags): Sampler {
  try {
    return makeSampler(model.diffusion, { sampler: f.sampler, steps: f.steps, spacing: f.spacing, eta: f.eta, clip: f.clip ?? true });
  } catch (e) {
    throw new UserError((e as Error).message);
  }
}

/** "ddim (eta 1), 50 steps" */
export function describeSampler(f: SamplerFlags, sampler: Sampler): string {
  return `${f.sampler}${f.sampler === 'ddim' ? ` (eta ${f.eta ?? DEFAULT_DDIM_ETA})` : ''}, ${sampler.timesteps.length} steps`;
}

/** `file` ends in one of `exts` (case-insensitive). */
export function checkExt(flag: string, file: string, exts: readonly string[]): void {
  if (!exts.includes(path.extname(file).toLowerCase())) throw new UserError(`${flag} must end in ${exts.join(' or ')}, got '${file}'`);
}

/** A .png --out, checked before any work. */
export async function checkPngOut(file: string): Promise<void> {
  checkExt('--out', file, ['.png']);
  await checkOutputFile('--out', file);
}

/** The header of an input image (no pixels decoded); a missing or unreadable file is one line naming the flag. */
export async function inputHeader(flag: string, file: string): Promise<ImageHeader> {
  await checkImageInput(flag, file);
  try {
    return await readImageHeader(file);
  } catch (e) {
    throw new UserError(`${flag} ${file}: cannot decode (${(e as Error).message})`);
  }
}

/**
 * The image at the model's channels and size, (C, S, S) in [−1, 1]. A colour image for a 1-channel model becomes
 * its Rec. 601 luma; any other size is resized (shorter side to S) and centre-cropped, with a note on stderr.
 */
export async function readModelImage(flag: string, { file, header: h }: InputFile, model: LoadedModel): Promise<Float32Array> {
  const { inChannels: c, imageSize: s } = model.unet;
  if (modelDecodeSize(h, s) !== undefined) process.stderr.write(`note: ${flag} ${file} is ${h.width}x${h.height}: resized and centre-cropped to the model's ${s}x${s}\n`);
  try {
    return await decodeModelImage(file, h, c as 1 | 3, s);
  } catch (e) {
    throw new UserError(`${flag} ${file}: cannot decode (${(e as Error).message})`);
  }
}

/** An input file and its header. */
export interface InputFile {
  file: string;
  header: ImageHeader;
}

/** The mask must have the image's size (as stored in the files): one line naming both otherwise. */
export function checkMaskSize(mask: InputFile, image: InputFile): void {
  const [m, i] = [mask.header, image.header];
  if (m.width !== i.width || m.height !== i.height) {
    throw new UserError(`--mask ${mask.file} is ${m.width}x${m.height} but --image ${image.file} is ${i.width}x${i.height}: they must have the same size`);
  }
}

/**
 * The mask at the model's size, one channel, 1 = generate: white (luma >= 128 of 255, after the same resize and
 * crop as the image) generates, anything darker keeps. Transparent pixels count as black (keep).
 */
export async function readMask({ file, header }: InputFile, model: LoadedModel): Promise<Float32Array> {
  try {
    return await decodeMask(file, header, model.unet.imageSize);
  } catch (e) {
    throw new UserError(`--mask ${file}: cannot decode (${(e as Error).message})`);
  }
}

/**
 * Before any work: `n` results of the model's size in memory, and their grid within MAX_GRID_PIXELS.
 * Returns the grid's images per row (ceil(sqrt(n))).
 */
export function checkResults(n: number, model: LoadedModel): number {
  const { inChannels: c, imageSize: s } = model.unet;
  checkOutputMemory(3 * 4 * c * s * s * n, `--n ${n}: ${n} result(s) of ${c}x${s}x${s} (with their inputs and noise)`);
  const cols = Math.ceil(Math.sqrt(n));
  const side = (k: number) => k * (s + 2) + 2;
  const pixels = side(cols) * side(Math.ceil(n / cols));
  if (n > 1 && pixels > MAX_GRID_PIXELS) {
    throw new UserError(`--n ${n}: the grid of ${s}x${s} images would have ${pixels.toLocaleString('en-US')} pixels, over the ${MAX_GRID_PIXELS.toLocaleString('en-US')} a PNG grid may have (MAX_GRID_PIXELS); lower --n`);
  }
  return cols;
}

/** A progress bar on stderr when it is a terminal; nothing otherwise. */
export function progressBar(total: number): { update: (done: number) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { update: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    { format: ' {bar} {percentage}% | model call {value}/{total} | ETA {eta_formatted}', hideCursor: true, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return { update: (d) => bar.update(d), stop: () => bar.stop() };
}

/**
 * Run `work` over `n` results in batches of at most `batchSize`; result i draws all its randomness from
 * `Rng(seed).fold(i)` (as `ddpm sample`), so it does not depend on --n or --batch-size.
 * @param per values of one result
 */
export async function inBatches(
  n: number,
  batchSize: number,
  seed: number,
  per: number,
  work: (B: number, rng: Rng) => Promise<Float32Array>,
): Promise<Float32Array> {
  const out = new Float32Array(n * per);
  const root = new Rng(seed);
  for (let start = 0; start < n; start += batchSize) {
    const B = Math.min(batchSize, n - start);
    const rng = new PerExampleRng(Array.from({ length: B }, (_, i) => root.fold(start + i)));
    out.set(await work(B, rng), start * per);
  }
  return out;
}

/** `x` repeated `B` times. */
export function repeat(x: Float32Array, B: number): Float32Array {
  const out = new Float32Array(B * x.length);
  for (let b = 0; b < B; b++) out.set(x, b * x.length);
  return out;
}
