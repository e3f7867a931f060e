/**
 * DDPMPipeline in Node: pipeline.ts's, plus loading from a path with onnxruntime-node, and saving images as PNGs.
 *
 *   const pipe = await DDPMPipeline.fromPretrained();                 // the shipped 'mnist-28'
 *   const { images } = await pipe.generate({ n: 4, steps: 50, sampler: 'ddim', seed: 0 });
 *   await savePngs(images, 'out');                                     // out/sample_00000.png, ...
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ExecutionProvider, OrtModule, RuntimeOptions } from '../engine/runtime.ts';
import type { ImageU8 } from '../io/grid.ts';
import { writePng } from '../io/image.ts';
import { ort as ortNode } from '../node/ort.ts';
import { loadModel, openDenoiser, type LoadedModel } from './load.ts';
import { DDPMPipeline as PortablePipeline } from './pipeline.ts';

/** Options of {@link DDPMPipeline.fromPretrained} in Node: all optional. */
export interface NodePipelineLoadOptions extends RuntimeOptions {
  /** for ONNX bytes; default onnxruntime-node (a path always opens on onnxruntime-node) */
  ort?: OrtModule;
}

export class DDPMPipeline extends PortablePipeline {
  /**
   * The pipeline of a trained model on onnxruntime-node (all cores unless `threads` is given):
   * - no argument: the model shipped with the package ('mnist-28', learned variances);
   * - a shipped model's name: 'mnist-28' or 'mnist-28-cond' (SHIPPED_MODELS), wherever the package is installed;
   * - a checkpoint or model directory (config.json + ema.safetensors or params.safetensors; its EMA weights if any),
   *   compiled here, a run directory of `ddpm train` (its checkpoint/), or a directory holding only an exported
   *   model.onnx; a checkpoint file (.safetensors);
   * - a `.onnx` file from `ddpm export` (its metadata carries the configs), or its bytes.
   * A path that exists wins over a shipped name. A path that does not hold a usable model is one UserError line
   * naming it (and what it is instead: an image, a JSON file, ...).
   */
  static override async fromPretrained(source?: string | Uint8Array | ArrayBuffer, opts: NodePipelineLoadOptions = {}): Promise<DDPMPipeline> {
    const { ort, ...runtime } = opts;
    if (source !== undefined && typeof source !== 'string') {
      return (await super.fromPretrained(source, { ...runtime, ort: ort ?? ortNode })) as DDPMPipeline;
    }
    return DDPMPipeline.fromLoaded(await loadModel(source, { label: 'fromPretrained' }), runtime);
  }

  /** The pipeline of a model read by {@link loadModel} (the commands read it, check their options, then open it). */
  static async fromLoaded(m: LoadedModel, runtime: { threads?: number; executionProvider?: ExecutionProvider } = {}): Promise<DDPMPipeline> {
    const denoiser = await openDenoiser(m, { threads: runtime.threads, ep: runtime.executionProvider });
    return new DDPMPipeline(denoiser, m.diffusion, { file: m.file, step: m.step }, m.classNames);
  }
}

/**
 * Write each image as its own PNG in `dir` (created if needed): `${prefix}00000.png`, `${prefix}00001.png`, ...
 * (the names `ddpm sample --out-dir` writes). Returns the paths.
 */
export async function savePngs(images: readonly ImageU8[], dir: string, opts: { prefix?: string } = {}): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files = images.map((_, i) => path.join(dir, `${opts.prefix ?? 'sample_'}${String(i).padStart(5, '0')}.png`));
  for (const [i, img] of images.entries()) await writePng(files[i]!, img);
  return files;
}
