/**
 * The GPU check, ready for a machine with an NVIDIA GPU (issue 17): within --budget minutes (default 8), on every GPU
 * execution provider onnxruntime-node can run offline here (WebGPU through Dawn/Vulkan; CUDA when its binaries are
 * installed, see the README's GPU section), and in headless Chromium with WebGPU:
 *
 *   sampling   64 DDIM-50 samples of the shipped models/mnist-28 (seed 0): max |diff| against the CPU provider,
 *              img-steps/s (and at batch 256)
 *   training   3 steps of mnist-28 at batch 64 (TrainingRun, seed 0): losses and weights against the CPU's,
 *              then img/s over 10 steps
 *   page       the built app with ?ep=webgpu: the backend it reports, 16 DDIM-50 samples against onnxruntime-node's
 *              CPU, and the Train view's mnist-small for 10 steps (img/s; whether it stayed on WebGPU with its state
 *              in GPU buffers; losses and weights, moments and EMA against Node's CPU)
 *
 * A provider that cannot start is reported with its reason, not an error. Progress on stderr; one JSON object on the
 * last line of stdout (also --json FILE). Run it as one prepared command, e.g. `node --import tsx scripts/gpu-check.ts
 * --json gpu-check.json` (nvidia-smi's card name goes into the output when nvidia-smi exists).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import type { ExecutionProvider } from '../src/engine/runtime.ts';
import { mnistDataset } from '../src/data/mnist.ts';
import { ensureExecutionProvider, ort } from '../src/node/ort.ts';
import { DDPMPipeline } from '../src/pipeline/node.ts';
import { applyOptions, defaultTrainConfig } from '../src/train/config.ts';
import { TrainingRun } from '../src/train/run.ts';
import { CHROMIUM_FLAGS, buildApp, openApp } from '../web/scripts/chromium.ts';
import { SHIPPED_MODEL_DIR, prepareModel } from '../web/scripts/prepare-model.ts';
import { TRAIN_DATA_FILE } from '../web/scripts/prepare-train-data.ts';
import { trainDataset } from '../web/src/train-data.ts';

const { values: args } = parseArgs({ options: { budget: { type: 'string', default: '8' }, json: { type: 'string' }, 'skip-page': { type: 'boolean', default: false } } });
const deadline = Date.now() + Number(args.budget) * 60_000;
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};
const r4 = (x: number) => Number(x.toPrecision(4));
const left = () => (deadline - Date.now()) / 1000;

function sh(cmd: string, argv: string[]): Promise<string | null> {
  return new Promise((resolve) => execFile(cmd, argv, { timeout: 10_000 }, (err, out) => resolve(err ? null : out.trim())));
}

async function sampling(ep: ExecutionProvider, ref: Float32Array | null): Promise<Record<string, unknown> & { samples: Float32Array }> {
  const pipe = await DDPMPipeline.fromPretrained(path.join(SHIPPED_MODEL_DIR, 'model.onnx'), { executionProvider: ep, threads: ep === 'cpu' ? undefined : 1 });
  try {
    await pipe.generate({ n: 4, steps: 2 }); // warm: shaders, arenas
    const t0 = performance.now();
    const out = await pipe.generate({ n: 64, sampler: 'ddim', steps: 50, eta: 0, seed: 0, batchSize: 64 });
    const s64 = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    await pipe.generate({ n: 256, sampler: 'ddim', steps: 10, eta: 0, seed: 1, batchSize: 256 });
    const s256 = (performance.now() - t1) / 1000;
    return {
      samples: out.samples,
      imgStepsPerSecBatch64: r4((64 * 50) / s64),
      imgStepsPerSecBatch256: r4((256 * 10) / s256),
      ...(ref ? { maxAbsDiffVsCpu: maxAbsDiff(out.samples, ref) } : {}),
    };
  } finally {
    await pipe.release();
  }
}

async function training(ep: ExecutionProvider, ref: { losses: number[]; params: Record<string, { data: Float32Array }> } | null) {
  const cfg = applyOptions(defaultTrainConfig('mnist-28'), { seed: '0', 'batch-size': '64' });
  const run = await TrainingRun.create(ort, cfg, mnistDataset('train'), {}, { executionProvider: ep, threads: ep === 'cpu' ? undefined : 1 });
  try {
    const losses: number[] = [];
    for (let i = 0; i < 3; i++) losses.push((await run.next()).loss);
    const params = Object.fromEntries(Object.entries(run.contents().params).map(([k, v]) => [k, { data: v.data.slice() }]));
    const t0 = performance.now();
    for (let i = 0; i < 10; i++) await run.next();
    const imgPerSec = (10 * 64) / ((performance.now() - t0) / 1000);
    let weights = 0;
    if (ref) for (const [k, v] of Object.entries(ref.params)) weights = Math.max(weights, maxAbsDiff(params[k]!.data, v.data));
    return { losses, params, imgPerSec: r4(imgPerSec), ...(ref ? { lossMaxAbsDiffVsCpu: maxAbsDiff(losses, ref.losses), weightsMaxAbsDiffVsCpu: weights } : {}) };
  } finally {
    await run.release();
  }
}

async function page(cpuSamples16: Float32Array): Promise<Record<string, unknown>> {
  const tmp = await mkdtemp(path.join(tmpdir(), 'ddpm-gpu-page-'));
  const model = path.join(tmp, 'model');
  await prepareModel(SHIPPED_MODEL_DIR, model);
  await buildApp(model, path.join(tmp, 'dist'));
  // WebGPU in headless Chromium: Vulkan through ANGLE, and the flag that allows it on Linux
  const flags = CHROMIUM_FLAGS.filter((f) => f !== '--disable-gpu').concat(['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=vulkan', '--ignore-gpu-blocklist']);
  const { server, ctx } = await openApp(path.join(tmp, 'dist'), path.join(tmp, 'profile'), { args: flags });
  const out: Record<string, unknown> = {};
  try {
    const p = ctx.pages()[0] ?? (await ctx.newPage());
    await p.goto(`${server.url}?ep=webgpu`);
    await p.waitForSelector('body[data-model=ready], body[data-model=error]', { timeout: 120_000 });
    out.backendLine = await p.textContent('#backend');
    out.adapter = await p.evaluate(async () => {
      const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<{ info?: Record<string, string> } | null> } }).gpu;
      const a = gpu ? await gpu.requestAdapter() : null;
      return a ? { ...(a.info ?? {}) } : null;
    });
    if ((await p.getAttribute('body', 'data-model')) !== 'ready' || (await p.getAttribute('body', 'data-backend')) !== 'webgpu') {
      out.webgpu = false;
      return out;
    }
    out.webgpu = true;
    await p.fill('#n', '16');
    await p.selectOption('#sampler', 'ddim');
    await p.fill('#steps', '50');
    await p.fill('#seed', '0');
    await p.click('#generate-btn');
    await p.waitForSelector('body[data-sampling=done], body[data-sampling=error]', { timeout: 120_000 });
    const got = await p.evaluate(() => Array.from((globalThis as unknown as { ddpm: { lastSamples: Float32Array } }).ddpm.lastSamples));
    out.sampling = { seconds16Ddim50: Number(await p.getAttribute('#timings', 'data-total-ms')) / 1000, maxAbsDiffVsNodeCpu: maxAbsDiff(got, cpuSamples16) };
    // the Train view on WebGPU: 10 steps of mnist-small at batch 16 against Node's CPU
    await p.selectOption('#train-preset', 'mnist-small');
    await p.fill('#train-sample-every', '0');
    await p.fill('#train-stop-at', '10');
    await p.click('#train-start');
    await p.waitForSelector('body[data-training=paused], body[data-training=error]', { timeout: 180_000 });
    const status = await p.textContent('#train-status');
    if ((await p.getAttribute('body', 'data-training')) !== 'paused') {
      out.training = { error: await p.textContent('#error') };
      return out;
    }
    const [download] = await Promise.all([p.waitForEvent('download'), p.click('#train-download')]);
    const file = path.join(tmp, 'ckpt.safetensors');
    await download.saveAs(file);
    const { unpackCheckpoint } = await import('../src/train/checkpoint-file.ts');
    const c = unpackCheckpoint(new Uint8Array(await readFile(file)));
    const data = trainDataset(gunzipSync(await readFile(path.join(model, TRAIN_DATA_FILE))), TRAIN_DATA_FILE);
    const node = await TrainingRun.create(ort, c.config, data, {}, { threads: 2 });
    const losses: number[] = [];
    for (let i = 0; i < 10; i++) losses.push((await node.next()).loss);
    const want = node.contents();
    let d = 0;
    for (const [got, ref] of [[c.params!, want.params], [c.ema, want.ema], [Object.fromEntries(c.optimizer!), Object.fromEntries(want.optimizer)]] as const) {
      for (const [k, v] of Object.entries(ref)) d = Math.max(d, maxAbsDiff(got[k]!.data, v.data));
    }
    await node.release();
    const debug = await p.evaluate(() => (globalThis as unknown as { ddpm: { train: { state: Record<string, number>; losses: number[] } } }).ddpm.train);
    out.training = {
      status,
      fellBackToWasm: /WebGPU failed/.test(status ?? ''),
      stateLocations: debug.state,
      imgPerSec: Number(await p.getAttribute('#train-status', 'data-img-per-sec')),
      lossMaxAbsDiffVsNodeCpu: maxAbsDiff(debug.losses, losses),
      stateMaxAbsDiffVsNodeCpu: d,
    };
    return out;
  } finally {
    await ctx.close();
    await server.close();
    await rm(tmp, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const result: Record<string, unknown> = {
    date: new Date().toISOString(),
    gpu: await sh('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader']),
    vulkan: (await sh('vulkaninfo', ['--summary']))?.split('\n').filter((l) => /deviceName|driverName/.test(l)).map((l) => l.trim()) ?? null,
  };
  log(`gpu: ${result.gpu ?? 'nvidia-smi not found'}`);
  const cpuS = await sampling('cpu', null);
  const cpuT = await training('cpu', null);
  result.cpu = { sampling: { ...cpuS, samples: undefined }, training: { imgPerSec: cpuT.imgPerSec, losses: cpuT.losses } };
  log(`cpu: ${cpuS.imgStepsPerSecBatch64} img-steps/s, training ${cpuT.imgPerSec} img/s`);
  for (const ep of ['webgpu', 'cuda'] as const) {
    const r: Record<string, unknown> = {};
    result[ep] = r;
    try {
      await ensureExecutionProvider(ep);
    } catch (e) {
      r.available = false;
      r.reason = (e as Error).message;
      log(`${ep}: unavailable (${r.reason})`);
      continue;
    }
    r.available = true;
    for (const [part, f] of [
      ['sampling', async () => ({ ...(await sampling(ep, cpuS.samples)), samples: undefined })],
      ['training', async () => ({ ...(await training(ep, cpuT)), params: undefined })],
    ] as const) {
      if (left() < 30) {
        r[part] = 'skipped: out of time';
        continue;
      }
      try {
        r[part] = await f();
      } catch (e) {
        r[part] = { error: (e as Error).message.split('\n')[0] };
      }
      log(`${ep} ${part}: ${JSON.stringify(r[part])}`);
    }
  }
  if (!args['skip-page'] && left() > 90) {
    try {
      const ref = (await DDPMPipeline.fromPretrained(path.join(SHIPPED_MODEL_DIR, 'model.onnx'), { threads: 2 }).then(async (p) => {
        const o = await p.generate({ n: 16, sampler: 'ddim', steps: 50, eta: 0, seed: 0 });
        await p.release();
        return o;
      })).samples;
      result.page = await Promise.race([page(ref), new Promise((_, rej) => setTimeout(() => rej(new Error('out of time')), Math.max(0, left() - 10) * 1000))]);
    } catch (e) {
      result.page = { error: (e as Error).message.split('\n')[0] };
    }
    log(`page: ${JSON.stringify(result.page)}`);
  }
  const json = JSON.stringify(result);
  if (args.json) await writeFile(args.json, JSON.stringify(result, null, 2) + '\n');
  console.log(json);
  process.exit(0); // a hung GPU session must not keep the process
}

await main();
