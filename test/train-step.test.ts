import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import * as T from '../src/engine/tensor.ts';
import { adamw, type ParamValue } from '../src/engine/optim.ts';
import { TrainStep } from '../src/engine/train_step.ts';
import type { Tree } from '../src/engine/tree.ts';

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
