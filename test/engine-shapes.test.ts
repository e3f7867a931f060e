/**
 * Trace-time shape rules: mismatches throw a ShapeError naming the op and the shapes involved,
 * symbolic batch dims flow through the model building blocks (and their gradients), and
 * `valueAndGrad` returns a gradient tree shaped like the parameter tree.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/engine/tensor.ts';
import { ShapeError, Tensor } from '../src/engine/tensor.ts';
import { valueAndGrad, vjp } from '../src/engine/autodiff.ts';
import { treeFlatten, type Tree } from '../src/engine/tree.ts';
import { evaluate } from '../src/engine/interp.ts';
import { assertClose } from './helpers.ts';

const f64 = (v: { data: unknown }): Float64Array => v.data as Float64Array;

/** `fn` throws a ShapeError whose message contains every one of `parts`. */
function throwsShape(fn: () => unknown, parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ShapeError, `expected ShapeError, got ${String(e)}`);
    for (const p of parts) assert.ok(e.message.includes(p), `message "${e.message}" lacks "${p}"`);
    return true;
  });
}

test('shape errors name the op and both shapes', () => {
  const a = T.input('a', [2, 3]);
  throwsShape(() => T.add(a, T.input('b', [4, 3])), ['Add', '[2, 3]', '[4, 3]']);
  throwsShape(() => T.mul(T.input('c', [5]), a), ['Mul', '[5]', '[2, 3]']);
  throwsShape(() => T.matmul(a, T.input('m', [4, 5])), ['matmul', 'inner', '[2, 3]', '[4, 5]']);
  throwsShape(() => T.matmul(T.input('p', [2, 2, 3]), T.input('q', [3, 3, 4])), ['matmul', 'batch', '[2, 2, 3]', '[3, 3, 4]']);
  throwsShape(() => T.conv2d(T.input('x', [1, 3, 8, 8]), T.input('w', [4, 2, 3, 3])), ['conv2d', 'channels', '[1, 3, 8, 8]', '[4, 2, 3, 3]']);
  throwsShape(() => T.conv2d(T.input('x', [1, 4, 8, 8]), T.input('w', [3, 2, 3, 3]), null, { groups: 2 }), ['conv2d', 'output channels 3', 'groups 2']);
  throwsShape(() => T.conv2d(T.input('x', [1, 1, 2, 2]), T.input('w', [1, 1, 3, 3])), ['conv2d', 'kernel 3']);
  throwsShape(() => T.conv2d(T.input('x', [1, 1, 4, 4]), T.input('w', [2, 1, 3, 3]), T.input('bias', [3])), ['conv2d', 'bias [3]', '2 output channels']);
  throwsShape(() => T.reshape(a, [4, 2]), ['reshape', 'element count', '[2, 3]', '[4, 2]']);
  throwsShape(() => T.reshape(a, [4, -1]), ['reshape', '[2, 3]', '[4, -1]']);
  throwsShape(() => T.reshape(T.input('n', ['N', 3]), [3, -1]), ['reshape', 'symbolic', '[N, 3]']);
  throwsShape(() => T.expand(a, [3, 3]), ['expand', '[2, 3]', '[3, 3]']);
  throwsShape(() => T.concat([a, T.input('d', [3, 3])], 1), ['concat', '[2, 3]', '[3, 3]']);
  throwsShape(() => T.transpose(a, [0, 0]), ['transpose', '[2, 3]']);
  throwsShape(() => T.slice(a, 1, 3), ['slice', 'empty']);
  throwsShape(() => T.groupNorm(T.input('g', [2, 6, 4]), 4, null, null), ['groupNorm', 'channels 6', '4 groups']);
  throwsShape(() => T.gather(a, T.input('i', [2])), ['gather', 'int64']);
  throwsShape(() => T.where(T.input('c', [2, 3]), a, a), ['where', 'bool']);
  throwsShape(() => T.softmax(a, 0), ['softmax', 'last axis']);
  throwsShape(() => T.split(a, 1, [1, 1]), ['split', '[1,1]']);
});

test('symbolic batch dims propagate through conv2d, groupNorm, reshape, upsample, linear, and their gradients', () => {
  const x = T.input('x', ['N', 4, 8, 8]);
  const w = T.input('w', [8, 4, 3, 3]);
  const b = T.input('b', [8]);
  const h = T.conv2d(x, w, b, { stride: 2, padding: 1 });
  assert.deepEqual(h.shape, ['N', 8, 4, 4]);
  const gamma = T.input('gamma', [8]);
  const hn = T.silu(T.groupNorm(h, 4, gamma, null));
  assert.deepEqual(hn.shape, ['N', 8, 4, 4]);
  assert.deepEqual(T.upsampleNearest2x(hn).shape, ['N', 8, 8, 8]);
  const flat = T.reshape(hn, ['N', -1]);
  assert.deepEqual(flat.shape, ['N', 128]);
  const lw = T.input('lw', [128, 3]);
  const logits = T.linear(flat, lw);
  assert.deepEqual(logits.shape, ['N', 3]);
  assert.deepEqual(T.mean(hn, [2, 3]).shape, ['N', 8]);
  assert.deepEqual(T.reshape(hn, ['N', 2, 4, 16]).shape, ['N', 2, 4, 16]);
  throwsShape(() => T.mean(hn, 0), ['mean', 'symbolic']);

  // The loss is a sum over the batch, so its parameter gradients for a batch of 3 are the sums of
  // the per-sample gradients: this runs every VJP (conv weight grad included) with N symbolic.
  const loss = T.sum(T.logSoftmax(logits));
  const params = [w, b, gamma, lw];
  const grads = vjp(loss, params);
  grads.forEach((g, i) => assert.deepEqual(g!.shape, params[i]!.shape));
  let s = 1;
  const rand = (n: number) => Array.from({ length: n }, () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1);
  const feeds = { w: rand(8 * 4 * 9).map((v) => v * 0.3), b: rand(8), gamma: rand(8), lw: rand(128 * 3) };
  const xs = rand(3 * 256);
  const batch = evaluate(grads as Tensor[], { ...feeds, x: xs });
  const per = [0, 1, 2].map((n) => evaluate(grads as Tensor[], { ...feeds, x: xs.slice(n * 256, (n + 1) * 256) }));
  batch.forEach((g, i) => {
    const summed = f64(per[0]![i]!).map((v, j) => v + f64(per[1]![i]!)[j]! + f64(per[2]![i]!)[j]!);
    assertClose(f64(g), summed, { atol: 1e-12, rtol: 1e-10 }, `grad of ${['w', 'b', 'gamma', 'lw'][i]} for N=3 vs Σ per sample`);
  });
  const [hv] = evaluate([h], { ...feeds, x: xs });
  assert.deepEqual(hv!.shape, [3, 8, 4, 4]);
});

test('valueAndGrad over a nested param tree: same structure, zeros for unused leaves, aux passed through', () => {
  type P = { conv: { weight: Tensor; bias: Tensor }; blocks: readonly [{ scale: Tensor }, { unused: Tensor }]; extra: Tensor };
  const params: P = {
    conv: { weight: T.input('conv.weight', [2, 3]), bias: T.input('conv.bias', [3]) },
    blocks: [{ scale: T.input('blocks.0.scale', [2]) }, { unused: T.input('blocks.1.unused', [2, 2]) }],
    extra: T.input('extra', [4]),
  };
  const f = (p: Tree<Tensor>) => {
    const q = p as unknown as P;
    // loss = Σ weight² + 3·Σ bias + Σ scale·weight[:, 0]
    const col0 = T.reshape(T.slice(q.conv.weight, 1, 0, 1), [2]);
    const loss = T.add(T.add(T.sum(T.square(q.conv.weight)), T.mul(T.sum(q.conv.bias), 3)), T.sum(T.mul(q.blocks[0].scale, col0)));
    return { loss, aux: { note: 'aux' } };
  };
  const { value, grads, aux } = valueAndGrad(f)(params);
  assert.deepEqual(aux, { note: 'aux' });
  const flatP = treeFlatten<Tensor>(params);
  const flatG = treeFlatten(grads);
  assert.deepEqual(flatG.map(([p]) => p), flatP.map(([p]) => p));
  assert.deepEqual(flatG.map(([p]) => p), ['conv.weight', 'conv.bias', 'blocks.0.scale', 'blocks.1.unused', 'extra']);
  flatG.forEach(([p, g], i) => assert.deepEqual(g.shape, flatP[i]![1].shape, `grad shape of ${p}`));
  const g = grads as unknown as P;
  assert.ok(Array.isArray(g.blocks));

  const wv = [1, -2, 0.5, 3, 4, -1];
  const sv = [10, 20];
  const feeds = { 'conv.weight': wv, 'conv.bias': [1, 2, 3], 'blocks.0.scale': sv, 'blocks.1.unused': [1, 1, 1, 1], extra: [1, 2, 3, 4] };
  const [lv, gw, gb, gs, gu, ge] = evaluate([value, g.conv.weight, g.conv.bias, g.blocks[0].scale, g.blocks[1].unused, g.extra], feeds);
  assertClose(f64(lv!), [wv.reduce((t, v) => t + v * v, 0) + 3 * 6 + sv[0]! * wv[0]! + sv[1]! * wv[3]!], { atol: 1e-12 }, 'loss');
  assertClose(f64(gw!), wv.map((v, i) => 2 * v + (i === 0 ? sv[0]! : i === 3 ? sv[1]! : 0)), { atol: 1e-12 }, 'd/d weight');
  assertClose(f64(gb!), [3, 3, 3], { atol: 0 }, 'd/d bias');
  assertClose(f64(gs!), [wv[0]!, wv[3]!], { atol: 0 }, 'd/d scale');
  assert.deepEqual(gu!.shape, [2, 2]);
  assertClose(f64(gu!), [0, 0, 0, 0], { atol: 0 }, 'unused leaf');
  assertClose(f64(ge!), [0, 0, 0, 0], { atol: 0 }, 'unused leaf');
});
