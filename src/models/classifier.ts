/**
 * A small LeNet-style classifier (LeCun et al. 1998, with ReLU and max-pooling as in the PyTorch
 * MNIST example), used only to score samples: its penultimate activations are the features of
 * "FID-LeNet" (the MNIST analogue of Heusel et al. 2017's Inception features) and its softmax gives
 * class histograms and confidences. Two are shipped: models/lenet-mnist (digits, LENET_MNIST below)
 * and models/shapes-classifier (the synthetic shapes of src/data/shapes.ts, LENET_SHAPES).
 *
 *   x (N,1,28,28) -> conv1 5x5 1->32 (pad 2) -> ReLU -> maxpool 2   (N,32,14,14)
 *                 -> conv2 5x5 32->64        -> ReLU -> maxpool 2   (N,64,5,5)
 *                 -> fc1 1600->128 -> ReLU = features               (N,128)
 *                 -> fc2 128->10 = logits                           (N,10)
 *
 * Any C in {1, 3} and side S a multiple of 4 from 12 to 64 work the same way: the last feature map
 * is (S/2 − 4)/2 wide (5 for MNIST's 28, 6 for 32).
 *
 * Parameter names and layouts follow torch (`conv1.weight` [O,C,kh,kw], `fc1.weight` [out,in]), so
 * the weights load into an equivalent torch module. Inputs are MNIST scaled to [-1, 1] like the
 * diffusion model's (x / 127.5 − 1).
 */
import type { ParamValue } from '../engine/tree.ts';
import { CompiledFunction, type OrtModule, type RuntimeOptions } from '../engine/runtime.ts';
import { toOnnx } from '../engine/onnx.ts';
import { add, conv2d, input, matmul, max, relu, reshape, transpose, type Tensor } from '../engine/tensor.ts';
import type { Dim } from '../engine/graph.ts';
import type { Rng } from '../rng.ts';
import { describeValue } from '../describe.ts';

export interface LeNetConfig {
  /** side S of the square input: a multiple of 4 in [12, 64] */
  imageSize: number;
  /** 1 (grey) or 3 (RGB) */
  inChannels: number;
  conv1: number;
  conv2: number;
  /** width of the penultimate layer: the FID feature dimension */
  featureDim: number;
  numClasses: number;
}

export const LENET_MNIST: LeNetConfig = { imageSize: 28, inChannels: 1, conv1: 32, conv2: 64, featureDim: 128, numClasses: 10 };
/**
 * The shape classifier: 32x32 RGB, five kinds (circle, square, triangle, cross, star) and a sixth class for
 * anything else.
 */
export const LENET_SHAPES: LeNetConfig = { imageSize: 32, inChannels: 3, conv1: 32, conv2: 64, featureDim: 64, numClasses: 6 };

/** Validate a (parsed-from-JSON) config; unknown keys are an error. */
export function lenetConfig(partial: Partial<LeNetConfig> = {}): LeNetConfig {
  if (partial === null || typeof partial !== 'object' || Array.isArray(partial)) throw new Error(`LeNet config must be an object, got ${describeValue(partial)}`);
  for (const k of Object.keys(partial)) {
    if (!Object.hasOwn(LENET_MNIST, k)) throw new Error(`unknown LeNet config key '${k}' (known: ${Object.keys(LENET_MNIST).join(', ')})`);
  }
  const c = { ...LENET_MNIST, ...partial };
  if ((c.inChannels !== 1 && c.inChannels !== 3) || !Number.isInteger(c.imageSize) || c.imageSize % 4 !== 0 || c.imageSize < 12 || c.imageSize > 64) {
    throw new Error(`LeNet: inputs must have 1 or 3 channels and a side that is a multiple of 4 in [12, 64], got inChannels ${describeValue(c.inChannels)}, imageSize ${describeValue(c.imageSize)}`);
  }
  for (const k of ['conv1', 'conv2', 'featureDim', 'numClasses'] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new Error(`LeNet config: ${k} must be a positive integer, got ${describeValue(c[k])}`);
  }
  return c;
}

/** Side of the last feature map: S -conv pad 2-> S -pool-> S/2 -conv 5x5-> S/2 − 4 -pool-> (S/2 − 4)/2 (28 -> 5, 32 -> 6). */
const flatSide = (cfg: LeNetConfig) => (cfg.imageSize / 2 - 4) / 2;

type Params = Record<string, ParamValue>;

/** torch's default init (kaiming_uniform(a=√5)): U(±1/√fan_in) for weights and biases. */
function uniformParam(rng: Rng, shape: number[], fanIn: number): ParamValue {
  const bound = 1 / Math.sqrt(fanIn);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = rng.uniformFloat32(n);
  for (let i = 0; i < n; i++) data[i] = (data[i]! * 2 - 1) * bound;
  return { shape, data };
}

/** Parameter shapes of a config (torch layouts), in a fixed order. */
export function lenetParamShapes(cfg: LeNetConfig): Record<string, number[]> {
  const flat = cfg.conv2 * flatSide(cfg) ** 2;
  return {
    'conv1.weight': [cfg.conv1, cfg.inChannels, 5, 5],
    'conv1.bias': [cfg.conv1],
    'conv2.weight': [cfg.conv2, cfg.conv1, 5, 5],
    'conv2.bias': [cfg.conv2],
    'fc1.weight': [cfg.featureDim, flat],
    'fc1.bias': [cfg.featureDim],
    'fc2.weight': [cfg.numClasses, cfg.featureDim],
    'fc2.bias': [cfg.numClasses],
  };
}

/** Fresh parameters, keyed by torch-style names; a bias uses its weight's fan-in, as in torch. */
export function initLeNet(cfg: LeNetConfig, rng: Rng): Params {
  const p: Params = {};
  let fanIn = 1;
  for (const [name, shape] of Object.entries(lenetParamShapes(cfg))) {
    if (name.endsWith('.weight')) fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    p[name] = uniformParam(rng, shape, fanIn);
  }
  return p;
}

/** 2x2 max-pooling, stride 2, of (N, C, H, W) with even H, W: reshape to 2x2 blocks and take their max. */
export function maxPool2x2(x: Tensor): Tensor {
  const [N, C, H, W] = x.shape as [Dim, number, number, number];
  if (H % 2 !== 0 || W % 2 !== 0) throw new Error(`maxPool2x2: H and W must be even, got ${H}x${W}`);
  return max(reshape(x, [N, C, H / 2, 2, W / 2, 2]), [3, 5]); // (N, C, H/2, W/2)
}

/** The forward pass: penultimate features (after ReLU) and logits. */
export function lenet(cfg: LeNetConfig, params: Record<string, Tensor>, x: Tensor): { features: Tensor; logits: Tensor } {
  const P = (name: string): Tensor => {
    const v = params[name];
    if (!v) throw new Error(`lenet: missing parameter '${name}'`);
    return v;
  };
  if (x.rank !== 4 || x.shape[1] !== cfg.inChannels || x.shape[2] !== cfg.imageSize || x.shape[3] !== cfg.imageSize) {
    throw new Error(`lenet: x must be [N, ${cfg.inChannels}, ${cfg.imageSize}, ${cfg.imageSize}], got [${x.shape}]`);
  }
  const N = x.shape[0]!;
  const fc = (h: Tensor, name: string) => add(matmul(h, transpose(P(`${name}.weight`), [1, 0])), P(`${name}.bias`));
  let h = maxPool2x2(relu(conv2d(x, P('conv1.weight'), P('conv1.bias'), { padding: 2 }))); // (N, 32, 14, 14)
  h = maxPool2x2(relu(conv2d(h, P('conv2.weight'), P('conv2.bias')))); // (N, 64, 5, 5)
  const features = relu(fc(reshape(h, [N, cfg.conv2 * flatSide(cfg) ** 2]), 'fc1')); // (N, 128)
  return { features, logits: fc(features, 'fc2') }; // (N, 10)
}

/** The trained classifier as one compiled session (weights baked in, free batch size N). */
export class LeNet {
  private constructor(
    readonly cfg: LeNetConfig,
    private readonly fn: CompiledFunction,
  ) {}

  static async create(ort: OrtModule, cfg: LeNetConfig, params: Params, opts: RuntimeOptions = {}): Promise<LeNet> {
    const x = input('x', ['N', cfg.inChannels, cfg.imageSize, cfg.imageSize]);
    const p: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(params)) p[k] = input(k, v.shape);
    const expected = lenetParamShapes(cfg);
    for (const [k, shape] of Object.entries(expected)) {
      const got = params[k];
      if (!got) throw new Error(`LeNet weights: missing tensor '${k}'`);
      if (got.shape.join() !== shape.join()) throw new Error(`LeNet weights: '${k}' has shape [${got.shape}], expected [${shape}]`);
    }
    for (const k of Object.keys(params)) if (!(k in expected)) throw new Error(`LeNet weights: unexpected tensor '${k}'`);
    const { bytes, info } = toOnnx(lenet(cfg, p, x), {
      name: 'ddpm_ts_lenet',
      initializers: new Map(Object.entries(params).map(([k, v]) => [k, v.data])),
      inputOrder: ['x'],
    });
    return new LeNet(cfg, await CompiledFunction.fromOnnx(ort, bytes, info, opts));
  }

  /** Features (N, featureDim) and logits (N, numClasses) of x (N, C, S, S) in [-1, 1]. */
  async run(x: Float32Array): Promise<{ features: Float32Array; logits: Float32Array }> {
    const per = this.cfg.inChannels * this.cfg.imageSize * this.cfg.imageSize;
    if (x.length === 0 || x.length % per !== 0) throw new Error(`LeNet: ${x.length} values are not a batch of ${this.cfg.inChannels}x${this.cfg.imageSize}x${this.cfg.imageSize} images`);
    const out = await this.fn.run({ x });
    return { features: out.features!.data as Float32Array, logits: out.logits!.data as Float32Array };
  }

  async release(): Promise<void> {
    await this.fn.release();
  }
}
