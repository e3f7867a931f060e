/**
 * Writing the standalone denoiser file of `ddpm export` (its format: onnx-file.ts, which reads it): the U-Net
 * with its weights baked in, and in the metadata every config needed to sample from it. Needs the exporter
 * (engine/onnx.ts and its protobuf library), so it is kept apart from the reader.
 */
import type { DiffusionConfig } from '../diffusion/config.ts';
import type { ParamValue } from '../engine/tree.ts';
import { exportDenoiserOnnx } from '../models/denoiser-compile.ts';
import { checkClassNames, type UNetConfig } from '../models/unet.ts';
import { META_CLASSES, META_DIFFUSION, META_IO, META_OUTPUT, META_STEP, META_VERSION, describeOutput } from './onnx-file.ts';

export interface ExportInfo {
  diffusion: DiffusionConfig;
  /** ddpm-ts version writing the file */
  version: string;
  /** training step of the source checkpoint, when known */
  step?: number;
  /** a class-conditional model's class names (default "0", "1", ...); written as ddpm-ts.classes */
  classNames?: readonly string[];
}

/** The denoiser as standalone ONNX bytes with every config needed to sample from it in the metadata. */
export function exportDenoiserFile(unet: UNetConfig, weights: Record<string, ParamValue>, info: ExportInfo): Uint8Array {
  const metadata: Record<string, string> = {
    [META_DIFFUSION]: JSON.stringify(info.diffusion),
    [META_VERSION]: info.version,
    [META_IO]:
      `x: float32 [N,${unet.inChannels},${unet.imageSize},${unet.imageSize}] (x_t, data in [-1,1]); ` +
      `t: float32 [N] (timestep index 0..${info.diffusion.schedule.T - 1}); ` +
      (unet.numClasses > 0 ? `y: int64 [N] (class label 0..${unet.numClasses - 1}, ${unet.numClasses} = no class; names: ${META_CLASSES}); ` : '') +
      `out: float32 [N,${unet.outChannels},${unet.imageSize},${unet.imageSize}] (model output, meanType '${info.diffusion.meanType}'; channels: ${META_OUTPUT})`,
    [META_OUTPUT]: describeOutput(unet, info.diffusion),
  };
  if (info.step !== undefined) metadata[META_STEP] = String(info.step);
  const names = info.classNames ?? [];
  if (unet.numClasses === 0 && names.length > 0) throw new Error(`${names.length} class names for an unconditional model`);
  if (unet.numClasses > 0) {
    const classNames = names.length > 0 ? names : Array.from({ length: unet.numClasses }, (_, i) => String(i));
    metadata[META_CLASSES] = JSON.stringify(checkClassNames(classNames, unet.numClasses));
  }
  return exportDenoiserOnnx(unet, weights, metadata).bytes;
}
