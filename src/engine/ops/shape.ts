/**
 * Shape rules, one per primitive: the output shape and dtype of an op from its input nodes and its
 * (normalised) attributes, and a ShapeError naming the op when the inputs do not fit each other.
 *
 * The builders in tensor.ts check the user's arguments and normalise them into attributes (axes made
 * non-negative, a reshape's -1 inferred, paddings spelled out); these rules take it from there.
 */
import {
  broadcastShapes,
  dimProduct,
  sameShape,
  shapeToString,
  type Attrs,
  type ConvAttrs,
  type Dim,
  type DType,
  type Node,
  type Primitive,
  type Shape,
} from '../graph.ts';

export class ShapeError extends Error {
  override name = 'ShapeError';
}

export function fail(op: string, msg: string): never {
  throw new ShapeError(`${op}: ${msg}`);
}

export function requireFloat(op: string, ...ts: { dtype: DType; shape: Shape }[]): void {
  for (const t of ts) if (t.dtype !== 'float32') fail(op, `expects float32, got ${t.dtype} ${shapeToString(t.shape)}`);
}

export type ShapeRule = (ins: readonly Node[], attrs: Attrs) => { shape: Shape; dtype: DType };

const same: ShapeRule = ([x]) => ({ shape: x!.shape, dtype: x!.dtype });

/** numpy broadcasting of two operands of one dtype; the result has dtype `out` (default: theirs). */
function broadcast(op: string, out?: DType): ShapeRule {
  return ([a, b]) => {
    if (a!.dtype !== b!.dtype) fail(op, `dtype mismatch ${a!.dtype} vs ${b!.dtype}`);
    const shape = broadcastShapes(a!.shape, b!.shape);
    if (shape === null) fail(op, `cannot broadcast ${shapeToString(a!.shape)} with ${shapeToString(b!.shape)}`);
    return { shape, dtype: out ?? a!.dtype };
  };
}

function floatUnary(op: string): ShapeRule {
  return ([x]) => {
    requireFloat(op, x!);
    return { shape: x!.shape, dtype: x!.dtype };
  };
}

function convOutDim(op: string, inDim: Dim, k: number, s: number, p0: number, p1: number): number {
  if (typeof inDim !== 'number') fail(op, `spatial dims must be static, got ${inDim}`);
  const out = Math.floor((inDim + p0 + p1 - k) / s) + 1;
  if (out <= 0) fail(op, `kernel ${k} larger than padded input ${inDim + p0 + p1}`);
  return out;
}

function reduce([x]: readonly Node[], attrs: Attrs): { shape: Shape; dtype: DType } {
  const { axes, keepdims } = attrs as { axes: number[]; keepdims: boolean };
  const shape: Dim[] = [];
  x!.shape.forEach((d, i) => {
    if (!axes.includes(i)) shape.push(d);
    else if (keepdims) shape.push(1);
  });
  return { shape, dtype: x!.dtype };
}

export const shapeRules: Record<Primitive, ShapeRule> = {
  Add: broadcast('Add'),
  Sub: broadcast('Sub'),
  Mul: broadcast('Mul'),
  Div: broadcast('Div'),
  Max: broadcast('Max'),
  Min: broadcast('Min'),
  Pow: broadcast('Pow'),
  Less: broadcast('Less', 'bool'),
  Greater: broadcast('Greater', 'bool'),
  Equal: broadcast('Equal', 'bool'),
  Where: ([c, a, b]) => {
    if (c!.dtype !== 'bool') fail('where', `condition must be bool, got ${c!.dtype}`);
    if (a!.dtype !== b!.dtype) fail('where', `dtype mismatch ${a!.dtype} vs ${b!.dtype}`);
    const s1 = broadcastShapes(a!.shape, b!.shape);
    const shape = s1 && broadcastShapes(c!.shape, s1);
    if (!shape) fail('where', `cannot broadcast cond ${shapeToString(c!.shape)}, a ${shapeToString(a!.shape)}, b ${shapeToString(b!.shape)}`);
    return { shape, dtype: a!.dtype };
  },
  Neg: same, // int64 too
  Exp: floatUnary('Exp'),
  Log: floatUnary('Log'),
  Sqrt: floatUnary('Sqrt'),
  Tanh: floatUnary('Tanh'),
  Sigmoid: floatUnary('Sigmoid'),
  Sin: floatUnary('Sin'),
  Cos: floatUnary('Cos'),
  Abs: floatUnary('Abs'),
  Relu: floatUnary('Relu'),
  Erf: floatUnary('Erf'),
  Cast: ([x], attrs) => ({ shape: x!.shape, dtype: attrs.to as DType }),
  StopGradient: same,

  MatMul: ([a, b]) => {
    requireFloat('matmul', a!, b!);
    const [sa, sb] = [a!.shape, b!.shape];
    if (sa.length < 2 || sb.length < 2) fail('matmul', `operands need rank >= 2, got ${shapeToString(sa)} @ ${shapeToString(sb)}`);
    if (sa[sa.length - 1] !== sb[sb.length - 2]) fail('matmul', `inner dims differ: ${shapeToString(sa)} @ ${shapeToString(sb)}`);
    const batch = broadcastShapes(sa.slice(0, -2), sb.slice(0, -2));
    if (!batch) fail('matmul', `batch dims do not broadcast: ${shapeToString(sa)} @ ${shapeToString(sb)}`);
    return { shape: [...batch, sa[sa.length - 2]!, sb[sb.length - 1]!], dtype: 'float32' };
  },
  Conv: ([x, w], attrs) => {
    requireFloat('conv2d', x!, w!);
    if (x!.shape.length !== 4 || w!.shape.length !== 4) {
      fail('conv2d', `expects x [N,C,H,W] and w [O,C/g,kh,kw], got x ${shapeToString(x!.shape)}, w ${shapeToString(w!.shape)}`);
    }
    const { strides, pads, group } = attrs as unknown as ConvAttrs;
    const [N, C, H, W] = x!.shape as [Dim, Dim, Dim, Dim];
    const [O, Cg, kh, kw] = w!.shape as [number, number, number, number];
    if (typeof C !== 'number' || C !== Cg * group) {
      fail('conv2d', `input channels ${C} != weight channels ${Cg} x groups ${group} (x ${shapeToString(x!.shape)}, w ${shapeToString(w!.shape)})`);
    }
    if (O % group !== 0) fail('conv2d', `output channels ${O} not divisible by groups ${group}`);
    const Ho = convOutDim('conv2d', H, kh, strides[0], pads[0], pads[2]);
    const Wo = convOutDim('conv2d', W, kw, strides[1], pads[1], pads[3]);
    return { shape: [N, O, Ho, Wo], dtype: 'float32' };
  },
  ConvTranspose: ([y, w], attrs) => {
    requireFloat('convTranspose2d', y!, w!);
    const [N, O, Ho, Wo] = y!.shape as [Dim, Dim, Dim, Dim];
    const [Ow, Cg, kh, kw] = w!.shape as [number, number, number, number];
    if (O !== Ow) fail('convTranspose2d', `channels ${O} != weight rows ${Ow}`);
    if (typeof Ho !== 'number' || typeof Wo !== 'number') fail('convTranspose2d', 'spatial dims must be static');
    const { strides: s, pads: p, group, outputPadding: op = [0, 0] } = attrs as unknown as ConvAttrs;
    const H = (Ho - 1) * s[0] - p[0] - p[2] + kh + op[0];
    const W = (Wo - 1) * s[1] - p[1] - p[3] + kw + op[1];
    return { shape: [N, Cg * group, H, W], dtype: 'float32' };
  },

  Reshape: ([x], attrs) => {
    const shape = attrs.shape as Dim[];
    const src = dimProduct(x!.shape);
    const dst = dimProduct(shape);
    if (dst.symbols.join() !== src.symbols.join()) fail('reshape', `symbolic dims differ: ${shapeToString(x!.shape)} -> ${shapeToString(shape)}`);
    if (dst.n !== src.n) fail('reshape', `element count differs: ${shapeToString(x!.shape)} -> ${shapeToString(shape)}`);
    for (const d of shape) if (typeof d === 'number' && (!Number.isInteger(d) || d < 0)) fail('reshape', `bad dim ${d} in ${shapeToString(shape)}`);
    return { shape, dtype: x!.dtype };
  },
  Transpose: ([x], attrs) => {
    const perm = attrs.perm as number[];
    const rank = x!.shape.length;
    if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
      fail('transpose', `perm [${perm}] is not a permutation of ${rank} axes (x ${shapeToString(x!.shape)})`);
    }
    return { shape: perm.map((p) => x!.shape[p]!), dtype: x!.dtype };
  },
  Expand: ([x], attrs) => {
    const shape = attrs.shape as Dim[];
    const out = broadcastShapes(x!.shape, shape);
    if (!out || !sameShape(out, shape)) fail('expand', `cannot broadcast ${shapeToString(x!.shape)} to ${shapeToString(shape)}`);
    return { shape, dtype: x!.dtype };
  },
  Concat: (xs, attrs) => {
    const a = attrs.axis as number;
    const first = xs[0]!;
    let total = 0;
    for (const t of xs) {
      if (t.shape.length !== first.shape.length || t.dtype !== first.dtype || t.shape.some((d, i) => i !== a && d !== first.shape[i])) {
        fail('concat', `shapes differ off axis ${a}: ${xs.map((u) => shapeToString(u.shape)).join(', ')}`);
      }
      const d = t.shape[a]!;
      if (typeof d !== 'number') fail('concat', `axis ${a} must be static`);
      total += d;
    }
    const shape = [...first.shape];
    shape[a] = total;
    return { shape, dtype: first.dtype };
  },
  Slice: ([x], attrs) => {
    const { starts, ends, axes, steps } = attrs as { starts: number[]; ends: number[]; axes: number[]; steps: number[] };
    const shape = [...x!.shape];
    axes.forEach((ax, k) => (shape[ax] = Math.ceil((ends[k]! - starts[k]!) / steps[k]!)));
    return { shape, dtype: x!.dtype };
  },
  Pad: ([x], attrs) => {
    const pads = attrs.pads as number[];
    const r = x!.shape.length;
    const shape = x!.shape.map((d, i) => {
      if (pads[i] === 0 && pads[i + r] === 0) return d;
      if (typeof d !== 'number') fail('pad', `cannot pad symbolic axis ${i}`);
      return d + pads[i]! + pads[i + r]!;
    });
    return { shape, dtype: x!.dtype };
  },
  Gather: ([table, indices]) => {
    if (indices!.dtype !== 'int64') fail('gather', `indices must be int64, got ${indices!.dtype}`);
    if (table!.shape.length < 1) fail('gather', 'table must have rank >= 1');
    return { shape: [...indices!.shape, ...table!.shape.slice(1)], dtype: table!.dtype };
  },
  ScatterAddRows: ([indices, updates], attrs) => {
    if (indices!.dtype !== 'int64') fail('scatterAddRows', `indices must be int64, got ${indices!.dtype}`);
    const k = indices!.shape.length;
    if (!sameShape(updates!.shape.slice(0, k), indices!.shape)) {
      fail('scatterAddRows', `updates ${shapeToString(updates!.shape)} do not start with indices ${shapeToString(indices!.shape)}`);
    }
    return { shape: [attrs.rows as number, ...updates!.shape.slice(k)], dtype: updates!.dtype };
  },

  ReduceSum: reduce,
  ReduceMax: reduce,
  Softmax: same,
  LogSoftmax: same,
};
