/** `ddpm noise`: the forward process on your own image, closed form vs chain (src/sample/forward.ts does the work). */
import path from 'node:path';
import { Command, Option } from 'commander';
import { GaussianDiffusion } from '../diffusion/gaussian-diffusion.ts';
import { decodeImage, encodePng, makeGrid, readImage, readImageHeader } from '../io/image.ts';
import { MAX_GRID_PIXELS, MAX_IMAGE_SIZE, MAX_SEED, MAX_T } from '../limits.ts';
import { Rng } from '../rng.ts';
import { forwardProcess } from '../sample/forward.ts';
import { UserError, addExamples, checkImageInput, checkOutputMemory, parseIntArg } from './common.ts';
import { checkOutputFile, writeOutputs } from './output.ts';

interface NoiseOptions {
  image: string;
  t: string;
  out: string;
  schedule: 'linear' | 'cosine' | 'sigmoid' | 'scaledLinear';
  T: number;
  seed: number;
  size?: number;
  channels?: string;
}

/** Without --size, images whose shorter side is larger than this are resized and centre-cropped to it (the chain costs T·pixels normals). */
const MAX_DEFAULT_SIZE = 128;

export function noiseCommand(): Command {
  const cmd = new Command('noise')
    .description('show the forward process on an image: closed-form q(x_t|x_0) (eq. 4) above, the iterated chain q(x_t|x_{t-1}) (eq. 2) below')
    .requiredOption('--image <file>', 'a PNG, JPEG or WebP image')
    .option('--t <list>', 'timesteps, comma-separated integers in [0, T) (index t is the paper\'s t+1)', '0,100,250,500,999')
    .requiredOption('--out <file>', 'the strip (.png): x_0, then x_t for each t; top row closed form, bottom row chain')
    .addOption(new Option('--schedule <name>', 'β schedule').choices(['linear', 'cosine', 'sigmoid', 'scaledLinear']).default('linear'))
    .option('--T <n>', 'diffusion steps T', parseIntArg('--T', 2, MAX_T), 1000)
    .option('--seed <n>', 'random seed', parseIntArg('--seed', 0, MAX_SEED), 0)
    .option('--size <n>', `resize the shorter side to n pixels and centre-crop to a square (default: keep, but at most ${MAX_DEFAULT_SIZE})`, parseIntArg('--size', 1, MAX_IMAGE_SIZE))
    .addOption(new Option('--channels <n>', '1 (grayscale) or 3 (RGB) (default: 1 for a gray image, else 3)').choices(['1', '3']));
  addExamples(cmd, [
    'ddpm noise --image photo.jpg --out strip.png',
    'ddpm noise --image digit.png --t 0,50,100,200,400,999 --schedule cosine --out cosine.png',
  ]);
  cmd.action(async (opts: NoiseOptions) => {
    await runNoise(opts);
  });
  return cmd;
}

function parseTimesteps(list: string, T: number): number[] {
  const ts = list.split(',').map((s) => s.trim());
  if (ts.length === 0 || ts.some((s) => s === '')) throw new UserError(`--t: expected comma-separated integers, got '${list}'`);
  return ts.map((s) => {
    const v = Number(s);
    if (!Number.isInteger(v) || v < 0 || v >= T) throw new UserError(`--t: ${s} is not an integer in [0, ${T}) (T = ${T}; use --T for a longer process)`);
    return v;
  });
}

async function loadImage(file: string, size: number | undefined, channels: 1 | 3 | undefined) {
  await checkImageInput('--image', file);
  try {
    // 1. size and channels when not given: the size from the header (no decode), the channels from the pixels
    if (size === undefined) {
      const { width, height } = await readImageHeader(file);
      if (Math.min(width, height) > MAX_DEFAULT_SIZE) {
        size = MAX_DEFAULT_SIZE;
        process.stderr.write(`note: ${width}x${height} image resized and cropped to ${size}x${size} (pass --size to choose)\n`);
      }
    }
    if (channels === undefined) {
      const rgb = await decodeImage(file, { channels: 3, size });
      let gray = true;
      for (let i = 0; i < rgb.data.length && gray; i += 3) gray = rgb.data[i] === rgb.data[i + 1] && rgb.data[i] === rgb.data[i + 2];
      channels = gray ? 1 : 3;
    }
    return await readImage(file, { channels, size });
  } catch (e) {
    throw new UserError(`--image ${file}: cannot decode (${(e as Error).message})`);
  }
}

const fmt = (v: number, w = 8, d = 4) => v.toFixed(d).padStart(w);

async function runNoise(opts: NoiseOptions): Promise<void> {
  // 1. options and the image
  const ts = parseTimesteps(opts.t, opts.T);
  let diffusion: GaussianDiffusion;
  try {
    diffusion = GaussianDiffusion.fromConfig({ kind: opts.schedule, T: opts.T });
  } catch (e) {
    throw new UserError(`--schedule ${opts.schedule} --T ${opts.T}: ${(e as Error).message}`);
  }
  if (path.extname(opts.out).toLowerCase() !== '.png') throw new UserError(`--out must end in .png, got '${opts.out}'`);
  await checkOutputFile('--out', opts.out);
  const img = await loadImage(opts.image, opts.size, opts.channels === undefined ? undefined : (Number(opts.channels) as 1 | 3));
  // the strip (2 rows of 1 + |t| images) must fit in memory and in a PNG before the process runs
  const stripPixels = ((ts.length + 1) * (img.width + 2) + 2) * (2 * (img.height + 2) + 2);
  if (stripPixels > MAX_GRID_PIXELS) {
    throw new UserError(`--t: ${ts.length} timesteps of ${img.width}x${img.height} images make a ${stripPixels.toLocaleString('en-US')}-pixel strip, over the ${MAX_GRID_PIXELS.toLocaleString('en-US')} limit (MAX_GRID_PIXELS)`);
  }
  checkOutputMemory(4 * 2 * 2 * (ts.length + 1) * img.data.length, `--t: ${ts.length} timesteps (closed form and chain) of ${img.channels}x${img.height}x${img.width}`);

  // 2. the forward process both ways
  const rows = forwardProcess(diffusion, img.data, ts, new Rng(opts.seed));

  // 3. the strip: [x_0, x_t1, x_t2, ...] closed form above, chain below
  const per = img.data.length;
  const cols = ts.length + 1;
  const batch = new Float32Array(2 * cols * per);
  batch.set(img.data, 0);
  batch.set(img.data, cols * per);
  rows.forEach((r, j) => {
    batch.set(r.closed, (1 + j) * per);
    batch.set(r.chain, (cols + 1 + j) * per);
  });
  const strip = makeGrid(batch, [2 * cols, img.channels, img.height, img.width], { nrow: cols });
  await writeOutputs([{ flag: '--out', file: opts.out, data: await encodePng(strip) }]);

  // 4. the numbers: schedule values, and both rows against N(√ᾱ x_0, (1 − ᾱ) I)
  const out = process.stdout;
  out.write(
    `${opts.image}: ${img.channels}x${img.height}x${img.width}, ${opts.schedule} schedule, T = ${opts.T}, seed ${opts.seed}\n` +
      `x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (eq. 4) vs ${Math.max(...ts) + 1} steps of x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps (eq. 2)\n` +
      `pixel mean/std of x_t: expected under q(x_t|x_0) = N(sqrt(abar) x_0, (1 - abar) I), then measured; ` +
      `z = (x_t - sqrt(abar) x_0)/sqrt(1 - abar) should have mean 0, std 1\n`,
  );
  const head =
    '     t    abar_t  sqrt(abar) sqrt(1-abar) |  expected mean   std | closed mean   std  z:mean  z:std | chain mean    std  z:mean  z:std\n';
  out.write(head);
  for (const r of rows) {
    out.write(
      `${String(r.t).padStart(6)} ${fmt(r.alphaBar, 9, 5)} ${fmt(r.sqrtAlphaBar, 10, 5)} ${fmt(r.sqrtOneMinusAlphaBar, 12, 5)} |` +
        `      ${fmt(r.expected.mean)} ${fmt(r.expected.std, 6)} |` +
        `    ${fmt(r.closedStats.mean)} ${fmt(r.closedStats.std, 6)} ${fmt(r.closedZ.mean, 7, 3)} ${fmt(r.closedZ.std, 6, 3)} |` +
        `   ${fmt(r.chainStats.mean)} ${fmt(r.chainStats.std, 6)} ${fmt(r.chainZ.mean, 7, 3)} ${fmt(r.chainZ.std, 6, 3)}\n`,
    );
  }
  out.write(`wrote ${opts.out} (top: closed form, bottom: chain; first column x_0)\n`);
}
