/**
 * Composites with a gradient of their own (JAX's custom_vjp, PyTorch's autograd.Function): the forward is traced
 * from primitives as usual, so the forward graph (and every inference export) is unchanged, but autodiff takes the
 * composite's cotangents from a rule instead of walking back through its inside. What the rule references is what the
 * training graph keeps alive from the forward pass to the backward one: a rule that needs fewer or smaller tensors
 * than the primitives' own VJPs lowers the step's peak memory and its copies (issue 17: GroupNorm + SiLU kept five
 * activation-size tensors through their primitives, PyTorch's own kernels keep three).
 *
 * The rule is attached to the composite's output node. Nodes inside the composite get no cotangent from it; if one
 * of them is also used outside the composite, that use's cotangent still flows back through the primitives, and the
 * two contributions add up at the inputs, as they should.
 */
import type { Node } from './graph.ts';
import type { Tensor } from './tensor.ts';

/** The cotangents of the composite's inputs (null: none) from the cotangent `g` of its output. */
export type CustomVjpRule = (g: Tensor) => (Tensor | null)[];

interface CustomVjp {
  inputs: readonly Node[];
  rule: CustomVjpRule;
}

const rules = new WeakMap<Node, CustomVjp>();

/**
 * Give the composite `y` = f(inputs) the gradient `rule` (a closure over whatever forward tensors it needs).
 * Returns `y`. `inputs` must be ancestors of `y`.
 */
export function withVjp(y: Tensor, inputs: readonly (Tensor | null)[], rule: CustomVjpRule): Tensor {
  rules.set(y.node, { inputs: inputs.map((t) => t?.node ?? null).filter((n): n is Node => n !== null), rule: withNulls(inputs, rule) });
  return y;
}

/** The rule of a composite whose optional inputs may be null: its cotangents lined up with the non-null inputs. */
function withNulls(inputs: readonly (Tensor | null)[], rule: CustomVjpRule): CustomVjpRule {
  if (inputs.every((t) => t !== null)) return rule;
  return (g) => rule(g).filter((_, i) => inputs[i] !== null);
}

/** The custom rule of `n`, if a composite defined one. */
export function customVjpOf(n: Node): CustomVjp | undefined {
  return rules.get(n);
}
