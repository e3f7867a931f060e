/**
 * The shared loss definitions (loss-formulas.ts) and their two instances: float64 arrays
 * (losses.ts `float64Ops`) and engine tensors (graph-losses.ts `tensorOps`, evaluated by the float64
 * reference interpreter). The same definition must give the same numbers through both.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { tensorOps } from '../src/diffusion/graph-losses.ts';
import * as F from '../src/diffusion/loss-formulas.ts';
import { float64Ops, type Values } from '../src/diffusion/losses.ts';
import { evaluate } from '../src/engine/interp.ts';
import * as T from '../src/engine/tensor.ts';
import { Rng } from '../src/rng.ts';
import { assertClose } from './helpers.ts';

test('float64Ops: scalars broadcast, per-example arrays broadcast over their example, other lengths throw', () => {
  const o = float64Ops(3); // 2 examples of 3 values
  const x = Float64Array.of(1, 2, 3, 4, 5, 6);
  assertClose(o.add(x, 10) as Float64Array, [11, 12, 13, 14, 15, 16], { atol: 0 }, 'scalar');
  assertClose(o.mul(Float64Array.of(2, -1), x) as Float64Array, [2, 4, 6, -4, -5, -6], { atol: 0 }, 'per example');
  assertClose(o.meanFlat(x) as Float64Array, [2, 5], { atol: 0 }, 'meanFlat');
  assertClose(o.take(Float64Array.of(0.5, 0.25, 0.125), Float64Array.of(2, 0)) as Float64Array, [0.125, 0.5], { atol: 0 }, 'take');
  assertClose(o.where(o.less(x, 2.5), x, o.greater(x, 4.5)) as Float64Array, [1, 2, 0, 0, 1, 1], { atol: 0 }, 'where/less/greater');
  assert.equal(o.exp(o.sub(2, 2)), 1, 'scalars stay scalars');
  assert.throws(() => o.add(x, Float64Array.of(1, 2, 3, 4)), /lengths differ: 4 vs 6/);
  assert.throws(() => o.meanFlat(Float64Array.of(1, 2, 3, 4)), /do not split/);
});

test('each shared definition gives the same numbers through float64Ops and tensorOps', () => {
  const B = 3;
  const shape = [B, 2, 2, 2];
  const n = 24;
  const rng = new Rng(8);
  const d = GaussianDiffusion.fromConfig({ kind: 'cosine', T: 50 });
  const data: Record<string, Float64Array> = {
    x0: Float64Array.from(rng.integers(256, n), (k) => (k / 255) * 2 - 1), // the 8-bit grid
    a: Float64Array.from(rng.normalFloat32(n)),
    b: Float64Array.from(rng.normalFloat32(n), (v) => 0.3 * v),
    lv1: Float64Array.from(rng.normalFloat32(n), (v) => v - 3),
    lv2: Float64Array.from(rng.normalFloat32(n), (v) => v - 3),
  };
  data.x0![0] = -1; // both edge bins of the decoder
  data.x0![1] = 1;
  const t = [0, 7, 49];
  const vb = Float64Array.of(0.2, 1.5, 0.01); // per example
  const cases: [string, <V>(o: F.Ops<V>, v: Record<string, V>) => V][] = [
    ['normalKl', (o, v) => F.normalKl(o, o.sub(v.a!, v.b!), v.lv1!, v.lv2!)],
    ['approxStandardNormalCdf', (o, v) => F.approxStandardNormalCdf(o, o.mul(v.a!, 3))],
    ['discretizedGaussianLogLikelihood', (o, v) => F.discretizedGaussianLogLikelihood(o, v.x0!, o.add(v.x0!, o.mul(v.b!, 0.1)), o.mul(v.lv1!, 0.5))],
    ['meanSquaredError', (o, v) => F.meanSquaredError(o, v.a!, v.b!)],
    ['vbTermsBpd', (o, v) => F.vbTermsBpd(o, d, v.x0!, v.a!, v.t!, o.add(v.x0!, o.mul(v.b!, 0.05)), v.lv1!)],
    ['hybridLoss', (o, v) => F.hybridLoss(o, F.meanSquaredError(o, v.a!, v.b!), v.vb!, d.numTimesteps)],
  ];
  const o64 = float64Ops(n / B);
  const oT = tensorOps(shape.length);
  const numbers: Record<string, Values> = { ...data, t: Float64Array.from(t), vb };
  const tensors: Record<string, T.Tensor> = { t: T.input('t', [B], 'int64'), vb: T.input('vb', [B]) };
  for (const k of Object.keys(data)) tensors[k] = T.input(k, shape);
  const feeds = { ...Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Float32Array.from(v)])), t: BigInt64Array.from(t, BigInt), vb: Float32Array.from(vb) };
  // the tensors are fed float32: give the float64 path the same (rounded) inputs
  for (const k of Object.keys(data)) numbers[k] = Float64Array.from(feeds[k as keyof typeof feeds] as Float32Array);
  numbers.vb = Float64Array.from(feeds.vb);
  for (const [name, f] of cases) {
    const want = f(o64, numbers) as Float64Array;
    const got = evaluate([f(oT, tensors)], feeds, { precision: 'float64' })[0]!.data as Float64Array;
    assert.ok(want.length > 1 && want.every(Number.isFinite), `${name}: ${want}`);
    assertClose(got, want, { rtol: 1e-12, atol: 1e-15 }, name);
  }
});
