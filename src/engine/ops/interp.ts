/**
 * Reference implementations, one per primitive (jax-js style reference backend): every op written
 * out as plain loops over multi-indices, with no cleverness and no shared fast paths, so it can serve
 * as the ground truth for the ONNX lowering, for finite-difference gradient checks and for debugging.
 * Each op computes its output shape from its inputs and attributes (never from the traced shape), so
 * the driver (interp.ts) can check the shape rules of ops/shape.ts against it.
 *
 * Values: float tensors are held as Float64Array, int64 as BigInt64Array, bool as Uint8Array.
 */
import { shapeToString, strides, type ConvAttrs, type Dim, type DType, type Node, type Primitive, type Shape } from '../graph.ts';

export type Data = Float64Array | BigInt64Array | Uint8Array;

export interface Value {
  shape: number[];
  data: Data;
}

/** A node's value from its inputs' values; `shapeOf` makes a (possibly symbolic) attribute shape concrete. */
export type InterpRule = (ins: Value[], node: Node, shapeOf: (s: Shape) => number[]) => Value;

// ---------------------------------------------------------------------------------------------
// Index helpers

export function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Flat index -> multi-index of a row-major shape. */
function unravel(flat: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i]!;
    idx[i] = flat % d;
    flat = Math.floor(flat / d);
  }
  return idx;
}

/** Offset into `shape` (aligned to the right of the output index) with numpy broadcasting. */
function broadcastOffset(outIdx: readonly number[], shape: readonly number[]): number {
  const lead = outIdx.length - shape.length;
  const st = strides(shape);
  let off = 0;
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] !== 1) off += outIdx[i + lead]! * st[i]!;
  }
  return off;
}

function broadcastShape(op: string, a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)]!;
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)]!;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`interp ${op}: cannot broadcast ${shapeToString(a)} with ${shapeToString(b)}`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

function newData(dtype: DType, n: number): Data {
  if (dtype === 'float32') return new Float64Array(n);
  if (dtype === 'int64') return new BigInt64Array(n);
  return new Uint8Array(n);
}

// ---------------------------------------------------------------------------------------------
// erf, accurate to a few ulp (needed by finite-difference checks; A&S 7.1.26 is only ~1e-7)

/**
 * erf(x) for |x| < 3 by the everywhere-positive series (A&S 7.1.6)
 *   erf x = 2/√π · e^{−x²} · Σ_n 2^n x^{2n+1} / (1·3·…·(2n+1)),
 * which has no cancellation; for |x| ≥ 3 by the continued fraction of erfc (A&S 7.1.14)
 *   erfc x = e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))).
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  const sgn = x < 0 ? -1 : 1;
  if (ax < 3) {
    let term = ax;
    let total = ax;
    for (let n = 0; n < 200; n++) {
      term *= (2 * ax * ax) / (2 * n + 3);
      total += term;
      if (term < total * 1e-17) break;
    }
    return sgn * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * total;
  }
  if (ax > 6) return sgn; // erfc(6) ≈ 2e-17 < ulp(1)/2
  // evaluate the continued fraction bottom-up with a fixed depth (converges fast for x ≥ 3)
  let f = ax;
  for (let k = 60; k >= 1; k--) f = ax + k / 2 / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return sgn * (1 - erfc);
}

// ---------------------------------------------------------------------------------------------
// Ops

type Num = number | bigint;

function asNum(d: Data): ArrayLike<Num> {
  return d as ArrayLike<Num>;
}

/** A binary op on floats (float32 values held in double) and on int64 (BigInt). */
function arithmetic(op: string, onFloat: (a: number, b: number) => number, onInt: (a: bigint, b: bigint) => bigint): InterpRule {
  return (ins, node) => {
    const x = ins[0]!;
    if (x.data instanceof BigInt64Array) return elementwise(op, ins, node.dtype, (p, q) => onInt(p as bigint, q as bigint));
    if (x.data instanceof Uint8Array) throw new Error(`interp ${op}: bool operands`);
    return elementwise(op, ins, node.dtype, (p, q) => onFloat(p as number, q as number));
  };
}

function comparison(op: string, fn: (a: Num, b: Num) => boolean): InterpRule {
  return (ins) => elementwise(op, ins, 'bool', (p, q) => fn(p!, q!));
}

function unary(op: string, fn: (x: number) => number): InterpRule {
  return (ins, node) => elementwise(op, ins, node.dtype, (p) => fn(p as number));
}

function elementwise(op: string, ins: Value[], dtype: DType, fn: (...v: Num[]) => Num | boolean): Value {
  let shape: number[] = [];
  for (const v of ins) shape = broadcastShape(op, shape, v.shape);
  const n = size(shape);
  const data = newData(dtype, n);
  const args = new Array<Num>(ins.length);
  for (let i = 0; i < n; i++) {
    const idx = unravel(i, shape);
    for (let k = 0; k < ins.length; k++) args[k] = asNum(ins[k]!.data)[broadcastOffset(idx, ins[k]!.shape)]!;
    const r = fn(...args);
    (data as unknown as Num[])[i] = typeof r === 'boolean' ? (r ? 1 : 0) : r;
  }
  return { shape, data };
}

function cast(x: Value, from: DType, to: DType): Value {
  const n = x.data.length;
  const out = newData(to, n);
  for (let i = 0; i < n; i++) {
    const v = x.data[i]!;
    if (to === 'float32') (out as Float64Array)[i] = Number(v);
    else if (to === 'bool') (out as Uint8Array)[i] = v !== 0 && v !== 0n ? 1 : 0;
    else {
      // float -> int truncates toward zero (C cast semantics, as onnxruntime does)
      if (from === 'float32' && !Number.isFinite(v as number)) throw new Error(`evaluate: Cast of non-finite ${v} to int64`);
      (out as BigInt64Array)[i] = typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
    }
  }
  return { shape: [...x.shape], data: out };
}

function matmul(a: Value, b: Value): Value {
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) throw new Error(`interp MatMul: rank < 2: ${shapeToString(a.shape)} @ ${shapeToString(b.shape)}`);
  const [n, k] = [a.shape[ra - 2]!, a.shape[ra - 1]!];
  const [k2, m] = [b.shape[rb - 2]!, b.shape[rb - 1]!];
  if (k !== k2) throw new Error(`interp MatMul: inner dims differ: ${shapeToString(a.shape)} @ ${shapeToString(b.shape)}`);
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const batch = broadcastShape('MatMul', aBatch, bBatch);
  const shape = [...batch, n, m];
  const out = new Float64Array(size(shape));
  const A = a.data as Float64Array;
  const B = b.data as Float64Array;
  const nb = size(batch);
  for (let bi = 0; bi < nb; bi++) {
    const bIdx = unravel(bi, batch);
    const aOff = broadcastOffset(bIdx, aBatch) * n * k;
    const bOff = broadcastOffset(bIdx, bBatch) * k * m;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < m; j++) {
        let s = 0;
        for (let t = 0; t < k; t++) s += A[aOff + i * k + t]! * B[bOff + t * m + j]!;
        out[bi * n * m + i * m + j] = s;
      }
    }
  }
  return { shape, data: out };
}

/**
 * Every tap of a grouped 2-D convolution between x [N, C, H, W] and y [N, O, Ho, Wo] through
 * w [O, Cg, kh, kw]: calls tap(xi, wi, yi) with the flat offsets of
 *   x[n, g·Cg + c, ho·s − pt + i, wo·s − pl + j],  w[o, c, i, j],  y[n, o, ho, wo],  g = ⌊o / (O/group)⌋,
 * in the order n, o, ho, wo, c, i, j, skipping taps that fall outside x (in the padding).
 */
function forEachConvTap(
  xShape: readonly number[],
  yShape: readonly number[],
  wShape: readonly number[],
  attrs: ConvAttrs,
  tap: (xi: number, wi: number, yi: number) => void,
): void {
  const [N, C, H, W] = xShape as [number, number, number, number];
  const [, O, Ho, Wo] = yShape as [number, number, number, number];
  const [, Cg, kh, kw] = wShape as [number, number, number, number];
  const [sh, sw] = attrs.strides;
  const [pt, pl] = attrs.pads;
  const Og = O / attrs.group;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const g = Math.floor(o / Og);
      for (let ho = 0; ho < Ho; ho++) {
        for (let wo = 0; wo < Wo; wo++) {
          const yi = ((n * O + o) * Ho + ho) * Wo + wo;
          for (let c = 0; c < Cg; c++) {
            for (let i = 0; i < kh; i++) {
              const h = ho * sh - pt + i;
              if (h < 0 || h >= H) continue;
              for (let j = 0; j < kw; j++) {
                const v = wo * sw - pl + j;
                if (v < 0 || v >= W) continue;
                tap(((n * C + g * Cg + c) * H + h) * W + v, ((o * Cg + c) * kh + i) * kw + j, yi);
              }
            }
          }
        }
      }
    }
  }
}

/** y[n, o, ho, wo] = Σ_{c, i, j} x[n, g·Cg + c, ho·s − pt + i, wo·s − pl + j] · w[o, c, i, j]. */
function conv(x: Value, w: Value, attrs: ConvAttrs): Value {
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, Cg, kh, kw] = w.shape as [number, number, number, number];
  const [sh, sw] = attrs.strides;
  const [pt, pl, pb, pr] = attrs.pads;
  const G = attrs.group;
  if (x.shape.length !== 4 || w.shape.length !== 4 || C !== Cg * G || O % G !== 0) {
    throw new Error(`interp Conv: x ${shapeToString(x.shape)}, w ${shapeToString(w.shape)}, group ${G} do not fit`);
  }
  const shape = [N, O, Math.floor((H + pt + pb - kh) / sh) + 1, Math.floor((W + pl + pr - kw) / sw) + 1];
  const X = x.data as Float64Array;
  const Wt = w.data as Float64Array;
  const out = new Float64Array(size(shape));
  forEachConvTap(x.shape, shape, w.shape, attrs, (xi, wi, yi) => (out[yi] += X[xi]! * Wt[wi]!));
  return { shape, data: out };
}

/**
 * The adjoint of `conv` in x: every y[n, o, ho, wo] is scattered back along the same taps,
 *   x[n, g·Cg + c, ho·s − pt + i, wo·s − pl + j] += y[n, o, ho, wo] · w[o, c, i, j],
 * onto an output of size (Ho − 1)·s − pt − pb + k + outputPadding (taps outside it are dropped).
 */
function convTranspose(y: Value, w: Value, attrs: ConvAttrs): Value {
  const [N, O, Ho, Wo] = y.shape as [number, number, number, number];
  const [Ow, Cg, kh, kw] = w.shape as [number, number, number, number];
  const [sh, sw] = attrs.strides;
  const [pt, pl, pb, pr] = attrs.pads;
  const [oph, opw] = attrs.outputPadding ?? [0, 0];
  const G = attrs.group;
  if (y.shape.length !== 4 || w.shape.length !== 4 || O !== Ow || O % G !== 0) {
    throw new Error(`interp ConvTranspose: y ${shapeToString(y.shape)}, w ${shapeToString(w.shape)}, group ${G} do not fit`);
  }
  const shape = [N, Cg * G, (Ho - 1) * sh - pt - pb + kh + oph, (Wo - 1) * sw - pl - pr + kw + opw];
  const Y = y.data as Float64Array;
  const Wt = w.data as Float64Array;
  const out = new Float64Array(size(shape));
  forEachConvTap(shape, y.shape, w.shape, attrs, (xi, wi, yi) => (out[xi] += Y[yi]! * Wt[wi]!));
  return { shape, data: out };
}

/** Copy of x into `shape` where output element at multi-index idx reads x at `src(idx)` (or 0 when null). */
function gatherBy(x: Value, dtype: DType, shape: number[], src: (idx: number[]) => number | null): Value {
  const n = size(shape);
  const data = newData(dtype, n);
  for (let i = 0; i < n; i++) {
    const s = src(unravel(i, shape));
    if (s !== null) (data as unknown as Num[])[i] = asNum(x.data)[s]!;
  }
  return { shape, data };
}

function reduce(x: Value, axes: number[], keepdims: boolean, init: number, combine: (acc: number, v: number) => number): Value {
  const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const n = size(kept);
  const out = new Float64Array(n).fill(init);
  const X = x.data as Float64Array;
  const kst = strides(kept);
  for (let i = 0; i < X.length; i++) {
    const idx = unravel(i, x.shape);
    let o = 0;
    idx.forEach((v, d) => (o += axes.includes(d) ? 0 : v * kst[d]!));
    out[o] = combine(out[o]!, X[i]!);
  }
  const shape = keepdims ? kept : x.shape.filter((_, i) => !axes.includes(i));
  return { shape, data: out };
}

/** Softmax / log-softmax along `axis`, stable: subtract the max first. */
function softmax(x: Value, axis: number, log: boolean): Value {
  const D = x.shape[axis]!;
  const inner = size(x.shape.slice(axis + 1));
  const outer = size(x.shape.slice(0, axis));
  const X = x.data as Float64Array;
  const out = new Float64Array(X.length);
  for (let a = 0; a < outer; a++) {
    for (let b = 0; b < inner; b++) {
      const at = (d: number) => (a * D + d) * inner + b;
      let m = -Infinity;
      for (let d = 0; d < D; d++) m = Math.max(m, X[at(d)]!);
      let s = 0;
      for (let d = 0; d < D; d++) s += Math.exp(X[at(d)]! - m);
      for (let d = 0; d < D; d++) out[at(d)] = log ? X[at(d)]! - m - Math.log(s) : Math.exp(X[at(d)]! - m) / s;
    }
  }
  return { shape: [...x.shape], data: out };
}

interface SliceAttrs {
  starts: number[];
  ends: number[];
  axes: number[];
  steps: number[];
}

const nanMax = (m: number, v: number): number => (Number.isNaN(m) || Number.isNaN(v) ? NaN : Math.max(m, v));

export const interpRules: Record<Primitive, InterpRule> = {
  Add: arithmetic('Add', (a, b) => a + b, (a, b) => a + b),
  Sub: arithmetic('Sub', (a, b) => a - b, (a, b) => a - b),
  Mul: arithmetic('Mul', (a, b) => a * b, (a, b) => a * b),
  Div: arithmetic('Div', (a, b) => a / b, (a, b) => a / b), // int64: truncates toward zero, as C / ONNX integer Div
  Max: arithmetic('Max', nanMax, (a, b) => (a > b ? a : b)),
  Min: arithmetic('Min', (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b)), (a, b) => (a < b ? a : b)),
  Pow: arithmetic('Pow', (a, b) => Math.pow(a, b), (a, b) => a ** b),
  Less: comparison('Less', (a, b) => a < b),
  Greater: comparison('Greater', (a, b) => a > b),
  Equal: comparison('Equal', (a, b) => a === b),
  Where: (ins, node) => elementwise('Where', ins, node.dtype, (c, p, q) => (c ? p! : q!)),
  Neg: (ins, node) => {
    if (ins[0]!.data instanceof BigInt64Array) return elementwise('Neg', ins, node.dtype, (p) => -(p as bigint));
    return elementwise('Neg', ins, node.dtype, (p) => -(p as number));
  },
  Exp: unary('Exp', Math.exp),
  Log: unary('Log', Math.log),
  Sqrt: unary('Sqrt', Math.sqrt),
  Tanh: unary('Tanh', Math.tanh),
  Sigmoid: unary('Sigmoid', (x) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)))),
  Sin: unary('Sin', Math.sin),
  Cos: unary('Cos', Math.cos),
  Abs: unary('Abs', Math.abs),
  Relu: unary('Relu', (x) => (x > 0 ? x : 0)),
  Erf: unary('Erf', erf),
  Cast: ([x], node) => cast(x!, node.inputs[0]!.dtype, node.attrs.to as DType),
  StopGradient: ([x]) => ({ shape: [...x!.shape], data: x!.data.slice() }),

  MatMul: ([a, b]) => matmul(a!, b!),
  Conv: ([x, w], node) => conv(x!, w!, node.attrs as unknown as ConvAttrs),
  ConvTranspose: ([y, w], node) => convTranspose(y!, w!, node.attrs as unknown as ConvAttrs),

  Reshape: ([x], node, shapeOf) => {
    const shape = shapeOf(node.attrs.shape as Dim[]);
    if (size(shape) !== x!.data.length) throw new Error(`interp Reshape: ${shapeToString(x!.shape)} -> ${shapeToString(shape)}`);
    return { shape, data: x!.data.slice() };
  },
  Transpose: ([x], node) => {
    const perm = node.attrs.perm as number[];
    const shape = perm.map((p) => x!.shape[p]!);
    const st = strides(x!.shape);
    return gatherBy(x!, node.dtype, shape, (idx) => idx.reduce((o, v, d) => o + v * st[perm[d]!]!, 0));
  },
  Expand: ([x], node, shapeOf) => {
    const target = shapeOf(node.attrs.shape as Dim[]);
    const shape = broadcastShape('Expand', x!.shape, target);
    return gatherBy(x!, node.dtype, shape, (idx) => broadcastOffset(idx, x!.shape));
  },
  Concat: (ins, node) => {
    const axis = node.attrs.axis as number;
    const shape = [...ins[0]!.shape];
    shape[axis] = ins.reduce((t, v) => t + v.shape[axis]!, 0);
    const n = size(shape);
    const data = newData(node.dtype, n);
    const partStrides = ins.map((v) => strides(v.shape));
    for (let i = 0; i < n; i++) {
      // find the input that holds position idx[axis], then read it at the shifted index
      const idx = unravel(i, shape);
      let k = 0;
      let pos = idx[axis]!;
      while (pos >= ins[k]!.shape[axis]!) pos -= ins[k++]!.shape[axis]!;
      const part = ins[k]!;
      idx[axis] = pos;
      const off = idx.reduce((o, v, d) => o + v * partStrides[k]![d]!, 0);
      (data as unknown as Num[])[i] = asNum(part.data)[off]!;
    }
    return { shape, data };
  },
  Slice: ([x], node) => {
    const { starts, ends, axes, steps } = node.attrs as unknown as SliceAttrs;
    const shape = [...x!.shape];
    const start = new Array<number>(shape.length).fill(0);
    const step = new Array<number>(shape.length).fill(1);
    axes.forEach((ax, k) => {
      start[ax] = starts[k]!;
      step[ax] = steps[k]!;
      shape[ax] = Math.max(0, Math.ceil((Math.min(ends[k]!, x!.shape[ax]!) - starts[k]!) / steps[k]!));
    });
    const st = strides(x!.shape);
    return gatherBy(x!, node.dtype, shape, (idx) => idx.reduce((o, v, d) => o + (start[d]! + v * step[d]!) * st[d]!, 0));
  },
  Pad: ([x], node) => {
    const pads = node.attrs.pads as number[];
    const r = x!.shape.length;
    const shape = x!.shape.map((d, i) => d + pads[i]! + pads[i + r]!);
    const st = strides(x!.shape);
    return gatherBy(x!, node.dtype, shape, (idx) => {
      let o = 0;
      for (let d = 0; d < r; d++) {
        const v = idx[d]! - pads[d]!;
        if (v < 0 || v >= x!.shape[d]!) return null;
        o += v * st[d]!;
      }
      return o;
    });
  },
  Gather: ([x, y], node) => {
    const rows = x!.shape[0]!;
    const rowSize = size(x!.shape.slice(1));
    const idx = y!.data as BigInt64Array;
    const shape = [...y!.shape, ...x!.shape.slice(1)];
    const data = newData(node.dtype, size(shape));
    for (let k = 0; k < idx.length; k++) {
      let r = Number(idx[k]!);
      if (r < -rows || r >= rows) throw new Error(`interp Gather: index ${r} out of range for ${rows} rows`);
      if (r < 0) r += rows; // negative indices count from the end, as in ONNX Gather
      for (let t = 0; t < rowSize; t++) (data as unknown as Num[])[k * rowSize + t] = asNum(x!.data)[r * rowSize + t]!;
    }
    return { shape, data };
  },
  ScatterAddRows: ([x, y], node) => {
    const rows = node.attrs.rows as number;
    const idx = x!.data as BigInt64Array;
    const rest = y!.shape.slice(x!.shape.length);
    const rowSize = size(rest);
    const out = new Float64Array(rows * rowSize);
    const U = y!.data as Float64Array;
    for (let k = 0; k < idx.length; k++) {
      let r = Number(idx[k]!);
      if (r < -rows || r >= rows) throw new Error(`interp ScatterAddRows: index ${r} out of range for ${rows} rows`);
      if (r < 0) r += rows;
      for (let t = 0; t < rowSize; t++) out[r * rowSize + t] += U[k * rowSize + t]!;
    }
    return { shape: [rows, ...rest], data: out };
  },

  ReduceSum: ([x], node) => reduce(x!, node.attrs.axes as number[], node.attrs.keepdims as boolean, 0, (s, v) => s + v),
  ReduceMax: ([x], node) => reduce(x!, node.attrs.axes as number[], node.attrs.keepdims as boolean, -Infinity, nanMax),
  Softmax: ([x], node) => softmax(x!, node.attrs.axis as number, false),
  LogSoftmax: ([x], node) => softmax(x!, node.attrs.axis as number, true),
};
