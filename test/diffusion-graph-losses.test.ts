/**
 * The training losses as engine ops (graph-losses.ts) agree with the numeric diffusion core term by
 * term: L_simple for ε / x0 / v targets, min-SNR-γ weights, and the hybrid loss's VLB terms (KL for
 * t > 0, the discretised decoder NLL at t = 0), evaluated by the float64 reference interpreter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { trainingLossesGraph, type GraphLossOptions } from '../src/diffusion/graph-losses.ts';
import { evaluate } from '../src/engine/interp.ts';
import * as T from '../src/engine/tensor.ts';
import { Rng } from '../src/rng.ts';

const B = 6;
const shape = [B, 2, 3, 3];
const n = B * 18;

/** A fixed "model" on (x_t, t): out = 0.7 x_t + 0.001 t (and v = 0.5 tanh(x_t) for learnedRange). */
function graphModel(learned: boolean) {
  return (xt: T.Tensor, t: T.Tensor) => {
    const eps = T.add(T.mul(xt, 0.7), T.reshape(T.mul(t, 0.001), [B, 1, 1, 1]));
    return learned ? T.concat([eps, T.mul(T.tanh(xt), 0.5)], 1) : eps;
  };
}
function numericModel(xt: Float32Array, t: Int32Array, learned: boolean): Float32Array {
  const per = n / B;
  const eps = xt.map((v, i) => 0.7 * v + 0.001 * t[Math.floor(i / per)]!);
  if (!learned) return eps;
  const out = new Float32Array(2 * n);
  for (let b = 0; b < B; b++) {
    out.set(eps.subarray(b * per, (b + 1) * per), 2 * b * per);
    out.set(xt.subarray(b * per, (b + 1) * per).map((v) => 0.5 * Math.tanh(v)), (2 * b + 1) * per);
  }
  return out;
}

function check(opts: GraphLossOptions, label: string, rescaleZeroTerminalSnr = false) {
  const diffusion = GaussianDiffusion.fromConfig({ kind: 'linear', T: 1000, rescaleZeroTerminalSnr });
  const rng = new Rng(11);
  // data on the 8-bit grid in [-1, 1] (the decoder term is a likelihood on that grid); t includes 0
  const x0 = Float32Array.from({ length: n }, () => rng.integer(256) / 127.5 - 1);
  const t = Int32Array.from([0, 1, 10, 250, 700, 999]);
  const noise = rng.normalFloat32(n);
  const learned = opts.varType === 'learnedRange';
  // graph
  const gx = T.input('x0', shape);
  const gt = T.input('t', [B], 'int64');
  const gn = T.input('noise', shape);
  const g = trainingLossesGraph(diffusion, graphModel(learned), gx, gt, gn, opts);
  const outs = [g.loss, g.mse, ...(g.vb ? [g.vb] : [])];
  const got = evaluate(outs, { x0, t: BigInt64Array.from(t, (v) => BigInt(v)), noise }, { precision: 'float64' }).map((r) => (r.data as Float64Array)[0]!);
  // numeric
  const xt = diffusion.qSample({ data: x0, shape }, t, noise);
  const ref = diffusion.trainingLosses(numericModel(xt, t, learned), { data: x0, shape }, t, noise, opts);
  const mean = (a: Float64Array) => a.reduce((s, v) => s + v, 0) / a.length;
  const want = [mean(ref.loss), mean(ref.mse), ...(ref.vb ? [mean(ref.vb)] : [])];
  got.forEach((v, i) => {
    const w = want[i]!;
    assert.ok(Number.isFinite(v), `${label}: ${['loss', 'mse', 'vb'][i]} graph ${v}`);
    assert.ok(Math.abs(v - w) <= 2e-5 * Math.max(1, Math.abs(w)), `${label}: ${['loss', 'mse', 'vb'][i]} graph ${v} vs numeric ${w} (diff ${v - w})`);
  });
}

test('L_simple on ε, x0 and v targets: graph == numeric', () => {
  for (const meanType of ['epsilon', 'x0', 'v'] as const) check({ meanType, varType: 'fixedLarge' }, meanType);
});

test('min-SNR-γ weighted L_simple: graph == numeric', () => {
  for (const meanType of ['epsilon', 'x0', 'v'] as const) check({ meanType, varType: 'fixedSmall', minSnrGamma: 5 }, `minSnr ${meanType}`);
});

test('min-SNR-γ on a zero-terminal-SNR schedule: the ε weight at SNR = 0 is 1 in the graph too (it was 0/0 = NaN)', () => {
  for (const meanType of ['epsilon', 'x0', 'v'] as const) check({ meanType, varType: 'fixedSmall', minSnrGamma: 5 }, `zero-terminal minSnr ${meanType}`, true);
});

test('hybrid loss with learned variances (KL terms and the t = 0 decoder NLL): graph == numeric', () => {
  for (const meanType of ['epsilon', 'x0', 'v'] as const) check({ meanType, varType: 'learnedRange' }, `hybrid ${meanType}`);
});

test('hybrid loss: the mean is frozen inside L_vlb (its gradient reaches only the variance channels)', async () => {
  const { vjp } = await import('../src/engine/autodiff.ts');
  const diffusion = GaussianDiffusion.fromConfig({ kind: 'linear', T: 1000 });
  const out = T.input('out', [B, 4, 3, 3]);
  const g = trainingLossesGraph(diffusion, () => out, T.input('x0', shape), T.input('t', [B], 'int64'), T.input('noise', shape), { meanType: 'epsilon', varType: 'learnedRange' });
  const [dvb] = vjp(g.vb!, [out]);
  const rng = new Rng(5);
  const feeds = {
    out: rng.normalFloat32(B * 36).map((v) => 0.5 * Math.tanh(v)),
    x0: Float32Array.from({ length: n }, () => rng.integer(256) / 127.5 - 1),
    t: BigInt64Array.from([0n, 3n, 30n, 300n, 600n, 900n]),
    noise: rng.normalFloat32(n),
  };
  const grad = evaluate([dvb!], feeds, { precision: 'float64' })[0]!.data as Float64Array;
  let epsPart = 0;
  let varPart = 0;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < 18; i++) epsPart = Math.max(epsPart, Math.abs(grad[b * 36 + i]!));
    for (let i = 18; i < 36; i++) varPart = Math.max(varPart, Math.abs(grad[b * 36 + i]!));
  }
  assert.equal(epsPart, 0, 'L_vlb must not train the mean');
  assert.ok(varPart > 0, 'L_vlb trains the variance');
});
