/**
 * A slow, obviously-correct reference interpreter of the IR (jax-js style reference backend).
 *
 * Every primitive of graph.ts is written out as plain loops over multi-indices, with no cleverness
 * and no shared fast paths, so it can serve as the ground truth for the ONNX lowering, for
 * finite-difference gradient checks and for debugging. Each op also recomputes its output shape
 * from its inputs and attributes and checks it against the traced shape, so the interpreter is an
 * independent check of the shape rules in tensor.ts.
 *
 * Values: float tensors are held as Float64Array, int64 as BigInt64Array, bool as Uint8Array.
 * In 'float32' precision every float result (feeds and constants included) is rounded with
 * `Math.fround` after each op, mimicking float32 execution (inner sums of MatMul / Conv / reductions
 * are accumulated in double and rounded once, which is at least as accurate as a float32 kernel);
 * in 'float64' everything stays double.
 */
import { Node, shapeToString, strides, topoSort, type Dim, type DType, type Shape } from './graph.ts';
import type { Tensor } from './tensor.ts';

export type Feed = Float64Array | Float32Array | BigInt64Array | Int32Array | Uint8Array | number[];
export type Data = Float64Array | BigInt64Array | Uint8Array;

export interface EvalOptions {
  /** 'float64' (default) keeps everything double; 'float32' rounds every float result. */
  precision?: 'float64' | 'float32';
  /** Values of symbolic dims; those not given are inferred from the feed lengths. */
  dims?: Record<string, number>;
}

export interface Value {
  shape: number[];
  data: Data;
}

// ---------------------------------------------------------------------------------------------
// Index helpers

function size(shape: readonly number[]): number {
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

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
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
// Feeds and symbolic dims

function resolveDims(inputs: readonly Node[], feeds: Record<string, Feed>, given: Record<string, number>): Map<string, number> {
  const dims = new Map<string, number>(Object.entries(given));
  for (const [k, v] of dims) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`evaluate: dims.${k} = ${v} is not a non-negative integer`);
  }
  // Infer one unknown symbol per input from its feed length, until nothing changes.
  let progress = true;
  while (progress) {
    progress = false;
    for (const n of inputs) {
      const name = n.attrs.name as string;
      const feed = feeds[name];
      if (!feed) continue;
      const unknown = n.shape.filter((d): d is string => typeof d === 'string' && !dims.has(d));
      if (unknown.length !== 1) continue; // none left, or ambiguous (then dims must be given)
      let known = 1;
      for (const d of n.shape) if (d !== unknown[0]) known *= typeof d === 'number' ? d : dims.get(d)!;
      const v = known === 0 ? NaN : feed.length / known;
      if (!Number.isInteger(v)) {
        throw new Error(`evaluate: input '${name}' ${shapeToString(n.shape)} got ${feed.length} values, not a multiple of ${known} (cannot infer ${unknown[0]})`);
      }
      dims.set(unknown[0]!, v);
      progress = true;
    }
  }
  return dims;
}

function concrete(shape: Shape, dims: Map<string, number>, what: string): number[] {
  return shape.map((d: Dim) => {
    if (typeof d === 'number') return d;
    const v = dims.get(d);
    if (v === undefined) throw new Error(`evaluate: symbolic dim '${d}' of ${what} ${shapeToString(shape)} is unknown; pass it in opts.dims or feed an input that has it`);
    return v;
  });
}

function readFeed(node: Node, feed: Feed | undefined, shape: number[], round: (v: number) => number): Data {
  const name = node.attrs.name as string;
  if (feed === undefined) throw new Error(`evaluate: missing feed for input '${name}' ${shapeToString(node.shape)}`);
  const n = size(shape);
  if (feed.length !== n) {
    throw new Error(`evaluate: input '${name}' expects ${n} values for shape ${shapeToString(shape)} (declared ${shapeToString(node.shape)}), got ${feed.length}`);
  }
  if (node.dtype === 'float32') {
    if (feed instanceof BigInt64Array) throw new Error(`evaluate: input '${name}' is float32 but was fed a BigInt64Array`);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = round(feed[i] as number);
    return out;
  }
  if (node.dtype === 'int64') {
    if (feed instanceof BigInt64Array) return feed.slice();
    const out = new BigInt64Array(n);
    for (let i = 0; i < n; i++) {
      const v = feed[i] as number;
      if (!Number.isInteger(v)) throw new Error(`evaluate: input '${name}' is int64 but value [${i}] = ${v} is not an integer`);
      out[i] = BigInt(v);
    }
    return out;
  }
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = feed[i] ? 1 : 0;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Ops

type Num = number | bigint;

function asNum(d: Data): ArrayLike<Num> {
  return d as ArrayLike<Num>;
}

const floatBinary: Record<string, (a: number, b: number) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b,
  Max: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b)),
  Min: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b)),
  Pow: (a, b) => Math.pow(a, b),
};

const intBinary: Record<string, (a: bigint, b: bigint) => bigint> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b, // truncates toward zero, as C / ONNX integer Div
  Max: (a, b) => (a > b ? a : b),
  Min: (a, b) => (a < b ? a : b),
  Pow: (a, b) => a ** b,
};

const compare: Record<string, (a: Num, b: Num) => boolean> = {
  Less: (a, b) => a < b,
  Greater: (a, b) => a > b,
  Equal: (a, b) => a === b,
};

const floatUnary: Record<string, (x: number) => number> = {
  Neg: (x) => -x,
  Exp: Math.exp,
  Log: Math.log,
  Sqrt: Math.sqrt,
  Tanh: Math.tanh,
  Sigmoid: (x) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))),
  Sin: Math.sin,
  Cos: Math.cos,
  Abs: Math.abs,
  Relu: (x) => (x > 0 ? x : 0),
  Erf: erf,
};

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

interface ConvAttrs {
  strides: number[];
  pads: number[];
  group: number;
  outputPadding?: number[];
}

/** y[n, o, ho, wo] = Σ_{c, i, j} x[n, g·Cg + c, ho·s − pt + i, wo·s − pl + j] · w[o, c, i, j], g = ⌊o / (O/group)⌋. */
function conv(x: Value, w: Value, attrs: ConvAttrs): Value {
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, Cg, kh, kw] = w.shape as [number, number, number, number];
  const [sh, sw] = attrs.strides as [number, number];
  const [pt, pl, pb, pr] = attrs.pads as [number, number, number, number];
  const G = attrs.group;
  if (x.shape.length !== 4 || w.shape.length !== 4 || C !== Cg * G || O % G !== 0) {
    throw new Error(`interp Conv: x ${shapeToString(x.shape)}, w ${shapeToString(w.shape)}, group ${G} do not fit`);
  }
  const Ho = Math.floor((H + pt + pb - kh) / sh) + 1;
  const Wo = Math.floor((W + pl + pr - kw) / sw) + 1;
  const X = x.data as Float64Array;
  const Wt = w.data as Float64Array;
  const out = new Float64Array(N * O * Ho * Wo);
  const Og = O / G;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const g = Math.floor(o / Og);
      for (let ho = 0; ho < Ho; ho++) {
        for (let wo = 0; wo < Wo; wo++) {
          let s = 0;
          for (let c = 0; c < Cg; c++) {
            for (let i = 0; i < kh; i++) {
              const h = ho * sh - pt + i;
              if (h < 0 || h >= H) continue;
              for (let j = 0; j < kw; j++) {
                const v = wo * sw - pl + j;
                if (v < 0 || v >= W) continue;
                s += X[((n * C + g * Cg + c) * H + h) * W + v]! * Wt[((o * Cg + c) * kh + i) * kw + j]!;
              }
            }
          }
          out[((n * O + o) * Ho + ho) * Wo + wo] = s;
        }
      }
    }
  }
  return { shape: [N, O, Ho, Wo], data: out };
}

/**
 * The adjoint of `conv` in x: every y[n, o, ho, wo] is scattered back along the same taps,
 *   x[n, g·Cg + c, ho·s − pt + i, wo·s − pl + j] += y[n, o, ho, wo] · w[o, c, i, j],
 * onto an output of size (Ho − 1)·s − pt − pb + k + outputPadding (taps outside it are dropped).
 */
function convTranspose(y: Value, w: Value, attrs: ConvAttrs): Value {
  const [N, O, Ho, Wo] = y.shape as [number, number, number, number];
  const [Ow, Cg, kh, kw] = w.shape as [number, number, number, number];
  const [sh, sw] = attrs.strides as [number, number];
  const [pt, pl, pb, pr] = attrs.pads as [number, number, number, number];
  const [oph, opw] = (attrs.outputPadding ?? [0, 0]) as [number, number];
  const G = attrs.group;
  if (y.shape.length !== 4 || w.shape.length !== 4 || O !== Ow || O % G !== 0) {
    throw new Error(`interp ConvTranspose: y ${shapeToString(y.shape)}, w ${shapeToString(w.shape)}, group ${G} do not fit`);
  }
  const C = Cg * G;
  const H = (Ho - 1) * sh - pt - pb + kh + oph;
  const W = (Wo - 1) * sw - pl - pr + kw + opw;
  const Y = y.data as Float64Array;
  const Wt = w.data as Float64Array;
  const out = new Float64Array(N * C * H * W);
  const Og = O / G;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const g = Math.floor(o / Og);
      for (let ho = 0; ho < Ho; ho++) {
        for (let wo = 0; wo < Wo; wo++) {
          const yv = Y[((n * O + o) * Ho + ho) * Wo + wo]!;
          for (let c = 0; c < Cg; c++) {
            for (let i = 0; i < kh; i++) {
              const h = ho * sh - pt + i;
              if (h < 0 || h >= H) continue;
              for (let j = 0; j < kw; j++) {
                const v = wo * sw - pl + j;
                if (v < 0 || v >= W) continue;
                out[((n * C + g * Cg + c) * H + h) * W + v] += yv * Wt[((o * Cg + c) * kh + i) * kw + j]!;
              }
            }
          }
        }
      }
    }
  }
  return { shape: [N, C, H, W], data: out };
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

function evalNode(node: Node, ins: Value[], shapeOf: (s: Shape) => number[]): Value {
  const a = node.attrs;
  const op = node.op;
  const [x, y] = ins as [Value, Value];
  switch (op) {
    case 'Input':
    case 'Constant':
      throw new Error('unreachable');
    case 'Add': case 'Sub': case 'Mul': case 'Div': case 'Max': case 'Min': case 'Pow': {
      if (x.data instanceof BigInt64Array) return elementwise(op, ins, node.dtype, (p, q) => intBinary[op]!(p as bigint, q as bigint));
      if (x.data instanceof Uint8Array) throw new Error(`interp ${op}: bool operands`);
      return elementwise(op, ins, node.dtype, (p, q) => floatBinary[op]!(p as number, q as number));
    }
    case 'Less': case 'Greater': case 'Equal':
      return elementwise(op, ins, 'bool', (p, q) => compare[op]!(p!, q!));
    case 'Where':
      return elementwise(op, ins, node.dtype, (c, p, q) => (c ? p! : q!));
    case 'Neg':
      if (x.data instanceof BigInt64Array) return elementwise(op, ins, node.dtype, (p) => -(p as bigint));
      return elementwise(op, ins, node.dtype, (p) => -(p as number));
    case 'Exp': case 'Log': case 'Sqrt': case 'Tanh': case 'Sigmoid': case 'Sin': case 'Cos': case 'Abs': case 'Relu': case 'Erf':
      return elementwise(op, ins, node.dtype, (p) => floatUnary[op]!(p as number));
    case 'Cast':
      return cast(x, node.inputs[0]!.dtype, a.to as DType);
    case 'StopGradient':
      return { shape: [...x.shape], data: x.data.slice() };
    case 'MatMul':
      return matmul(x, y);
    case 'Conv':
      return conv(x, y, a as unknown as ConvAttrs);
    case 'ConvTranspose':
      return convTranspose(x, y, a as unknown as ConvAttrs);
    case 'Reshape': {
      const shape = shapeOf(a.shape as Dim[]);
      if (size(shape) !== x.data.length) throw new Error(`interp Reshape: ${shapeToString(x.shape)} -> ${shapeToString(shape)}`);
      return { shape, data: x.data.slice() };
    }
    case 'Transpose': {
      const perm = a.perm as number[];
      const shape = perm.map((p) => x.shape[p]!);
      const st = strides(x.shape);
      return gatherBy(x, node.dtype, shape, (idx) => idx.reduce((o, v, d) => o + v * st[perm[d]!]!, 0));
    }
    case 'Expand': {
      const target = shapeOf(a.shape as Dim[]);
      const shape = broadcastShape('Expand', x.shape, target);
      return gatherBy(x, node.dtype, shape, (idx) => broadcastOffset(idx, x.shape));
    }
    case 'Concat': {
      const axis = a.axis as number;
      const shape = [...x.shape];
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
    }
    case 'Slice': {
      const { starts, ends, axes, steps } = a as { starts: number[]; ends: number[]; axes: number[]; steps: number[] };
      const shape = [...x.shape];
      const start = new Array<number>(shape.length).fill(0);
      const step = new Array<number>(shape.length).fill(1);
      axes.forEach((ax, k) => {
        start[ax] = starts[k]!;
        step[ax] = steps[k]!;
        shape[ax] = Math.max(0, Math.ceil((Math.min(ends[k]!, x.shape[ax]!) - starts[k]!) / steps[k]!));
      });
      const st = strides(x.shape);
      return gatherBy(x, node.dtype, shape, (idx) => idx.reduce((o, v, d) => o + (start[d]! + v * step[d]!) * st[d]!, 0));
    }
    case 'Pad': {
      const pads = a.pads as number[];
      const r = x.shape.length;
      const shape = x.shape.map((d, i) => d + pads[i]! + pads[i + r]!);
      const st = strides(x.shape);
      return gatherBy(x, node.dtype, shape, (idx) => {
        let o = 0;
        for (let d = 0; d < r; d++) {
          const v = idx[d]! - pads[d]!;
          if (v < 0 || v >= x.shape[d]!) return null;
          o += v * st[d]!;
        }
        return o;
      });
    }
    case 'Gather': {
      const rows = x.shape[0]!;
      const rowSize = size(x.shape.slice(1));
      const idx = y.data as BigInt64Array;
      const shape = [...y.shape, ...x.shape.slice(1)];
      const data = newData(node.dtype, size(shape));
      for (let k = 0; k < idx.length; k++) {
        let r = Number(idx[k]!);
        if (r < -rows || r >= rows) throw new Error(`interp Gather: index ${r} out of range for ${rows} rows`);
        if (r < 0) r += rows; // negative indices count from the end, as in ONNX Gather
        for (let t = 0; t < rowSize; t++) (data as unknown as Num[])[k * rowSize + t] = asNum(x.data)[r * rowSize + t]!;
      }
      return { shape, data };
    }
    case 'ScatterAddRows': {
      const rows = a.rows as number;
      const idx = x.data as BigInt64Array;
      const rest = y.shape.slice(x.shape.length);
      const rowSize = size(rest);
      const out = new Float64Array(rows * rowSize);
      const U = y.data as Float64Array;
      for (let k = 0; k < idx.length; k++) {
        let r = Number(idx[k]!);
        if (r < -rows || r >= rows) throw new Error(`interp ScatterAddRows: index ${r} out of range for ${rows} rows`);
        if (r < 0) r += rows;
        for (let t = 0; t < rowSize; t++) out[r * rowSize + t] += U[k * rowSize + t]!;
      }
      return { shape: [rows, ...rest], data: out };
    }
    case 'ReduceSum':
      return reduce(x, a.axes as number[], a.keepdims as boolean, 0, (s, v) => s + v);
    case 'ReduceMax':
      return reduce(x, a.axes as number[], a.keepdims as boolean, -Infinity, (m, v) => (Number.isNaN(m) || Number.isNaN(v) ? NaN : Math.max(m, v)));
    case 'Softmax':
      return softmax(x, a.axis as number, false);
    case 'LogSoftmax':
      return softmax(x, a.axis as number, true);
    default: {
      const never: never = op;
      throw new Error(`interp: no implementation for op ${String(never)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Entry point

/**
 * Evaluate `outputs` on `feeds` (keyed by input name). Each reachable node is computed once.
 * Returns, per output, its concrete shape and data (float as Float64Array, int64 as BigInt64Array,
 * bool as Uint8Array).
 */
export function evaluate(outputs: readonly Tensor[], feeds: Record<string, Feed>, opts: EvalOptions = {}): Value[] {
  const precision = opts.precision ?? 'float64';
  const round = precision === 'float32' ? Math.fround : (v: number) => v;
  const order = topoSort(outputs.map((t) => t.node));
  const inputs = order.filter((n) => n.op === 'Input');
  const names = new Map<string, Node>();
  for (const n of inputs) {
    const name = n.attrs.name as string;
    const prev = names.get(name);
    if (prev && prev !== n) throw new Error(`evaluate: two different inputs are named '${name}'`);
    names.set(name, n);
    if (feeds[name] === undefined) throw new Error(`evaluate: missing feed for input '${name}' ${shapeToString(n.shape)}`);
  }
  const dims = resolveDims(inputs, feeds, opts.dims ?? {});
  const shapeOf = (s: Shape) => concrete(s, dims, 'a shape');
  const values = new Map<Node, Value>();
  for (const node of order) {
    const shape = concrete(node.shape, dims, `${node.op} #${node.id}`);
    let v: Value;
    if (node.op === 'Input') {
      v = { shape, data: readFeed(node, feeds[node.attrs.name as string], shape, round) };
    } else if (node.op === 'Constant') {
      const value = node.attrs.value as Data;
      if (value.length !== size(shape)) throw new Error(`evaluate: Constant #${node.id} has ${value.length} values for ${shapeToString(shape)}`);
      v = { shape, data: value instanceof Float64Array ? value.map(round) : value.slice() };
    } else {
      v = evalNode(node, node.inputs.map((i) => values.get(i)!), shapeOf);
      if (!sameDims(v.shape, shape)) {
        throw new Error(`evaluate: ${node.op} #${node.id} computed shape ${shapeToString(v.shape)} but was traced as ${shapeToString(node.shape)} = ${shapeToString(shape)}`);
      }
      const want = node.dtype === 'float32' ? Float64Array : node.dtype === 'int64' ? BigInt64Array : Uint8Array;
      if (!(v.data instanceof want)) throw new Error(`evaluate: ${node.op} #${node.id} produced the wrong dtype for ${node.dtype}`);
      if (precision === 'float32' && v.data instanceof Float64Array) {
        const d = v.data;
        for (let i = 0; i < d.length; i++) d[i] = Math.fround(d[i]!);
      }
    }
    values.set(node, v);
  }
  return outputs.map((t) => {
    const v = values.get(t.node)!;
    return { shape: [...v.shape], data: v.data };
  });
}
