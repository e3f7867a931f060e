/**
 * Write a labelled image folder from one of the seeded generators (src/data/generator.ts): the shapes of
 * `make:shapes` or a folder of the recipe suite (src/eval/recipe-suite.ts: textured, multi, glyphs, grey, mnist-png).
 *
 *   npm run make:folder -- --generator <name> --out data/suite/<name> [--n 2000] [--seed 0]
 *
 * Layout: <out>/<class>/<index>.png (index over the whole set, 5 digits at least), so the folder is also an image
 * folder with one subfolder per class, plus <out>/labels.json: { generator, seed, n, size, kinds, images: [{ file,
 * kind, ...the image's parameters }] } in index order. The same flags give the same bytes. The folder is written
 * beside <out> and renamed into place at the end, so an interrupted run leaves no partial <out>; an <out> that exists
 * already is refused. Judges train on seeds 1 (train) and 2 (test); use another seed (the default 0) for the data a
 * diffusion model trains on.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ImageGenerator } from '../src/data/generator.ts';
import { UserError } from '../src/errors.ts';
import { intFlag } from '../src/cli/common.ts';
import { FOLDER_NAMES, suiteFolder } from '../src/eval/recipe-suite.ts';
import { encodePng } from '../src/io/image.ts';
import { MAX_SAMPLES, MAX_SEED } from '../src/limits.ts';

export interface MakeFolderOptions {
  generator: ImageGenerator;
  out: string;
  n: number;
  seed: number;
  /** labels.json's `generator`: what wrote the folder */
  source?: string;
  /** progress, e.g. to stderr */
  log?: (line: string) => void;
}

const exists = (p: string) => fsp.stat(p).then(() => true, () => false);
const refused = (out: string) => new UserError(`--out ${out}: already exists; choose a new folder (nothing was written)`);

/** Write the folder; returns the number of files written (images + labels.json). */
export async function makeFolder(opts: MakeFolderOptions): Promise<number> {
  const { generator: gen, out, n, seed } = opts;
  if (await exists(out)) throw refused(out);
  const available = gen.count?.(seed);
  if (available !== undefined && n > available) throw new UserError(`--n ${n}: ${gen.name} has ${available} images for --seed ${seed}`);
  const parent = path.dirname(path.resolve(out));
  const tmp = path.join(parent, `.${path.basename(out)}.partial-${process.pid}`);
  const digits = Math.max(5, String(n - 1).length);
  const { size: S, channels } = gen;
  try {
    await fsp.mkdir(parent, { recursive: true });
    for (const kind of gen.classes) await fsp.mkdir(path.join(tmp, kind), { recursive: true });
    const images: { file: string }[] = [];
    const CHUNK = 64; // sharp encodes on its thread pool; a few dozen files in flight keeps it busy
    for (let start = 0; start < n; start += CHUNK) {
      const batch = [];
      for (let i = start; i < Math.min(n, start + CHUNK); i++) {
        const im = gen.draw(seed, i);
        const file = `${gen.classes[im.label]}/${String(i).padStart(digits, '0')}.png`;
        images.push({ file, ...im.spec });
        batch.push(encodePng({ data: im.hwc, width: S, height: S, channels }).then((png) => fsp.writeFile(path.join(tmp, file), png)));
      }
      await Promise.all(batch);
      if (start + CHUNK < n && (start / CHUNK) % 16 === 15) opts.log?.(`${start + CHUNK}/${n} images`);
    }
    // one image a line: readable, and diffs of two sets line up
    const source = opts.source ?? `ddpm-ts scripts/make-folder.ts --generator ${gen.name}`;
    const head = JSON.stringify({ generator: source, seed, n, size: S, kinds: gen.classes }).slice(0, -1);
    await fsp.writeFile(path.join(tmp, 'labels.json'), `${head},"images":[\n${images.map((im) => JSON.stringify(im)).join(',\n')}\n]}\n`);
    await fsp.rename(tmp, out);
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') throw refused(out);
    throw e;
  }
  return n + 1;
}

/**
 * The command line of make:folder, or of make:shapes (`fixed` given: its generator from --size, no --generator):
 * flags checked, the folder written, one line on stderr; a bad flag is one line and exit 2.
 */
export async function makeFolderCli(fixed?: { generator: (size: string | undefined) => ImageGenerator; source: string }): Promise<void> {
  try {
    const flags = ['out', 'n', 'seed', fixed ? 'size' : 'generator'];
    const values = parseArgs({ options: Object.fromEntries(flags.map((f) => [f, { type: 'string' as const }])) }).values as Record<string, string | undefined>;
    if (values.out === undefined || values.out === '') throw new UserError('--out <folder> is required');
    let gen: ImageGenerator;
    if (fixed) gen = fixed.generator(values.size);
    else {
      const name = values.generator;
      if (name === undefined || !(FOLDER_NAMES as readonly string[]).includes(name)) throw new UserError(`--generator: one of ${FOLDER_NAMES.join(', ')}, got ${name === undefined ? 'none' : `'${name}'`}`);
      gen = suiteFolder(name).generator;
    }
    const n = intFlag(values.n, 'n', 2000, 1, MAX_SAMPLES);
    const seed = intFlag(values.seed, 'seed', 0, 0, MAX_SEED);
    const t0 = performance.now();
    await makeFolder({ generator: gen, out: values.out, n, seed, source: fixed?.source, log: (l) => process.stderr.write(`${l}\n`) });
    process.stderr.write(`wrote ${n} ${gen.size}x${gen.size} images (seed ${seed}) and labels.json to ${values.out} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err instanceof UserError || (err.name === 'TypeError' && err.code?.startsWith('ERR_PARSE_ARGS'))) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}

if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  await makeFolderCli();
}
