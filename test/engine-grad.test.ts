/**
 * Finite-difference gradient checks for every primitive and composite of tensor.ts.
 *
 * For f and random inputs x, the scalar loss L(x) = Σ f(x) ⊙ W (W fixed random, so every output
 * element matters) is differentiated by autodiff and by central differences
 *   ∂L/∂x_j ≈ (L(x + h e_j) − L(x − h e_j)) / 2h,   h = 1e-5 · max(1, |x_j|),
 * both evaluated by the float64 reference interpreter. Inputs are drawn away from kinks and ties
 * (relu/abs at 0, clip bounds, max/min ties) where the derivative is not defined.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/engine/tensor.ts';
import { Tensor } from '../src/engine/tensor.ts';
import { vjp } from '../src/engine/autodiff.ts';
import { topoSort } from '../src/engine/graph.ts';
import { evaluate } from '../src/engine/interp.ts';
import { assertClose, mulberry32 } from './helpers.ts';

// ---------------------------------------------------------------------------------------------


type Rand = () => number;
const normal = (r: Rand): number => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());

/** How to draw an input: a named distribution, a custom draw, or fixed values. */
type Gen = 'normal' | 'positive' | 'awayFromZero' | ((r: Rand) => number);
interface Spec {
  shape: number[];
  gen?: Gen;
  values?: number[];
}

function draw(spec: Spec, r: Rand): Float64Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  if (spec.values) {
    assert.equal(spec.values.length, n);
    return Float64Array.from(spec.values);
  }
  const gen = spec.gen ?? 'normal';
  const one = (): number => {
    if (gen === 'normal') return normal(r);
    if (gen === 'positive') return 0.5 + 1.5 * r(); // [0.5, 2): log, sqrt, pow base, divisors
    if (gen === 'awayFromZero') return (r() < 0.5 ? -1 : 1) * (0.2 + 1.8 * r());
    return gen(r);
  };
  return Float64Array.from({ length: n }, one);
}

let seedCounter = 1;

/**
 * Check autodiff against central differences for f at random inputs drawn from `specs`.
 * Tolerance: |ad − fd| ≤ 1e-6 · max(1, max|fd|) + 1e-6 · |fd|.
 */
function checkGrad(name: string, f: (...xs: Tensor[]) => Tensor, specs: Spec[], tol = 1e-6): void {
  const r = mulberry32(0x5eed + 7919 * seedCounter++);
  const xs = specs.map((s, i) => T.input(`x${i}`, s.shape));
  const y = f(...xs);
  assert.equal(y.dtype, 'float32', `${name}: output must be float`);
  const yShape = y.shape as number[];
  const wData = draw({ shape: yShape }, r);
  const loss = T.sum(T.mul(y, T.constant(wData, yShape)));
  const grads = vjp(loss, xs);

  const base: Record<string, Float64Array> = {};
  specs.forEach((s, i) => (base[`x${i}`] = draw(s, r)));
  const adOut = evaluate([loss, ...grads.filter((g): g is Tensor => g !== null)], base);
  let k = 1;
  const ad = grads.map((g, i) => (g === null ? new Float64Array(base[`x${i}`]!.length) : (adOut[k++]!.data as Float64Array)));

  const lossAt = (feeds: Record<string, Float64Array>): number => (evaluate([loss], feeds)[0]!.data as Float64Array)[0]!;
  specs.forEach((_s, i) => {
    const key = `x${i}`;
    const x0 = base[key]!;
    const fd = new Float64Array(x0.length);
    for (let j = 0; j < x0.length; j++) {
      const h = 1e-5 * Math.max(1, Math.abs(x0[j]!));
      const xp = x0.slice();
      const xm = x0.slice();
      xp[j] = x0[j]! + h;
      xm[j] = x0[j]! - h;
      fd[j] = (lossAt({ ...base, [key]: xp }) - lossAt({ ...base, [key]: xm })) / (xp[j]! - xm[j]!);
    }
    const scale = Math.max(1, ...Array.from(fd, Math.abs));
    assertClose(ad[i]!, fd, { atol: tol * scale, rtol: tol }, `${name}: d loss / d x${i} ${JSON.stringify(specs[i]!.shape)} (autodiff vs central differences)`);
  });
}

const c = (values: number[], shape: number[]): Tensor => T.constant(values, shape);
const idx = (values: number[], shape: number[]): Tensor => T.constant(values, shape, 'int64');

// ---------------------------------------------------------------------------------------------
// Elementwise

test('grad: add / sub / mul / div with broadcasting in both directions', () => {
  checkGrad('add [2,3]+[3]', T.add, [{ shape: [2, 3] }, { shape: [3] }]);
  checkGrad('add [3,1]+[1,4]', T.add, [{ shape: [3, 1] }, { shape: [1, 4] }]);
  checkGrad('add []+[2,2]', T.add, [{ shape: [] }, { shape: [2, 2] }]);
  checkGrad('sub [3]-[2,3]', T.sub, [{ shape: [3] }, { shape: [2, 3] }]);
  checkGrad('sub [2,1,3]-[4,1]', T.sub, [{ shape: [2, 1, 3] }, { shape: [4, 1] }]);
  checkGrad('mul [2,1,3]*[4,3]', T.mul, [{ shape: [2, 1, 3] }, { shape: [4, 3] }]);
  checkGrad('mul [2,3]*number', (a) => T.mul(a, 2.5), [{ shape: [2, 3] }]);
  checkGrad('div [2,3]/[2,1]', T.div, [{ shape: [2, 3] }, { shape: [2, 1], gen: 'positive' }]);
  checkGrad('div [1,3]/[2,3]', T.div, [{ shape: [1, 3] }, { shape: [2, 3], gen: 'awayFromZero' }]);
  checkGrad('div number/[4]', (a) => T.div(1, a), [{ shape: [4], gen: 'positive' }]);
});

test('grad: maximum / minimum (no ties) and clip (away from the bounds)', () => {
  checkGrad('maximum [2,3],[3]', T.maximum, [{ shape: [2, 3] }, { shape: [3] }]);
  checkGrad('maximum [3],[2,3]', T.maximum, [{ shape: [3] }, { shape: [2, 3] }]);
  checkGrad('minimum [2,3],[2,1]', T.minimum, [{ shape: [2, 3] }, { shape: [2, 1] }]);
  checkGrad('maximum with number', (a) => T.maximum(a, 0.1), [{ shape: [6], gen: 'awayFromZero' }]);
  const awayFromBounds = (r: Rand): number => {
    for (;;) {
      const v = -1.5 + 3 * r();
      if (Math.abs(Math.abs(v) - 0.5) > 0.05) return v;
    }
  };
  checkGrad('clip', (a) => T.clip(a, -0.5, 0.5), [{ shape: [3, 4], gen: awayFromBounds }]);
});

test('grad: pow by constant 3 and by tensor', () => {
  checkGrad('pow(x, 3)', (a) => T.pow(a, 3), [{ shape: [2, 3] }]);
  checkGrad('pow(x, 2) (mul path)', (a) => T.pow(a, 2), [{ shape: [5] }]);
  checkGrad('pow(x, 0.5) (sqrt path)', (a) => T.pow(a, 0.5), [{ shape: [5], gen: 'positive' }]);
  checkGrad('pow(x, -1.5)', (a) => T.pow(a, -1.5), [{ shape: [5], gen: 'positive' }]);
  checkGrad('pow(a[2,3], b[3])', T.pow, [{ shape: [2, 3], gen: 'positive' }, { shape: [3] }]);
  // at x = 0 the gradient is 3·0² = 0 (a rule written as b·y/a would give 0/0 = NaN)
  const x = T.input('x', [3]);
  const [g] = vjp(T.sum(T.pow(x, 3)), [x]);
  assertClose(evaluate([g!], { x: [0, 1, -2] })[0]!.data as Float64Array, [0, 3, 12], { atol: 0 }, 'd/dx x³ at 0, 1, -2');
});

test('grad: where with broadcasting', () => {
  const cond = T.constant([1, 0, 1, 0, 0, 1], [2, 3], 'bool');
  checkGrad('where(cond[2,3], a[3], b[2,1])', (a, b) => T.where(cond, a, b), [{ shape: [3] }, { shape: [2, 1] }]);
  checkGrad('where(x > 0, x*x, -x)', (a) => T.where(T.greater(a, 0), T.mul(a, a), T.neg(a)), [{ shape: [8], gen: 'awayFromZero' }]);
  checkGrad('where(cond, a, number)', (a) => T.where(cond, a, 3), [{ shape: [2, 3] }]);
});

test('grad: unary ops', () => {
  const s = [2, 3];
  checkGrad('neg', T.neg, [{ shape: s }]);
  checkGrad('exp', T.exp, [{ shape: s }]);
  checkGrad('log', T.log, [{ shape: s, gen: 'positive' }]);
  checkGrad('sqrt', T.sqrt, [{ shape: s, gen: 'positive' }]);
  checkGrad('rsqrt', T.rsqrt, [{ shape: s, gen: 'positive' }]);
  checkGrad('square', T.square, [{ shape: s }]);
  checkGrad('tanh', T.tanh, [{ shape: s }]);
  checkGrad('sigmoid', T.sigmoid, [{ shape: s }]);
  checkGrad('silu', T.silu, [{ shape: s }]);
  checkGrad('sin', T.sin, [{ shape: s }]);
  checkGrad('cos', T.cos, [{ shape: s }]);
  checkGrad('abs', T.abs, [{ shape: s, gen: 'awayFromZero' }]);
  checkGrad('relu', T.relu, [{ shape: [3, 4], gen: 'awayFromZero' }]);
  checkGrad('erf', T.erf, [{ shape: [3, 4], gen: (r) => 3 * normal(r) }]);
});

test('grad: cast', () => {
  // bool -> float mask: no gradient through the mask, only through the other factor
  checkGrad('x * cast(x > 0)', (a) => T.mul(a, T.cast(T.greater(a, 0), 'float32')), [{ shape: [8], gen: 'awayFromZero' }]);
  // int64 -> float constant factor
  checkGrad('x * cast(int64)', (a) => T.mul(a, T.cast(idx([1, -2, 3], [3]), 'float32')), [{ shape: [2, 3] }]);
  checkGrad('cast(x, float32) is identity', (a) => T.cast(a, 'float32'), [{ shape: [4] }]);
});

test('grad: stopGradient has zero gradient', () => {
  const x = T.input('x', [5]);
  assert.deepEqual(vjp(T.sum(T.stopGradient(x)), [x]), [null]);
  // d/dx Σ w ⊙ sg(x) ⊙ x = w ⊙ x (the stopped factor is treated as a constant)
  const w = [0.5, -1, 2, 3, -0.25];
  const [g] = vjp(T.sum(T.mul(T.mul(T.stopGradient(x), x), c(w, [5]))), [x]);
  const xv = [1, 2, -3, 0.5, 4];
  const [gv] = evaluate([g!], { x: xv });
  assertClose(gv!.data as Float64Array, xv.map((v, i) => w[i]! * v), { atol: 0, rtol: 0 }, 'grad of sg(x)·x');
  const [fwd] = evaluate([T.stopGradient(x)], { x: xv });
  assertClose(fwd!.data as Float64Array, xv, { atol: 0 }, 'stopGradient forward is identity');
});

test('grad: shared input f(x) = x*x + x and longer fan-out', () => {
  checkGrad('x*x + x', (a) => T.add(T.mul(a, a), a), [{ shape: [2, 3] }]);
  checkGrad('x * sin(x) / (1 + exp(x))', (a) => T.div(T.mul(a, T.sin(a)), T.add(T.exp(a), 1)), [{ shape: [6] }]);
});

// ---------------------------------------------------------------------------------------------
// Linear algebra

test('grad: matmul 2-D, batched with broadcast, and the rank-2-b fold path', () => {
  checkGrad('matmul [3,4]@[4,2]', T.matmul, [{ shape: [3, 4] }, { shape: [4, 2] }]);
  checkGrad('matmul [2,1,3,4]@[3,4,2]', T.matmul, [{ shape: [2, 1, 3, 4] }, { shape: [3, 4, 2] }]);
  checkGrad('matmul [3,4]@[2,4,5]', T.matmul, [{ shape: [3, 4] }, { shape: [2, 4, 5] }]);
  checkGrad('matmul [2,3,4]@[4,5] (fold)', T.matmul, [{ shape: [2, 3, 4] }, { shape: [4, 5] }]);
  checkGrad('matmul [2,2,3,4]@[4,2] (fold)', T.matmul, [{ shape: [2, 2, 3, 4] }, { shape: [4, 2] }]);
  // the fold path really is taken: dL/db is one rank-2 MatMul, no batched MatMul + ReduceSum
  const a = T.input('a', [2, 3, 4]);
  const b = T.input('b', [4, 5]);
  const [, gb] = vjp(T.sum(T.matmul(a, b)), [a, b]);
  const mm = topoSort([gb!.node]).filter((n) => n.op === 'MatMul');
  assert.equal(mm.length, 1);
  assert.deepEqual(mm[0]!.shape, [4, 5]);
});

test('grad: linear', () => {
  checkGrad('linear [2,3,4]x[4,5]+[5]', (x, w, b) => T.linear(x, w, b), [{ shape: [2, 3, 4] }, { shape: [4, 5] }, { shape: [5] }]);
  checkGrad('linear [4] (rank 1)', (x, w) => T.linear(x, w), [{ shape: [4] }, { shape: [4, 3] }]);
});

test('grad: conv2d strides 1/2, padding 0/1, odd/even sizes, groups 1/2, 1x1/3x3, bias', () => {
  const cases: { name: string; x: number[]; w: number[]; opts: T.Conv2dOptions }[] = [
    { name: '7x7 3x3 s1 p1', x: [2, 3, 7, 7], w: [4, 3, 3, 3], opts: { padding: 1 } },
    { name: '7x7 3x3 s2 p0', x: [1, 2, 7, 7], w: [3, 2, 3, 3], opts: { stride: 2 } },
    { name: '8x8 3x3 s2 p0 (drops a row)', x: [1, 2, 8, 8], w: [3, 2, 3, 3], opts: { stride: 2 } },
    { name: '8x8 3x3 s2 p1 g2', x: [1, 4, 8, 8], w: [4, 2, 3, 3], opts: { stride: 2, padding: 1, groups: 2 } },
    { name: '7x7 3x3 s2 p1 g2', x: [2, 2, 7, 7], w: [4, 1, 3, 3], opts: { stride: 2, padding: 1, groups: 2 } },
    { name: '5x6 1x1 s1 p0', x: [2, 4, 5, 6], w: [2, 4, 1, 1], opts: {} },
    { name: '7x7 1x1 s2 p0 g2', x: [1, 4, 7, 7], w: [2, 2, 1, 1], opts: { stride: 2, groups: 2 } },
    { name: '6x5 2x3 strides [1,2] pads [1,0,2,1]', x: [1, 2, 6, 5], w: [2, 2, 2, 3], opts: { stride: [1, 2], padding: [1, 0, 2, 1] } },
  ];
  for (const { name, x, w, opts } of cases) {
    checkGrad(`conv2d ${name} +bias`, (xi, wi, bi) => T.conv2d(xi, wi, bi, opts), [{ shape: x }, { shape: w }, { shape: [w[0]!] }]);
  }
  checkGrad('conv2d no bias', (xi, wi) => T.conv2d(xi, wi, null, { padding: 1 }), [{ shape: [1, 1, 4, 4] }, { shape: [2, 1, 3, 3] }]);
});

test('grad: convTranspose2d', () => {
  const opts = { strides: [2, 2] as [number, number], pads: [1, 1, 1, 1] as [number, number, number, number], group: 2, outputPadding: [1, 1] as [number, number] };
  checkGrad('convTranspose2d s2 p1 g2 op1', (y, w) => T.convTranspose2d(y, w, opts), [{ shape: [1, 4, 3, 3] }, { shape: [4, 1, 3, 3] }]);
  const opts1 = { strides: [1, 2] as [number, number], pads: [0, 1, 1, 0] as [number, number, number, number], group: 1, outputPadding: [0, 1] as [number, number] };
  checkGrad('convTranspose2d s[1,2] asym pads', (y, w) => T.convTranspose2d(y, w, opts1), [{ shape: [2, 2, 3, 4] }, { shape: [2, 3, 2, 3] }]);
});

// ---------------------------------------------------------------------------------------------
// Shape ops

test('grad: reshape, transpose, expand, upsampleNearest2x', () => {
  checkGrad('reshape', (a) => T.reshape(a, [3, -1]), [{ shape: [2, 3, 2] }]);
  checkGrad('flatten', (a) => T.flatten(a), [{ shape: [2, 3, 2] }]);
  checkGrad('transpose', (a) => T.transpose(a, [2, 0, 1]), [{ shape: [2, 3, 4] }]);
  checkGrad('expand [3,1]->[2,3,4]', (a) => T.expand(a, [2, 3, 4]), [{ shape: [3, 1] }]);
  checkGrad('upsampleNearest2x', T.upsampleNearest2x, [{ shape: [1, 2, 3, 3] }]);
});

test('grad: concat, slice (step 1/2, negative start), split, pad', () => {
  checkGrad('concat axis 1', (a, b, d) => T.concat([a, b, d], 1), [{ shape: [2, 1, 3] }, { shape: [2, 3, 3] }, { shape: [2, 2, 3] }]);
  checkGrad('concat axis -1', (a, b) => T.concat([a, b], -1), [{ shape: [2, 2] }, { shape: [2, 3] }]);
  checkGrad('slice step 1', (a) => T.slice(a, 1, 1, 4), [{ shape: [2, 5] }]);
  checkGrad('slice step 2', (a) => T.slice(a, 1, 0, undefined, 2), [{ shape: [2, 7] }]);
  checkGrad('slice step 2 odd tail', (a) => T.slice(a, 0, 1, 6, 2), [{ shape: [6, 2] }]);
  checkGrad('slice step 3 to end', (a) => T.slice(a, 0, 1, undefined, 3), [{ shape: [8] }]);
  checkGrad('slice negative start', (a) => T.slice(a, -1, -3), [{ shape: [2, 5] }]);
  checkGrad('slice negative start and end', (a) => T.slice(a, 0, -4, -1), [{ shape: [5, 2] }]);
  checkGrad('split', (a) => {
    const [p, q, r] = T.split(a, 1, [1, 2, 2]);
    return T.add(T.mul(p!, q!), r!);
  }, [{ shape: [2, 5] }]);
  checkGrad('pad', (a) => T.pad(a, [1, 0, 2, 0, 2, 1]), [{ shape: [2, 3, 2] }]);
});

test('grad: gather with repeated indices (gradients sum) and scatterAddRows', () => {
  checkGrad('gather [4,3] by [6]', (t) => T.gather(t, idx([0, 2, 2, 1, 0, 2], [6])), [{ shape: [4, 3] }]);
  checkGrad('gather [5] by [2,3]', (t) => T.gather(t, idx([4, 4, 0, 1, 4, 3], [2, 3])), [{ shape: [5] }]);
  checkGrad('scatterAddRows', (u) => T.scatterAddRows(idx([1, 3, 1, 0, 1], [5]), u, 4), [{ shape: [5, 2] }]);
});

// ---------------------------------------------------------------------------------------------
// Reductions and composites

test('grad: sum / mean over axes with keepdims both ways; max without ties', () => {
  for (const keep of [false, true]) {
    checkGrad(`sum axis 1 keepdims=${keep}`, (a) => T.sum(a, 1, keep), [{ shape: [2, 3, 4] }]);
    checkGrad(`sum axes [0,2] keepdims=${keep}`, (a) => T.sum(a, [0, -1], keep), [{ shape: [2, 3, 4] }]);
    checkGrad(`mean axes [1,2] keepdims=${keep}`, (a) => T.mean(a, [1, 2], keep), [{ shape: [2, 3, 4] }]);
    checkGrad(`max axis 1 keepdims=${keep}`, (a) => T.max(a, 1, keep), [{ shape: [2, 4, 3] }]);
  }
  checkGrad('sum all', (a) => T.sum(a), [{ shape: [2, 3] }]);
  checkGrad('mean all', (a) => T.mean(a), [{ shape: [2, 3] }]);
  checkGrad('max all', (a) => T.max(a), [{ shape: [2, 3] }]);
  checkGrad('max axes [0,2]', (a) => T.max(a, [0, 2]), [{ shape: [2, 3, 2] }]);
});

test('grad: softmax and logSoftmax', () => {
  checkGrad('softmax', (a) => T.softmax(a), [{ shape: [2, 5] }]);
  checkGrad('softmax rank 3', (a) => T.softmax(a, -1), [{ shape: [2, 2, 3] }]);
  checkGrad('logSoftmax', (a) => T.logSoftmax(a), [{ shape: [3, 4] }]);
});

test('grad: groupNorm, dropout with a fixed u', () => {
  checkGrad('groupNorm 2 groups, gamma, beta', (x, g, b) => T.groupNorm(x, 2, g, b), [{ shape: [2, 4, 3, 3] }, { shape: [4] }, { shape: [4] }]);
  checkGrad('groupNorm 1 group, no affine, rank 3', (x) => T.groupNorm(x, 1, null, null), [{ shape: [2, 3, 4] }]);
  // its own VJP (withVjp) with only one of gamma and beta
  checkGrad('groupNorm gamma only', (x, g) => T.groupNorm(x, 2, g, null), [{ shape: [2, 4, 3] }, { shape: [4] }]);
  checkGrad('groupNorm beta only', (x, b) => T.groupNorm(x, 4, null, b), [{ shape: [1, 4, 2, 2] }, { shape: [4] }]);
  // a use of the inside of a composite (here silu's input through another path) adds to its own rule's cotangent
  checkGrad('silu and its input reused', (x) => T.add(T.silu(x), T.mul(x, x)), [{ shape: [3, 4] }]);
  const r = mulberry32(42);
  const u = Array.from({ length: 12 }, () => r());
  checkGrad('dropout p=0.3', (x) => T.dropout(x, 0.3, c(u, [3, 4])), [{ shape: [3, 4] }]);
  checkGrad('dropout p=0.5, u broadcast', (x) => T.dropout(x, 0.5, c(u.slice(0, 4), [4])), [{ shape: [3, 4] }]);
});

/** The activation-size forward tensors (made by the loss's own graph) that the gradient graph reads: what a training step keeps. */
function keptForBackward(loss: Tensor, wrt: Tensor[]): string[] {
  const size = wrt[0]!.shape.join(',');
  const grads = vjp(loss, wrt).filter((g): g is Tensor => g !== null);
  const forward = new Set(topoSort([loss.node]));
  const kept = new Set<string>();
  for (const n of topoSort(grads.map((g) => g.node))) {
    if (forward.has(n)) continue;
    for (const i of n.inputs) if (forward.has(i) && i.op !== 'Input' && i.op !== 'Constant' && i.shape.join(',') === size) kept.add(`${i.op} [${i.shape.join(',')}]`);
  }
  return [...kept].sort();
}

test('grad: groupNorm + SiLU with their own VJPs (withVjp): finite differences, and what the backward keeps', () => {
  checkGrad('groupNormSilu', (x, g, b) => T.groupNormSilu(x, 2, g, b), [{ shape: [2, 4, 3, 3] }, { shape: [4] }, { shape: [4] }]);
  const x = T.input('x', [2, 4, 3, 3]);
  const gamma = T.input('gamma', [4]);
  const beta = T.input('beta', [4]);
  const w = T.input('w', [4, 4, 3, 3]);
  // the residual block's pattern: conv(silu(groupNorm(x))); the convolution keeps its own input, the silu output
  const block = (y: Tensor) => T.sum(T.conv2d(y, w, null, { padding: 1 }));
  // as one composite: x̂ (the Reshape after the normalisation) and the conv's input, nothing else activation-size
  assert.deepEqual(keptForBackward(block(T.groupNormSilu(x, 2, gamma, beta)), [x, gamma, beta, w]), ['Mul [2,4,3,3]', 'Reshape [2,4,3,3]']);
  // as two: also σ(z), which silu's rule needs (the primitives' VJPs would keep x − μ and z too)
  assert.deepEqual(keptForBackward(block(T.silu(T.groupNorm(x, 2, gamma, beta))), [x, gamma, beta, w]), ['Mul [2,4,3,3]', 'Reshape [2,4,3,3]', 'Sigmoid [2,4,3,3]']);
});
