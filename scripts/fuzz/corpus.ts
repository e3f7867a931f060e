/**
 * The seed corpus and input generation shared by the parent (fuzz.ts) and its workers (worker.ts): the parent
 * builds the seeds once into a folder, workers read them from there, and input `index` of a target under a seed
 * is a pure function of (corpus, seed, index), so the parent can rebuild whatever input a worker died on.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { inputRng } from './mutate.ts';
import type { Target } from './targets.ts';

export interface SeedFile {
  name: string;
  bytes: Uint8Array;
}

/** Write every target's seeds to `<dir>/<target>/<name>`. */
export async function buildCorpus(dir: string, targets: readonly Target[]): Promise<void> {
  for (const t of targets) {
    const tdir = path.join(dir, t.name);
    await fsp.mkdir(tdir, { recursive: true });
    for (const [name, bytes] of Object.entries(await t.seeds())) await fsp.writeFile(path.join(tdir, name), bytes);
  }
}

/** A target's seeds, sorted by name (the order input generation depends on). */
export async function readCorpus(dir: string, target: string): Promise<SeedFile[]> {
  const tdir = path.join(dir, target);
  const names = (await fsp.readdir(tdir)).sort();
  return Promise.all(names.map(async (name) => ({ name, bytes: new Uint8Array(await fsp.readFile(path.join(tdir, name))) })));
}

/** Input `index`: the seeds themselves first (each must be read without a failure), then mutations. */
export function makeInput(target: Target, seeds: readonly SeedFile[], seed: number, index: number): Uint8Array {
  if (index < seeds.length) return seeds[index]!.bytes;
  const rng = inputRng(seed, target.name, index);
  const s = seeds[rng.int(seeds.length)]!;
  const other = seeds[rng.int(seeds.length)]!;
  return target.mutate(s.bytes, rng, other.bytes);
}

export function shortHash(b: Uint8Array): string {
  return createHash('sha1').update(b).digest('hex').slice(0, 12);
}
