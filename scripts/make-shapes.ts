/**
 * Write a labelled folder of synthetic shapes (src/data/shapes.ts): small RGB PNGs of a circle, square, triangle,
 * cross or star in a random colour on a random contrasting background, at a random position and size.
 *
 *   npm run make:shapes -- --out data/shapes [--n 2000] [--size 32] [--seed 0]
 *
 * The folder writer is make:folder's (scripts/make-folder.ts): <out>/<kind>/<index>.png plus <out>/labels.json
 * ({ generator, seed, n, size, kinds, images: [{ file, kind, fill, background, cx, cy, size }] }), the same bytes
 * for the same flags, written beside <out> and renamed into place; an <out> that exists already is refused.
 *
 * The shape classifier (models/shapes-classifier, `npm run train:shapes-classifier`) trains on --seed 1 and is
 * tested on --seed 2; use another seed (the default 0) for the data a diffusion model trains on.
 */
import { SHAPES_MAX_SIZE, SHAPES_MIN_SIZE, shapesGenerator } from '../src/data/shapes.ts';
import { intFlag } from '../src/cli/common.ts';
import { makeFolder, makeFolderCli } from './make-folder.ts';

export interface MakeShapesOptions {
  out: string;
  n: number;
  size: number;
  seed: number;
  /** progress, e.g. to stderr */
  log?: (line: string) => void;
}

const SOURCE = 'ddpm-ts scripts/make-shapes.ts';

/** Write the folder; returns the number of files written (images + labels.json). */
export function makeShapes(opts: MakeShapesOptions): Promise<number> {
  return makeFolder({ ...opts, generator: shapesGenerator(opts.size), source: SOURCE });
}

if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  await makeFolderCli({ generator: (size) => shapesGenerator(intFlag(size, 'size', 32, SHAPES_MIN_SIZE, SHAPES_MAX_SIZE)), source: SOURCE });
}
