/**
 * Parameter trees (nested objects / arrays with tensors or arrays at the leaves), flattened to
 * dotted paths such as `down.0.conv1.weight`. Paths are stable (object keys in insertion order),
 * so they double as ONNX input names and safetensors keys.
 */
export type Tree<T> = T | readonly Tree<T>[] | { readonly [key: string]: Tree<T> };

/** A parameter (or optimiser state) value: float32 data with its shape, the leaf of a parameter tree. */
export interface ParamValue {
  shape: number[];
  data: Float32Array;
}

function isBranch(x: unknown): x is readonly unknown[] | Record<string, unknown> {
  if (Array.isArray(x)) return true;
  if (x === null || typeof x !== 'object') return false;
  const proto = Object.getPrototypeOf(x);
  if (proto !== Object.prototype && proto !== null) return false;
  // { shape, data: TypedArray } records (parameter values) are leaves
  return !ArrayBuffer.isView((x as { data?: unknown }).data);
}

/** Leaves of a tree as [path, leaf] pairs, depth first. Typed arrays, class instances and
 * `{ shape, data: TypedArray }` records are leaves. */
export function treeFlatten<T>(tree: Tree<T>, prefix = ''): [string, T][] {
  const out: [string, T][] = [];
  const walk = (node: unknown, path: string): void => {
    if (isBranch(node)) {
      const entries = Array.isArray(node) ? node.map((v, i) => [String(i), v] as const) : Object.entries(node);
      for (const [k, v] of entries) walk(v, path ? `${path}.${k}` : k);
    } else {
      out.push([path, node as T]);
    }
  };
  walk(tree, prefix);
  return out;
}

/** A tree of the same structure with each leaf mapped (the path is passed along). */
export function treeMap<T, U>(tree: Tree<T>, fn: (leaf: T, path: string) => U, prefix = ''): Tree<U> {
  const walk = (node: unknown, path: string): unknown => {
    if (Array.isArray(node)) return node.map((v, i) => walk(v, path ? `${path}.${i}` : String(i)));
    if (isBranch(node)) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(node)) out[k] = walk(v, path ? `${path}.${k}` : k);
      return out;
    }
    return fn(node as T, path);
  };
  return walk(tree, prefix) as Tree<U>;
}

/** Rebuild a tree shaped like `like` from a path -> leaf lookup; missing paths are an error. */
export function treeFromFlat<T, U>(like: Tree<T>, leaves: ReadonlyMap<string, U> | Record<string, U>): Tree<U> {
  const get = (p: string): U => {
    const v = leaves instanceof Map ? leaves.get(p) : (leaves as Record<string, U>)[p];
    if (v === undefined) throw new Error(`missing leaf '${p}'`);
    return v;
  };
  return treeMap(like, (_leaf, path) => get(path));
}
