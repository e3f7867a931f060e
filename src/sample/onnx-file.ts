/**
 * The standalone denoiser file written by `ddpm export` (onnx-export.ts): ε_θ(x_t, t) as ONNX with its configs
 * in the model's metadata, so the file alone is enough to sample (Node, browser, Python).
 *
 * Signature (see src/models/denoiser.ts): inputs `x` float32 [N, C, H, W] (x_t, data scaled to
 * [−1, 1]) and `t` float32 [N] (timestep index 0..T−1, the paper's t − 1); output `out`
 * [N, outChannels, H, W]: the model's prediction (ε̂ for meanType 'epsilon') in the first C channels;
 * with a learned variance (varType 'learnedRange', outChannels = 2C) the last C channels are the
 * interpolation v of Nichol & Dhariwal eq. 15 (see {@link describeOutput}). A class-conditional model
 * (numClasses > 0 in ddpm-ts.unet) has a third input `y` int64 [N]: the class label of each image, numClasses
 * meaning ∅, "no class" (classifier-free guidance, diffusion/guidance.ts).
 *
 * Metadata keys (ONNX `metadata_props`, strings):
 *   ddpm-ts.unet       the UNetConfig as JSON
 *   ddpm-ts.diffusion  the DiffusionConfig as JSON (schedule, meanType, varType, loss, minSnrGamma)
 *   ddpm-ts.version    the ddpm-ts version that wrote the file
 *   ddpm-ts.step       training step of the source checkpoint (absent when unknown)
 *   ddpm-ts.io         a one-line description of the inputs and output
 *   ddpm-ts.output     what the output channels hold ({@link describeOutput}; files written before it lack it)
 *   ddpm-ts.classes    a class-conditional model's class names as a JSON array of strings, label i named by entry i
 *                      (absent when unconditional; when absent for a conditional model, the names are "0", "1", ...)
 * Reading needs no protobuf library (engine/onnx-read.ts) and no node:* imports: the browser reads the same file.
 */
import { validateDiffusionConfig, type DiffusionConfig } from '../diffusion/config.ts';
import { readOnnxHeader, type OnnxModelHeader } from '../engine/onnx-read.ts';
import { checkClassNames, unetConfig, type UNetConfig } from '../models/unet.ts';
import { describeValue } from '../describe.ts';
import { KIND_NAMES, SNIFF_BYTES, sniffBytes } from '../io/sniff.ts';

export const META_UNET = 'ddpm-ts.unet';
export const META_DIFFUSION = 'ddpm-ts.diffusion';
export const META_VERSION = 'ddpm-ts.version';
export const META_STEP = 'ddpm-ts.step';
export const META_IO = 'ddpm-ts.io';
export const META_OUTPUT = 'ddpm-ts.output';
export const META_CLASSES = 'ddpm-ts.classes';

const PREDICTION: Record<DiffusionConfig['meanType'], string> = {
  epsilon: "the noise ε̂ (meanType 'epsilon', Ho et al. eq. 11)",
  x0: "the clean image x̂_0 (meanType 'x0')",
  v: "v̂ = √ᾱ_t·ε − √(1−ᾱ_t)·x_0 (meanType 'v', Salimans & Ho 2022)",
};

/**
 * What the output channels of a denoiser hold, e.g. for the shipped model "2C = 2 channels: [0, 1) the noise ε̂
 * (...), then [1, 2) the variance interpolation v (Nichol & Dhariwal eq. 15): log σ²_t = (v+1)/2 · log β_t + (1−v)/2 ·
 * log β̃_t". Samplers split the two halves; a user of the raw file keeps the first C channels for the prediction.
 */
export function describeOutput(unet: UNetConfig, diffusion: Pick<DiffusionConfig, 'meanType' | 'varType'>): string {
  const C = unet.inChannels;
  const pred = PREDICTION[diffusion.meanType];
  if (diffusion.varType !== 'learnedRange') return `C = ${C} channel(s): ${pred}; the variance is fixed (varType '${diffusion.varType}')`;
  return (
    `2C = ${2 * C} channels: [0, ${C}) ${pred}, then [${C}, ${2 * C}) the variance interpolation v (Nichol & Dhariwal eq. 15): ` +
    'log σ²_t = (v+1)/2 · log β_t + (1−v)/2 · log β̃_t (varType \'learnedRange\')'
  );
}

export interface DenoiserFile {
  unet: UNetConfig;
  diffusion: DiffusionConfig;
  version?: string;
  step?: number;
  /** a class-conditional model's class names (label i is classNames[i]), when the file has them */
  classNames?: string[];
  /** every metadata entry, as stored */
  metadata: Record<string, string>;
}

function decodeModel(bytes: Uint8Array): OnnxModelHeader {
  try {
    return readOnnxHeader(bytes);
  } catch (e) {
    // a file of another kind (an image, a safetensors checkpoint): say which, not where protobuf decoding failed
    const kind = sniffBytes(bytes.subarray(0, SNIFF_BYTES));
    if (kind !== 'unknown' && kind !== 'onnx') throw new Error(`not a valid ONNX file: ${KIND_NAMES[kind]}`);
    throw new Error(`not a valid ONNX file (${(e as Error).message})`);
  }
}

type Graph = NonNullable<OnnxModelHeader['graph']>;

const ONNX_FLOAT = 1;
const ONNX_INT64 = 7;

/**
 * The metadata must describe the graph: x [N, C, S, S], t [N] (float32), y [N] (int64, exactly when numClasses > 0)
 * and out [N, outC, S, S], compared wherever the graph declares a fixed size or an element type (sizes we allocate
 * come from the metadata, so a file whose metadata claims, say, imageSize 29360128 is refused here rather than when
 * a buffer is allocated); the graph has no other inputs.
 */
function checkSignature(graph: Graph, unet: UNetConfig): void {
  const S = unet.imageSize;
  const expect: [string, 'input' | 'output', (number | null)[], number][] = [
    ['x', 'input', [null, unet.inChannels, S, S], ONNX_FLOAT],
    ['t', 'input', [null], ONNX_FLOAT],
    ...(unet.numClasses > 0 ? [['y', 'input', [null], ONNX_INT64] as [string, 'input', null[], number]] : []),
    ['out', 'output', [null, unet.outChannels, S, S], ONNX_FLOAT],
  ];
  for (const inp of graph.inputs) {
    if (!expect.some(([name, kind]) => kind === 'input' && name === inp.name)) {
      const known = expect.filter(([, kind]) => kind === 'input').map(([name]) => name).join(', ');
      throw new Error(
        inp.name === 'y'
          ? "ONNX metadata (ddpm-ts.unet) says the model is unconditional (numClasses 0), but the graph has a class-label input 'y'"
          : `ONNX metadata (ddpm-ts.unet) describes the inputs ${known}, the graph also has an input '${inp.name}': not a file written by \`ddpm export\``,
      );
    }
  }
  for (const [name, kind, want, elemType] of expect) {
    const v = (kind === 'input' ? graph.inputs : graph.outputs).find((i) => i.name === name);
    if (!v) {
      if (name === 'y') throw new Error(`ONNX metadata (ddpm-ts.unet) says the model has ${unet.numClasses} classes, but the graph has no class-label input 'y'`);
      throw new Error(`the graph has no ${kind} '${name}': not a file written by \`ddpm export\``);
    }
    if (v.elemType !== undefined && v.elemType !== elemType) {
      throw new Error(`ONNX metadata (ddpm-ts.unet) says ${kind} '${name}' is ${elemType === ONNX_INT64 ? 'int64 (element type 7)' : 'float32 (element type 1)'}, the graph declares element type ${v.elemType}`);
    }
    const dims = v.dims;
    if (!dims) continue; // no declared shape: nothing to compare
    const got = dims.map((d) => (d.value !== undefined && !d.param ? d.value : null));
    const fmt = (ds: (number | null)[]) => `[${ds.map((d) => d ?? 'N').join(', ')}]`;
    // the batch size N must be free (samplers run any batch size, the last batch is smaller), as `ddpm export` leaves it
    if (got.length !== want.length || got[0] !== null || want.some((w, i) => w !== null && got[i] !== null && got[i] !== w)) {
      throw new Error(`ONNX metadata (ddpm-ts.unet) says ${kind} '${name}' is ${fmt(want)}, the graph declares ${fmt(got)}`);
    }
  }
}

/**
 * The graph's int64 constants (shape, axes and pad vectors) must stay within the largest tensor the metadata's
 * U-Net has, C_max·S² elements: a Reshape to [0, 2130706435, 16, 16] in an otherwise valid file made onnxruntime's
 * graph optimiser take 12 s and 2.2 GB before the file could be refused by running it.
 */
function checkShapeConstants(graph: Graph, unet: UNetConfig): void {
  const widest = Math.max(unet.inChannels, unet.outChannels, unet.baseChannels * Math.max(...unet.channelMults));
  const bound = widest * unet.imageSize * unet.imageSize;
  for (const c of graph.int64Constants) {
    const bad = c.values.find((v) => !(Math.abs(v) <= bound));
    if (bad !== undefined) {
      throw new Error(`ONNX metadata (ddpm-ts.unet) describes tensors of at most ${bound} elements, the graph's int64 constant '${c.name}' holds ${bad}: not a file written by \`ddpm export\``);
    }
  }
}

/** The configs stored in a file from {@link exportDenoiserFile}; throws a clear message when they are missing or invalid. */
export function readDenoiserFile(bytes: Uint8Array): DenoiserFile {
  const model = decodeModel(bytes);
  if (!model.graph) throw new Error('not a valid ONNX file (no graph)');
  const metadata = model.metadata;
  const own = (key: string): string | undefined => (Object.hasOwn(metadata, key) ? metadata[key] : undefined);
  const json = (key: string): unknown => {
    const raw = own(key);
    if (raw === undefined) throw new Error(`no '${key}' metadata: not a file written by \`ddpm export\``);
    try {
      return JSON.parse(raw);
    } catch {
      throw new Error(`metadata '${key}' is not valid JSON`);
    }
  };
  let unet: UNetConfig;
  let diffusion: DiffusionConfig;
  try {
    unet = unetConfig(json(META_UNET) as Partial<UNetConfig>, undefined, { stored: true });
    diffusion = validateDiffusionConfig(json(META_DIFFUSION));
  } catch (e) {
    throw new Error(`ONNX metadata: ${(e as Error).message}`);
  }
  const expectOut = unet.inChannels * (diffusion.varType === 'learnedRange' ? 2 : 1);
  if (unet.outChannels !== expectOut) {
    throw new Error(`ONNX metadata: outChannels ${unet.outChannels} does not fit varType '${diffusion.varType}' (expected ${expectOut})`);
  }
  checkSignature(model.graph, unet);
  checkShapeConstants(model.graph, unet);
  const classNames = readClassNames(own(META_CLASSES), unet.numClasses);
  return { unet, diffusion, version: own(META_VERSION), step: readStep(own(META_STEP)), ...(classNames ? { classNames } : {}), metadata };
}

/** ddpm-ts.classes: a JSON array of numClasses distinct non-empty strings; only in a class-conditional model's file. */
function readClassNames(raw: string | undefined, numClasses: number): string[] | undefined {
  if (raw === undefined) return undefined;
  if (numClasses === 0) throw new Error(`metadata '${META_CLASSES}' names classes, but ddpm-ts.unet says the model is unconditional (numClasses 0)`);
  let names: unknown;
  try {
    names = JSON.parse(raw);
  } catch {
    throw new Error(`metadata '${META_CLASSES}' is not valid JSON`);
  }
  try {
    return checkClassNames(names, numClasses);
  } catch (e) {
    throw new Error(`metadata '${META_CLASSES}': ${(e as Error).message}`);
  }
}

/** The training step as `ddpm export` writes it: a non-negative integer in decimal ("-1", "1e3", "0x10" are refused). */
function readStep(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const step = Number(raw);
  if (!/^(0|[1-9][0-9]*)$/.test(raw) || !Number.isSafeInteger(step)) {
    throw new Error(`metadata '${META_STEP}' must be a non-negative integer, got ${describeValue(raw)}`);
  }
  return step;
}

// ---------------------------------------------------------------------------------------------
// Opset conformance

/**
 * The opset version that introduced each standard (ai.onnx) operator. A model declaring opset k may
 * use an operator only if it was introduced at or before k; the ops new in 18+ (e.g.
 * GroupNormalization) are the ones a future exporter change could slip in.
 */
const OP_SINCE: Record<string, number> = {
  Abs: 1, Acos: 7, Acosh: 9, Add: 1, And: 1, ArgMax: 1, ArgMin: 1, Asin: 7, Asinh: 9, Atan: 7, Atanh: 9,
  AveragePool: 1, BatchNormalization: 1, BitShift: 11, BitwiseAnd: 18, BitwiseNot: 18, BitwiseOr: 18, BitwiseXor: 18,
  BlackmanWindow: 17, Cast: 1, CastLike: 15, Ceil: 1, Celu: 12, CenterCropPad: 18, Clip: 1, Col2Im: 18, Compress: 9,
  Concat: 1, Constant: 1, ConstantOfShape: 9, Conv: 1, ConvTranspose: 1, Cos: 7, Cosh: 9, CumSum: 11, DFT: 17,
  DepthToSpace: 1, Det: 11, Div: 1, Dropout: 1, Einsum: 12, Elu: 1, Equal: 1, Erf: 9, Exp: 1, Expand: 8, EyeLike: 9,
  Flatten: 1, Floor: 1, Gather: 1, GatherElements: 11, GatherND: 11, Gelu: 20, Gemm: 1, GlobalAveragePool: 1,
  GlobalMaxPool: 1, Greater: 1, GreaterOrEqual: 12, GridSample: 16, GroupNormalization: 18, HammingWindow: 17,
  HannWindow: 17, HardSigmoid: 1, HardSwish: 14, Hardmax: 1, Identity: 1, If: 1, InstanceNormalization: 1, IsInf: 10,
  IsNaN: 9, LayerNormalization: 17, LeakyRelu: 1, Less: 1, LessOrEqual: 12, Log: 1, LogSoftmax: 1, Loop: 1,
  LpNormalization: 1, MatMul: 1, Max: 1, MaxPool: 1, Mean: 1, MeanVarianceNormalization: 9, MelWeightMatrix: 17,
  Min: 1, Mish: 18, Mod: 10, Mul: 1, Neg: 1, NonZero: 9, Not: 1, OneHot: 9, Or: 1, PRelu: 1, Pad: 1, Pow: 1, Range: 11,
  Reciprocal: 1, ReduceL1: 1, ReduceL2: 1, ReduceLogSum: 1, ReduceLogSumExp: 1, ReduceMax: 1, ReduceMean: 1,
  ReduceMin: 1, ReduceProd: 1, ReduceSum: 1, ReduceSumSquare: 1, Relu: 1, Reshape: 1, Resize: 10, Round: 11,
  STFT: 17, ScatterElements: 11, ScatterND: 11, Selu: 1, Shape: 1, Shrink: 9, Sigmoid: 1, Sign: 9, Sin: 7, Sinh: 9,
  Size: 1, Slice: 1, Softmax: 1, Softplus: 1, Softsign: 1, SpaceToDepth: 1, Split: 1, Sqrt: 1, Squeeze: 1, Sub: 1,
  Sum: 1, Tan: 7, Tanh: 1, ThresholdedRelu: 10, Tile: 1, TopK: 1, Transpose: 1, Trilu: 14, Unique: 11, Unsqueeze: 1,
  Where: 9, Xor: 1,
};

export interface OpsetReport {
  irVersion: number;
  /** declared operator sets, domain ('' = ai.onnx) -> version */
  opsets: Record<string, number>;
  /** node count per op type, sorted by name */
  ops: Record<string, number>;
  /** conformance problems; empty when the model uses only standard ops of its declared opset */
  problems: string[];
}

/**
 * Check that a model uses only standard (ai.onnx) operators that exist in the opset it declares
 * (`expectOpset`: the exporter's `OPSET`, engine/onnx.ts), so onnxruntime-web and other runtimes need nothing custom. Attribute-
 * and input-level schema checks are left to onnxruntime, which validates them when loading.
 */
export function checkOpset(bytes: Uint8Array, expectOpset: number): OpsetReport {
  const model = decodeModel(bytes);
  const opsets: Record<string, number> = {};
  for (const o of model.opsetImport) opsets[o.domain] = o.version;
  const counts = new Map<string, number>();
  const problems: string[] = [];
  for (const n of model.graph?.nodes ?? []) {
    const key = n.domain ? `${n.domain}::${n.opType}` : n.opType;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const declared = opsets[''];
  if (declared === undefined) problems.push('no ai.onnx opset declared');
  else if (declared !== expectOpset) problems.push(`declares ai.onnx opset ${declared}, the exporter targets ${expectOpset}`);
  for (const domain of Object.keys(opsets)) if (domain !== '' && domain !== 'ai.onnx') problems.push(`non-standard operator domain '${domain}'`);
  for (const [op, count] of counts) {
    if (op.includes('::')) {
      problems.push(`${count} node(s) of custom op ${op}`);
      continue;
    }
    const since = OP_SINCE[op];
    if (since === undefined) problems.push(`'${op}' is not a standard ONNX operator known to this check`);
    else if (declared !== undefined && since > declared) problems.push(`'${op}' needs opset ${since}, the model declares ${declared}`);
  }
  const irVersion = model.irVersion;
  // IR 8 is what opset 17 shipped with (ONNX 1.12); a newer IR version would shut out older runtimes for no gain.
  if (irVersion > 8) problems.push(`IR version ${irVersion} > 8`);
  const ops = Object.fromEntries([...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { irVersion, opsets, ops, problems };
}
