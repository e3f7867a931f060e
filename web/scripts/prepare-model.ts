/**
 * Puts the denoiser the web app loads into `web/.model/`: `model.onnx` (inputs x [N,C,H,W], t [N];
 * output out) and `model.json` ({@link WebModelInfo}: the configs the page needs, the training step
 * and where it came from). `npm run web` and `npm run build:web` run this first.
 *
 *   node --import tsx web/scripts/prepare-model.ts [SOURCE]        (npm run web:model -- SOURCE)
 *
 * SOURCE, else $DDPM_WEB_MODEL, else the shipped `models/mnist-28/`; with none of them, an existing
 * `web/.model/` is kept. It may be any model `ddpm sample --checkpoint` accepts:
 * - a directory with `model.onnx` (+ `config.json`, a TrainConfig; else the configs come from the
 *   ONNX metadata written by `ddpm export`);
 * - a `.onnx` file from `ddpm export`;
 * - a checkpoint directory (`config.json` + `ema.safetensors` / `params.safetensors`), exported here
 *   (this is how a stand-in is made from a run still training: runs/<name>/checkpoint).
 */
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportDenoiserFile } from '../../src/sample/onnx-export.ts';
import { readDenoiserFile } from '../../src/sample/onnx-file.ts';
import { loadModelDir, readConfig } from '../../src/train/checkpoint.ts';
import type { WebModelInfo } from '../src/protocol.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const WEB_MODEL_DIR = path.join(ROOT, 'web', '.model');
export const SHIPPED_MODEL_DIR = path.join(ROOT, 'models', 'mnist-28');

async function stepOf(checkpointDir: string): Promise<number | null> {
  try {
    const step = (JSON.parse(await fsp.readFile(path.join(checkpointDir, 'state.json'), 'utf8')) as { step?: unknown }).step;
    return typeof step === 'number' ? step : null;
  } catch {
    return null;
  }
}

function fromOnnxMetadata(bytes: Uint8Array, file: string): WebModelInfo['config'] {
  const meta = readDenoiserFile(bytes); // throws a clear message for a file without ddpm-ts metadata
  // the metadata has no preset name: models/mnist-28/model.onnx -> 'mnist-28', foo.onnx -> 'foo'
  const stem = path.basename(file, '.onnx');
  return { preset: stem === 'model' ? path.basename(path.dirname(file)) : stem, model: meta.unet, diffusion: meta.diffusion };
}

/** Write `out`/model.onnx and `out`/model.json from `source` (see the header); returns the info written. */
export async function prepareModel(source: string, out: string = WEB_MODEL_DIR): Promise<WebModelInfo> {
  const src = path.resolve(source);
  const rel = path.relative(ROOT, src);
  const info = (config: WebModelInfo['config'], step: number | null): WebModelInfo => ({
    config,
    step,
    source: rel.startsWith('..') ? src : rel,
  });
  let bytes: Uint8Array;
  let result: WebModelInfo;
  const stat = await fsp.stat(src).catch(() => null);
  if (!stat) throw new Error(`no such file or directory: ${source}`);
  const onnxFile = stat.isDirectory() ? path.join(src, 'model.onnx') : src;
  if (!stat.isDirectory() || existsSync(onnxFile)) {
    bytes = new Uint8Array(await fsp.readFile(onnxFile));
    let step: number | null = null;
    try {
      step = readDenoiserFile(bytes).step ?? null;
    } catch {
      // a model.onnx without ddpm-ts metadata is fine next to a config.json
    }
    const configJson = path.join(path.dirname(onnxFile), 'config.json');
    result = info(existsSync(configJson) ? await readConfig(path.dirname(onnxFile)) : fromOnnxMetadata(bytes, onnxFile), step);
  } else {
    const { config, weights } = await loadModelDir(src);
    const step = await stepOf(src);
    const version = (JSON.parse(await fsp.readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    bytes = exportDenoiserFile(config.model, weights, { diffusion: config.diffusion, version, step: step ?? undefined });
    result = info(config, step);
  }
  await fsp.mkdir(out, { recursive: true });
  await fsp.writeFile(path.join(out, 'model.onnx'), bytes);
  await fsp.writeFile(path.join(out, 'model.json'), JSON.stringify(result, null, 2) + '\n');
  return result;
}

/** The source used without an argument, or null to keep the existing web/.model. */
export function defaultSource(): string | null {
  if (process.env.DDPM_WEB_MODEL) return process.env.DDPM_WEB_MODEL;
  if (existsSync(SHIPPED_MODEL_DIR)) return SHIPPED_MODEL_DIR;
  return null;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const source = process.argv[2] ?? defaultSource();
  if (source === null) {
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
      const r = await prepareModel(source);
      console.log(`web/.model <- ${r.source} (step ${r.step ?? '?'})`);
    } catch (e) {
      console.error(`web: cannot use ${source} as the model: ${e instanceof Error ? e.message : String(e)}`);
      process.exit(1);
    }
  }
}
