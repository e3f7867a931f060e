import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import * as T from '../src/engine/tensor.ts';
import { adamw, learningRate } from '../src/engine/optim.ts';
import { applyOptions, defaultTrainConfig, validateTrainConfig } from '../src/train/config.ts';
import { TrainStep } from '../src/engine/train_step.ts';
import type { ParamValue, Tree } from '../src/engine/tree.ts';

/** Tiny LCG so this test does not depend on the project RNG. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

function initParams(seed: number): Tree<ParamValue> {
  const r = lcg(seed);
  const p = (shape: number[], scale: number): ParamValue => {
    const n = shape.reduce((a, b) => a * b, 1);
    return { shape, data: Float32Array.from({ length: n }, () => r() * scale) };
  };
  return {
    conv1: { w: p([8, 1, 3, 3], 0.5), b: p([8], 0) },
    conv2: { w: p([8, 8, 3, 3], 0.2), b: p([8], 0) },
    out: { w: p([1, 8, 3, 3], 0.2), b: p([1], 0) },
  };
}

type Net = { conv1: { w: T.Tensor; b: T.Tensor }; conv2: { w: T.Tensor; b: T.Tensor }; out: { w: T.Tensor; b: T.Tensor } };

function net(p: Net, x: T.Tensor): T.Tensor {
  let h = T.silu(T.conv2d(x, p.conv1.w, p.conv1.b, { padding: 1 }));
  h = T.silu(T.groupNorm(T.conv2d(h, p.conv2.w, p.conv2.b, { padding: 1, stride: 2 }), 2, null, null));
  h = T.upsampleNearest2x(h);
  return T.conv2d(h, p.out.w, p.out.b, { padding: 1 });
}

async function fit(seed: number, steps: number): Promise<number[]> {
  const r = lcg(1234);
  const x = Float32Array.from({ length: 4 * 8 * 8 }, () => r());
  // fixed synthetic target: a smooth function of the input
  const y = x.map((v, i) => Math.tanh(2 * v) * 0.5 + 0.1 * Math.sin(i));
  const step = await TrainStep.create(ort as never, {
    params: initParams(seed),
    inputs: { x: { shape: [4, 1, 8, 8] }, y: { shape: [4, 1, 8, 8] } },
    loss: (p, inp: { x: T.Tensor; y: T.Tensor }) => T.mean(T.square(T.sub(net(p as unknown as Net, inp.x), inp.y))),
    optimizer: adamw({ weightDecay: 0 }),
    clipNorm: 1,
  }, { threads: 1 });
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) losses.push((await step.step({ x, y }, 1e-2)).loss);
  await step.release();
  return losses;
}

test('a small conv net fits a fixed synthetic target (loss falls >= 10x)', async () => {
  const losses = await fit(7, 150);
  const first = losses[0]!;
  const last = losses[losses.length - 1]!;
  assert.ok(last < first / 10, `loss fell only from ${first} to ${last}`);
});

test('the same seed gives the same losses twice, bit for bit', async () => {
  const a = await fit(3, 10);
  const b = await fit(3, 10);
  assert.deepEqual(a, b);
});

/** Reference Adam/AdamW (Kingma & Ba Alg. 1; Loshchilov & Hutter decoupled decay), plain JS in float64. */
function referenceAdam(p0: number[], grads: (p: number[]) => number[], steps: number, o: { lr: number; b1: number; b2: number; eps: number; wd: number; decoupled: boolean; clip?: number }) {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  for (let t = 1; t <= steps; t++) {
    let g = grads(p);
    if (o.clip !== undefined) {
      const norm = Math.sqrt(g.reduce((a, x) => a + x * x, 0));
      const s = Math.min(1, o.clip / (norm + 1e-6));
      g = g.map((x) => x * s);
    }
    for (let i = 0; i < p.length; i++) {
      let gi = g[i]!;
      if (!o.decoupled) gi += o.wd * p[i]!;
      m[i] = o.b1 * m[i]! + (1 - o.b1) * gi;
      v[i] = o.b2 * v[i]! + (1 - o.b2) * gi * gi;
      const mhat = m[i]! / (1 - o.b1 ** t);
      const vhat = v[i]! / (1 - o.b2 ** t);
      if (o.decoupled) p[i] = p[i]! - o.lr * o.wd * p[i]!;
      p[i] = p[i]! - (o.lr * mhat) / (Math.sqrt(vhat) + o.eps);
    }
  }
  return p;
}

test('Adam and AdamW (bias correction, weight decay, global-norm clipping) match a reference implementation', async () => {
  const { adam } = await import('../src/engine/optim.ts');
  const c = [0.5, -1.5, 2.0, 3.0];
  // L = Σ c_i p_i² / 2 + p_0 p_1  ->  ∂L/∂p = c ⊙ p + (p_1, p_0, 0, 0)
  const gradOf = (p: number[]) => p.map((x, i) => c[i]! * x + (i === 0 ? p[1]! : i === 1 ? p[0]! : 0));
  const p0 = [1, -2, 0.5, 3];
  for (const [decoupled, clip] of [[true, undefined], [false, undefined], [true, 0.5]] as const) {
    const o = { lr: 0.05, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1, decoupled, clip };
    const step = await TrainStep.create(ort as never, {
      params: { p: { shape: [4], data: Float32Array.from(p0) } },
      inputs: {},
      loss: (q) => {
        const p = (q as { p: T.Tensor }).p;
        const cc = T.constant(c, [4]);
        return T.add(T.mul(T.sum(T.mul(cc, T.square(p))), 0.5), T.mul(T.slice(p, 0, 0, 1), T.slice(p, 0, 1, 2)).sum());
      },
      optimizer: adam({ b1: o.b1, b2: o.b2, eps: o.eps, weightDecay: o.wd, decoupled }),
      clipNorm: clip,
    }, { threads: 1 });
    for (let i = 0; i < 5; i++) await step.step({}, o.lr);
    const got = step.paramsByPath().get('p')!.data;
    const want = referenceAdam(p0, gradOf, 5, o);
    for (let i = 0; i < 4; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 1e-5, `decoupled=${decoupled} clip=${clip}: p[${i}] = ${got[i]} vs ${want[i]}`);
    await step.release();
  }
});

test('the optimiser runs on all parameters packed into one vector: leaves of any shape update as one flat Adam would', async () => {
  const { adamw } = await import('../src/engine/optim.ts');
  const c = [0.5, -1.5, 2.0, 3.0];
  const gradOf = (p: number[]) => p.map((x, i) => c[i]! * x + (i === 0 ? p[1]! : i === 1 ? p[0]! : 0));
  const p0 = [1, -2, 0.5, 3];
  const o = { lr: 0.05, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1, decoupled: true, clip: 0.5 };
  // the same loss as above on three leaves: w [2, 1] = p[0..1], b [] = p[2], v [1] = p[3]
  const step = await TrainStep.create(ort as never, {
    params: { w: { shape: [2, 1], data: Float32Array.from(p0.slice(0, 2)) }, b: { shape: [], data: Float32Array.from([p0[2]!]) }, v: { shape: [1], data: Float32Array.from([p0[3]!]) } },
    inputs: {},
    loss: (q) => {
      const { w, b, v } = q as { w: T.Tensor; b: T.Tensor; v: T.Tensor };
      const p = T.concat([T.reshape(w, [2]), T.reshape(b, [1]), v], 0);
      return T.add(T.mul(T.sum(T.mul(T.constant(c, [4]), T.square(p))), 0.5), T.mul(T.slice(p, 0, 0, 1), T.slice(p, 0, 1, 2)).sum());
    },
    optimizer: adamw({ b1: o.b1, b2: o.b2, eps: o.eps, weightDecay: o.wd }),
    clipNorm: o.clip,
  }, { threads: 1 });
  for (let i = 0; i < 5; i++) await step.step({}, o.lr);
  const byPath = step.paramsByPath();
  const got = [...byPath.get('w')!.data, ...byPath.get('b')!.data, ...byPath.get('v')!.data];
  const want = referenceAdam(p0, gradOf, 5, o);
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 1e-5, `p[${i}] = ${got[i]} vs ${want[i]}`);
  assert.deepEqual(byPath.get('w')!.shape, [2, 1]);
  assert.deepEqual(byPath.get('b')!.shape, []);
  for (const k of ['m:w', 'v:w', 'm:b', 'v:b', 'm:v', 'v:v']) assert.ok(step.state.get(k)!.data.every((x) => x !== 0), `${k} was updated`);
  assert.equal(step.state.get('m:w')!.data.length, 2);
  await step.release();
});

test('learning-rate schedule: warmup, constant, then a linear or cosine decay to decayTo', () => {
  const base = { lr: 1e-3, warmupSteps: 10, decay: 'none' as const, decayStart: 100, decaySteps: 50, decayTo: 1e-4 };
  const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-15, `${what}: ${a} != ${b} (diff ${a - b})`);
  close(learningRate(base, 0), 1e-4, 'warmup step 0 = lr/10');
  close(learningRate(base, 9), 1e-3, 'warmup ends at lr');
  close(learningRate(base, 5000), 1e-3, 'no decay: constant');
  for (const decay of ['linear', 'cosine'] as const) {
    const s = { ...base, decay };
    close(learningRate(s, 99), 1e-3, `${decay}: before the decay`);
    close(learningRate(s, 100), 1e-3, `${decay}: decay starts at lr`);
    close(learningRate(s, 125), 5.5e-4, `${decay}: half-way is the midpoint`);
    close(learningRate(s, 150), 1e-4, `${decay}: ends at decayTo`);
    close(learningRate(s, 10_000), 1e-4, `${decay}: stays at decayTo`);
  }
  close(learningRate({ ...base, decay: 'linear' }, 110), 1e-3 - 0.2 * 9e-4, 'linear at 1/5');
  close(learningRate({ ...base, decay: 'cosine' }, 110), 1e-4 + 9e-4 * 0.5 * (1 + Math.cos(Math.PI / 5)), 'cosine at 1/5');
  // flags, and checkpoints written before the schedule existed (no decay keys) load as constant lr
  const cfg = applyOptions(defaultTrainConfig(), { 'lr-decay': 'cosine', 'decay-start': '200', 'decay-steps': '2000', 'min-lr': '0' });
  assert.deepEqual([cfg.optim.decay, cfg.optim.decayStart, cfg.optim.decaySteps, cfg.optim.decayTo], ['cosine', 200, 2000, 0]);
  assert.throws(() => applyOptions(defaultTrainConfig(), { 'lr-decay': 'step' }), /--lr-decay: 'step' is not one of none, linear, cosine/);
  const old = JSON.parse(JSON.stringify(defaultTrainConfig()));
  for (const k of ['decay', 'decayStart', 'decaySteps', 'decayTo']) delete old.optim[k];
  assert.equal(validateTrainConfig(old).optim.decay, 'none');
  assert.throws(() => validateTrainConfig({ ...old, optim: { ...old.optim, decay: 'exp' } }), /optim.decay 'exp'/);
});

test('lrScale: a parameter with multiplier k moves k times as far in an Adam step; all ones is the plain graph', async () => {
  // a and b get the same gradient (loss = sum((a + b − 1)²)), so their Adam steps differ only by the multiplier
  const make = (lrScale?: Record<string, number>) =>
    TrainStep.create(ort as never, {
      params: { a: { shape: [3], data: new Float32Array([0.1, 0.2, 0.3]) }, b: { shape: [3], data: new Float32Array([0.1, 0.2, 0.3]) }, c: { shape: [2], data: new Float32Array([1, -1]) } },
      inputs: {},
      loss: (p) => {
        const q = p as unknown as Record<string, T.Tensor>;
        return T.add(T.sum(T.square(T.sub(T.add(q.a!, q.b!), 1))), T.sum(T.square(q.c!)));
      },
      optimizer: adamw({ weightDecay: 0 }),
      lrScale,
    }, { threads: 1 });
  const scaled = await make({ b: 3, c: 0 });
  await scaled.step({}, 1e-2);
  const p = scaled.paramsByPath();
  const da = p.get('a')!.data.map((v, i) => v - [0.1, 0.2, 0.3][i]!);
  const db = p.get('b')!.data.map((v, i) => v - [0.1, 0.2, 0.3][i]!);
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(db[i]! - 3 * da[i]!) < 1e-6 && Math.abs(da[i]!) > 5e-3, `a moved ${da[i]}, b ${db[i]}`);
  assert.deepEqual(p.get('c')!.data, new Float32Array([1, -1]), 'a multiplier of 0 freezes c');
  const plain = await make();
  const ones = await make({ a: 1, b: 1 });
  assert.deepEqual(ones.fn.onnxBytes, plain.fn.onnxBytes, 'multipliers of 1 change nothing in the graph');
  await assert.rejects(make({ nope: 2 }), /lrScale: no parameter 'nope'/);
  for (const s of [scaled, plain, ones]) await s.release();
});
