/**
 * The trained U-Net as a compiled inference function ε_θ(x_t, t), and its standalone ONNX export.
 *
 * Runs anywhere onnxruntime does: the `ort` module is injected (onnxruntime-node or onnxruntime-web).
 * The exported model has inputs `x` float32 [N, C, H, W] and `t` float32 [N] (the timestep index
 * 0..T−1) and output `out` [N, outChannels, H, W]; the batch size N is free.
 */
import type { ParamValue } from '../engine/tree.ts';
import { toOnnx } from '../engine/onnx.ts';
import { CompiledFunction, type OrtModule, type RuntimeOptions } from '../engine/runtime.ts';
import { input, type Tensor } from '../engine/tensor.ts';
import { unet, type UNetConfig } from './unet.ts';

export interface DenoiserExport {
  bytes: Uint8Array;
}

function traceUnet(cfg: UNetConfig, params: Record<string, ParamValue>): { out: Tensor } {
  const x = input('x', ['N', cfg.inChannels, cfg.imageSize, cfg.imageSize]);
  const t = input('t', ['N']);
  const p: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(params)) p[k] = input(k, v.shape);
  return { out: unet(cfg, p, x, t) };
}

/** The denoiser as standalone ONNX bytes with the weights baked in as initializers. */
export function exportDenoiserOnnx(cfg: UNetConfig, params: Record<string, ParamValue>, metadata: Record<string, string> = {}): { bytes: Uint8Array } {
  const outputs = traceUnet(cfg, params);
  const initializers = new Map(Object.entries(params).map(([k, v]) => [k, v.data]));
  const { bytes } = toOnnx(outputs, {
    name: 'ddpm_ts_unet',
    initializers,
    inputOrder: ['x', 't'],
    metadata: { 'ddpm-ts.unet': JSON.stringify(cfg), ...metadata },
    convTransposeAsConv: true,
  });
  return { bytes };
}

/**
 * A compiled denoiser. With `weightsAsInputs`, the weights are fed on every call (so a trainer can
 * sample from changing EMA weights without recompiling); otherwise they are baked into the session.
 */
export class Denoiser {
  private constructor(
    readonly cfg: UNetConfig,
    private readonly fn: CompiledFunction,
    private weights: Record<string, Float32Array> | null,
  ) {}

  static async create(
    ort: OrtModule,
    cfg: UNetConfig,
    params: Record<string, ParamValue>,
    opts: RuntimeOptions & { weightsAsInputs?: boolean } = {},
  ): Promise<Denoiser> {
    if (opts.weightsAsInputs) {
      const { bytes, info } = toOnnx(traceUnet(cfg, params), { inputOrder: ['x', 't', ...Object.keys(params)] });
      const fn = await CompiledFunction.fromOnnx(ort, bytes, info, opts);
      const w: Record<string, Float32Array> = {};
      for (const [k, v] of Object.entries(params)) w[k] = v.data;
      return new Denoiser(cfg, fn, w);
    }
    return Denoiser.fromOnnx(ort, cfg, exportDenoiserOnnx(cfg, params).bytes, opts);
  }

  /** From standalone ONNX bytes (e.g. the shipped `model.onnx`). */
  static async fromOnnx(ort: OrtModule, cfg: UNetConfig, bytes: Uint8Array, opts: RuntimeOptions = {}): Promise<Denoiser> {
    const info = {
      inputs: [
        { name: 'x', shape: ['N', cfg.inChannels, cfg.imageSize, cfg.imageSize], dtype: 'float32' as const },
        { name: 't', shape: ['N'], dtype: 'float32' as const },
      ],
      outputs: [{ name: 'out', shape: ['N', cfg.outChannels, cfg.imageSize, cfg.imageSize], dtype: 'float32' as const }],
    };
    return new Denoiser(cfg, await CompiledFunction.fromOnnx(ort, bytes, info, opts), null);
  }

  /** Replace the weights (only for a denoiser created with `weightsAsInputs`). */
  setWeights(params: Record<string, ParamValue> | Map<string, ParamValue>): void {
    if (!this.weights) throw new Error('setWeights: this denoiser has its weights baked in');
    const entries = params instanceof Map ? [...params] : Object.entries(params);
    for (const [k, v] of entries) {
      if (!(k in this.weights)) throw new Error(`setWeights: unknown parameter '${k}'`);
      this.weights[k] = v.data;
    }
  }

  /** Model output for x_t [B, C, H, W] and original timesteps t [B] (a `DiffusionModel`). */
  readonly predict = async (xt: Float32Array, t: Int32Array | Float32Array, shape?: readonly number[]): Promise<Float32Array> => {
    const per = this.cfg.inChannels * this.cfg.imageSize * this.cfg.imageSize;
    if (shape && (shape.length !== 4 || shape[1] !== this.cfg.inChannels || shape[2] !== this.cfg.imageSize || shape[3] !== this.cfg.imageSize)) {
      throw new Error(`denoiser expects [N, ${this.cfg.inChannels}, ${this.cfg.imageSize}, ${this.cfg.imageSize}], got [${shape}]`);
    }
    if (xt.length % per !== 0 || xt.length / per !== t.length) throw new Error(`denoiser: ${xt.length} values and ${t.length} timesteps do not form a batch`);
    const feeds: Record<string, Float32Array> = { x: xt, t: Float32Array.from(t) };
    if (this.weights) Object.assign(feeds, this.weights);
    const res = await this.fn.run(feeds);
    return res.out!.data as Float32Array;
  };

  async release(): Promise<void> {
    await this.fn.release();
  }
}
