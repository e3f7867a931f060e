/**
 * The training worker: the library's TrainingRun (src/train/run.ts) on onnxruntime-web. The training step (U-Net
 * forward, loss, backward, clipping, AdamW) is traced, differentiated and compiled to ONE ONNX graph here, as
 * `ddpm train` does in Node, and run once per step; the weights, the EMA, AdamW's moments, the step and the data
 * position stay in this worker between steps (on WebGPU the weights, moments and EMA stay in GPU buffers: only the
 * loss comes back each step, the rest when a grid, a checkpoint or the model is asked for), and batches and noise
 * come from the project's RNG, so a run here computes what `ddpm train` computes with the same config and data (up
 * to the backends' float rounding).
 * Checkpoints go out and come in as one safetensors file (src/train/checkpoint-file.ts), which `ddpm sample
 * --checkpoint` reads.
 */
import { uint8Dataset, type Dataset } from '../../src/data/loader.ts';
import { trainDataset } from './train-data.ts';
import type { OrtModule, RuntimeOptions } from '../../src/engine/runtime.ts';
import { describeUNet, unetParamCount } from '../../src/models/unet.ts';
import { exportDenoiserFile } from '../../src/sample/onnx-export.ts';
import { packCheckpoint, unpackCheckpoint } from '../../src/train/checkpoint-file.ts';
import { applyOptions, defaultTrainConfig, type TrainConfig } from '../../src/train/config.ts';
import { RunStateError, TrainingRun, type RunStart } from '../../src/train/run.ts';
import { setupOrt, yieldToEvents } from './ort-init.ts';
import type { FromTrainWorker, ToTrainWorker, TrainData, TrainStart } from './train-protocol.ts';

const scope = self as unknown as {
  postMessage(msg: FromTrainWorker, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ToTrainWorker>) => void) | null;
};
const post = (msg: FromTrainWorker, transfer: Transferable[] = []): void => scope.postMessage(msg, transfer);

/** Samples in a grid, and their DDIM steps. */
const GRID_N = 16;
const GRID_STEPS = 20;

let ort: OrtModule | null = null;
let runtime: RuntimeOptions = {};
let dataUrl = '';
let mnist: Promise<Dataset> | null = null;
let run: TrainingRun | null = null;
let running = false;
/** the step loop while it runs (one onnxruntime call at a time: other work waits for a step's end) */
let looping: Promise<void> | null = null;
let sampleRequested = false;
/** reads of the state asked for while a step runs (a checkpoint, the model): they run after it */
const pending: (() => Promise<void>)[] = [];
let stopAt = 0;
let sampleEvery = 0;

/** The shipped MNIST digits (web/scripts/prepare-train-data.ts): a gzip-compressed safetensors file. */
async function loadMnist(): Promise<Dataset> {
  const res = await fetch(dataUrl);
  if (!res.ok) throw new Error(`could not fetch ${dataUrl}: HTTP ${res.status}`);
  let bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    bytes = new Uint8Array(await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).arrayBuffer());
  }
  return trainDataset(bytes, dataUrl);
}

async function dataset(d: TrainData): Promise<{ data: Dataset; source: string; note: string }> {
  if (d.kind === 'mnist') {
    mnist ??= loadMnist();
    const data = await mnist;
    return { data, source: `web:mnist-${data.n}`, note: `${data.n.toLocaleString('en')} MNIST training digits` };
  }
  const data = uint8Dataset(d.pixels, { n: d.n, channels: d.channels, height: d.size, width: d.size });
  // leftOut: what the pick or drop left out, as the CLI's folder summary says it ('; left out: 1 unreadable image file (...)')
  return { data, source: 'web:images', note: `${d.n} image${d.n === 1 ? '' : 's'} of yours, ${d.channels}x${d.size}x${d.size}${d.leftOut}` };
}

async function start(msg: TrainStart): Promise<void> {
  if (!ort) throw new Error('the worker is not initialised yet');
  running = false;
  await looping;
  await run?.release();
  run = null;
  const t0 = performance.now();
  const { data, source, note: dataNote } = await dataset(msg.data);
  let config: TrainConfig;
  let begin: RunStart = {};
  const notes: string[] = [];
  if (msg.checkpoint) {
    const c = unpackCheckpoint(msg.checkpoint);
    config = c.config;
    if (c.params && c.optimizer && c.state) begin = { params: c.params, ema: c.ema, optimizer: c.optimizer, state: c.state };
    else {
      begin = { params: c.ema };
      notes.push('the file holds only a model: its weights start a new run');
    }
  } else {
    config = applyOptions(defaultTrainConfig(msg.preset), { seed: String(msg.seed), 'batch-size': String(msg.batchSize), 'sample-count': String(GRID_N) });
  }
  config = { ...config, data: { ...config.data, source } };
  if (data.n < config.data.batchSize) {
    // as `ddpm train` does for a small folder: the batch becomes the data
    notes.push(`batch ${data.n}: the data has fewer images than batch ${config.data.batchSize}`);
    config = { ...config, data: { ...config.data, batchSize: data.n } };
  }
  const m = config.model;
  if (data.channels !== m.inChannels || data.height !== m.imageSize) {
    throw new Error(`the data is ${data.channels}x${data.height}x${data.width}, the model ${config.preset ?? ''} takes ${m.inChannels}x${m.imageSize}x${m.imageSize}`);
  }
  const create = async (): Promise<TrainingRun> => {
    try {
      return await TrainingRun.create(ort!, config, data, begin, runtime);
    } catch (e) {
      if (!(e instanceof RunStateError && e.part === 'loader' && begin.state)) throw e;
      // other data than the checkpoint's: the weights, EMA and moments continue, the data order starts afresh
      notes.push('other data than the checkpoint was trained on: a fresh data order');
      begin = { ...begin, state: { ...begin.state, loader: null } };
      return TrainingRun.create(ort!, config, data, begin, runtime);
    }
  };
  run = await create();
  const { step: fromStep, images: fromImages } = run.state;
  let compileMs = performance.now() - t0;
  let first: Awaited<ReturnType<TrainingRun['next']>> | null = null;
  if (runtime.executionProvider === 'webgpu') {
    // WebGPU may compile a graph it then cannot run: the first step tells; a failed step changes no weights, so the
    // same start runs on wasm instead
    const t1 = performance.now();
    try {
      first = await run.next();
      run.state.elapsedSec += (performance.now() - t1) / 1000;
    } catch (e) {
      await run.release();
      notes.push(`WebGPU failed (${(e instanceof Error ? e.message : String(e)).slice(0, 200)}): wasm`);
      runtime = { ...runtime, executionProvider: 'wasm' };
      run = await create();
      compileMs = performance.now() - t0;
    }
  }
  post({
    type: 'started',
    description: `${config.preset} (${describeUNet(m)})`,
    params: unetParamCount(m),
    step: fromStep,
    images: fromImages,
    compileMs,
    data: dataNote,
    note: notes.join('; '),
  });
  if (first) post({ type: 'progress', step: run.state.step, loss: first.loss, mse: first.aux.mse ?? first.loss, lr: first.lr, imgPerSec: 0, elapsedSec: run.state.elapsedSec, state: run.step.stateLocations() });
  sampleEvery = msg.sampleEvery;
  await loop(msg.stopAt);
}

/**
 * Run `task` between two steps: after the current one while the loop runs, else now. A checkpoint taken during a step
 * would pair the next batch's data position with the weights before it, and on WebGPU the state it reads is being
 * replaced.
 */
function betweenSteps(task: () => Promise<void>): Promise<void> {
  if (!looping) return task();
  return new Promise((resolve, reject) => pending.push(() => task().then(resolve, reject)));
}

async function runPending(): Promise<void> {
  while (pending.length > 0) await pending.shift()!();
}

/** Start the step loop unless it runs (then only the stop step changes). */
function loop(until: number): Promise<void> {
  stopAt = until;
  if (!run) return Promise.resolve();
  if (!looping) {
    looping = steps(run).finally(() => {
      looping = null;
    });
  }
  return looping;
}

/** Step until paused or `stopAt`; progress after every step, a sample grid every `sampleEvery` steps. */
async function steps(r: TrainingRun): Promise<void> {
  running = true;
  const B = r.config.data.batchSize;
  let window = { t0: performance.now(), n: 0 };
  try {
    while (running && (stopAt === 0 || r.state.step < stopAt)) {
      const t1 = performance.now();
      const res = await r.next();
      const now = performance.now();
      r.state.elapsedSec += (now - t1) / 1000;
      window.n++;
      const dt = (now - window.t0) / 1000;
      post({ type: 'progress', step: r.state.step, loss: res.loss, mse: res.aux.mse ?? res.loss, lr: res.lr, imgPerSec: (window.n * B) / dt, elapsedSec: r.state.elapsedSec, state: r.step.stateLocations() });
      if (dt > 5) window = { t0: now, n: 0 };
      if (sampleRequested || (sampleEvery > 0 && r.state.step % sampleEvery === 0)) await sample();
      await runPending();
      await yieldToEvents();
    }
  } finally {
    running = false;
    // what was asked for during the last step; no message can arrive between this and the loop's end
    await runPending();
  }
  post({ type: 'paused', step: r.state.step });
}

async function sample(): Promise<void> {
  sampleRequested = false;
  if (!run || !ort) return;
  const t0 = performance.now();
  const m = run.config.model;
  const samples = await run.sampleEma(ort, GRID_N, GRID_STEPS, runtime);
  post({ type: 'samples', step: run.state.step, samples, shape: [GRID_N, m.inChannels, m.imageSize, m.imageSize], ms: performance.now() - t0 }, [samples.buffer]);
}

function requireRun(): TrainingRun {
  if (!run) throw new Error('no run yet: start one first');
  return run;
}

scope.onmessage = (e) => {
  const msg = e.data;
  const fail = (err: unknown) => {
    running = false;
    post({ type: 'error', message: err instanceof Error ? err.message : String(err) });
  };
  const go = async (): Promise<void> => {
    if (msg.type === 'init') {
      const setup = await setupOrt(msg);
      ort = setup.ort as unknown as OrtModule;
      // the training graph on WebGPU is verified on a software adapter only (SwiftShader, no GPU where this was
      // built): wasm unless asked for explicitly
      const backend = msg.backend === 'webgpu' && setup.backend === 'webgpu' ? 'webgpu' : 'wasm';
      runtime = { executionProvider: backend, threads: setup.threads };
      dataUrl = msg.dataUrl;
      post({ type: 'ready', backend, threads: backend === 'wasm' ? setup.threads : 1, note: setup.notes.join('; ') });
    } else if (msg.type === 'start') await start(msg);
    else if (msg.type === 'pause') running = false;
    else if (msg.type === 'resume') await loop(msg.stopAt);
    else if (msg.type === 'sample') {
      requireRun();
      if (looping) sampleRequested = true; // after the current step
      else await sample();
    } else if (msg.type === 'download') {
      const r = requireRun();
      await betweenSteps(async () => {
        await r.sync();
        const bytes = packCheckpoint(r.contents());
        const fileName = `ddpm-${r.config.preset ?? 'model'}-step${String(r.state.step).padStart(6, '0')}.safetensors`;
        post({ type: 'checkpoint', bytes, fileName, step: r.state.step }, [bytes.buffer]);
      });
    } else if (msg.type === 'export') {
      const r = requireRun();
      await betweenSteps(async () => {
        await r.sync();
        const ema = Object.fromEntries(r.ema);
        const bytes = exportDenoiserFile(r.config.model, ema, { diffusion: r.config.diffusion, version: 'web', step: r.state.step });
        post({ type: 'model', bytes, step: r.state.step, unet: r.config.model, diffusion: r.config.diffusion }, [bytes.buffer]);
      });
    }
  };
  go().catch(fail);
};
