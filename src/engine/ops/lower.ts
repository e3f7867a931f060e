/**
 * ONNX lowerings, one per primitive: the standard ONNX nodes (default domain, opset 17) that compute
 * an op. They write through a `LowerContext` supplied by the exporter (onnx.ts), which owns value
 * names, constants and the protobuf encoding; this file imports no protobuf code.
 */
import type { Dim, DType, Node, Primitive } from '../graph.ts';

/** An ONNX attribute: int or float, ints, string, a dtype (as its TensorProto code) or a small tensor. */
export type AttrValue =
  | number
  | number[]
  | string
  | { dtype: DType }
  | { tensor: { dtype: DType; dims: number[]; data: Float32Array } };

export interface LowerContext {
  /** Append a node. */
  emit(opType: string, ins: string[], outs: string[], attrs?: Record<string, AttrValue>): void;
  /** A new value name `<hint>_<k>`. */
  fresh(hint: string): string;
  /** The name of an int64 vector constant (deduplicated by content). */
  i64(vals: readonly number[]): string;
  /** An int64 shape vector: a constant when static, else assembled at run time from the graph inputs' shapes. */
  shapeVector(dims: readonly Dim[]): string;
  /** Rewrite stride-1 ConvTranspose as a Conv with flipped, transposed weights (onnxruntime's Conv is faster). */
  convTransposeAsConv: boolean;
  /** The most inputs of one Concat node; more become a tree of Concats (Infinity: no limit). */
  maxConcatInputs: number;
  /** Lower a ReduceSum over leading axes of a static shape as a MatMul by a row of ones. */
  leadingSumAsMatMul: boolean;
}

/** Emit the nodes computing `n` from the values named `ins` into the value named `out`. */
export type LowerRule = (ctx: LowerContext, n: Node, ins: string[], out: string) => void;

/** The ONNX op of the same name, no attributes. */
const same: LowerRule = (ctx, n, ins, out) => ctx.emit(n.op, ins, [out]);

const withAxis: LowerRule = (ctx, n, ins, out) => ctx.emit(n.op, ins, [out], { axis: n.attrs.axis as number });

/** Concat `ins` along `axis` into `out` with at most ctx.maxConcatInputs inputs per node (a tree when more). */
function concatTree(ctx: LowerContext, ins: string[], out: string, axis: number): void {
  const max = ctx.maxConcatInputs;
  if (!(max >= 2)) throw new Error(`toOnnx: maxConcatInputs must be >= 2, got ${max}`);
  let level = ins;
  while (level.length > max) {
    const next: string[] = [];
    for (let i = 0; i < level.length; i += max) {
      const group = level.slice(i, i + max);
      if (group.length === 1) next.push(group[0]!);
      else {
        const part = ctx.fresh('cat');
        ctx.emit('Concat', group, [part], { axis });
        next.push(part);
      }
    }
    level = next;
  }
  ctx.emit('Concat', level, [out], { axis });
}

export const lowerRules: Record<Primitive, LowerRule> = {
  Add: same,
  Sub: same,
  Mul: same,
  Div: same,
  Max: same,
  Min: same,
  Pow: same,
  Less: same,
  Greater: same,
  Equal: same,
  Where: same,
  Neg: same,
  Exp: same,
  Log: same,
  Sqrt: same,
  Tanh: same,
  Sigmoid: same,
  Sin: same,
  Cos: same,
  Abs: same,
  Relu: same,
  Erf: same,
  Cast: (ctx, n, ins, out) => ctx.emit('Cast', ins, [out], { to: { dtype: n.attrs.to as DType } }),
  StopGradient: (ctx, _n, ins, out) => ctx.emit('Identity', ins, [out]),

  MatMul: same,
  Conv: (ctx, n, ins, out) => {
    const w = n.inputs[1]!;
    ctx.emit('Conv', ins, [out], {
      kernel_shape: [w.shape[2] as number, w.shape[3] as number],
      strides: n.attrs.strides as number[],
      pads: n.attrs.pads as number[],
      group: n.attrs.group as number,
    });
  },
  ConvTranspose: (ctx, n, ins, out) => {
    const { emit, fresh, i64 } = ctx;
    const [O, Cg, kh, kw] = n.inputs[1]!.shape as number[] as [number, number, number, number];
    const strides = n.attrs.strides as number[];
    const pads = n.attrs.pads as number[];
    const group = n.attrs.group as number;
    const outputPadding = n.attrs.outputPadding as number[];
    const flippable = strides.every((s) => s === 1) && outputPadding.every((p) => p === 0)
      && pads[0]! <= kh - 1 && pads[2]! <= kh - 1 && pads[1]! <= kw - 1 && pads[3]! <= kw - 1;
    if (ctx.convTransposeAsConv && flippable) {
      // stride-1 transposed conv == conv with the kernel flipped in space and in/out channels swapped
      // per group: w [O, Cg, kh, kw] -> w' [C, O/group, kh, kw], pads k-1-p. The flip is a Gather of the
      // kh·kw taps in reverse order, not a Slice with steps -1: onnxruntime-web's WebGPU Slice (JSEP, 1.30)
      // clamps a negative step's end to 0 instead of -1 and drops the first row and column (a 2x2 kernel).
      const Og = O / group;
      const w4 = fresh('wT');
      emit('Reshape', [ins[1]!, i64([group, Og, Cg, kh * kw])], [w4]);
      const flipped = fresh('wFlip');
      emit('Gather', [w4, i64(Array.from({ length: kh * kw }, (_, i) => kh * kw - 1 - i))], [flipped], { axis: 3 });
      const wt = fresh('wT');
      emit('Transpose', [flipped], [wt], { perm: [0, 2, 1, 3] });
      const wf = fresh('wFlip');
      emit('Reshape', [wt, i64([group * Cg, Og, kh, kw])], [wf]);
      emit('Conv', [ins[0]!, wf], [out], {
        kernel_shape: [kh, kw],
        strides: [1, 1],
        pads: [kh - 1 - pads[0]!, kw - 1 - pads[1]!, kh - 1 - pads[2]!, kw - 1 - pads[3]!],
        group,
      });
      return;
    }
    emit('ConvTranspose', ins, [out], { kernel_shape: [kh, kw], strides, pads, group, output_padding: outputPadding });
  },

  Reshape: (ctx, n, ins, out) => {
    const src = n.inputs[0]!.shape;
    // ONNX: 0 copies the input's dim at the same index; other symbolic dims are read at run time
    const spec = (n.attrs.shape as Dim[]).map((d, i) => (typeof d !== 'number' && src[i] === d ? 0 : d));
    ctx.emit('Reshape', [ins[0]!, ctx.shapeVector(spec)], [out]);
  },
  Transpose: (ctx, n, ins, out) => ctx.emit('Transpose', ins, [out], { perm: n.attrs.perm as number[] }),
  Expand: (ctx, n, ins, out) => {
    const src = n.inputs[0]!.shape;
    const shape = n.attrs.shape as Dim[];
    const off = shape.length - src.length;
    // bidirectional broadcast: a 1 keeps the input's (possibly symbolic) dim
    const target = shape.map((d, i) => (typeof d !== 'number' && i >= off && src[i - off] === d ? 1 : d));
    ctx.emit('Expand', [ins[0]!, ctx.shapeVector(target)], [out]);
  },
  Concat: (ctx, n, ins, out) => concatTree(ctx, ins, out, n.attrs.axis as number),
  Slice: (ctx, n, ins, out) => {
    const { i64 } = ctx;
    const a = n.attrs;
    ctx.emit('Slice', [ins[0]!, i64(a.starts as number[]), i64(a.ends as number[]), i64(a.axes as number[]), i64(a.steps as number[])], [out]);
  },
  Pad: (ctx, n, ins, out) => ctx.emit('Pad', [ins[0]!, ctx.i64(n.attrs.pads as number[])], [out], { mode: 'constant' }),
  Gather: (ctx, _n, ins, out) => ctx.emit('Gather', ins, [out], { axis: 0 }),
  ScatterAddRows: (ctx, n, ins, out) => {
    // zeros of the output shape, then ScatterND with reduction 'add' at indices reshaped to [K, 1]
    const zeros = ctx.fresh('zeros');
    const value = { tensor: { dtype: n.dtype, dims: [1], data: new Float32Array(1) } };
    ctx.emit('ConstantOfShape', [ctx.i64(n.shape as number[])], [zeros], { value });
    const idx = ctx.fresh('idx');
    ctx.emit('Reshape', [ins[0]!, ctx.i64([...(n.inputs[0]!.shape as number[]), 1])], [idx]);
    ctx.emit('ScatterND', [zeros, idx, ins[1]!], [out], { reduction: 'add' });
  },

  ReduceSum: (ctx, n, ins, out) => {
    const axes = n.attrs.axes as number[];
    const shape = n.inputs[0]!.shape;
    if (ctx.leadingSumAsMatMul && n.dtype === 'float32' && axes.length > 0 && axes.every((a, i) => a === i) && axes.length < shape.length && shape.every((d) => typeof d === 'number')) {
      // Σ over the leading axes of x [R, M...] = ones [1, R] · x [R, M]
      const dims = shape as number[];
      const R = dims.slice(0, axes.length).reduce((a, b) => a * b, 1);
      const M = dims.slice(axes.length).reduce((a, b) => a * b, 1);
      const ones = ctx.fresh('ones');
      ctx.emit('Constant', [], [ones], { value: { tensor: { dtype: 'float32', dims: [1, R], data: new Float32Array(R).fill(1) } } });
      const x2 = ctx.fresh('rows');
      ctx.emit('Reshape', [ins[0]!, ctx.i64([R, M])], [x2]);
      const s = ctx.fresh('sum');
      ctx.emit('MatMul', [ones, x2], [s]);
      ctx.emit('Reshape', [s, ctx.i64(n.shape as number[])], [out]);
      return;
    }
    // opset 13+: the axes of ReduceSum are an input
    ctx.emit('ReduceSum', [ins[0]!, ctx.i64(axes)], [out], { keepdims: n.attrs.keepdims ? 1 : 0 });
  },
  ReduceMax: (ctx, n, ins, out) => ctx.emit('ReduceMax', ins, [out], { axes: n.attrs.axes as number[], keepdims: n.attrs.keepdims ? 1 : 0 }),
  Softmax: withAxis,
  LogSoftmax: withAxis,
};
