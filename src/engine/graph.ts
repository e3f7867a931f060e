/**
 * The engine's intermediate representation: a DAG of primitive ops with static shapes.
 *
 * Every traced function is a set of output `Node`s; the graph is what those outputs reach. Nodes are
 * immutable and carry their inferred shape and dtype, so shape errors surface at trace time.
 * A shape entry is a number, or a string naming a symbolic dimension (e.g. the batch `'N'`), which
 * the ONNX export writes as a `dim_param`.
 *
 * The primitive set (`PRIMITIVES`) is deliberately small; everything else (silu, groupNorm, softmax
 * cross-entropy, upsampling, ...) is composed from it in tensor.ts.
 */

export type DType = 'float32' | 'int64' | 'bool';
export type Dim = number | string;
export type Shape = readonly Dim[];

/**
 * The primitive ops. Each has one entry in each of four tables, all under ops/ and keyed by op:
 * its shape rule (ops/shape.ts), its VJP (ops/vjp.ts), its reference implementation (ops/interp.ts)
 * and its ONNX lowering (ops/lower.ts). The tables are typed `Record<Primitive, ...>`, so a name added
 * here makes the compiler list the rules it still lacks. Attribute semantics are noted per op.
 */
export const PRIMITIVES = [
  // elementwise binary, numpy broadcasting
  'Add', 'Sub', 'Mul', 'Div', 'Max', 'Min', 'Pow', // Pow: tensor ** tensor (broadcast)
  'Less', 'Greater', 'Equal', // -> bool
  'Where', // (cond bool, a, b)
  // elementwise unary
  'Neg', 'Exp', 'Log', 'Sqrt', 'Tanh', 'Sigmoid', 'Sin', 'Cos', 'Abs', 'Relu', 'Erf',
  'Cast', // attrs.to: DType
  'StopGradient', // identity forward, zero gradient (exported as Identity)
  // linear algebra
  'MatMul', // numpy matmul semantics for rank >= 2, leading dims broadcast
  'Conv', // (x[N,C,H,W], w[O,C/g,kh,kw]) attrs.strides [2], attrs.pads [4] (top,left,bottom,right), attrs.group
  'ConvTranspose', // (y[N,O,H,W], w[O,C/g,kh,kw]) attrs: strides, pads, group, outputPadding [2]; gradient of Conv wrt x
  // shape
  'Reshape', // attrs.shape (may contain symbolic dims)
  'Transpose', // attrs.perm
  'Expand', // attrs.shape: broadcast to shape
  'Concat', // attrs.axis
  'Slice', // attrs.starts, ends, axes, steps (all normalised: non-negative, in range)
  'Pad', // attrs.pads [2*rank] (begins..., ends...), zero constant padding
  'Gather', // (table, indices int64) axis 0 only: out = table[indices]
  'ScatterAddRows', // (indices int64 [K], updates [K, ...rest]) attrs.rows -> [rows, ...rest], sum of updates per row
  // reductions
  'ReduceSum', // attrs.axes (sorted, non-negative), attrs.keepdims
  'ReduceMax', // attrs.axes, attrs.keepdims
  'Softmax', // attrs.axis (last axis only in practice)
  'LogSoftmax', // attrs.axis
] as const;

export type Primitive = (typeof PRIMITIVES)[number];

/** Node ops: the two leaves (a graph input, attrs.name; a constant, attrs.value: Float64Array (float32) |
 * BigInt64Array (int64) | Uint8Array (bool) and attrs.shape) and the primitives. */
export type OpType = 'Input' | 'Constant' | Primitive;

export interface Attrs {
  [key: string]: unknown;
}

/** The attributes of Conv and of ConvTranspose (which alone has `outputPadding`). */
export interface ConvAttrs {
  strides: [number, number];
  /** top, left, bottom, right */
  pads: [number, number, number, number];
  group: number;
  outputPadding?: [number, number];
}

let nextId = 0;

/** One node of the DAG. `id` orders nodes by creation, which is a valid topological order. */
export class Node {
  readonly id: number;
  constructor(
    readonly op: OpType,
    readonly inputs: readonly Node[],
    readonly attrs: Attrs,
    readonly shape: Shape,
    readonly dtype: DType,
  ) {
    this.id = nextId++;
  }
}

/** All nodes reachable from `outputs`, in topological order (inputs before users). */
export function topoSort(outputs: readonly Node[]): Node[] {
  const seen = new Set<Node>();
  const order: Node[] = [];
  // iterative DFS: graphs of big models are deeper than the JS call stack is comfortable with
  const stack: [Node, number][] = [];
  for (const out of outputs) {
    if (seen.has(out)) continue;
    seen.add(out);
    stack.push([out, 0]);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const [node, i] = top;
      if (i < node.inputs.length) {
        top[1] = i + 1;
        const child = node.inputs[i]!;
        if (!seen.has(child)) {
          seen.add(child);
          stack.push([child, 0]);
        }
      } else {
        stack.pop();
        order.push(node);
      }
    }
  }
  return order;
}

// ---------------------------------------------------------------------------------------------
// Shapes

export function shapeToString(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function isStatic(shape: Shape): shape is readonly number[] {
  return shape.every((d) => typeof d === 'number');
}

/** Number of elements; throws for symbolic shapes. */
export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number') throw new Error(`numel of symbolic shape ${shapeToString(shape)}`);
    n *= d;
  }
  return n;
}

/** Product of dims, with symbolic dims kept as a symbolic factor list (for reshape checks). */
export function dimProduct(shape: Shape): { n: number; symbols: string[] } {
  let n = 1;
  const symbols: string[] = [];
  for (const d of shape) {
    if (typeof d === 'number') n *= d;
    else symbols.push(d);
  }
  symbols.sort();
  return { n, symbols };
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** numpy broadcasting of two shapes; returns null when incompatible. */
export function broadcastShapes(a: Shape, b: Shape): Dim[] | null {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)]!;
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)]!;
    if (da === db) out.push(da);
    else if (da === 1) out.push(db);
    else if (db === 1) out.push(da);
    else return null;
  }
  return out;
}

/** Row-major strides of a static shape. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** The signature of an exported graph: its named inputs and outputs (what toOnnx writes and a CompiledFunction feeds). */
export interface OnnxModelInfo {
  inputs: { name: string; shape: Dim[]; dtype: DType }[];
  outputs: { name: string; shape: Dim[]; dtype: DType }[];
}
