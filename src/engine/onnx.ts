/**
 * ONNX export of traced graphs, with standard operators only (default domain, opset 17), so the
 * result runs on onnxruntime-node, onnxruntime-web (wasm / WebGPU) and anything else that reads ONNX.
 * Each primitive's nodes come from its lowering (ops/lower.ts); this file owns value names, constants,
 * graph inputs/outputs and the protobuf encoding.
 *
 * Export is deterministic: value names come from the position in a deterministic topological order
 * (never from global node ids), constants are deduplicated by content, and protobuf encoding of the
 * same message is byte-stable. The same traced function therefore always gives the same bytes.
 */
import onnxProto from 'onnx-proto';
import { topoSort, type DType, type Dim, type Node, type OnnxModelInfo, type Primitive } from './graph.ts';
import { lowerRules, type AttrValue, type LowerContext } from './ops/lower.ts';
import type { Tensor } from './tensor.ts';

const { onnx } = onnxProto;

export const OPSET = 17;

const DTYPE_CODE: Record<DType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
};

export type InitializerData = Float32Array | BigInt64Array;

export interface OnnxExportOptions {
  /** Graph name recorded in the model. */
  name?: string;
  /** Inputs bound to fixed values: written as initializers instead of graph inputs (e.g. trained weights). */
  initializers?: ReadonlyMap<string, InitializerData> | Record<string, InitializerData>;
  /** Order of the remaining graph inputs; by default the order in which the graph reaches them. */
  inputOrder?: readonly string[];
  /** Free-form key/value metadata stored in the model (e.g. the model config as JSON). */
  metadata?: Record<string, string>;
  /**
   * Rewrite stride-1 ConvTranspose as a Conv with flipped, transposed weights (onnxruntime's Conv is
   * faster than its ConvTranspose). Default true.
   */
  convTransposeAsConv?: boolean;
  /**
   * The most inputs of one Concat node; a longer Concat becomes a tree of Concats (default: no limit). See
   * WEBGPU_EXPORT.
   */
  maxConcatInputs?: number;
  /** Lower a sum over leading axes as a MatMul by a row of ones (default false). See WEBGPU_EXPORT. */
  leadingSumAsMatMul?: boolean;
}

/**
 * What a graph for onnxruntime-web's WebGPU provider (JSEP, 1.30) needs. Its Concat binds each input as a storage
 * buffer, and the device it requests allows 8 per shader stage (WebGPU's default), so a Concat of 8 or more inputs
 * fails validation and leaves its output zero without an error (the training step packs ~170 tensors into one).
 * Its ReduceSum over a leading axis (a weight gradient's sum over the batch) runs a 64-thread workgroup with
 * barriers per output element: the training step's 56 such sums took 9.5 s a step on SwiftShader (headless
 * Chromium's software adapter, mnist-small, batch 8), the MatMuls by ones that replace them 3.6 s.
 */
export const WEBGPU_EXPORT: OnnxExportOptions = { maxConcatInputs: 7, leadingSumAsMatMul: true };

function attribute(name: string, v: AttrValue): InstanceType<typeof onnx.AttributeProto> {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') {
    return Number.isInteger(v)
      ? onnx.AttributeProto.create({ name, type: A.INT, i: v })
      : onnx.AttributeProto.create({ name, type: A.FLOAT, f: v });
  }
  if (typeof v === 'string') return onnx.AttributeProto.create({ name, type: A.STRING, s: new TextEncoder().encode(v) });
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: A.INTS, ints: v });
  if ('tensor' in v) {
    const { dtype, dims, data } = v.tensor;
    return onnx.AttributeProto.create({ name, type: A.TENSOR, t: tensorProto(name, dtype, dims, rawBytes(dtype, data)) });
  }
  return onnx.AttributeProto.create({ name, type: A.INT, i: DTYPE_CODE[v.dtype] });
}

function tensorProto(name: string, dtype: DType, dims: readonly number[], raw: Uint8Array) {
  return onnx.TensorProto.create({ name, dataType: DTYPE_CODE[dtype], dims: [...dims], rawData: raw });
}

function rawBytes(dtype: DType, value: Float64Array | Float32Array | BigInt64Array | Uint8Array): Uint8Array {
  if (dtype === 'float32') {
    const f = value instanceof Float32Array ? value : Float32Array.from(value as Float64Array);
    return new Uint8Array(f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength));
  }
  if (dtype === 'int64') {
    const b = value as BigInt64Array;
    return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  }
  return Uint8Array.from(value as Uint8Array);
}

function valueInfo(name: string, dtype: DType, shape: readonly Dim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: DTYPE_CODE[dtype],
        shape: onnx.TensorShapeProto.create({
          dim: shape.map((d) => onnx.TensorShapeProto.Dimension.create(typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
        }),
      }),
    }),
  });
}

function fnv1a(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193) >>> 0;
  return h.toString(16);
}

/** The Input nodes an output set depends on, in deterministic first-reached order. */
export function graphInputs(outputs: readonly Tensor[]): Node[] {
  return topoSort(outputs.map((t) => t.node)).filter((n) => n.op === 'Input');
}

/**
 * Serialise the graph that computes `outputs` (name -> tensor) as an ONNX ModelProto.
 * Returns the bytes and the signature (graph inputs/outputs with shapes).
 */
export function toOnnx(outputs: Record<string, Tensor>, opts: OnnxExportOptions = {}): { bytes: Uint8Array; info: OnnxModelInfo } {
  const outNames = Object.keys(outputs);
  if (outNames.length === 0) throw new Error('toOnnx: no outputs');
  const outTensors = outNames.map((k) => outputs[k]!);
  const order = topoSort(outTensors.map((t) => t.node));
  const initMap = new Map<string, InitializerData>(
    opts.initializers instanceof Map ? opts.initializers : Object.entries(opts.initializers ?? {}),
  );
  const convTransposeAsConv = opts.convTransposeAsConv ?? true;

  const names = new Map<Node, string>();
  const nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  const initializers: ReturnType<typeof tensorProto>[] = [];
  const inputs: OnnxModelInfo['inputs'] = [];
  const constCache = new Map<string, string>();
  let tmp = 0;
  const fresh = (hint: string) => `${hint}_${tmp++}`;

  /** A deduplicated initializer holding a constant. */
  const constName = (dtype: DType, dims: readonly number[], raw: Uint8Array): string => {
    const key = `${dtype}|${dims.join('x')}|${raw.length}|${fnv1a(raw)}`;
    const hit = constCache.get(key);
    if (hit) return hit;
    const name = `c${constCache.size}`;
    constCache.set(key, name);
    initializers.push(tensorProto(name, dtype, dims, raw));
    return name;
  };
  const i64 = (vals: readonly number[]): string =>
    constName('int64', [vals.length], rawBytes('int64', BigInt64Array.from(vals, (v) => BigInt(v))));
  const emit = (opType: string, ins: string[], outs: string[], attrs: Record<string, AttrValue> = {}) => {
    nodes.push(
      onnx.NodeProto.create({
        opType,
        input: ins,
        output: outs,
        name: `n${nodes.length}_${opType}`,
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
  };

  const seenInputNames = new Set<string>();
  // Output tensors that are graph inputs, or listed twice, need an Identity to get their own name.
  const outputNameOf = new Map<Node, string>();
  outTensors.forEach((t, i) => {
    if (t.node.op !== 'Input' && t.node.op !== 'Constant' && !outputNameOf.has(t.node)) outputNameOf.set(t.node, outNames[i]!);
  });

  // Where each symbolic dim can be read at run time: the first graph input that carries it.
  const symbolSource = new Map<string, [string, number]>();
  for (const n of order) {
    if (n.op !== 'Input' || initMap.has(n.attrs.name as string)) continue;
    n.shape.forEach((d, axis) => {
      if (typeof d === 'string' && !symbolSource.has(d)) symbolSource.set(d, [n.attrs.name as string, axis]);
    });
  }
  /** An int64 shape vector: a constant when static, else assembled with Shape/Concat at run time. */
  const shapeVector = (dims: readonly Dim[]): string => {
    if (dims.every((d) => typeof d === 'number')) return i64(dims as number[]);
    const parts = dims.map((d) => {
      if (typeof d === 'number') return i64([d]);
      const srcDim = symbolSource.get(d);
      if (!srcDim) throw new Error(`toOnnx: symbolic dim '${d}' appears in no graph input`);
      const piece = fresh('dim');
      emit('Shape', [srcDim[0]], [piece], { start: srcDim[1], end: srcDim[1] + 1 });
      return piece;
    });
    const vec = fresh('shape');
    emit('Concat', parts, [vec], { axis: 0 });
    return vec;
  };
  const ctx: LowerContext = { emit, fresh, i64, shapeVector, convTransposeAsConv,
    maxConcatInputs: opts.maxConcatInputs ?? Infinity, leadingSumAsMatMul: opts.leadingSumAsMatMul ?? false };

  let counter = 0;
  for (const n of order) {
    if (n.op === 'Input') {
      const name = n.attrs.name as string;
      if (seenInputNames.has(name)) throw new Error(`toOnnx: two different inputs are named '${name}'`);
      seenInputNames.add(name);
      names.set(n, name);
      const bound = initMap.get(name);
      if (bound) {
        const dims = n.shape.map((d) => {
          if (typeof d !== 'number') throw new Error(`toOnnx: initializer '${name}' has symbolic shape`);
          return d;
        });
        const expected = dims.reduce((a, b) => a * b, 1);
        if (bound.length !== expected) throw new Error(`toOnnx: initializer '${name}' has ${bound.length} values, shape [${dims}] needs ${expected}`);
        initializers.push(tensorProto(name, n.dtype, dims, rawBytes(n.dtype, bound)));
      } else {
        inputs.push({ name, shape: [...n.shape], dtype: n.dtype });
      }
      continue;
    }
    if (n.op === 'Constant') {
      const value = n.attrs.value as Float64Array | BigInt64Array | Uint8Array;
      names.set(n, constName(n.dtype, n.shape as number[], rawBytes(n.dtype, value)));
      continue;
    }
    const out = outputNameOf.get(n) ?? `v${counter++}`;
    names.set(n, out);
    lowerRules[n.op as Primitive](ctx, n, n.inputs.map((i) => names.get(i)!), out);
  }

  // outputs that are inputs/constants or repeated get an Identity
  const graphOutputs: OnnxModelInfo['outputs'] = [];
  const usedOut = new Set<string>();
  outTensors.forEach((t, i) => {
    const want = outNames[i]!;
    let have = names.get(t.node)!;
    if (have !== want) {
      emit('Identity', [have], [want]);
      have = want;
    }
    if (usedOut.has(want)) throw new Error(`toOnnx: duplicate output name '${want}'`);
    usedOut.add(want);
    graphOutputs.push({ name: want, shape: [...t.shape], dtype: t.dtype });
  });

  for (const name of initMap.keys()) {
    if (!seenInputNames.has(name)) throw new Error(`toOnnx: initializer '${name}' is not an input of the graph`);
  }
  if (opts.inputOrder) {
    const pos = new Map(opts.inputOrder.map((n, i) => [n, i]));
    for (const inp of inputs) if (!pos.has(inp.name)) throw new Error(`toOnnx: inputOrder lacks '${inp.name}'`);
    inputs.sort((x, y) => pos.get(x.name)! - pos.get(y.name)!);
  }

  const graph = onnx.GraphProto.create({
    name: opts.name ?? 'ddpm_ts',
    node: nodes,
    initializer: initializers,
    input: inputs.map((i) => valueInfo(i.name, i.dtype, i.shape)),
    output: graphOutputs.map((o) => valueInfo(o.name, o.dtype, o.shape)),
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'ddpm-ts',
    producerVersion: '0.1.0',
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: OPSET })],
    graph,
    metadataProps: Object.entries(opts.metadata ?? {})
      .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
      .map(([key, value]) => onnx.StringStringEntryProto.create({ key, value })),
  });
  const bytes = onnx.ModelProto.encode(model).finish();
  return { bytes, info: { inputs, outputs: graphOutputs } };
}
