/**
 * The shipped FID classifier on disk (Node only): a directory holding
 *   config.json              { model: LeNetConfig, testAccuracy, ..., training: {command, date, ...} }
 *   weights.safetensors      F32, torch-style names (src/models/classifier.ts)
 *   test-stats.safetensors   F64 `mu` [d] and `sigma` [d, d] of the MNIST test set's features,
 *                            so FID never recomputes them
 * Default: `models/lenet-mnist` in the package, written by `npm run train:classifier`; the shape classifier
 * `models/shapes-classifier` (test statistics of held-out shapes) is written by `npm run train:shapes-classifier`.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ParamValue } from '../engine/tree.ts';
import { readCheckpointDirStable, writeCheckpointDir } from '../io/atomic.ts';
import { readSafetensorsFile } from '../io/safetensors-file.ts';
import { serializeSafetensors } from '../io/safetensors.ts';
import { sniffPath, wrongKindMessage } from '../io/sniff-file.ts';
import { lenetConfig, lenetParamShapes, type LeNetConfig } from '../models/classifier.ts';
import type { GaussianStats } from './fid.ts';

/** `models/lenet-mnist` at the package root. */
export const DEFAULT_CLASSIFIER_DIR = fileURLToPath(new URL('../../models/lenet-mnist', import.meta.url));
/** `models/shapes-classifier` at the package root: circle, square, triangle, cross, star at 32x32 RGB. */
export const DEFAULT_SHAPES_CLASSIFIER_DIR = fileURLToPath(new URL('../../models/shapes-classifier', import.meta.url));

export interface ClassifierInfo {
  model: LeNetConfig;
  /** top-1 accuracy on the test images (the 10,000 of MNIST; held-out shapes) */
  testAccuracy: number;
  /** which activations are the FID features */
  features: string;
  /** how pixels are scaled before the classifier */
  inputScaling: string;
  /** anything else recorded at training time (command, date, timings, sanity FIDs) */
  [key: string]: unknown;
}

export interface ClassifierDir {
  info: ClassifierInfo;
  weights: Record<string, ParamValue>;
  testStats: GaussianStats;
}

export class ClassifierDirError extends Error {
  override name = 'ClassifierDirError';
}

/** Write `dir` atomically; `meta` names what the weights and statistics are in the safetensors headers. */
export async function saveClassifierDir(dir: string, c: ClassifierDir, meta = { kind: 'lenet-mnist', split: 'mnist-test' }): Promise<void> {
  const d = c.testStats.mu.length;
  const weights: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const [k, v] of Object.entries(c.weights)) weights[k] = { dtype: 'F32', shape: v.shape, data: v.data };
  await writeCheckpointDir(dir, {
    'config.json': JSON.stringify(c.info, null, 2) + '\n',
    'weights.safetensors': serializeSafetensors(weights, { format: 'ddpm-ts', kind: meta.kind }),
    'test-stats.safetensors': serializeSafetensors(
      { mu: { dtype: 'F64', shape: [d], data: c.testStats.mu }, sigma: { dtype: 'F64', shape: [d, d], data: c.testStats.sigma } },
      { format: 'ddpm-ts', kind: 'fid-stats', n: String(c.testStats.n), split: meta.split },
    ),
  });
}

const trainCommand = (dir: string) => `'npm run ${path.resolve(dir) === DEFAULT_SHAPES_CLASSIFIER_DIR ? 'train:shapes-classifier' : 'train:classifier'}'`;

export async function loadClassifierDir(dir: string = DEFAULT_CLASSIFIER_DIR): Promise<ClassifierDir> {
  const kind = await sniffPath(dir);
  if (kind !== null && kind !== 'directory') throw new ClassifierDirError(wrongKindMessage(`the FID classifier ${dir}`, kind, 'a classifier directory (config.json, weights.safetensors)'));
  // written with the checkpoint protocol: read the newest complete version, also after an interrupted write
  const read = await readCheckpointDirStable(dir, readClassifierDir);
  if (read === null) throw new ClassifierDirError(`cannot read the FID classifier at ${dir}: no such directory (train one with ${trainCommand(dir)})`);
  return read.value;
}

async function readClassifierDir(dir: string): Promise<ClassifierDir> {
  const file = (name: string) => path.join(dir, name);
  let info: ClassifierInfo;
  try {
    info = JSON.parse(await fsp.readFile(file('config.json'), 'utf8')) as ClassifierInfo;
  } catch (e) {
    throw new ClassifierDirError(`cannot read the FID classifier at ${dir}: ${(e as Error).message} (train one with ${trainCommand(dir)})`);
  }
  if (info === null || typeof info !== 'object' || Array.isArray(info)) throw new ClassifierDirError(`${file('config.json')}: expected a JSON object`);
  try {
    info.model = lenetConfig(info.model);
  } catch (e) {
    throw new ClassifierDirError(`${file('config.json')}: ${(e as Error).message}`);
  }
  if (typeof info.testAccuracy !== 'number') throw new ClassifierDirError(`${file('config.json')}: testAccuracy missing`);

  const w = await readSafetensorsFile(file('weights.safetensors'));
  const shapes = lenetParamShapes(info.model);
  const weights: Record<string, ParamValue> = {};
  for (const [k, shape] of Object.entries(shapes)) {
    const t = w.tensors[k];
    if (!t) throw new ClassifierDirError(`${file('weights.safetensors')}: missing tensor '${k}'`);
    if (t.dtype !== 'F32' || t.shape.join() !== shape.join()) {
      throw new ClassifierDirError(`${file('weights.safetensors')}: '${k}' is ${t.dtype} [${t.shape}], expected F32 [${shape}]`);
    }
    weights[k] = { shape: [...shape], data: (t.data as Float32Array).slice() };
  }
  for (const k of Object.keys(w.tensors)) if (!(k in shapes)) throw new ClassifierDirError(`${file('weights.safetensors')}: unexpected tensor '${k}'`);

  const s = await readSafetensorsFile(file('test-stats.safetensors'));
  const d = info.model.featureDim;
  const mu = s.tensors.mu;
  const sigma = s.tensors.sigma;
  if (!mu || !sigma || mu.dtype !== 'F64' || sigma.dtype !== 'F64' || mu.shape.join() !== `${d}` || sigma.shape.join() !== `${d},${d}`) {
    throw new ClassifierDirError(`${file('test-stats.safetensors')}: expected F64 mu [${d}] and sigma [${d}, ${d}]`);
  }
  const n = Number(s.metadata.n);
  return { info, weights, testStats: { mu: (mu.data as Float64Array).slice(), sigma: (sigma.data as Float64Array).slice(), n } };
}
