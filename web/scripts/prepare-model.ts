/**
 * Puts the denoiser the web app loads into `web/.model/`: `model.onnx` (inputs x [N,C,H,W], t [N];
 * output out; its metadata carries the configs, which the page's DDPMPipeline reads) and `model.json`
 * ({@link WebModelInfo}: what the page shows before the worker has loaded the model), and the Train view's
 * MNIST digits (prepare-train-data.ts). `npm run web` and
 * `npm run build:web` run this first.
 *
 *   node --import tsx web/scripts/prepare-model.ts [SOURCE]        (npm run web:model -- SOURCE)
 *
 * SOURCE, else $DDPM_WEB_MODEL, else the shipped class-conditional `models/mnist-28-cond/` (the page then offers a
 * digit and a guidance scale) with the shipped unconditional `models/mnist-28/` as its companion for "any" digit
 * (`model-any.onnx`, WebModelInfo.any: its samples score FID-LeNet 18.37 at DDIM-50 where the conditional model's ∅
 * label scores 40.85; README), else the shipped `models/mnist-28/` alone; with none of them, an existing
 * `web/.model/` is kept. It may be any model `ddpm sample --checkpoint` accepts (the library's loadModel reads
 * it): a `.onnx` file from `ddpm export`, a directory holding only an exported `model.onnx`, or a checkpoint /
 * model directory (`config.json` + `ema.safetensors` / `params.safetensors`), exported here (this is how a
 * stand-in is made from a run still training: runs/<name>/checkpoint).
 */
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, packageVersion } from '../../src/pipeline/load.ts';
import { exportDenoiserFile } from '../../src/sample/onnx-export.ts';
import type { WebModelInfo, WebModelRef } from '../src/protocol.ts';
import { TRAIN_DATA_FILE, prepareTrainData } from './prepare-train-data.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const WEB_MODEL_DIR = path.join(ROOT, 'web', '.model');
export const SHIPPED_MODEL_DIR = path.join(ROOT, 'models', 'mnist-28');
/** The shipped class-conditional model: the page's default when present (the digit and guidance controls need it). */
export const SHIPPED_COND_MODEL_DIR = path.join(ROOT, 'models', 'mnist-28-cond');

/** The file of the unconditional companion in the web model directory. */
export const ANY_MODEL_FILE = 'model-any.onnx';

/** A model as the page gets it: its ONNX bytes (exported here when the source has weights) and what model.json says. */
async function webModel(source: string) {
  const src = path.resolve(source);
  const m = await loadModel(src, { label: 'source' });
  const bytes = m.onnxBytes ?? exportDenoiserFile(m.unet, m.weights!, { diffusion: m.diffusion, version: packageVersion(), step: m.step, classNames: m.classNames });
  // an .onnx has no preset name: models/mnist-28/model.onnx -> 'mnist-28', foo.onnx -> 'foo'
  const stem = path.basename(m.file, '.onnx');
  const name = m.preset ?? (stem === 'model' ? path.basename(path.dirname(m.file)) : stem);
  const rel = path.relative(ROOT, src);
  return { m, bytes, name, source: rel.startsWith('..') ? src : rel };
}

/**
 * Write `out`/model.onnx and `out`/model.json from `source` (see the header), with `opts.any` (an unconditional
 * model of the same image shape and diffusion) as `out`/model-any.onnx when `source` is class-conditional;
 * returns the info written.
 */
export async function prepareModel(source: string, out: string = WEB_MODEL_DIR, opts: { any?: string } = {}): Promise<WebModelInfo> {
  const { m, bytes, name, source: rel } = await webModel(source);
  const classNames = m.unet.numClasses > 0 ? (m.classNames ?? Array.from({ length: m.unet.numClasses }, (_, i) => String(i))) : [];
  const info: WebModelInfo = { name, unet: m.unet, diffusion: m.diffusion, step: m.step ?? null, source: rel, classNames };
  await fsp.mkdir(out, { recursive: true });
  await fsp.rm(path.join(out, ANY_MODEL_FILE), { force: true });
  if (opts.any !== undefined && m.unet.numClasses > 0) {
    const a = await webModel(opts.any);
    const why =
      a.m.unet.numClasses > 0 ? 'it is class-conditional'
      : a.m.unet.imageSize !== m.unet.imageSize || a.m.unet.inChannels !== m.unet.inChannels ? `it makes ${a.m.unet.inChannels}x${a.m.unet.imageSize}x${a.m.unet.imageSize} images, the model ${m.unet.inChannels}x${m.unet.imageSize}x${m.unet.imageSize}`
      : JSON.stringify(a.m.diffusion) !== JSON.stringify(m.diffusion) ? 'its diffusion config (schedule, prediction, variance) differs from the model\'s'
      : null;
    if (why) throw new Error(`${a.source} cannot sample "any" class for ${rel}: ${why}`);
    const ref: WebModelRef = { file: ANY_MODEL_FILE, name: a.name, unet: a.m.unet, step: a.m.step ?? null, source: a.source };
    info.any = ref;
    await fsp.writeFile(path.join(out, ANY_MODEL_FILE), a.bytes);
  }
  await fsp.writeFile(path.join(out, 'model.onnx'), bytes);
  await fsp.writeFile(path.join(out, 'model.json'), JSON.stringify(info, null, 2) + '\n');
  // the Train view's digits (the same for every model; written once)
  if (!existsSync(path.join(out, TRAIN_DATA_FILE))) await prepareTrainData(out);
  return info;
}

/** The source used without an argument, or null to keep the existing web/.model. */
export function defaultSource(): string | null {
  if (process.env.DDPM_WEB_MODEL) return process.env.DDPM_WEB_MODEL;
  if (existsSync(SHIPPED_COND_MODEL_DIR)) return SHIPPED_COND_MODEL_DIR;
  if (existsSync(SHIPPED_MODEL_DIR)) return SHIPPED_MODEL_DIR;
  return null;
}

/** The page's default build: {@link defaultSource} with the shipped unconditional model for "any" when both are shipped. */
export function defaultModel(): { source: string; any?: string } | null {
  const source = defaultSource();
  if (source === null) return null;
  const shippedPair = !process.env.DDPM_WEB_MODEL && source === SHIPPED_COND_MODEL_DIR && existsSync(SHIPPED_MODEL_DIR);
  return shippedPair ? { source, any: SHIPPED_MODEL_DIR } : { source };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const def = process.argv[2] !== undefined ? { source: process.argv[2] } : defaultModel();
  if (def === null) {
    if (!existsSync(path.join(WEB_MODEL_DIR, 'model.onnx'))) {
      console.error(
        'web: no model. There is no models/mnist-28/ yet: export a stand-in from a checkpoint with\n' +
          '  npm run web:model -- runs/<name>/checkpoint\n' +
          'or set DDPM_WEB_MODEL to a checkpoint directory, a model directory or a .onnx from `ddpm export`.',
      );
      process.exit(1);
    }
    const kept = JSON.parse(await fsp.readFile(path.join(WEB_MODEL_DIR, 'model.json'), 'utf8')) as WebModelInfo;
    console.log(`web/.model: keeping the model from ${kept.source} (step ${kept.step ?? '?'})`);
  } else {
    try {
      const r = await prepareModel(def.source, WEB_MODEL_DIR, def);
      console.log(`web/.model <- ${r.source} (step ${r.step ?? '?'})${r.any ? `; any class: ${r.any.source} (step ${r.any.step ?? '?'})` : ''}`);
    } catch (e) {
      console.error(`web: cannot use ${def.source} as the model: ${e instanceof Error ? e.message : String(e)}`);
      process.exit(1);
    }
  }
}
