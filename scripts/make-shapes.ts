/**
 * Write a labelled folder of synthetic shapes (src/data/shapes.ts): small RGB PNGs of a circle, square, triangle,
 * cross or star in a random colour on a random contrasting background, at a random position and size.
 *
 *   npm run make:shapes -- --out data/shapes [--n 2000] [--size 32] [--seed 0]
 *
 * Layout: <out>/<kind>/<index>.png (index over the whole set, 5 digits at least), so the folder is also an image
 * folder with one subfolder per class, plus <out>/labels.json: { generator, seed, n, size, kinds, images: [{ file,
 * kind, fill, background, cx, cy, size }] } in index order. The same flags give the same bytes. The folder is
 * written beside <out> and renamed into place at the end, so an interrupted run leaves no partial <out>; an <out>
 * that exists already is refused.
 *
 * The shape classifier (models/shapes-classifier, `npm run train:shapes-classifier`) trains on --seed 1 and is
 * tested on --seed 2; use another seed (the default 0) for the data a diffusion model trains on.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SHAPE_KINDS, SHAPES_MAX_SIZE, SHAPES_MIN_SIZE, renderShape, shapeSpec } from '../src/data/shapes.ts';
import { UserError } from '../src/errors.ts';
import { intFlag } from '../src/cli/common.ts';
import { encodePng } from '../src/io/image.ts';
import { MAX_SAMPLES, MAX_SEED } from '../src/limits.ts';

export interface MakeShapesOptions {
  out: string;
  n: number;
  size: number;
  seed: number;
  /** progress, e.g. to stderr */
  log?: (line: string) => void;
}

/** Write the folder; returns the number of files written (images + labels.json). */
export async function makeShapes(opts: MakeShapesOptions): Promise<number> {
  const { out, n, size, seed } = opts;
  if (await fsp.stat(out).then(() => true, () => false)) throw new UserError(`--out ${out}: already exists; choose a new folder (nothing was written)`);
  const parent = path.dirname(path.resolve(out));
  const tmp = path.join(parent, `.${path.basename(out)}.partial-${process.pid}`);
  const digits = Math.max(5, String(n - 1).length);
  try {
    await fsp.mkdir(parent, { recursive: true });
    for (const kind of SHAPE_KINDS) await fsp.mkdir(path.join(tmp, kind), { recursive: true });
    const images: Array<{ file: string } & ReturnType<typeof shapeSpec>> = [];
    const CHUNK = 64; // sharp encodes on its thread pool; a few dozen files in flight keeps it busy
    for (let start = 0; start < n; start += CHUNK) {
      const batch = [];
      for (let i = start; i < Math.min(n, start + CHUNK); i++) {
        const spec = shapeSpec(seed, i, size);
        const file = `${spec.kind}/${String(i).padStart(digits, '0')}.png`;
        images.push({ file, ...spec });
        batch.push(encodePng({ data: renderShape(spec, size), width: size, height: size, channels: 3 }).then((png) => fsp.writeFile(path.join(tmp, file), png)));
      }
      await Promise.all(batch);
      if (start + CHUNK < n && (start / CHUNK) % 16 === 15) opts.log?.(`${start + CHUNK}/${n} images`);
    }
    // one image a line: readable, and diffs of two sets line up
    const head = JSON.stringify({ generator: 'ddpm-ts scripts/make-shapes.ts', seed, n, size, kinds: SHAPE_KINDS }).slice(0, -1);
    await fsp.writeFile(path.join(tmp, 'labels.json'), `${head},"images":[\n${images.map((im) => JSON.stringify(im)).join(',\n')}\n]}\n`);
    await fsp.rename(tmp, out);
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    if ((e as NodeJS.ErrnoException).code === 'ENOTEMPTY' || (e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new UserError(`--out ${out}: already exists; choose a new folder (nothing was written)`);
    }
    throw e;
  }
  return n + 1;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string' }, n: { type: 'string' }, size: { type: 'string' }, seed: { type: 'string' } } });
  if (values.out === undefined || values.out === '') throw new UserError('--out <folder> is required');
  const opts = {
    out: values.out,
    n: intFlag(values.n, 'n', 2000, 1, MAX_SAMPLES),
    size: intFlag(values.size, 'size', 32, SHAPES_MIN_SIZE, SHAPES_MAX_SIZE),
    seed: intFlag(values.seed, 'seed', 0, 0, MAX_SEED),
  };
  const t0 = performance.now();
  await makeShapes({ ...opts, log: (l) => process.stderr.write(`${l}\n`) });
  process.stderr.write(`wrote ${opts.n} ${opts.size}x${opts.size} images (seed ${opts.seed}) and labels.json to ${opts.out} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}

if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  try {
    await main();
  } catch (e) {
    if (e instanceof UserError || (e as Error).name === 'TypeError' && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`error: ${(e as Error).message}\n`);
      process.exit(2);
    }
    throw e;
  }
}
