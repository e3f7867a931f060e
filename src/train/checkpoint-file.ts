/**
 * A checkpoint as ONE safetensors file, for places where a directory is awkward (a browser's download and upload):
 *
 *   <name>               the EMA weights under the model's own names (what sampling uses; any safetensors reader
 *                        sees the model as it is)
 *   params/<name>        the raw weights
 *   optimizer/<key>      AdamW's moments m:<name>, v:<name> and its update count `step`, as optimizer.safetensors
 *   __metadata__         format "ddpm-ts checkpoint", config (the TrainConfig as JSON), state (step, data position,
 *                        images, time as JSON)
 *
 * It holds what a checkpoint directory holds (checkpoint.ts), so a run continues from it exactly; `ddpm sample
 * --checkpoint file.safetensors` reads its EMA weights and config. No node:* here: the page packs and reads it too.
 */
import type { ParamValue } from '../engine/tree.ts';
import { parseSafetensors, serializeSafetensors, type TensorInput } from '../io/safetensors.ts';
import { unetParamSpecs } from '../models/unet.ts';
import { validateTrainConfig, type TrainConfig } from './config.ts';
import { validateTrainState, type CheckpointContents } from './run.ts';

export const CHECKPOINT_FILE_FORMAT = 'ddpm-ts checkpoint';
const PARAMS = 'params/';
const OPTIMIZER = 'optimizer/';

/** The checkpoint as safetensors bytes (deterministic: the same contents give the same bytes). */
export function packCheckpoint(c: CheckpointContents): Uint8Array {
  const tensors: Record<string, TensorInput> = {};
  for (const [k, v] of Object.entries(c.ema)) tensors[k] = { dtype: 'F32', shape: v.shape, data: v.data };
  for (const [k, v] of Object.entries(c.params)) tensors[PARAMS + k] = { dtype: 'F32', shape: v.shape, data: v.data };
  for (const [k, v] of c.optimizer) tensors[OPTIMIZER + k] = { dtype: 'F32', shape: v.shape, data: v.data };
  return serializeSafetensors(tensors, { format: CHECKPOINT_FILE_FORMAT, config: JSON.stringify(c.config), state: JSON.stringify(c.state) });
}

/** A checkpoint file's parts; `params`, `optimizer` and `state` are absent in a file that holds only a model. */
export interface CheckpointFileContents {
  config: TrainConfig;
  ema: Record<string, ParamValue>;
  params?: Record<string, ParamValue>;
  optimizer?: Map<string, ParamValue>;
  state?: CheckpointContents['state'];
}

/**
 * Read a checkpoint file (see the header). Throws an Error with a one-line reason for anything else: another
 * safetensors file, a config or state that does not validate, weights that do not fit the config.
 */
export function unpackCheckpoint(bytes: Uint8Array): CheckpointFileContents {
  const { tensors, metadata } = parseSafetensors(bytes);
  if (metadata.format !== CHECKPOINT_FILE_FORMAT) {
    throw new Error(`not a ddpm-ts checkpoint file (its metadata format is ${metadata.format === undefined ? 'missing' : JSON.stringify(metadata.format)}, expected "${CHECKPOINT_FILE_FORMAT}")`);
  }
  const json = (key: string): unknown => {
    const text = metadata[key];
    if (text === undefined) throw new Error(`checkpoint file: metadata '${key}' is missing`);
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error(`checkpoint file: metadata '${key}' is not JSON: ${(e as Error).message}`);
    }
  };
  let config: TrainConfig;
  try {
    config = validateTrainConfig(json('config'), { stored: true });
  } catch (e) {
    throw new Error(`checkpoint file: config: ${(e as Error).message}`);
  }
  const expected = unetParamSpecs(config.model);
  const group = (prefix: string): Record<string, ParamValue> | undefined => {
    const names = Object.keys(tensors).filter((k) => (prefix ? k.startsWith(prefix) : !k.includes('/')));
    if (prefix && names.length === 0) return undefined;
    const out: Record<string, ParamValue> = {};
    for (const s of expected) {
      const t = tensors[prefix + s.name];
      if (!t) throw new Error(`checkpoint file: missing tensor '${prefix + s.name}'`);
      if (t.dtype !== 'F32') throw new Error(`checkpoint file: '${prefix + s.name}' is ${t.dtype}, expected F32`);
      if (t.shape.join() !== s.shape.join()) throw new Error(`checkpoint file: '${prefix + s.name}' has shape [${t.shape}], the model needs [${s.shape}]`);
      out[s.name] = { shape: [...t.shape], data: t.data as Float32Array };
    }
    for (const k of names) if (!(k.slice(prefix.length) in out)) throw new Error(`checkpoint file: unexpected tensor '${k}'`);
    return out;
  };
  for (const k of Object.keys(tensors)) {
    if (k.includes('/') && !k.startsWith(PARAMS) && !k.startsWith(OPTIMIZER)) throw new Error(`checkpoint file: unexpected tensor '${k}'`);
  }
  const ema = group('')!;
  const params = group(PARAMS);
  let optimizer: Map<string, ParamValue> | undefined;
  const optNames = Object.keys(tensors).filter((k) => k.startsWith(OPTIMIZER));
  if (optNames.length > 0) {
    optimizer = new Map();
    for (const k of optNames) {
      const t = tensors[k]!;
      if (t.dtype !== 'F32') throw new Error(`checkpoint file: '${k}' is ${t.dtype}, expected F32`);
      optimizer.set(k.slice(OPTIMIZER.length), { shape: [...t.shape], data: t.data as Float32Array });
    }
  }
  const state = metadata.state === undefined ? undefined : validateTrainState(json('state'), (msg) => {
    throw new Error(`checkpoint file: state: ${msg}`);
  });
  if ((params === undefined) !== (optimizer === undefined) || (params !== undefined && state === undefined)) {
    throw new Error('checkpoint file: raw weights, optimiser moments and state come together (this file has only some of them)');
  }
  return { config, ema, params, optimizer, state };
}
