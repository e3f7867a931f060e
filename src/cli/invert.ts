/**
 * `ddpm invert`: DDIM inversion (Song et al. 2021, §4.3): run the deterministic DDIM ODE from the image x_0 up to
 * x_T and save x_T as safetensors, with what decoding needs in its metadata; `--decode` runs the same DDIM steps
 * down again and writes the image. The work is ddimInvert in src/diffusion/edit.ts and sampleLoop.
 */
import { Command } from 'commander';
import { ddimInvert } from '../diffusion/edit.ts';
import { DdimSampler, sampleLoop, type Sampler } from '../diffusion/samplers.ts';
import { describeValue } from '../describe.ts';
import { encodePng } from '../io/image.ts';
import { serializeSafetensors } from '../io/safetensors.ts';
import { readSafetensorsFile, readSafetensorsHeaderFile } from '../io/safetensors-file.ts';
import { expectKind } from '../io/sniff-file.ts';
import { ensureExecutionProvider } from '../node/ort.ts';
import { Rng } from '../rng.ts';
import { UserError, addExamples, addRuntimeOptions, checkModelFits, parseIntArg } from './common.ts';
import { CHECKPOINT_HELP, checkExt, checkPngOut, checkResults, inputHeader, progressBar, readModelImage, resultImage, samplerFor } from './edit-shared.ts';
import { MAX_T } from '../limits.ts';
import { SPACINGS } from '../sample/generate.ts';
import { describeModel, loadModel, openDenoiser, type LoadedModel } from '../pipeline/load.ts';
import { checkOutputFile, errnoWords, writeOutputs } from './output.ts';

interface InvertOptions {
  checkpoint?: string;
  image?: string;
  decode?: string;
  out: string;
  steps?: number;
  spacing?: string;
  threads?: number;
  ep?: string;
}

/** The metadata key of an inverted x_T: what decoding needs to retrace the same steps. */
export const INVERT_METADATA_KEY = 'ddpm-ts.invert';

/** What `ddpm invert` records next to x_T. */
export interface InvertRecord {
  /** DDIM with η = 0, x̂_0 not clipped: the sampler that undoes the inversion */
  sampler: 'ddim';
  eta: 0;
  clip: false;
  steps: number;
  spacing: string;
  /** the kept timesteps, in sampling order (descending) */
  timesteps: number[];
  /** the model's diffusion config (schedule, meanType, varType, ...) */
  diffusion: LoadedModel['diffusion'];
  /** [C, H, W] of one image */
  imageShape: [number, number, number];
  /** where x_0 and the model came from (for the user; decoding checks the config, not the paths) */
  image: string;
  model: string;
}

export function invertCommand(): Command {
  const cmd = new Command('invert')
    .description('DDIM inversion: encode an image to the noise x_T that DDIM (eta 0) decodes back to it, or decode such noise')
    .option('--checkpoint <path>', CHECKPOINT_HELP)
    .option('--image <file>', "encode: a PNG, JPEG or WebP image, converted to the model's channels and size")
    .option('--decode <file>', 'decode: the x_T (.safetensors) written by `ddpm invert --image` (or any x_T tensor [N, C, H, W], float32)')
    .requiredOption('--out <file>', 'encode: x_T as .safetensors (tensor "x_T" [1, C, H, W] and the settings); decode: the image as .png')
    .option('--steps <n>', 'DDIM steps (default: 50; with --decode, those recorded in the file)', parseIntArg('--steps', 2, MAX_T))
    .option('--spacing <name|list>', `kept timesteps: ${SPACINGS.join(', ')}, or section counts like 10,10,5 (default: auto, i.e. ddimN)`);
  addRuntimeOptions(cmd);
  addExamples(
    cmd,
    ['ddpm invert --image digit.png --steps 50 --out noise.safetensors', 'ddpm invert --decode noise.safetensors --out roundtrip.png'],
    `Encoding runs the DDIM ODE (eta 0, no clipping) from x_0 to x_T over the kept timesteps in ascending order;
decoding runs the same steps back down. The round trip returns the image up to the ODE's discretisation error,
which falls as --steps grows. --decode checks that the model has the diffusion config recorded in the file.`,
  );
  cmd.action(async (opts: InvertOptions) => {
    await runInvert(opts);
  });
  return cmd;
}

/** The DDIM sampler of an inversion: η = 0, x̂_0 not clipped (clipping would make the map non-invertible). */
function invertSampler(model: LoadedModel, steps: number | undefined, spacing: string | undefined): DdimSampler {
  const s: Sampler = samplerFor(model, { sampler: 'ddim', steps, spacing: spacing ?? 'auto', eta: 0, clip: false });
  if (!(s instanceof DdimSampler)) throw new Error('expected a DDIM sampler');
  return s;
}

function mean(x: Float32Array): number {
  let s = 0;
  for (const v of x) s += v;
  return s / x.length;
}

function std(x: Float32Array): number {
  const m = mean(x);
  let s = 0;
  for (const v of x) s += (v - m) ** 2;
  return Math.sqrt(s / x.length);
}

async function runInvert(opts: InvertOptions): Promise<void> {
  if ((opts.image === undefined) === (opts.decode === undefined)) throw new UserError('pass either --image (encode) or --decode (decode)');
  if (opts.image !== undefined) await encode(opts, opts.image);
  else await decode(opts, opts.decode!);
}

async function encode(opts: InvertOptions, file: string): Promise<void> {
  // 1. the output, the execution provider and the input's header; then the model and the sampler
  checkExt('--out', opts.out, ['.safetensors']);
  await checkOutputFile('--out', opts.out);
  await ensureExecutionProvider(opts.ep);
  const imageIn = { file, header: await inputHeader('--image', file) };
  const model = await loadModel(opts.checkpoint);
  const sampler = invertSampler(model, opts.steps, opts.spacing);
  checkModelFits(model.unet, 'sample', 1, model.file);
  const { inChannels: c, imageSize: s } = model.unet;
  const image = await readModelImage('--image', imageIn, model);
  const denoiser = await openDenoiser(model, opts);
  const steps = sampler.timesteps.length;
  process.stdout.write(`inverting ${file}: DDIM (eta 0, no clipping), ${steps} steps, t = ${sampler.timesteps.at(-1)}..${sampler.timesteps[0]}; model ${model.file} (${describeModel(model)})\n`);

  // 2. x_0 -> x_T
  const bar = progressBar(steps);
  const t1 = performance.now();
  let xT: Float32Array;
  try {
    xT = await ddimInvert(sampler, denoiser.predict, { data: image, shape: [1, c, s, s] }, { onStep: (st) => bar.update(st.step + 1) });
  } finally {
    bar.stop();
    await denoiser.release();
  }
  const sec = (performance.now() - t1) / 1000;

  // 3. x_T and the record decoding needs
  const record: InvertRecord = {
    sampler: 'ddim', eta: 0, clip: false, steps, spacing: opts.spacing ?? 'auto', timesteps: Array.from(sampler.timesteps),
    diffusion: model.diffusion, imageShape: [c, s, s], image: file, model: model.file,
  };
  const bytes = serializeSafetensors({ x_T: { data: xT, shape: [1, c, s, s] } }, { [INVERT_METADATA_KEY]: JSON.stringify(record) });
  await writeOutputs([{ flag: '--out', file: opts.out, data: bytes }]);
  process.stdout.write(
    `done in ${sec.toFixed(2)} s: x_T has mean ${mean(xT).toFixed(4)}, std ${std(xT).toFixed(4)} (N(0, 1) noise: 0, 1); ` +
      `wrote ${opts.out}; decode with: ddpm invert --decode ${opts.out}${opts.checkpoint ? ` --checkpoint ${opts.checkpoint}` : ''} --out x.png\n`,
  );
}

/** The record in a file's metadata, checked against the model; undefined when the file has none. */
function readRecord(file: string, metadata: Record<string, string>, model: LoadedModel): InvertRecord | undefined {
  const raw = metadata[INVERT_METADATA_KEY];
  if (raw === undefined) return undefined;
  let r: InvertRecord;
  try {
    r = JSON.parse(raw) as InvertRecord;
  } catch {
    throw new UserError(`--decode ${file}: the metadata '${INVERT_METADATA_KEY}' is not valid JSON`);
  }
  if (typeof r !== 'object' || r === null || !Number.isSafeInteger(r.steps) || typeof r.spacing !== 'string' || !Array.isArray(r.timesteps)) {
    throw new UserError(`--decode ${file}: the metadata '${INVERT_METADATA_KEY}' lacks steps, spacing or timesteps: ${describeValue(r)}`);
  }
  // the same process and parameterisation, or the steps back are not those taken
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const d = model.diffusion;
  if (!same(r.diffusion?.schedule, d.schedule) || r.diffusion?.meanType !== d.meanType) {
    throw new UserError(
      `--decode ${file} was inverted with another diffusion (${describeValue(r.diffusion?.schedule)}, ${String(r.diffusion?.meanType)}) ` +
        `than ${model.file} (${describeModel(model)}); pass its --checkpoint`,
    );
  }
  return r;
}

async function decode(opts: InvertOptions, file: string): Promise<void> {
  // 1. the output, then x_T and its record, then the model
  await checkPngOut(opts.out);
  await ensureExecutionProvider(opts.ep);
  // the header first: a file of another kind, shape (or size) is refused before its data is read
  await expectKind(file, `--decode ${file}`, ['safetensors'], 'a safetensors file', '--decode reads the x_T that ddpm invert --image wrote');
  const header = await readSafetensorsHeaderFile(file).catch((e: unknown) => {
    const words = errnoWords(e);
    if (words !== undefined) throw new UserError(`--decode ${file}: cannot read: ${words}`);
    throw e;
  });
  const model = await loadModel(opts.checkpoint);
  const { inChannels: c, imageSize: s } = model.unet;
  const entry = header.entries.find((e) => e.name === 'x_T');
  if (entry === undefined) throw new UserError(`--decode ${file}: no tensor 'x_T' (found: ${header.entries.map((e) => e.name).join(', ') || 'none'})`);
  const [n, ...rest] = entry.shape;
  if (entry.dtype !== 'F32' || entry.shape.length !== 4 || !(n >= 1) || rest.join() !== [c, s, s].join()) {
    throw new UserError(`--decode ${file}: x_T is ${entry.dtype} [${entry.shape.join(', ')}]; the model needs F32 [N, ${c}, ${s}, ${s}]`);
  }
  checkResults(n, model);
  const x = (await readSafetensorsFile(file)).tensors.x_T.data as Float32Array;
  const record = readRecord(file, header.metadata, model);
  if (record && (opts.steps !== undefined || opts.spacing !== undefined)) {
    throw new UserError(`--steps/--spacing: ${file} records its ${record.steps} steps (spacing ${record.spacing}); decoding with others does not give the image back`);
  }
  const sampler = invertSampler(model, record?.steps ?? opts.steps, record?.spacing ?? opts.spacing);
  if (record && record.timesteps.join() !== Array.from(sampler.timesteps).join()) {
    throw new UserError(`--decode ${file}: its timesteps are not those of ${record.steps} steps with spacing ${record.spacing} here`);
  }
  checkModelFits(model.unet, 'sample', n, model.file);
  const denoiser = await openDenoiser(model, opts);
  const steps = sampler.timesteps.length;
  process.stdout.write(`decoding ${file} (${n} x_T): DDIM (eta 0, no clipping), ${steps} steps; model ${model.file} (${describeModel(model)})\n`);

  // 2. x_T -> x_0 (η = 0 draws no noise: the Rng is unused)
  const bar = progressBar(steps);
  const t1 = performance.now();
  let x0: Float32Array;
  try {
    x0 = await sampleLoop(sampler, denoiser.predict, [n, c, s, s], new Rng(0), { noise: x, onStep: (st) => bar.update(st.step + 1) });
  } finally {
    bar.stop();
    await denoiser.release();
  }
  const sec = (performance.now() - t1) / 1000;
  await writeOutputs([{ flag: '--out', file: opts.out, data: await encodePng(resultImage(x0, [n, c, s, s])) }]);
  process.stdout.write(`done in ${sec.toFixed(2)} s; wrote ${opts.out}\n`);
}
