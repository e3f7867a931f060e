/**
 * A slow, obviously-correct reference interpreter of the IR (jax-js style reference backend).
 *
 * Each primitive is computed by its reference implementation (ops/interp.ts), plain loops with no
 * cleverness, so this can serve as the ground truth for the ONNX lowering, for finite-difference
 * gradient checks and for debugging. Each op's output shape is recomputed from its inputs and
 * attributes and checked against the traced shape, so the interpreter is an independent check of the
 * shape rules in ops/shape.ts.
 *
 * In 'float32' precision every float result (feeds and constants included) is rounded with
 * `Math.fround` after each op, mimicking float32 execution (inner sums of MatMul / Conv / reductions
 * are accumulated in double and rounded once, which is at least as accurate as a float32 kernel);
 * in 'float64' everything stays double.
 */
import { Node, shapeToString, topoSort, type Dim, type Primitive, type Shape } from './graph.ts';
import { interpRules, size, type Data, type Value } from './ops/interp.ts';
import type { Tensor } from './tensor.ts';

export { erf } from './ops/interp.ts';
export type { Data, Value } from './ops/interp.ts';

export type Feed = Float64Array | Float32Array | BigInt64Array | Int32Array | Uint8Array | number[];

export interface EvalOptions {
  /** 'float64' (default) keeps everything double; 'float32' rounds every float result. */
  precision?: 'float64' | 'float32';
  /** Values of symbolic dims; those not given are inferred from the feed lengths. */
  dims?: Record<string, number>;
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
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
      v = interpRules[node.op as Primitive](node.inputs.map((i) => values.get(i)!), node, shapeOf);
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
