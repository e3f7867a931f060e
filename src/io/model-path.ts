/**
 * What a model argument names (`--checkpoint`, `--init-from`, `DDPMPipeline.fromPretrained`, `loadModelDir`), in
 * one place:
 *   1. a path that exists (file or directory, relative to the working directory) is that path, except that a run
 *      directory (`ddpm train --out runs/x`: no config.json or model.onnx of its own, a checkpoint/ inside) means
 *      its checkpoint, `runs/x/checkpoint`;
 *   2. otherwise the name of a model shipped with the package (SHIPPED_MODELS: `mnist-28`, `mnist-28-cond`), found
 *      from this file's location, so it works wherever the package is installed, whatever the working directory;
 *   3. otherwise an error that lists the shipped names.
 * A path wins over a shipped name: `--checkpoint mnist-28` after `ddpm train --out mnist-28` is that run; the
 * shipped model stays reachable as SHIPPED_MODELS['mnist-28'] (an absolute path).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.ts';
import { resolveCheckpointDir } from './atomic.ts';

/** The package's root directory (this repository in a clone, node_modules/ddpm-ts when installed). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The diffusion models shipped in the package's models/ folder, by name: `mnist-28` (unconditional MNIST, the
 * default of `ddpm sample` and `fromPretrained()`) and `mnist-28-cond` (class-conditional MNIST, for --class and
 * classifier-free guidance). Each is a model directory (config.json, ema.safetensors, model.onnx).
 */
export const SHIPPED_MODELS = {
  'mnist-28': path.join(PACKAGE_ROOT, 'models', 'mnist-28'),
  'mnist-28-cond': path.join(PACKAGE_ROOT, 'models', 'mnist-28-cond'),
} as const;

export type ShippedModelName = keyof typeof SHIPPED_MODELS;

export const SHIPPED_MODEL_NAMES = Object.keys(SHIPPED_MODELS) as ShippedModelName[];

const isShippedName = (s: string): s is ShippedModelName => Object.hasOwn(SHIPPED_MODELS, s);

async function kindOf(p: string): Promise<'dir' | 'file' | null> {
  try {
    return (await fsp.stat(p)).isDirectory() ? 'dir' : 'file';
  } catch {
    return null;
  }
}

/** What a directory holds, for the error when it holds no model. */
async function isRunDir(dir: string): Promise<boolean> {
  for (const name of ['log.jsonl', '.lock', 'samples']) if ((await kindOf(path.join(dir, name))) !== null) return true;
  return false;
}

/** Where `spec` points (see the module comment), or why it points nowhere. */
async function locate(spec: string, label: string): Promise<{ path: string } | { problem: string }> {
  const kind = await kindOf(spec);
  // a checkpoint in the middle of a writer's swap (spec.new + spec.old, no spec) is read there by loadModelDir
  if (kind === null && (await resolveCheckpointDir(spec)) !== null) return { path: spec };
  if (kind === 'file') return { path: spec };
  if (kind === 'dir') {
    if ((await kindOf(path.join(spec, 'config.json'))) !== null || (await kindOf(path.join(spec, 'model.onnx'))) !== null) return { path: spec };
    const ckpt = path.join(spec, 'checkpoint');
    if ((await resolveCheckpointDir(ckpt)) !== null) return { path: ckpt };
    if (await isRunDir(spec)) {
      return { problem: `${label} ${spec}: a run directory without a checkpoint yet (${ckpt} is written every --checkpoint-every steps and when the run ends)` };
    }
    return {
      problem: `${label} ${spec}: a directory without a model: expected config.json and ema.safetensors (a checkpoint), model.onnx (from ddpm export) or checkpoint/ (a run directory)`,
    };
  }
  if (isShippedName(spec)) return { path: SHIPPED_MODELS[spec] };
  return { problem: `${label}: no such file or directory: ${spec} (shipped models: ${SHIPPED_MODEL_NAMES.join(', ')})` };
}

/**
 * The path a model argument stands for (see the module comment): `spec` itself, its run directory's checkpoint,
 * or a shipped model's directory. Throws one UserError line when it names nothing, or a directory that holds no
 * model (a run directory whose first checkpoint is not written yet).
 * @param label what names the argument in messages ('--checkpoint', '--init-from', 'fromPretrained')
 */
export async function resolveModelPath(spec: string, label = '--checkpoint'): Promise<string> {
  const found = await locate(spec, label);
  if ('problem' in found) throw new UserError(found.problem);
  return found.path;
}

/** resolveModelPath without the errors: where `spec` points, or `spec` itself (its reader then says what is wrong). */
export async function locateModelPath(spec: string): Promise<string> {
  const found = await locate(spec, '');
  return 'path' in found ? found.path : spec;
}
