/**
 * The trained U-Net as a compiled inference function ε_θ(x_t, t) on onnxruntime.
 *
 * Runs anywhere onnxruntime does: the `ort` module is injected (onnxruntime-node or onnxruntime-web).
 * The model has inputs `x` float32 [N, C, H, W] and `t` float32 [N] (the timestep index 0..T−1) and
 * output `out` [N, outChannels, H, W]; the batch size N is free. A class-conditional model (cfg.numClasses > 0)
 * has a third input `y` int64 [N], the class labels (numClasses = ∅, "no class"). This file only runs ONNX bytes: tracing
 * the U-Net and exporting it (the exporter and its protobuf library) is denoiser-compile.ts, so that a
 * page that samples from a downloaded model.onnx does not carry the exporter.
 */
import type { ParamValue } from '../engine/tree.ts';
import { CompiledFunction, type OrtModule, type RuntimeOptions } from '../engine/runtime.ts';
import type { UNetConfig } from './unet.ts';

/**
 * A compiled denoiser. Created from standalone ONNX bytes ({@link Denoiser.fromOnnx}) or, from weights,
 * by `compileDenoiser` (denoiser-compile.ts). With weights as inputs they are fed on every call (so a
 * trainer can sample from changing EMA weights without recompiling); otherwise they are baked into the session.
 */
export class Denoiser {
  private constructor(
    readonly cfg: UNetConfig,
    private readonly fn: CompiledFunction,
    private weights: Record<string, Float32Array> | null,
  ) {}

  /** From standalone ONNX bytes (e.g. the shipped `model.onnx`). */
  static async fromOnnx(ort: OrtModule, cfg: UNetConfig, bytes: Uint8Array, opts: RuntimeOptions = {}): Promise<Denoiser> {
    const info = {
      inputs: [
        { name: 'x', shape: ['N', cfg.inChannels, cfg.imageSize, cfg.imageSize], dtype: 'float32' as const },
        { name: 't', shape: ['N'], dtype: 'float32' as const },
        ...(cfg.numClasses > 0 ? [{ name: 'y', shape: ['N'], dtype: 'int64' as const }] : []),
      ],
      outputs: [{ name: 'out', shape: ['N', cfg.outChannels, cfg.imageSize, cfg.imageSize], dtype: 'float32' as const }],
    };
    return new Denoiser(cfg, await CompiledFunction.fromOnnx(ort, bytes, info, opts), null);
  }

  /** From a compiled function with inputs x, t (and y when conditional) and, when `weights` is given, one input per weight (fed on every call). */
  static fromCompiled(cfg: UNetConfig, fn: CompiledFunction, weights: Record<string, ParamValue> | null = null): Denoiser {
    const w = weights ? Object.fromEntries(Object.entries(weights).map(([k, v]) => [k, v.data])) : null;
    return new Denoiser(cfg, fn, w);
  }

  /** Replace the weights (only for a denoiser whose weights are inputs). */
  setWeights(params: Record<string, ParamValue> | Map<string, ParamValue>): void {
    if (!this.weights) throw new Error('setWeights: this denoiser has its weights baked in');
    const entries = params instanceof Map ? [...params] : Object.entries(params);
    for (const [k, v] of entries) {
      if (!(k in this.weights)) throw new Error(`setWeights: unknown parameter '${k}'`);
      this.weights[k] = v.data;
    }
  }

  /**
   * Model output for x_t [B, C, H, W] and original timesteps t [B] (a `DiffusionModel`). A class-conditional model
   * is run with the label ∅ ("no class") for every image: its unconditional prediction.
   */
  readonly predict = (xt: Float32Array, t: Int32Array | Float32Array, shape?: readonly number[]): Promise<Float32Array> =>
    this.run(xt, t, this.cfg.numClasses > 0 ? new Int32Array(t.length).fill(this.cfg.numClasses) : undefined, shape);

  /**
   * Model output for x_t [B, C, H, W], original timesteps t [B] and class labels y [B] in [0, numClasses]
   * (numClasses = ∅); only for a class-conditional model (a `ConditionalModel`, see diffusion/guidance.ts).
   */
  readonly predictClass = async (xt: Float32Array, t: Int32Array | Float32Array, y: Int32Array, shape?: readonly number[]): Promise<Float32Array> => {
    const K = this.cfg.numClasses;
    if (K === 0) throw new Error('denoiser: class labels given to an unconditional model (numClasses 0)');
    for (const v of y) if (!(Number.isInteger(v) && v >= 0 && v <= K)) throw new Error(`denoiser: class label ${v} is outside [0, ${K}] (${K} = no class)`);
    return this.run(xt, t, y, shape);
  };

  private async run(xt: Float32Array, t: Int32Array | Float32Array, y: Int32Array | undefined, shape?: readonly number[]): Promise<Float32Array> {
    const per = this.cfg.inChannels * this.cfg.imageSize * this.cfg.imageSize;
    if (shape && (shape.length !== 4 || shape[1] !== this.cfg.inChannels || shape[2] !== this.cfg.imageSize || shape[3] !== this.cfg.imageSize)) {
      throw new Error(`denoiser expects [N, ${this.cfg.inChannels}, ${this.cfg.imageSize}, ${this.cfg.imageSize}], got [${shape}]`);
    }
    if (xt.length % per !== 0 || xt.length / per !== t.length) throw new Error(`denoiser: ${xt.length} values and ${t.length} timesteps do not form a batch`);
    if (y && y.length !== t.length) throw new Error(`denoiser: ${y.length} class labels for a batch of ${t.length}`);
    const feeds: Record<string, Float32Array | Int32Array> = { x: xt, t: Float32Array.from(t) };
    if (y) feeds.y = y;
    if (this.weights) Object.assign(feeds, this.weights);
    const res = await this.fn.run(feeds);
    return res.out!.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.fn.release();
  }
}
