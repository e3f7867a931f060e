/**
 * VJP rules, one per primitive: the cotangents of an op's inputs from the cotangent of its output,
 * written with the tensor ops of tensor.ts (so a gradient is more graph). Broadcasting is undone by
 * `unbroadcast` (sum over the broadcast axes).
 */
import { sameShape, type ConvAttrs, type Node, type Primitive, type Shape } from '../graph.ts';
import {
  Tensor,
  add,
  concat,
  conv2d,
  convTranspose2d,
  cos,
  div,
  equal,
  exp,
  expand,
  gather,
  greater,
  less,
  log,
  matmul,
  mul,
  neg,
  pad,
  pow,
  reshape,
  scatterAddRows,
  sin,
  slice,
  sub,
  sum,
  transpose,
  where,
} from '../tensor.ts';

/** Sum g over the axes that broadcasting expanded, so that the result has `shape`. */
export function unbroadcast(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  return reshape(sum(g, axes, true), shape);
}

function swapLast2(x: Tensor): Tensor {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return transpose(x, perm);
}

/** Cotangents of a node's inputs (null: none) from the cotangent `g` of its output `y`; `xs` are its inputs. */
export type VjpRule = (g: Tensor, node: Node, xs: Tensor[], y: Tensor) => (Tensor | null)[];

/**
 * dL/dW of a 2-D convolution as ONE batched MatMul over row-shifted operands (no 9x im2col):
 *   dW[o, c, i, j] = Σ_{n,r,w} Xj[n, c, r, w] · Gi[n, o, r, w]
 * where Xj = xpad[:, :, :R, j :: sw] holds the kw column taps of the input (R = sh·(Ho−1) + kh rows) and
 * Gi is the cotangent g placed on rows sh·y + i of an R-row grid (zeros elsewhere). Column taps shift the
 * input and row taps shift the cotangent, so each operand is copied k times instead of k² times; the
 * zero rows of Gi cost (R − Ho)/R extra multiply-adds.
 */
export function conv2dWeightGrad(x: Tensor, g: Tensor, wShape: readonly number[], attrs: ConvAttrs): Tensor {
  const [O, Cg, kh, kw] = wShape as [number, number, number, number];
  const [sh, sw] = attrs.strides;
  const p = attrs.pads;
  const group = attrs.group;
  const N = x.shape[0] as number;
  const Ho = g.shape[2] as number;
  const Wo = g.shape[3] as number;
  const R = sh * (Ho - 1) + kh;
  const xp = slice(pad(x, [0, 0, p[0]!, p[1]!, 0, 0, p[2]!, p[3]!]), 2, 0, R); // the rows the taps touch
  // g on rows sh·y of an (sh·(Ho−1)+1)-row grid
  let gd = g;
  if (sh > 1) {
    gd = reshape(pad(reshape(g, [N, O, Ho, 1, Wo]), [0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0]), [N, O, Ho * sh, Wo]);
    gd = slice(gd, 2, 0, sh * (Ho - 1) + 1);
  }
  const Og = O / group;
  const perGroup: Tensor[] = [];
  for (let gi = 0; gi < group; gi++) {
    const xg = slice(xp, 1, gi * Cg, (gi + 1) * Cg);
    const gg = slice(gd, 1, gi * Og, (gi + 1) * Og);
    const xCols: Tensor[] = [];
    for (let j = 0; j < kw; j++) xCols.push(slice(xg, 3, j, j + sw * (Wo - 1) + 1, sw));
    const gRows: Tensor[] = [];
    for (let i = 0; i < kh; i++) gRows.push(pad(gg, [0, 0, i, 0, 0, 0, kh - 1 - i, 0]));
    const X = reshape(concat(xCols, 1), [N, kw * Cg, R * Wo]); // rows (j, c)
    const G = reshape(concat(gRows, 1), [N, kh * Og, R * Wo]); // rows (i, o)
    const dW = sum(matmul(X, transpose(G, [0, 2, 1])), 0); // (kw·Cg, kh·Og)
    perGroup.push(transpose(reshape(dW, [kw, Cg, kh, Og]), [3, 1, 2, 0]));
  }
  return concat(perGroup, 0);
}

export const vjpRules: Record<Primitive, VjpRule> = {
  Add: (g, _n, [a, b]) => [unbroadcast(g, a!.shape), unbroadcast(g, b!.shape)],
  Sub: (g, _n, [a, b]) => [unbroadcast(g, a!.shape), unbroadcast(neg(g), b!.shape)],
  Mul: (g, _n, [a, b]) => [unbroadcast(mul(g, b!), a!.shape), unbroadcast(mul(g, a!), b!.shape)],
  Div: (g, _n, [a, b], y) => [unbroadcast(div(g, b!), a!.shape), unbroadcast(neg(div(mul(g, y), b!)), b!.shape)],
  // ties send the whole gradient to the first operand
  Max: (g, _n, [a, b]) => {
    const bWins = less(a!, b!);
    return [unbroadcast(where(bWins, 0, g), a!.shape), unbroadcast(where(bWins, g, 0), b!.shape)];
  },
  Min: (g, _n, [a, b]) => {
    const bWins = greater(a!, b!);
    return [unbroadcast(where(bWins, 0, g), a!.shape), unbroadcast(where(bWins, g, 0), b!.shape)];
  },
  Pow: (g, _n, [a, b], y) => [
    // d/da a^b = b·a^(b−1) (not b·y/a, which is 0/0 = NaN at a = 0) ; d/db a^b = y·ln a
    unbroadcast(mul(g, mul(b!, pow(a!, sub(b!, 1)))), a!.shape),
    b!.node.op === 'Constant' ? null : unbroadcast(mul(g, mul(y, log(a!))), b!.shape),
  ],
  // piecewise constant: no gradient (their bool outputs never carry a cotangent)
  Less: () => [null, null],
  Greater: () => [null, null],
  Equal: () => [null, null],
  Where: (g, _n, [c, a, b]) => [null, unbroadcast(where(c!, g, 0), a!.shape), unbroadcast(where(c!, 0, g), b!.shape)],
  Neg: (g) => [neg(g)],
  Exp: (g, _n, _x, y) => [mul(g, y)],
  Log: (g, _n, [x]) => [div(g, x!)],
  Sqrt: (g, _n, _x, y) => [div(mul(g, 0.5), y)],
  Tanh: (g, _n, _x, y) => [mul(g, sub1(y))],
  Sigmoid: (g, _n, _x, y) => [mul(g, mul(y, add(neg(y), 1)))],
  Sin: (g, _n, [x]) => [mul(g, cos(x!))],
  Cos: (g, _n, [x]) => [neg(mul(g, sin(x!)))],
  Abs: (g, _n, [x]) => [where(less(x!, 0), neg(g), g)],
  Relu: (g, _n, [x]) => [where(greater(x!, 0), g, 0)],
  Erf: (g, _n, [x]) => [mul(g, mul(exp(neg(mul(x!, x!))), 2 / Math.sqrt(Math.PI)))],
  Cast: (g, n, [x]) => [x!.dtype === 'float32' && n.dtype === 'float32' ? g : null],
  StopGradient: () => [null],
  MatMul: (g, _n, [a, b]) => {
    // Fold the batch into rows when b is a plain matrix: one big MatMul instead of a batch + sum.
    if (b!.rank === 2 && a!.rank > 2 && a!.shape.every((d) => typeof d === 'number')) {
      const k = a!.shape[a!.rank - 1]!;
      const m = b!.shape[1]!;
      const a2 = reshape(a!, [-1, k]);
      const g2 = reshape(g, [-1, m]);
      return [matmul(g, swapLast2(b!)), matmul(swapLast2(a2), g2)];
    }
    return [unbroadcast(matmul(g, swapLast2(b!)), a!.shape), unbroadcast(matmul(swapLast2(a!), g), b!.shape)];
  },
  Conv: (g, n, [x, w]) => {
    const attrs = n.attrs as unknown as ConvAttrs;
    const [kh, kw] = [w!.shape[2] as number, w!.shape[3] as number];
    const [H, W] = [x!.shape[2] as number, x!.shape[3] as number];
    const [Ho, Wo] = [g.shape[2] as number, g.shape[3] as number];
    const { strides: s, pads: p } = attrs;
    const outputPadding: [number, number] = [
      H - ((Ho - 1) * s[0] - p[0] - p[2] + kh),
      W - ((Wo - 1) * s[1] - p[1] - p[3] + kw),
    ];
    const gx = convTranspose2d(g, w!, { strides: s, pads: p, group: attrs.group, outputPadding });
    const gw = conv2dWeightGrad(x!, g, w!.shape as number[], attrs);
    return [gx, gw];
  },
  // ConvTranspose is the adjoint of Conv in x, so its adjoint in y is Conv; in w it is Conv's weight
  // gradient with the roles of input and cotangent swapped (<conv(g, w), y> = <g, convT(y, w)>).
  ConvTranspose: (g, n, [y, w]) => {
    const attrs = n.attrs as unknown as ConvAttrs;
    const gy = conv2d(g, w!, null, { stride: attrs.strides, padding: attrs.pads, groups: attrs.group });
    const gw = conv2dWeightGrad(g, y!, w!.shape as number[], attrs);
    return [gy, gw];
  },
  Reshape: (g, _n, [x]) => [reshape(g, x!.shape)],
  Transpose: (g, n) => {
    const perm = n.attrs.perm as number[];
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [transpose(g, inv)];
  },
  Expand: (g, _n, [x]) => [unbroadcast(g, x!.shape)],
  Concat: (g, n, xs) => {
    const axis = n.attrs.axis as number;
    let at = 0;
    return xs.map((x) => {
      const d = x.shape[axis] as number;
      const piece = slice(g, axis, at, at + d);
      at += d;
      return piece;
    });
  },
  Slice: (g, n, [x]) => {
    const [axis] = n.attrs.axes as number[];
    const [start] = n.attrs.starts as number[];
    const [step] = n.attrs.steps as number[];
    const dim = x!.shape[axis!] as number;
    let up = g;
    let len = g.shape[axis!] as number;
    if (step! > 1) {
      // interleave zeros: (.., len, ..) -> (.., len, step, ..) -> (.., len*step, ..)
      const shp = [...g.shape];
      shp.splice(axis! + 1, 0, 1);
      const padSpec = new Array<number>(2 * shp.length).fill(0);
      padSpec[shp.length + axis! + 1] = step! - 1;
      up = pad(reshape(g, shp), padSpec);
      const merged = [...g.shape];
      merged[axis!] = len * step!;
      up = reshape(up, merged);
      len *= step!;
    }
    const before = start!;
    const after = dim - start! - len;
    if (after < 0) up = slice(up, axis!, 0, dim - start!);
    const spec = new Array<number>(2 * g.rank).fill(0);
    spec[axis!] = before;
    spec[g.rank + axis!] = Math.max(after, 0);
    return [pad(up, spec)];
  },
  Pad: (g, n, [x]) => {
    const pads = n.attrs.pads as number[];
    let y = g;
    for (let i = 0; i < x!.rank; i++) {
      if (pads[i] !== 0 || pads[i + x!.rank] !== 0) y = slice(y, i, pads[i]!, pads[i]! + (x!.shape[i] as number));
    }
    return [y];
  },
  Gather: (g, _n, [table, idx]) => [scatterAddRows(idx!, g, table!.shape[0] as number), null],
  ScatterAddRows: (g, _n, [idx]) => [null, gather(g, idx!)],
  ReduceSum: (g, n, [x]) => {
    const { axes, keepdims } = n.attrs as { axes: number[]; keepdims: boolean };
    const kept = keepdims ? g : reshape(g, x!.shape.map((d, i) => (axes.includes(i) ? 1 : d)));
    return [expand(kept, x!.shape)];
  },
  ReduceMax: (g, n, [x], y) => {
    const { axes, keepdims } = n.attrs as { axes: number[]; keepdims: boolean };
    const keptShape = x!.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const yk = keepdims ? y : reshape(y, keptShape);
    const gk = keepdims ? g : reshape(g, keptShape);
    return [where(equal(x!, yk), expand(gk, x!.shape), 0)];
  },
  Softmax: (g, n, _x, y) => {
    const axis = n.attrs.axis as number;
    // dx = y ⊙ (g − Σ g⊙y)
    return [mul(y, sub(g, sum(mul(g, y), axis, true)))];
  },
  LogSoftmax: (g, n, _x, y) => {
    const axis = n.attrs.axis as number;
    // dx = g − softmax(x) · Σ g
    return [sub(g, mul(exp(y), sum(g, axis, true)))];
  },
};

function sub1(y: Tensor): Tensor {
  return add(neg(mul(y, y)), 1); // 1 − y²
}
