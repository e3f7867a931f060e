/**
 * Engine benchmark: conv2d forward and forward+backward GFLOP/s on onnxruntime-node, and the time of one
 * compiled training step of a small conv net. Prints one JSON object as its last line.
 *
 *   npm run bench:engine [-- --threads 2 --reps 20]
 */
import os from 'node:os';
import * as ort from 'onnxruntime-node';
import { vjp } from '../src/engine/autodiff.ts';
import { compile } from '../src/engine/compile.ts';
import * as T from '../src/engine/tensor.ts';
import { adamw } from '../src/engine/optim.ts';
import type { ParamValue } from '../src/engine/tree.ts';
import { TrainStep } from '../src/engine/train_step.ts';

const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const threads = flag('threads', os.availableParallelism());
const reps = flag('reps', 30);

function rand(n: number, seed = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5);
}

/** Median and best wall time in seconds over `reps` runs after a warm-up (the machine is shared: both matter). */
async function timeIt(fn: () => Promise<unknown>): Promise<{ median: number; best: number }> {
  for (let i = 0; i < 3; i++) await fn(); // warm-up
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)]! / 1000, best: times[0]! / 1000 };
}
const gflops = (flops: number, t: { median: number; best: number }) => ({
  median: +(flops / t.median / 1e9).toFixed(1),
  best: +(flops / t.best / 1e9).toFixed(1),
});

const [N, C, O, H, W, K] = [16, 64, 64, 32, 32, 3];
const convFlops = 2 * N * O * C * K * K * H * W;

// 1. forward conv
const x = T.input('x', [N, C, H, W]);
const w = T.input('w', [O, C, K, K]);
const y = T.conv2d(x, w, null, { padding: 1 });
const feeds = { x: rand(N * C * H * W, 1), w: rand(O * C * K * K, 2) };
const fwd = await compile(ort as never, { y }, { threads });
const tFwd = await timeIt(() => fwd.run(feeds));

// 2. forward + backward (input and weight gradients) of the same conv
const gy = T.input('gy', [N, O, H, W]);
const [gx, gw] = vjp(y, [x, w], gy) as [T.Tensor, T.Tensor];
const fb = await compile(ort as never, { y, gx, gw }, { threads });
const fbFeeds = { ...feeds, gy: rand(N * O * H * W, 3) };
const tFb = await timeIt(() => fb.run(fbFeeds));

const onlyGx = await compile(ort as never, { gx }, { threads });
const tGx = await timeIt(() => onlyGx.run({ gy: fbFeeds.gy, w: feeds.w }));
const onlyGw = await compile(ort as never, { gw }, { threads });
const tGw = await timeIt(() => onlyGw.run({ gy: fbFeeds.gy, x: feeds.x }));

// 3. one training step of a small conv net (batch 16, 1x28x28, 32 channels)
const p = (shape: number[], seed: number): ParamValue => ({ shape, data: rand(shape.reduce((a, b) => a * b, 1), seed).map((v) => v * 0.2) });
const params = {
  c1: { w: p([32, 1, 3, 3], 4), b: p([32], 5) },
  c2: { w: p([32, 32, 3, 3], 6), b: p([32], 7) },
  c3: { w: p([32, 32, 3, 3], 8), b: p([32], 9) },
  out: { w: p([1, 32, 3, 3], 10), b: p([1], 11) },
};
type P = { w: T.Tensor; b: T.Tensor };
const step = await TrainStep.create(ort as never, {
  params,
  inputs: { x: { shape: [16, 1, 28, 28] }, y: { shape: [16, 1, 28, 28] } },
  loss: (q, inp: { x: T.Tensor; y: T.Tensor }) => {
    const pp = q as unknown as Record<string, P>;
    let h = T.silu(T.conv2d(inp.x, pp.c1!.w, pp.c1!.b, { padding: 1 }));
    h = T.silu(T.groupNorm(T.conv2d(h, pp.c2!.w, pp.c2!.b, { padding: 1 }), 8, null, null));
    h = T.silu(T.conv2d(h, pp.c3!.w, pp.c3!.b, { padding: 1 }));
    return T.mean(T.square(T.sub(T.conv2d(h, pp.out!.w, pp.out!.b, { padding: 1 }), inp.y)));
  },
  optimizer: adamw(),
  clipNorm: 1,
}, { threads });
const batch = { x: rand(16 * 784, 12), y: rand(16 * 784, 13) };
const tStep = await timeIt(() => step.step(batch, 1e-3));

const result = {
  bench: 'engine',
  date: new Date().toISOString(),
  machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}`,
  onnxruntime: 'onnxruntime-node (cpu)',
  threads,
  conv: { batch: N, cin: C, cout: O, hw: H, k: K, gflop: convFlops / 1e9 },
  reps,
  conv_fwd_gflops: gflops(convFlops, tFwd),
  conv_fwd_bwd_gflops: gflops(3 * convFlops, tFb),
  conv_input_grad_gflops: gflops(convFlops, tGx),
  conv_weight_grad_gflops: gflops(convFlops, tGw),
  small_convnet_train_step_ms: { median: +(tStep.median * 1000).toFixed(2), best: +(tStep.best * 1000).toFixed(2) },
};
console.log(JSON.stringify(result));
