/**
 * Reverse-mode automatic differentiation over traced graphs.
 *
 * Each primitive's VJP rule (ops/vjp.ts) is written with the same tensor ops, so a gradient is just
 * more graph: it is exported, interpreted and run like any other. Cotangents of nodes used more than
 * once are summed. Composites may bring a rule of their own (custom-vjp.ts).
 */
import { Node, sameShape, shapeToString, topoSort, type Primitive } from './graph.ts';
import { customVjpOf } from './custom-vjp.ts';
import { vjpRules } from './ops/vjp.ts';
import { Tensor, add, expand } from './tensor.ts';
import { treeFlatten, treeFromFlat, type Tree } from './tree.ts';

/**
 * Cotangents of `wrt` for the scalar (or seeded) `output`. Entries are null where `output` does
 * not depend on the input.
 */
export function vjp(output: Tensor, wrt: readonly Tensor[], seed?: Tensor): (Tensor | null)[] {
  if (!seed) {
    if (output.shape.length !== 0) throw new Error(`grad: output must be a scalar, got ${shapeToString(output.shape)}; pass a seed cotangent`);
    seed = constOne();
  } else if (!sameShape(seed.shape, output.shape)) {
    throw new Error(`grad: seed ${shapeToString(seed.shape)} does not match output ${shapeToString(output.shape)}`);
  }
  const order = topoSort([output.node]);
  // Only nodes on a path from some `wrt` to the output need cotangents.
  const wrtSet = new Set(wrt.map((t) => t.node));
  const needed = new Set<Node>();
  for (const n of order) {
    if (wrtSet.has(n) || n.inputs.some((i) => needed.has(i))) {
      if (n.dtype === 'float32' && n.op !== 'StopGradient') needed.add(n);
    }
  }
  const cot = new Map<Node, Tensor>();
  cot.set(output.node, seed);
  for (let k = order.length - 1; k >= 0; k--) {
    const n = order[k]!;
    const g = cot.get(n);
    if (!g || !needed.has(n) || n.inputs.length === 0) continue;
    // a composite's own gradient (custom-vjp.ts) replaces the walk through its inside
    const custom = customVjpOf(n);
    if (!custom && !n.inputs.some((i) => needed.has(i))) continue;
    const inputs = custom?.inputs ?? n.inputs;
    const gs = custom ? custom.rule(g) : vjpRules[n.op as Primitive](g, n, n.inputs.map((i) => new Tensor(i)), new Tensor(n)); // a node with inputs is a primitive
    if (gs.length !== inputs.length) throw new Error(`grad: the VJP of ${n.op} gave ${gs.length} cotangents for ${inputs.length} inputs`);
    inputs.forEach((inp, i) => {
      const gi = gs[i];
      if (!gi || !needed.has(inp)) return;
      if (!sameShape(gi.shape, inp.shape)) {
        throw new Error(`grad: VJP of ${n.op} gave ${shapeToString(gi.shape)} for input ${shapeToString(inp.shape)}`);
      }
      const prev = cot.get(inp);
      cot.set(inp, prev ? add(prev, gi) : gi); // shared inputs: cotangents add up
    });
  }
  return wrt.map((t) => cot.get(t.node) ?? null);
}

function constOne(): Tensor {
  return new Tensor(new Node('Constant', [], { value: new Float64Array([1]), shape: [] }, [], 'float32'));
}

function zerosLike(t: Tensor): Tensor {
  const z = new Tensor(new Node('Constant', [], { value: new Float64Array([0]), shape: [] }, [], 'float32'));
  return t.rank === 0 ? z : expand(z, t.shape);
}

/**
 * `valueAndGrad(f)(params, ...rest)`: traces the scalar loss f(params, ...rest) and the gradient of
 * that loss with respect to every leaf of the `params` tree (zeros where it does not depend on one).
 * `f` may return a tensor or `{ loss, aux }`; `aux` is passed through untouched.
 */
export function valueAndGrad<A extends unknown[], X = undefined>(
  f: (params: Tree<Tensor>, ...rest: A) => Tensor | { loss: Tensor; aux: X },
): (params: Tree<Tensor>, ...rest: A) => { value: Tensor; grads: Tree<Tensor>; aux: X | undefined } {
  return (params, ...rest) => {
    const out = f(params, ...rest);
    const value = out instanceof Tensor ? out : out.loss;
    const aux = out instanceof Tensor ? undefined : out.aux;
    const leaves = treeFlatten(params);
    const gs = vjp(value, leaves.map(([, t]) => t));
    const flat = new Map<string, Tensor>();
    leaves.forEach(([path, t], i) => flat.set(path, gs[i] ?? zerosLike(t)));
    return { value, grads: treeFromFlat(params, flat), aux };
  };
}

/** `grad(f)(params, ...rest)`: only the gradient tree of `valueAndGrad`. */
export function grad<A extends unknown[]>(f: (params: Tree<Tensor>, ...rest: A) => Tensor): (params: Tree<Tensor>, ...rest: A) => Tree<Tensor> {
  const vg = valueAndGrad(f);
  return (params, ...rest) => vg(params, ...rest).grads;
}

