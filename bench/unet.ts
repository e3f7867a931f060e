/**
 * U-Net benchmark for the reference config `mnist-28` (or another preset: --config) at batch 64:
 * training img/s (forward + backward + AdamW, ε-prediction L_simple, one compiled step) and denoising
 * img-steps/s (one U-Net evaluation per image per step, no gradients), plus peak RSS.
 * With `--peer`, the PyTorch peer (bench/peer/torch_unet.py, Debian's python3-torch) runs in the
 * same invocation so the ratio is measured on the same machine state. With `--profile`, the training step
 * also runs under onnxruntime's profiler and the JSON gets its kernel time per op type (ms per step, share).
 * Prints one JSON object last.
 *
 *   npm run bench:unet [-- --threads 2 --batch 64 --steps 5 --peer --profile --config rgb-32 --res-blocks 2]
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { trainingLossesGraph } from '../src/diffusion/graph-losses.ts';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { adamw } from '../src/engine/optim.ts';
import type { Tensor } from '../src/engine/tensor.ts';
import { TrainStep } from '../src/engine/train_step.ts';
import { compileDenoiser } from '../src/models/denoiser-compile.ts';
import { UNET_CONFIGS, countParams, initUNet, unet, unetConfig } from '../src/models/unet.ts';
import { ort } from '../src/node/ort.ts';
import { Rng } from '../src/rng.ts';
import { PYTHON, TORCH_UNET, checkTorch } from './peer/python.ts';

const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const threads = flag('threads', os.availableParallelism());
const B = flag('batch', 64);
const steps = flag('steps', 5);
const runPeer = args.includes('--peer');
const runProfile = args.includes('--profile');
const preset = args.includes('--config') ? args[args.indexOf('--config') + 1]! : 'mnist-28';
if (!Object.hasOwn(UNET_CONFIGS, preset)) throw new Error(`--config: unknown preset '${preset}' (known: ${Object.keys(UNET_CONFIGS).join(', ')})`);
const cfg = unetConfig(args.includes('--res-blocks') ? { numResBlocks: flag('res-blocks', 2) } : {}, UNET_CONFIGS[preset]);
if (runPeer && preset !== 'mnist-28') throw new Error('--peer: the PyTorch peer is mnist-28 only');
if (runPeer) checkTorch('--peer'); // before the minutes of our own benchmark

const params = initUNet(cfg, new Rng(0));
const diffusion = GaussianDiffusion.fromConfig({ kind: 'linear', T: 1000 });
const xShape = [B, cfg.inChannels, cfg.imageSize, cfg.imageSize];
const D = cfg.inChannels * cfg.imageSize ** 2; // values per image

// 1. training: the same compiled step the trainer uses
let t0 = performance.now();
const step = await TrainStep.create(ort, {
  params,
  inputs: { x0: { shape: xShape }, t: { shape: [B], dtype: 'int64' }, noise: { shape: xShape } },
  loss: (p, inp: Record<string, Tensor>) =>
    trainingLossesGraph(diffusion, (xt, tf) => unet(cfg, p as unknown as Record<string, Tensor>, xt, tf), inp.x0!, inp.t!, inp.noise!, { meanType: 'epsilon', varType: 'fixedLarge' }).loss,
  optimizer: adamw({ weightDecay: 0 }),
  clipNorm: 1,
}, { threads });
const compileSec = (performance.now() - t0) / 1000;
const rng = new Rng(1);
const batch = () => ({
  x0: rng.uniformFloat32(B * D).map((v) => v * 2 - 1),
  t: BigInt64Array.from(rng.integers(1000, B), (v) => BigInt(v)),
  noise: rng.normalFloat32(B * D),
});
for (let i = 0; i < 2; i++) await step.step(batch(), 2e-4); // warm-up
t0 = performance.now();
for (let i = 0; i < steps; i++) await step.step(batch(), 2e-4);
const trainImgPerSec = (steps * B) / ((performance.now() - t0) / 1000);

// 1b. where a training step goes: the same graph in a profiled session, kernel time per op type
let profile: Record<string, { ms_per_step: number; share: number; nodes: number }> | null = null;
if (runProfile) {
  const prefix = path.join(os.tmpdir(), `ddpm-bench-${process.pid}`);
  const sess = await ort.InferenceSession.create(step.fn.onnxBytes, {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
    executionMode: 'sequential', enableProfiling: true, profileFilePrefix: prefix,
  });
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
  const b = batch();
  const data: Record<string, Float32Array | BigInt64Array> = { ...b, lr: new Float32Array([2e-4]) };
  for (const [k, v] of step.params) data[k] = v.data;
  for (const [k, v] of step.state) data[k] = v.data;
  for (const inp of step.fn.info.inputs) {
    const d = data[inp.name]!;
    feeds[inp.name] = d instanceof BigInt64Array ? new ort.Tensor('int64', d, inp.shape as number[]) : new ort.Tensor('float32', d, inp.shape as number[]);
  }
  const warm = 2;
  for (let i = 0; i < warm + steps; i++) await sess.run(feeds);
  (sess as unknown as { endProfiling(): void }).endProfiling(); // onnxruntime-node returns no name: find the file
  await sess.release();
  const base = path.basename(prefix);
  const file = path.join(os.tmpdir(), readdirSync(os.tmpdir()).find((f) => f.startsWith(`${base}_`) && f.endsWith('.json')) ?? '');
  type Ev = { cat?: string; name: string; ts: number; dur: number; args?: { op_name?: string } };
  const events = JSON.parse(readFileSync(file, 'utf8')) as Ev[];
  rmSync(file, { force: true });
  const runs = events.filter((e) => e.name === 'model_run').sort((a, c) => a.ts - c.ts);
  const from = runs[warm]!.ts;
  const byOp = new Map<string, { us: number; n: number }>();
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < from) continue;
    const op = e.args?.op_name ?? '?';
    const r = byOp.get(op) ?? { us: 0, n: 0 };
    r.us += e.dur;
    r.n += 1;
    byOp.set(op, r);
  }
  const total = [...byOp.values()].reduce((a, r) => a + r.us, 0);
  profile = {};
  for (const [op, r] of [...byOp].sort((a, c) => c[1].us - a[1].us)) {
    profile[op] = { ms_per_step: +(r.us / steps / 1000).toFixed(1), share: +(r.us / total).toFixed(3), nodes: Math.round(r.n / steps) };
  }
}
await step.release();

// 2. denoising: the inference session `ddpm sample` uses (weights baked in, symbolic batch)
const den = await compileDenoiser(ort, cfg, params, { threads });
let x = rng.normalFloat32(B * D);
for (let i = 0; i < 2; i++) await den.predict(x, new Int32Array(B).fill(500));
t0 = performance.now();
for (let i = 0; i < steps * 2; i++) x = await den.predict(x, new Int32Array(B).fill(999 - i));
const denoiseImgStepsPerSec = (steps * 2 * B) / ((performance.now() - t0) / 1000);
await den.release();

const ours = {
  train_img_per_s: +trainImgPerSec.toFixed(2),
  denoise_img_steps_per_s: +denoiseImgStepsPerSec.toFixed(2),
  compile_s: +compileSec.toFixed(2),
  peak_rss_mb: +(process.resourceUsage().maxRSS / 1024).toFixed(0),
};

let peer: Record<string, unknown> | null = null;
if (runPeer) {
  const out = execFileSync(PYTHON, [TORCH_UNET, '--threads', String(threads), '--batch', String(B), '--steps', String(steps), '--json'], { encoding: 'utf8' });
  peer = JSON.parse(out.trim().split('\n').pop()!);
}

const result = {
  bench: 'unet',
  config: preset,
  num_res_blocks: cfg.numResBlocks,
  params: countParams(params),
  batch: B,
  threads,
  date: new Date().toISOString(),
  machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}`,
  ...ours,
  ...(profile ? { train_profile_by_op: profile } : {}),
  ...(peer
    ? {
        peer,
        train_ratio_vs_torch: +(trainImgPerSec / (peer.train_img_per_s as number)).toFixed(3),
        denoise_ratio_vs_torch: +(denoiseImgStepsPerSec / (peer.denoise_img_steps_per_s as number)).toFixed(3),
      }
    : {}),
};
console.log(JSON.stringify(result));
