/**
 * Symbolic tensors: the tracing front end.
 *
 * Calling these functions does no arithmetic; it builds `Node`s (graph.ts) with inferred static
 * shapes. Each builder checks its arguments and normalises them into a primitive's attributes; the
 * primitive's shape rule (ops/shape.ts) gives the output shape, so every mismatch throws at trace time
 * with a message that names the op and the shapes involved. Composite ops (silu, groupNorm,
 * upsampleNearest2x, dropout, ...) are written in terms of the primitives, so autodiff, the
 * interpreter and the ONNX export only ever see primitives.
 */
import {
  Node,
  dimProduct,
  sameShape,
  shapeToString,
  type Attrs,
  type ConvAttrs,
  type DType,
  type Dim,
  type Primitive,
  type Shape,
} from './graph.ts';
import { fail, requireFloat, shapeRules } from './ops/shape.ts';
import { withVjp } from './custom-vjp.ts';

export { ShapeError } from './ops/shape.ts';

export type TensorLike = Tensor | number;

export class Tensor {
  constructor(readonly node: Node) {}
  get shape(): Shape {
    return this.node.shape;
  }
  get dtype(): DType {
    return this.node.dtype;
  }
  get rank(): number {
    return this.node.shape.length;
  }
  toString(): string {
    return `Tensor(${this.node.op}, ${shapeToString(this.shape)}, ${this.dtype})`;
  }

  add(o: TensorLike): Tensor { return add(this, o); }
  sub(o: TensorLike): Tensor { return sub(this, o); }
  mul(o: TensorLike): Tensor { return mul(this, o); }
  div(o: TensorLike): Tensor { return div(this, o); }
  neg(): Tensor { return neg(this); }
  exp(): Tensor { return exp(this); }
  log(): Tensor { return log(this); }
  sqrt(): Tensor { return sqrt(this); }
  square(): Tensor { return mul(this, this); }
  pow(p: TensorLike): Tensor { return pow(this, p); }
  matmul(o: Tensor): Tensor { return matmul(this, o); }
  reshape(shape: readonly Dim[]): Tensor { return reshape(this, shape); }
  transpose(perm: readonly number[]): Tensor { return transpose(this, perm); }
  sum(axes?: number | readonly number[], keepdims = false): Tensor { return sum(this, axes, keepdims); }
  mean(axes?: number | readonly number[], keepdims = false): Tensor { return mean(this, axes, keepdims); }
}

/** A node of primitive `op`, its shape and dtype from the op's shape rule. */
function make(op: Primitive, inputs: readonly Tensor[], attrs: Attrs = {}): Tensor {
  const ins = inputs.map((t) => t.node);
  const { shape, dtype } = shapeRules[op](ins, attrs);
  return new Tensor(new Node(op, ins, attrs, shape, dtype));
}

function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) fail(op, `axis ${axis} out of range for rank ${rank}`);
  return a;
}

// ---------------------------------------------------------------------------------------------
// Leaves

/** A graph input. `shape` may contain symbolic dims (strings), e.g. `['N', 1, 28, 28]`. */
export function input(name: string, shape: readonly Dim[], dtype: DType = 'float32'): Tensor {
  for (const d of shape) {
    if (typeof d === 'number' && (!Number.isInteger(d) || d < 0)) fail('input', `bad dim ${d} in ${shapeToString(shape)} for '${name}'`);
  }
  return new Tensor(new Node('Input', [], { name }, [...shape], dtype));
}

/** A constant tensor. Float data is kept in float64 (the interpreter uses it; export rounds to float32). */
export function constant(
  data: ArrayLike<number> | readonly number[] | BigInt64Array,
  shape: readonly number[],
  dtype: DType = 'float32',
): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) fail('constant', `${data.length} values for shape ${shapeToString(shape)}`);
  let value: Float64Array | BigInt64Array | Uint8Array;
  if (dtype === 'float32') value = Float64Array.from(data as ArrayLike<number>);
  else if (dtype === 'int64') {
    value = data instanceof BigInt64Array ? data.slice() : BigInt64Array.from(Array.from(data as ArrayLike<number>, (v) => BigInt(v)));
  } else value = Uint8Array.from(data as ArrayLike<number>, (v) => (v ? 1 : 0));
  return new Tensor(new Node('Constant', [], { value, shape: [...shape] }, [...shape], dtype));
}

export function scalar(v: number, dtype: DType = 'float32'): Tensor {
  return constant([v], [], dtype);
}

export function zeros(shape: readonly number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n <= 1) return constant(new Float64Array(n), shape);
  return expand(scalar(0), shape);
}

function lift(x: TensorLike, like?: Tensor): Tensor {
  if (x instanceof Tensor) return x;
  return scalar(x, like?.dtype === 'int64' ? 'int64' : 'float32');
}

// ---------------------------------------------------------------------------------------------
// Elementwise

function binary(op: Primitive, a: TensorLike, b: TensorLike): Tensor {
  const ta = lift(a, b instanceof Tensor ? b : undefined);
  return make(op, [ta, lift(b, ta)]);
}

export const add = (a: TensorLike, b: TensorLike): Tensor => binary('Add', a, b);
export const sub = (a: TensorLike, b: TensorLike): Tensor => binary('Sub', a, b);
export const mul = (a: TensorLike, b: TensorLike): Tensor => binary('Mul', a, b);
export const div = (a: TensorLike, b: TensorLike): Tensor => binary('Div', a, b);
export const maximum = (a: TensorLike, b: TensorLike): Tensor => binary('Max', a, b);
export const minimum = (a: TensorLike, b: TensorLike): Tensor => binary('Min', a, b);
export const less = (a: TensorLike, b: TensorLike): Tensor => binary('Less', a, b);
export const greater = (a: TensorLike, b: TensorLike): Tensor => binary('Greater', a, b);
export const equal = (a: TensorLike, b: TensorLike): Tensor => binary('Equal', a, b);

/** x ** p. With a number exponent 2 this is x*x, 0.5 is sqrt (cheaper and exact to differentiate). */
export function pow(x: Tensor, p: TensorLike): Tensor {
  requireFloat('pow', x);
  if (p === 1) return x;
  if (p === 2) return mul(x, x);
  if (p === 0.5) return sqrt(x);
  return binary('Pow', x, p);
}

/** cond ? a : b, broadcasting all three. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const ta = lift(a, b instanceof Tensor ? b : undefined);
  return make('Where', [cond, ta, lift(b, ta)]);
}

export const neg = (x: Tensor): Tensor => make('Neg', [x]);
export const exp = (x: Tensor): Tensor => make('Exp', [x]);
export const log = (x: Tensor): Tensor => make('Log', [x]);
export const sqrt = (x: Tensor): Tensor => make('Sqrt', [x]);
export const tanh = (x: Tensor): Tensor => make('Tanh', [x]);
export const sigmoid = (x: Tensor): Tensor => make('Sigmoid', [x]);
export const sin = (x: Tensor): Tensor => make('Sin', [x]);
export const cos = (x: Tensor): Tensor => make('Cos', [x]);
export const abs = (x: Tensor): Tensor => make('Abs', [x]);
export const relu = (x: Tensor): Tensor => make('Relu', [x]);
export const erf = (x: Tensor): Tensor => make('Erf', [x]);
export const square = (x: Tensor): Tensor => mul(x, x);
export const rsqrt = (x: Tensor): Tensor => div(1, sqrt(x));
/**
 * SiLU / swish: y = x·σ(x). Its gradient, σ + x·σ·(1 − σ) = s + y·(1 − s) with s = σ(x), is written from s and y
 * (withVjp): y is kept for the next layer's weight gradient anyway, so x need not be, where the primitives' VJPs
 * (Mul, then Sigmoid) keep x and s both.
 */
export function silu(x: Tensor): Tensor {
  const s = sigmoid(x);
  const y = mul(x, s);
  return withVjp(y, [x], (g) => [mul(g, add(s, mul(y, sub(1, s))))]);
}

/** Clamp to [lo, hi]; the gradient passes where lo < x < hi. */
export function clip(x: Tensor, lo: number, hi: number): Tensor {
  if (!(lo <= hi)) fail('clip', `lo ${lo} > hi ${hi}`);
  return minimum(maximum(x, lo), hi);
}

export function cast(x: Tensor, to: DType): Tensor {
  if (x.dtype === to) return x;
  return make('Cast', [x], { to });
}

/** Identity whose gradient is zero (improved-diffusion's `frozen_out` / torch's `detach`). */
export function stopGradient(x: Tensor): Tensor {
  return make('StopGradient', [x]);
}

// ---------------------------------------------------------------------------------------------
// Linear algebra

/** numpy matmul for rank >= 2: [..., n, k] @ [..., k, m] -> [..., n, m], leading dims broadcast. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  return make('MatMul', [a, b]);
}

export interface Conv2dOptions {
  stride?: number | readonly [number, number];
  /** symmetric padding, [ph, pw], or [top, left, bottom, right] */
  padding?: number | readonly [number, number] | readonly [number, number, number, number];
  groups?: number;
}

function pair(v: number | readonly [number, number] | undefined, dflt: number): [number, number] {
  if (v === undefined) return [dflt, dflt];
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

function pads4(p: Conv2dOptions['padding']): [number, number, number, number] {
  if (p === undefined) return [0, 0, 0, 0];
  if (typeof p === 'number') return [p, p, p, p];
  if (p.length === 2) return [p[0], p[1], p[0], p[1]];
  return [p[0], p[1], p[2]!, p[3]!];
}

/** 2-D cross-correlation, NCHW, weight [O, C/groups, kh, kw], optional bias [O]. */
export function conv2d(x: Tensor, w: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  let y = make('Conv', [x, w], { strides: pair(opts.stride, 1), pads: pads4(opts.padding), group: opts.groups ?? 1 });
  const O = y.shape[1]!;
  if (bias) {
    if (bias.rank !== 1 || bias.shape[0] !== O) fail('conv2d', `bias ${shapeToString(bias.shape)} does not match ${O} output channels`);
    y = add(y, reshape(bias, [1, O, 1, 1]));
  }
  return y;
}

/**
 * Transposed convolution (the adjoint of `conv2d` with the same weight, strides, pads and groups):
 * y [N, O, Ho, Wo] -> x [N, C, H, W]. `outputPadding` recovers the rows/cols a strided conv dropped.
 */
export function convTranspose2d(
  y: Tensor,
  w: Tensor,
  opts: Required<ConvAttrs>,
): Tensor {
  return make('ConvTranspose', [y, w], { ...opts });
}

// ---------------------------------------------------------------------------------------------
// Shape ops

/** Reshape; one entry may be -1 (inferred). Symbolic dims must be carried over explicitly. */
export function reshape(x: Tensor, shape: readonly Dim[]): Tensor {
  const out = [...shape];
  const inferred = out.indexOf(-1);
  if (out.filter((d) => d === -1).length > 1) fail('reshape', `more than one -1 in ${shapeToString(shape)}`);
  if (inferred >= 0) {
    const src = dimProduct(x.shape);
    const known = dimProduct(out.filter((d) => d !== -1));
    if (known.symbols.join() !== src.symbols.join()) fail('reshape', `symbolic dims differ: ${shapeToString(x.shape)} -> ${shapeToString(shape)}`);
    if (known.n === 0 || src.n % known.n !== 0) fail('reshape', `cannot infer -1: ${shapeToString(x.shape)} -> ${shapeToString(shape)}`);
    out[inferred] = src.n / known.n;
  }
  if (sameShape(out, x.shape)) return x;
  return make('Reshape', [x], { shape: out });
}

export function flatten(x: Tensor, fromAxis = 1): Tensor {
  return reshape(x, [...x.shape.slice(0, fromAxis), -1]);
}

export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.length === x.rank && perm.every((p, i) => p === i)) return x;
  return make('Transpose', [x], { perm: [...perm] });
}

/** Broadcast x to `shape` (numpy rules: x's dims align to the right and must be 1 or equal). */
export function expand(x: Tensor, shape: readonly Dim[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  return make('Expand', [x], { shape: [...shape] });
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) fail('concat', 'no inputs');
  const attrs = { axis: normAxis('concat', axis, xs[0]!.rank) };
  if (xs.length > 1) return make('Concat', xs, attrs);
  shapeRules.Concat([xs[0]!.node], attrs); // the same checks as for more pieces (a static axis)
  return xs[0]!;
}

/** x[start:end:step] along one axis (negative start/end count from the end, python style). */
export function slice(x: Tensor, axis: number, start: number, end?: number, step = 1): Tensor {
  const a = normAxis('slice', axis, x.rank);
  const dim = x.shape[a]!;
  if (typeof dim !== 'number') fail('slice', `axis ${a} must be static`);
  if (!Number.isInteger(step) || step < 1) fail('slice', `step must be a positive integer, got ${step}`);
  const clampIdx = (v: number) => Math.min(Math.max(v < 0 ? v + dim : v, 0), dim);
  const s = clampIdx(start);
  const e = end === undefined ? dim : clampIdx(end);
  const len = Math.max(0, Math.ceil((e - s) / step));
  if (len === 0) fail('slice', `empty slice [${start}:${end}:${step}] of axis ${a} (dim ${dim})`);
  if (s === 0 && len === dim && step === 1) return x;
  return make('Slice', [x], { starts: [s], ends: [s + (len - 1) * step + 1], axes: [a], steps: [step] });
}

/** Split along an axis into pieces of the given sizes. */
export function split(x: Tensor, axis: number, sizes: readonly number[]): Tensor[] {
  const a = normAxis('split', axis, x.rank);
  const total = sizes.reduce((p, q) => p + q, 0);
  if (total !== x.shape[a] || sizes.some((q) => !Number.isInteger(q) || q < 1)) fail('split', `sizes [${sizes}] do not add up to ${x.shape[a]}`);
  const out: Tensor[] = [];
  let at = 0;
  for (const s of sizes) {
    out.push(slice(x, a, at, at + s));
    at += s;
  }
  return out;
}

/** Zero padding; pads = [begin_0, ..., begin_{r-1}, end_0, ..., end_{r-1}]. */
export function pad(x: Tensor, pads: readonly number[]): Tensor {
  const r = x.rank;
  if (pads.length !== 2 * r || pads.some((p) => !Number.isInteger(p) || p < 0)) fail('pad', `pads [${pads}] invalid for rank ${r}`);
  if (pads.every((p) => p === 0)) return x;
  return make('Pad', [x], { pads: [...pads] });
}

/** Rows of a table: table [R, ...] gathered by int64 indices [...idx] -> [...idx, ...]. */
export function gather(table: Tensor, indices: Tensor): Tensor {
  return make('Gather', [table, indices]);
}

/** Adjoint of `gather`: sums `updates` [...idx, ...rest] into a zero table of `rows` rows. */
export function scatterAddRows(indices: Tensor, updates: Tensor, rows: number): Tensor {
  return make('ScatterAddRows', [indices, updates], { rows });
}

// ---------------------------------------------------------------------------------------------
// Reductions

function normAxes(op: string, x: Tensor, axes: number | readonly number[] | undefined): number[] {
  const list = axes === undefined ? x.shape.map((_, i) => i) : typeof axes === 'number' ? [axes] : [...axes];
  const out = [...new Set(list.map((a) => normAxis(op, a, x.rank)))].sort((a, b) => a - b);
  return out;
}

function reduce(op: 'ReduceSum' | 'ReduceMax', name: string, x: Tensor, axes: number | readonly number[] | undefined, keepdims: boolean): Tensor {
  requireFloat(name, x);
  const ax = normAxes(name, x, axes);
  if (ax.length === 0) return x;
  return make(op, [x], { axes: ax, keepdims });
}

/** Sum over axes (all when omitted). */
export function sum(x: Tensor, axes?: number | readonly number[], keepdims = false): Tensor {
  return reduce('ReduceSum', 'sum', x, axes, keepdims);
}

/** Max over axes (all when omitted). Its gradient flows to every maximal element. */
export function max(x: Tensor, axes?: number | readonly number[], keepdims = false): Tensor {
  return reduce('ReduceMax', 'max', x, axes, keepdims);
}

/** Mean over static axes (all when omitted). */
export function mean(x: Tensor, axes?: number | readonly number[], keepdims = false): Tensor {
  const ax = normAxes('mean', x, axes);
  let n = 1;
  for (const a of ax) {
    const d = x.shape[a]!;
    if (typeof d !== 'number') fail('mean', `cannot average over symbolic axis ${a} (${d})`);
    n *= d;
  }
  return mul(sum(x, ax, keepdims), 1 / n);
}

export function softmax(x: Tensor, axis = -1): Tensor {
  requireFloat('softmax', x);
  const a = normAxis('softmax', axis, x.rank);
  if (a !== x.rank - 1) fail('softmax', `only the last axis is supported (got ${axis} for rank ${x.rank})`);
  return make('Softmax', [x], { axis: a });
}

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  requireFloat('logSoftmax', x);
  const a = normAxis('logSoftmax', axis, x.rank);
  if (a !== x.rank - 1) fail('logSoftmax', `only the last axis is supported (got ${axis} for rank ${x.rank})`);
  return make('LogSoftmax', [x], { axis: a });
}

// ---------------------------------------------------------------------------------------------
// Composites used by the models

/**
 * Group normalisation (Wu & He 2018) of x [N, C, ...] over groups of C/groups channels and all
 * spatial positions, with per-channel scale `gamma` [C] and shift `beta` [C]. Biased variance, as
 * in torch.nn.GroupNorm.
 */
export function groupNorm(x: Tensor, groups: number, gamma: Tensor | null, beta: Tensor | null, eps = 1e-5): Tensor {
  const gn = groupNormParts(x, groups, gamma, beta, eps);
  if (gn.y === gn.normed) return gn.y; // no affine part: the output is x̂ itself, a Reshape, nothing to attach a rule to
  return withVjp(gn.y, [x, gamma, beta], gn.vjp);
}

/**
 * SiLU(groupNorm(x)), the pre-activation of every residual block, with one gradient for both: it keeps only x̂ and
 * the per-group rstd, and recomputes z = γ·x̂ + β and σ(z) in the backward pass (two cheap elementwise ops), where
 * separate rules keep x̂, σ(z) and z·σ(z). With the convolution that reads the output (it keeps its own input), that is
 * two activation-size tensors per block where PyTorch's kernels keep three. The forward graph is groupNorm's then
 * silu's, node for node.
 *
 * The recomputation is written γ·x̂ rather than x̂·γ on purpose: onnxruntime's common-subexpression elimination
 * would merge an identical Mul (and the Sigmoid after it) with the forward's, and keep σ(z) alive after all.
 */
export function groupNormSilu(x: Tensor, groups: number, gamma: Tensor, beta: Tensor, eps = 1e-5): Tensor {
  const gn = groupNormParts(x, groups, gamma, beta, eps);
  const y = mul(gn.y, sigmoid(gn.y));
  return withVjp(y, [x, gamma, beta], (g) => {
    const z = add(mul(gn.gammaB!, gn.normed), gn.betaB!); // recomputed: see above
    const s = sigmoid(z);
    // silu'(z) = σ(z)·(1 + z·(1 − σ(z)))
    return gn.vjp(mul(g, mul(s, add(mul(z, sub(1, s)), 1))));
  });
}

/** groupNorm's forward, the pieces its gradient reads (x̂, rstd), and that gradient. */
function groupNormParts(x: Tensor, groups: number, gamma: Tensor | null, beta: Tensor | null, eps: number) {
  requireFloat('groupNorm', x);
  if (x.rank < 2) fail('groupNorm', `expects [N, C, ...], got ${shapeToString(x.shape)}`);
  const [N, C] = x.shape as [Dim, Dim];
  if (typeof C !== 'number' || C % groups !== 0) fail('groupNorm', `channels ${C} not divisible by ${groups} groups`);
  const xg = reshape(x, [N, groups, -1]); // (N, G, C/G*H*W)
  const mu = mean(xg, 2, true);
  const centered = sub(xg, mu);
  const variance = mean(mul(centered, centered), 2, true);
  const rstd = rsqrt(add(variance, eps)); // (N, G, 1)
  const normed = reshape(mul(centered, rstd), x.shape); // x̂
  const bshape = [1, C, ...x.shape.slice(2).map(() => 1)];
  let y = normed;
  let gammaB: Tensor | null = null;
  let betaB: Tensor | null = null;
  if (gamma) {
    if (gamma.rank !== 1 || gamma.shape[0] !== C) fail('groupNorm', `gamma ${shapeToString(gamma.shape)} does not match ${C} channels`);
    gammaB = reshape(gamma, bshape);
    y = mul(y, gammaB);
  }
  if (beta) {
    if (beta.rank !== 1 || beta.shape[0] !== C) fail('groupNorm', `beta ${shapeToString(beta.shape)} does not match ${C} channels`);
    betaB = reshape(beta, bshape);
    y = add(y, betaB);
  }
  const perChannel = [0, ...x.shape.slice(2).map((_, i) => i + 2)]; // every axis but C
  // The gradient from x̂ and rstd alone (as PyTorch's kernel, which keeps x, mean and rstd): with ĝ = g·γ,
  //   dx = rstd · (ĝ − mean_group(ĝ) − x̂ · mean_group(ĝ · x̂)),   dγ = Σ_{n,hw} g · x̂,   dβ = Σ_{n,hw} g.
  // The primitives' VJPs would keep x − μ as well as x̂: one more activation-size tensor per normalisation.
  const vjp = (g: Tensor): (Tensor | null)[] => {
    const gg = reshape(gammaB ? mul(g, gammaB) : g, [N, groups, -1]);
    const xh = reshape(normed, [N, groups, -1]);
    const dx = mul(rstd, sub(sub(gg, mean(gg, 2, true)), mul(xh, mean(mul(gg, xh), 2, true))));
    return [reshape(dx, x.shape), gamma ? sum(mul(g, normed), perChannel) : null, beta ? sum(g, perChannel) : null];
  };
  return { y, normed, gammaB, betaB, vjp };
}

/**
 * Nearest-neighbour ×2 upsampling of [N, C, H, W] by reshapes and two self-concatenations (no Resize op
 * needed). onnxruntime's CPU Expand runs the same broadcast ~3× slower, forward + backward.
 */
export function upsampleNearest2x(x: Tensor): Tensor {
  if (x.rank !== 4) fail('upsampleNearest2x', `expects [N,C,H,W], got ${shapeToString(x.shape)}`);
  const [N, C, H, W] = x.shape as [Dim, Dim, number, number];
  const x6 = reshape(x, [N, C, H, 1, W, 1]);
  const cols = concat([x6, x6], 5); // [N, C, H, 1, W, 2]
  return reshape(concat([cols, cols], 3), [N, C, 2 * H, 2 * W]);
}

/**
 * Inverted dropout driven by an explicit uniform [0,1) tensor `u` (same or broadcastable shape):
 * keeps x/(1-p) where u > p. The randomness is an input, so the compiled graph stays deterministic.
 */
export function dropout(x: Tensor, p: number, u: Tensor): Tensor {
  if (!(p >= 0 && p < 1)) fail('dropout', `p must be in [0, 1), got ${p}`);
  if (p === 0) return x;
  const keep = cast(greater(u, p), 'float32');
  return mul(x, mul(keep, 1 / (1 - p)));
}

/** x @ w + b for x [..., in], w [in, out] (row-vector convention, like nanoGPT's y = x W^T with W stored transposed). */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  const y = matmul(x.rank === 1 ? reshape(x, [1, -1]) : x, w);
  return b ? add(y, b) : y;
}
