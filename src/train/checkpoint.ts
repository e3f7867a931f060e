/**
 * Training checkpoints: a directory written atomically (complete new copy, then swapped in), holding
 *   config.json            the TrainConfig (validated on load; unknown keys are an error)
 *   params.safetensors     the raw weights (torch-style names)
 *   ema.safetensors        the EMA weights (what sampling uses)
 *   optimizer.safetensors  Adam moments m:<name>, v:<name> and the update count `step`
 *   state.json             step, data-loader position, images seen, training time
 * A model directory for sampling needs only config.json and ema.safetensors (or params.safetensors).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { ParamValue } from '../engine/tree.ts';
import { readCheckpointDirStable, recoverCheckpointDir, writeCheckpointDir } from '../io/atomic.ts';
import { SHIPPED_MODEL_NAMES, locateModelPath } from '../io/model-path.ts';
import { readSafetensorsFile } from '../io/safetensors-file.ts';
import { serializeSafetensors } from '../io/safetensors.ts';
import { LABEL_EMB } from '../models/unet.ts';
import { validateTrainConfig, type TrainConfig } from './config.ts';
import { validateTrainState as validateRunState, type CheckpointContents, type TrainState } from './run.ts';

export type { CheckpointContents, TrainState } from './run.ts';

/** Validate a parsed state.json (exactly the TrainState keys, types and ranges); errors name `file`. */
export function validateTrainState(raw: unknown, file: string): TrainState {
  return validateRunState(raw, (msg) => {
    throw new CheckpointError(`${file}: ${msg}`);
  });
}

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

function tensors(map: Record<string, ParamValue> | Map<string, ParamValue>) {
  const out: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const [k, v] of map instanceof Map ? map : Object.entries(map)) out[k] = { dtype: 'F32', shape: v.shape, data: v.data };
  return out;
}

export async function saveCheckpoint(dir: string, c: CheckpointContents): Promise<void> {
  await writeCheckpointDir(dir, {
    'config.json': JSON.stringify(c.config, null, 2) + '\n',
    'params.safetensors': serializeSafetensors(tensors(c.params), { format: 'ddpm-ts', kind: 'params' }),
    'ema.safetensors': serializeSafetensors(tensors(c.ema), { format: 'ddpm-ts', kind: 'ema' }),
    'optimizer.safetensors': serializeSafetensors(tensors(c.optimizer), { format: 'ddpm-ts', kind: 'adamw' }),
    'state.json': JSON.stringify(c.state, null, 2) + '\n',
  });
}

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new CheckpointError(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Read float32 weights from a safetensors file into ParamValues. */
export async function readWeights(file: string): Promise<Record<string, ParamValue>> {
  let parsed;
  try {
    parsed = await readSafetensorsFile(file);
  } catch (e) {
    throw new CheckpointError(`${(e as Error).message}`);
  }
  const out: Record<string, ParamValue> = {};
  for (const [k, t] of Object.entries(parsed.tensors)) {
    if (t.dtype !== 'F32') throw new CheckpointError(`${file}: tensor '${k}' is ${t.dtype}, expected F32`);
    // copy: fresh, aligned buffers (views into the file buffer would change SIMD head/tail splits)
    out[k] = { shape: [...t.shape], data: (t.data as Float32Array).slice() };
  }
  return out;
}

/** Check that weights have exactly the expected names and shapes. */
export function checkWeights(file: string, got: Record<string, { shape: readonly number[] }>, expected: Record<string, { shape: readonly number[] }>): void {
  for (const [k, v] of Object.entries(expected)) {
    const g = got[k];
    if (!g) throw new CheckpointError(`${file}: missing tensor '${k}'`);
    if (g.shape.join() !== v.shape.join()) throw new CheckpointError(`${file}: '${k}' has shape [${g.shape}], the model needs [${v.shape}]`);
  }
  for (const k of Object.keys(got)) if (!(k in expected)) throw new CheckpointError(`${file}: unexpected tensor '${k}'`);
}

/**
 * Weights for a fine-tuning run: `source` (from `file`) mapped onto the fresh init `fresh`, in the
 * fresh order. Every tensor must match by name and shape, except one that the new model widens along
 * its first axis (the output conv when a fixed-variance model gains learned variances, Nichol &
 * Dhariwal eq. 15): its leading entries are copied and the new ones start at zero, so the new outputs
 * start at v = 0 (log σ² halfway between log β̃_t and log β_t) and the old ones are unchanged. An
 * unconditional source warm-starts a class-conditional model the same way: the class embedding it lacks
 * (label_emb) starts at zero, so every label, ∅ included, starts as the unconditional model.
 */
export function warmStartWeights(
  file: string,
  source: Record<string, ParamValue>,
  fresh: Record<string, ParamValue>,
): Record<string, ParamValue> {
  for (const k of Object.keys(source)) if (!(k in fresh)) throw new CheckpointError(`${file}: tensor '${k}' is not in the model being trained`);
  const out: Record<string, ParamValue> = {};
  for (const [k, f] of Object.entries(fresh)) {
    const s = source[k];
    if (!s && k === LABEL_EMB) {
      out[k] = { shape: [...f.shape], data: new Float32Array(f.data.length) };
      continue;
    }
    if (!s) throw new CheckpointError(`${file}: missing tensor '${k}'`);
    const same = s.shape.join() === f.shape.join();
    // the class embedding is never widened: its last row is ∅, so more classes would shift it
    const widened = k !== LABEL_EMB && !same && s.shape.length === f.shape.length && s.shape[0]! < f.shape[0]! && s.shape.slice(1).join() === f.shape.slice(1).join();
    if (!same && !widened) throw new CheckpointError(`${file}: '${k}' has shape [${s.shape}], the model needs [${f.shape}]`);
    const data = new Float32Array(f.data.length);
    data.set(s.data);
    out[k] = { shape: [...f.shape], data };
  }
  return out;
}

/** The config of a model / checkpoint directory. */
export async function readConfig(dir: string): Promise<TrainConfig> {
  const file = path.join(dir, 'config.json');
  try {
    return validateTrainConfig(await readJson(file), { stored: true });
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(`${file}: ${(e as Error).message}`);
  }
}

/**
 * Writer side, before deciding whether there is a checkpoint to resume: repair an interrupted write of `dir`
 * (recoverCheckpointDir: promote a complete `.new`, drop stale siblings), then say whether a checkpoint exists.
 * Never while another process writes `dir`.
 */
export async function recoverCheckpoint(dir: string): Promise<boolean> {
  try {
    return (await recoverCheckpointDir(dir)) !== 'missing';
  } catch (e) {
    throw new CheckpointError(`cannot recover the checkpoint ${dir}: ${(e as Error).message}`);
  }
}

/**
 * Load a training checkpoint for resuming (recovering it first), or null when there is none. With
 * `expectConfig`, the stored config must match it in everything that shapes the run (model, diffusion,
 * data, seed, the optimiser and EMA). The learning-rate schedule may change (lr is an input of the compiled step), so a
 * run can continue with a cooldown (`--lr-decay`), and so may the class embedding's multiplier (`--class-lr-scale`).
 */
export async function loadCheckpoint(dir: string, opts: { expectConfig?: TrainConfig } = {}): Promise<CheckpointContents | null> {
  if (!(await recoverCheckpoint(dir))) return null;
  const config = await readConfig(dir);
  if (opts.expectConfig) {
    const e = opts.expectConfig;
    const pick = (c: TrainConfig) => {
      const { lr: _lr, warmupSteps: _w, decay: _d, decayStart: _ds, decaySteps: _dn, decayTo: _dt, classLrScale: _cs, ...optim } = c.optim;
      return JSON.stringify([c.model, c.diffusion, c.data, c.run.seed, optim]);
    };
    if (pick(config) !== pick(e)) {
      throw new CheckpointError(
        `${dir} was written with a different config; resume with the same flags (stored config: ${path.join(dir, 'config.json')})`,
      );
    }
  }
  const params = await readWeights(path.join(dir, 'params.safetensors'));
  const ema = await readWeights(path.join(dir, 'ema.safetensors'));
  checkWeights(path.join(dir, 'ema.safetensors'), ema, params);
  const optimizer = new Map(Object.entries(await readWeights(path.join(dir, 'optimizer.safetensors'))));
  const stateFile = path.join(dir, 'state.json');
  const state = validateTrainState(await readJson(stateFile), stateFile);
  return { config, params, ema, optimizer, state };
}

/**
 * Weights for sampling from a model or checkpoint directory: EMA if present, else the raw params. `spec` may also
 * be a run directory (its checkpoint/) or a shipped model's name ('mnist-28'; see src/io/model-path.ts). Read-only,
 * so it is safe next to a trainer writing the same checkpoint: it reads the newest complete version (`dir`, or
 * `dir.new` / `dir.old` in the middle of a swap; see resolveCheckpointDir) and reads again if a swap replaced it
 * meanwhile. `dir` in the result is the directory actually read.
 */
export async function loadModelDir(spec: string): Promise<{ config: TrainConfig; weights: Record<string, ParamValue>; file: string; dir: string }> {
  const dir = await locateModelPath(spec);
  let got;
  try {
    got = await readCheckpointDirStable(dir, readModelDir);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(`${dir}: ${(e as Error).message}`);
  }
  if (got === null) throw new CheckpointError(`no such checkpoint directory: ${dir} (shipped models: ${SHIPPED_MODEL_NAMES.join(', ')})`);
  return { ...got.value, dir: got.dir };
}

async function readModelDir(dir: string): Promise<{ config: TrainConfig; weights: Record<string, ParamValue>; file: string }> {
  const config = await readConfig(dir);
  for (const name of ['ema.safetensors', 'params.safetensors']) {
    const file = path.join(dir, name);
    try {
      await fsp.access(file);
    } catch {
      continue;
    }
    return { config, weights: await readWeights(file), file };
  }
  throw new CheckpointError(`${dir} has no ema.safetensors or params.safetensors`);
}
