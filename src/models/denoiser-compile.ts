/**
 * The U-Net traced into a {@link Denoiser}: exported to standalone ONNX bytes (weights baked in as
 * initializers) or compiled with the weights as inputs. Needs the exporter (engine/onnx.ts); code that only
 * runs an exported file imports denoiser.ts alone.
 */
import { toOnnx } from '../engine/onnx.ts';
import { CompiledFunction, type OrtModule, type RuntimeOptions } from '../engine/runtime.ts';
import { input, type Tensor } from '../engine/tensor.ts';
import type { ParamValue } from '../engine/tree.ts';
import { Denoiser } from './denoiser.ts';
import { unet, unetConfigJson, type UNetConfig } from './unet.ts';

function traceUnet(cfg: UNetConfig, params: Record<string, ParamValue>): { out: Tensor } {
  const x = input('x', ['N', cfg.inChannels, cfg.imageSize, cfg.imageSize]);
  const t = input('t', ['N']);
  const labels = cfg.numClasses > 0 ? { labels: input('y', ['N'], 'int64') } : {};
  const p: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(params)) p[k] = input(k, v.shape);
  return { out: unet(cfg, p, x, t, labels) };
}

/** The graph inputs of a denoiser before its weights: x, t and, for a class-conditional model, y. */
export function denoiserInputNames(cfg: UNetConfig): string[] {
  return cfg.numClasses > 0 ? ['x', 't', 'y'] : ['x', 't'];
}

/** The denoiser as standalone ONNX bytes with the weights baked in as initializers. */
export function exportDenoiserOnnx(cfg: UNetConfig, params: Record<string, ParamValue>, metadata: Record<string, string> = {}): { bytes: Uint8Array } {
  const outputs = traceUnet(cfg, params);
  const initializers = new Map(Object.entries(params).map(([k, v]) => [k, v.data]));
  const { bytes } = toOnnx(outputs, {
    name: 'ddpm_ts_unet',
    initializers,
    inputOrder: denoiserInputNames(cfg),
    metadata: { 'ddpm-ts.unet': unetConfigJson(cfg), ...metadata },
    convTransposeAsConv: true,
  });
  return { bytes };
}

/**
 * A compiled denoiser from weights. With `weightsAsInputs`, the weights are fed on every call (so a trainer can
 * sample from changing EMA weights without recompiling, see {@link Denoiser.setWeights}); otherwise they are
 * baked into the session (the same bytes as {@link exportDenoiserOnnx}).
 */
export async function compileDenoiser(
  ort: OrtModule,
  cfg: UNetConfig,
  params: Record<string, ParamValue>,
  opts: RuntimeOptions & { weightsAsInputs?: boolean } = {},
): Promise<Denoiser> {
  if (opts.weightsAsInputs) {
    const { bytes, info } = toOnnx(traceUnet(cfg, params), { inputOrder: [...denoiserInputNames(cfg), ...Object.keys(params)] });
    return Denoiser.fromCompiled(cfg, await CompiledFunction.fromOnnx(ort, bytes, info, opts), params);
  }
  return Denoiser.fromOnnx(ort, cfg, exportDenoiserOnnx(cfg, params).bytes, opts);
}
