/**
 * Loading a trained model in Node: a checkpoint / model directory (config.json + ema.safetensors or
 * params.safetensors), a run directory (its checkpoint/), a checkpoint file (.safetensors), a standalone `.onnx`
 * from `ddpm export`, or a shipped model by name ('mnist-28', 'mnist-28-cond'; src/io/model-path.ts says which
 * wins when a path has the same name); without a path, the shipped `mnist-28`, found from the package's location,
 * not the working directory. Used by `DDPMPipeline.fromPretrained` (node.ts) and by the commands' `--checkpoint`.
 * Every failure is one UserError line; a file of another kind (an image, JSON) says what it is.
 */
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ParamValue } from '../engine/tree.ts';
import type { DiffusionConfig } from '../diffusion/config.ts';
import { conciseOrtMessage } from '../engine/runtime.ts';
import { UserError } from '../errors.ts';
import { resolveCheckpointDir } from '../io/atomic.ts';
import { PACKAGE_ROOT, SHIPPED_MODELS, SHIPPED_MODEL_NAMES, resolveModelPath } from '../io/model-path.ts';
import { sniffPath, wrongKindMessage } from '../io/sniff-file.ts';
import { readSafetensorsHeaderFile } from '../io/safetensors-file.ts';
import { Denoiser } from '../models/denoiser.ts';
import { compileDenoiser } from '../models/denoiser-compile.ts';
import { unetParamShapes, type UNetConfig } from '../models/unet.ts';
import { ensureExecutionProvider, nodeRuntime, ort } from '../node/ort.ts';
import { readDenoiserFile } from '../sample/onnx-file.ts';
import { CheckpointError, checkWeights, loadModelDir, readConfig } from '../train/checkpoint.ts';
import { unpackCheckpoint } from '../train/checkpoint-file.ts';
import { checkDenoiserRuns } from './pipeline.ts';

export { PACKAGE_ROOT, SHIPPED_MODELS, SHIPPED_MODEL_NAMES, type ShippedModelName } from '../io/model-path.ts';
/** The shipped unconditional model, the default of `fromPretrained()` and the commands: SHIPPED_MODELS['mnist-28']. */
export const DEFAULT_MODEL_DIR: string = SHIPPED_MODELS['mnist-28'];
/** The shipped class-conditional model (MNIST digits), the default of the commands when a class is asked for. */
export const DEFAULT_COND_MODEL_DIR: string = SHIPPED_MODELS['mnist-28-cond'];

export function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/** A model's configs and weights (or ONNX bytes), read but not yet opened in onnxruntime ({@link openDenoiser}). */
export interface LoadedModel {
  /** the model preset of a checkpoint's config.json ('mnist-28'), when it has one */
  preset?: string;
  unet: UNetConfig;
  diffusion: DiffusionConfig;
  /** the file the weights came from */
  file: string;
  /** training step of the checkpoint, when known */
  step?: number;
  /** a class-conditional model's class names (label i is classNames[i]), when stored */
  classNames?: string[];
  /** a checkpoint's weights, or an exported ONNX file's bytes */
  weights?: Record<string, ParamValue>;
  onnxBytes?: Uint8Array;
}

async function kindOf(p: string): Promise<'dir' | 'file' | null> {
  try {
    return (await fsp.stat(p)).isDirectory() ? 'dir' : 'file';
  } catch {
    return null;
  }
}

/**
 * A model file: its bytes read, then `parse`d; an unreadable file or one `parse` refuses is one
 * UserError line naming it.
 */
async function loadModelFile(file: string, parse: (bytes: Uint8Array) => Omit<LoadedModel, 'file'>): Promise<LoadedModel> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await fsp.readFile(file));
  } catch (e) {
    throw new UserError(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return { ...parse(bytes), file };
  } catch (e) {
    throw new UserError(`${file}: ${(e as Error).message}`);
  }
}

/** An exported .onnx (its metadata carries the configs). */
function loadOnnx(file: string): Promise<LoadedModel> {
  return loadModelFile(file, (bytes) => {
    const meta = readDenoiserFile(bytes);
    return { unet: meta.unet, diffusion: meta.diffusion, step: meta.step, classNames: meta.classNames, onnxBytes: bytes };
  });
}

/** A checkpoint file (.safetensors, src/train/checkpoint-file.ts, as the page downloads): its config and EMA weights. */
function loadCheckpointFile(file: string): Promise<LoadedModel> {
  return loadModelFile(file, (bytes) => {
    const { config, ema, state } = unpackCheckpoint(bytes);
    const classNames = config.data.classNames.length > 0 ? config.data.classNames : undefined;
    return { preset: config.preset, unet: config.model, diffusion: config.diffusion, step: state?.step, classNames, weights: ema };
  });
}

/** The training step recorded next to a checkpoint's weights (state.json), if any. */
async function checkpointStep(dir: string): Promise<number | undefined> {
  try {
    const step = (JSON.parse(await fsp.readFile(path.join(dir, 'state.json'), 'utf8')) as { step?: unknown }).step;
    return typeof step === 'number' && Number.isSafeInteger(step) && step >= 0 ? step : undefined; // as readDenoiserFile's step
  } catch {
    return undefined;
  }
}

/**
 * Before any tensor data is read: the config, then the names and shapes the weights file declares in its header,
 * against the config's parameter shapes. Problems reading are left to loadModelDir, which reads the same files
 * authoritatively (and again if a trainer swaps the checkpoint meanwhile); only a mismatch is reported here.
 */
async function precheckWeights(dir: string): Promise<void> {
  let unet: UNetConfig;
  let file: string | undefined;
  let declared: Record<string, { shape: readonly number[] }>;
  try {
    const d = await resolveCheckpointDir(dir);
    if (d === null) return;
    unet = (await readConfig(d)).model;
    for (const name of ['ema.safetensors', 'params.safetensors']) {
      if ((await kindOf(path.join(d, name))) === 'file') {
        file = path.join(d, name);
        break;
      }
    }
    if (file === undefined) return;
    declared = Object.fromEntries((await readSafetensorsHeaderFile(file)).entries.map((e) => [e.name, e]));
  } catch {
    return;
  }
  checkWeights(file, declared, unetParamShapes(unet));
}

/** What a model argument may be, for the error about a file of another kind. */
function modelKinds(allowOnnx: boolean): string {
  return `a checkpoint or run directory, a checkpoint .safetensors${allowOnnx ? ', an .onnx from ddpm export' : ''} or a shipped model: ${SHIPPED_MODEL_NAMES.join(', ')}`;
}

/**
 * A model file by what it holds (its first bytes), else by its extension: a checkpoint .safetensors or an exported
 * .onnx; an image, JSON, an empty file ... is one line saying what it is.
 */
async function loadFile(p: string, label: string, allowOnnx: boolean): Promise<LoadedModel> {
  const kind = await sniffPath(p);
  const ext = path.extname(p).toLowerCase();
  const isCheckpoint = kind === 'safetensors' || (kind === 'unknown' && ext === '.safetensors');
  const isOnnx = kind === 'onnx' || (kind === 'unknown' && ext !== '.safetensors');
  if (isCheckpoint) return loadCheckpointFile(p);
  if (isOnnx && allowOnnx) return loadOnnx(p);
  if (isOnnx) throw new UserError(`${label} ${p}${kind === 'onnx' ? ' is an ONNX model' : ''}: export needs a checkpoint's weights: ${modelKinds(false)}`);
  throw new UserError(wrongKindMessage(`${label} ${p}`, kind ?? 'unknown', 'a model', modelKinds(allowOnnx)));
}

/**
 * Read the model at `spec` (or the shipped default). `spec` is resolved by resolveModelPath: a path, a run
 * directory's checkpoint, or a shipped model's name. Every failure is a one-line UserError: nothing at `spec`, a
 * file of another kind, unreadable or invalid config, weights that do not fit the config.
 * @param opts.allowOnnx accept a standalone .onnx (not for `export`, which needs the weights)
 * @param opts.classConditional without `spec`, the shipped class-conditional model (mnist-28-cond)
 * @param opts.label what names the path in messages (default '--checkpoint', the commands' flag)
 */
export async function loadModel(
  spec: string | undefined,
  opts: { allowOnnx?: boolean; label?: string; classConditional?: boolean } = {},
): Promise<LoadedModel> {
  const allowOnnx = opts.allowOnnx ?? true;
  const label = opts.label ?? '--checkpoint';
  let p: string;
  if (spec === undefined) {
    const [dflt, train] = opts.classConditional ? [DEFAULT_COND_MODEL_DIR, '--class-cond --out runs/mnist-28-cond'] : [DEFAULT_MODEL_DIR, '--out runs/mnist-28'];
    if ((await kindOf(dflt)) !== 'dir') {
      throw new UserError(
        `no ${label} given and the default ${opts.classConditional ? 'class-conditional ' : ''}model ${dflt} does not exist yet; ` +
          `train one (ddpm train ${train}) and pass --checkpoint ${train.split('--out ')[1]}`,
      );
    }
    p = dflt;
  } else {
    p = await resolveModelPath(spec, label);
  }
  const kind = await kindOf(p);
  if (kind === 'file') return loadFile(p, label, allowOnnx);
  // A directory holding only an exported model.onnx counts as that file.
  if (allowOnnx && (await kindOf(path.join(p, 'config.json'))) === null && (await kindOf(path.join(p, 'model.onnx'))) === 'file') {
    return loadOnnx(path.join(p, 'model.onnx'));
  }
  try {
    await precheckWeights(p);
    const { config, weights, file, dir } = await loadModelDir(p);
    checkWeights(file, weights, unetParamShapes(config.model));
    const classNames = config.data.classNames.length > 0 ? config.data.classNames : undefined;
    return { preset: config.preset, unet: config.model, diffusion: config.diffusion, file, step: await checkpointStep(dir), classNames, weights };
  } catch (e) {
    if (e instanceof UserError) throw e;
    // CheckpointError messages name the file at fault already
    throw new UserError(e instanceof CheckpointError ? e.message : `${label} ${p}: ${(e as Error).message}`);
  }
}

/**
 * An onnxruntime session for the model (weights baked in) on onnxruntime-node, run once at batch 1 before it is
 * returned. `runtime` takes the commands' flags: threads (default: all cores) and ep (cpu, cuda, webgpu).
 */
export async function openDenoiser(m: LoadedModel, runtime: { threads?: number; ep?: string }): Promise<Denoiser> {
  let rt;
  try {
    rt = nodeRuntime(runtime);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  await ensureExecutionProvider(runtime.ep); // checked once per process; an --ep that cannot run is one line, not m.file's fault
  let denoiser: Denoiser;
  try {
    if (!m.onnxBytes) return await compileDenoiser(ort, m.unet, m.weights!, rt);
    denoiser = await Denoiser.fromOnnx(ort, m.unet, m.onnxBytes, rt);
  } catch (e) {
    throw new UserError(`${m.file}: ${(e as Error).message}`);
  }
  // A user's .onnx may load and still fail when run (a node reading the wrong input, a shape that only
  // breaks at run time): one call at batch 1 finds that here, as one line naming the file, before any work.
  try {
    await checkDenoiserRuns(denoiser);
  } catch (e) {
    await denoiser.release();
    throw new UserError(`${m.file}: onnxruntime cannot run this model: ${conciseOrtMessage((e as Error).message)}`);
  }
  return denoiser;
}

/** A short description, e.g. "1x28x28, linear T=1000, epsilon/fixedLarge, step 5000" (", 10 classes" when conditional). */
export function describeModel(m: LoadedModel): string {
  const d = m.diffusion;
  return `${m.unet.inChannels}x${m.unet.imageSize}x${m.unet.imageSize}, ${d.schedule.kind} T=${d.schedule.T}, ${d.meanType}/${d.varType}` +
    (m.unet.numClasses > 0 ? `, ${m.unet.numClasses} classes` : '') + (m.step !== undefined ? `, step ${m.step}` : '');
}
