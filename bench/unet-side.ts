/**
 * Our side of `bench:unet`: one child process that builds ONE compiled training step (`--mode train`) or ONE
 * denoiser session (`--mode denoise`), warms it up, then runs timed phases on command, staying warm in between.
 * Speaks the line protocol of bench/peer/torch_unet.py --serve, so bench/unet.ts drives both sides alike:
 *
 *   (startup)        -> {"ready": true, "setup_s": s, "params": n}    setup: compiling the step or the session, 2 warm-up calls
 *   "run <seconds>"  -> {"items": n, "seconds": s, "per_s": r, "cpu_s": c, "peak_rss_mb": m}
 *                       runs whole steps until <seconds> have passed; items = images (train) or image-steps (denoise);
 *                       cpu_s: the process's CPU time (user + system) in the phase
 *   "profile <steps>" (train only) -> {"profile": {op: {ms_per_step, share, nodes}}}: the same graph in a session under
 *                       onnxruntime's profiler, kernel time per op type
 *   "quit" or end of input -> exits
 *
 * A process of its own per mode, so that its peak RSS is that mode's alone.
 */
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { trainingLossesGraph } from '../src/diffusion/graph-losses.ts';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { adamw } from '../src/engine/optim.ts';
import type { RuntimeOptions } from '../src/engine/runtime.ts';
import type { Tensor } from '../src/engine/tensor.ts';
import { TrainStep } from '../src/engine/train_step.ts';
import { compileDenoiser, exportDenoiserOnnx } from '../src/models/denoiser-compile.ts';
import { UNET_CONFIGS, countParams, initUNet, unet, unetConfig } from '../src/models/unet.ts';
import { WorkerDenoiser } from '../src/node/denoiser-workers.ts';
import { ort } from '../src/node/ort.ts';
import { Rng } from '../src/rng.ts';
import { kernelTimeByOp, type ProfileEvent } from './ort-profile.ts';

const { values: a } = parseArgs({
  options: {
    mode: { type: 'string' },
    threads: { type: 'string', default: '2' },
    batch: { type: 'string', default: '64' },
    config: { type: 'string', default: 'mnist-28' },
    'res-blocks': { type: 'string' },
    runtime: { type: 'string', default: '{}' }, // extra RuntimeOptions as JSON (levers, A/B runs of bench:unet --b-runtime)
    workers: { type: 'string', default: '0' }, // denoise: split the batch across this many 1-thread workers (WorkerDenoiser)
  },
});
const mode = a.mode;
if (mode !== 'train' && mode !== 'denoise') throw new Error(`--mode must be train or denoise, got ${mode}`);
const threads = Number(a.threads);
const runtime = { ...(JSON.parse(a.runtime!) as RuntimeOptions), threads };
const B = Number(a.batch);
const cfg = unetConfig(a['res-blocks'] ? { numResBlocks: Number(a['res-blocks']) } : {}, UNET_CONFIGS[a.config!]!);
const params = initUNet(cfg, new Rng(0));
const xShape = [B, cfg.inChannels, cfg.imageSize, cfg.imageSize];
const D = cfg.inChannels * cfg.imageSize ** 2; // values per image
const rng = new Rng(1);
const reply = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
const peakRssMb = () => Math.round(process.resourceUsage().maxRSS / 1024);

// One call of the timed work; `items` per call. As the PyTorch peer: a fixed x0, fresh t and noise per step.
let call: () => Promise<void>;
let items: number;
let step: TrainStep | null = null;
let t0 = performance.now();
if (mode === 'train') {
  const diffusion = GaussianDiffusion.fromConfig({ kind: 'linear', T: 1000 });
  step = await TrainStep.create(ort, {
    params,
    inputs: { x0: { shape: xShape }, t: { shape: [B], dtype: 'int64' }, noise: { shape: xShape } },
    loss: (p, inp: Record<string, Tensor>) =>
      trainingLossesGraph(diffusion, (xt, tf) => unet(cfg, p as unknown as Record<string, Tensor>, xt, tf), inp.x0!, inp.t!, inp.noise!, { meanType: 'epsilon', varType: 'fixedLarge' }).loss,
    optimizer: adamw({ weightDecay: 0 }),
    clipNorm: 1,
  }, runtime);
  const x0 = rng.uniformFloat32(B * D).map((v) => v * 2 - 1);
  const s = step;
  call = async () => {
    await s.step({ x0, t: BigInt64Array.from(rng.integers(1000, B), (v) => BigInt(v)), noise: rng.normalFloat32(B * D) }, 2e-4);
  };
  items = B;
} else {
  // the inference session `ddpm sample` uses (weights baked in, symbolic batch), or that graph on 1-thread workers
  const workers = Number(a.workers);
  const den = workers > 0 ? await WorkerDenoiser.create(cfg, exportDenoiserOnnx(cfg, params).bytes, workers) : await compileDenoiser(ort, cfg, params, runtime);
  let x = rng.normalFloat32(B * D);
  let i = 0;
  call = async () => {
    x = await den.predict(x, new Int32Array(B).fill(999 - (i++ % 1000)));
  };
  items = B;
}
for (let i = 0; i < 2; i++) await call(); // warm-up
reply({ ready: true, setup_s: +((performance.now() - t0) / 1000).toFixed(2), params: countParams(params) });

/** The training graph in a profiled session: kernel time per op type over `steps` steps after 2 warm-up runs. */
async function profileStep(s: TrainStep, steps: number): Promise<Record<string, { ms_per_step: number; share: number; nodes: number }>> {
  const prefix = path.join(os.tmpdir(), `ddpm-bench-${process.pid}`);
  const sess = await ort.InferenceSession.create(s.fn.onnxBytes, {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
    executionMode: 'sequential', enableProfiling: true, profileFilePrefix: prefix,
  });
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
  const data: Record<string, Float32Array | BigInt64Array> = {
    x0: rng.uniformFloat32(B * D), t: BigInt64Array.from(rng.integers(1000, B), (v) => BigInt(v)), noise: rng.normalFloat32(B * D), lr: new Float32Array([2e-4]),
  };
  for (const [k, v] of s.params) data[k] = v.data;
  for (const [k, v] of s.state) data[k] = v.data;
  for (const inp of s.fn.info.inputs) {
    const d = data[inp.name]!;
    feeds[inp.name] = d instanceof BigInt64Array ? new ort.Tensor('int64', d, inp.shape as number[]) : new ort.Tensor('float32', d, inp.shape as number[]);
  }
  const warm = 2;
  for (let i = 0; i < warm + steps; i++) await sess.run(feeds);
  (sess as unknown as { endProfiling(): void }).endProfiling(); // onnxruntime-node returns no name: find the file
  await sess.release();
  const base = path.basename(prefix);
  const file = path.join(os.tmpdir(), readdirSync(os.tmpdir()).find((f) => f.startsWith(`${base}_`) && f.endsWith('.json')) ?? '');
  const events = JSON.parse(readFileSync(file, 'utf8')) as ProfileEvent[];
  rmSync(file, { force: true });
  const { byOp, totalUs } = kernelTimeByOp(events, warm);
  const out: Record<string, { ms_per_step: number; share: number; nodes: number }> = {};
  for (const [op, r] of byOp) {
    out[op] = { ms_per_step: +(r.us / steps / 1000).toFixed(1), share: +(r.us / totalUs).toFixed(3), nodes: Math.round(r.n / steps) };
  }
  return out;
}

for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'run') {
    const seconds = Number(arg);
    let n = 0;
    t0 = performance.now();
    const cpu0 = process.cpuUsage();
    do {
      await call();
      n++;
    } while (performance.now() - t0 < seconds * 1000);
    const el = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    reply({ items: n * items, seconds: +el.toFixed(3), per_s: +((n * items) / el).toFixed(2), cpu_s: +((cpu.user + cpu.system) / 1e6).toFixed(2), peak_rss_mb: peakRssMb() });
  } else if (cmd === 'profile' && step) {
    reply({ profile: await profileStep(step, Number(arg)) });
  } else if (cmd === 'quit') {
    break;
  } else {
    reply({ error: `unknown command '${line}'` });
  }
}
process.exit(0);
