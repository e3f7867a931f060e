/**
 * The sampling worker: holds the onnxruntime-web session of the denoiser and runs the library's own
 * samplers (src/diffusion) on it, posting x_t and x̂_0 after every step. Running here keeps the
 * page responsive while the model computes.
 */
import type * as Ort from 'onnxruntime-web';
import { DdimSampler, DdpmSampler, GaussianDiffusion, sampleLoop, type Sampler } from '../../src/diffusion/index.ts';
import type { OrtModule } from '../../src/engine/runtime.ts';
import { Denoiser } from '../../src/models/denoiser.ts';
import { Rng } from '../../src/rng.ts';
import type { TrainConfig } from '../../src/train/config.ts';
import type { FromWorker, SampleRequest, ToWorker } from './protocol.ts';

// Typed view of the worker scope (the page's tsconfig has the DOM lib, not WebWorker).
const scope = self as unknown as {
  postMessage(msg: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
};
type GpuNavigator = { gpu?: { requestAdapter(): Promise<unknown> } };

class Cancelled extends Error {}

let config: TrainConfig | null = null;
let denoiser: Denoiser | null = null;
const cancelled = new Set<number>();

const post = (msg: FromWorker, transfer: Transferable[] = []): void => scope.postMessage(msg, transfer);

/** Let queued messages (a cancel) run between steps: a MessageChannel round trip, unlike setTimeout never clamped. */
function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      ch.port1.close();
      resolve();
    };
    ch.port2.postMessage(null);
  });
}

async function webgpuUsable(): Promise<string | null> {
  const gpu = (navigator as GpuNavigator).gpu;
  if (!gpu) return 'no navigator.gpu';
  const adapter = await gpu.requestAdapter().catch(() => null);
  return adapter ? null : 'no WebGPU adapter';
}

async function init(msg: Extract<ToWorker, { type: 'init' }>): Promise<void> {
  const t0 = performance.now();
  config = msg.config;
  const ort = (await import(/* @vite-ignore */ msg.ortUrl)) as typeof Ort;
  ort.env.wasm.wasmPaths = { wasm: msg.wasmUrl };
  const notes: string[] = [];
  let threads = Math.max(1, Math.floor(msg.threads));
  if (threads > 1 && !self.crossOriginIsolated) {
    notes.push('not cross-origin isolated: 1 thread');
    threads = 1;
  }
  ort.env.wasm.numThreads = threads;

  let backend: 'webgpu' | 'wasm' = 'wasm';
  if (msg.backend === 'wasm') notes.push('wasm requested');
  else {
    const why = await webgpuUsable();
    if (why === null) backend = 'webgpu';
    else notes.push(`WebGPU unavailable (${why})`);
  }

  const res = await fetch(msg.modelUrl);
  if (!res.ok) throw new Error(`could not fetch ${msg.modelUrl}: HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const create = (ep: 'webgpu' | 'wasm') => Denoiser.fromOnnx(ort as unknown as OrtModule, config!.model, bytes, { executionProvider: ep, threads });
  if (backend === 'webgpu') {
    try {
      denoiser = await create('webgpu');
    } catch (e) {
      notes.push(`WebGPU failed (${e instanceof Error ? e.message : String(e)})`);
      backend = 'wasm';
    }
  }
  denoiser ??= await create('wasm');
  // one call before timing anything: WebGPU compiles its shaders, wasm sizes its buffers
  const m = config.model;
  await denoiser.predict(new Float32Array(m.inChannels * m.imageSize * m.imageSize), Int32Array.of(0));
  post({ type: 'ready', backend, threads: backend === 'wasm' ? threads : 1, note: notes.join('; '), loadMs: performance.now() - t0 });
}

function makeSampler(cfg: TrainConfig, req: SampleRequest): Sampler {
  const diffusion = GaussianDiffusion.fromConfig(cfg.diffusion.schedule);
  const { meanType, varType } = cfg.diffusion;
  const steps = Math.max(1, Math.min(diffusion.numTimesteps, Math.floor(req.steps)));
  // respacing strings of improved-diffusion's space_timesteps: 'ddimS' (stride) for DDIM, 'S' (even sections) for DDPM
  if (req.sampler === 'ddim') return new DdimSampler(diffusion, { meanType, varType, eta: req.eta, timesteps: `ddim${steps}`, clipDenoised: true });
  return new DdpmSampler(diffusion, { meanType, varType, timesteps: String(steps), clipDenoised: true });
}

async function sample(id: number, req: SampleRequest): Promise<void> {
  if (!config || !denoiser) throw new Error('the model is not loaded yet');
  const d = denoiser;
  const m = config.model;
  const sampler = makeSampler(config, req);
  const shape = [req.n, m.inChannels, m.imageSize, m.imageSize]; // (B, C, H, W)
  let modelMs = 0;
  let lastModelMs = 0;
  const model = async (x: Float32Array, t: Int32Array, s: readonly number[]) => {
    const t0 = performance.now();
    const out = await d.predict(x, t, s);
    const dt = performance.now() - t0;
    modelMs += dt;
    lastModelMs = dt;
    return out;
  };
  const t0 = performance.now();
  let samples: Float32Array;
  let wasCancelled = false;
  try {
    samples = await sampleLoop(sampler, model, shape, new Rng(req.seed), {
      onStep: async (s) => {
        const xt = s.xt.slice();
        const predX0 = s.predX0.slice();
        post({ type: 'step', id, step: s.step, total: s.total, t: s.t, xt, predX0, modelMs: lastModelMs }, [xt.buffer, predX0.buffer]);
        await yieldToEvents();
        if (cancelled.has(id)) throw new Cancelled();
      },
    });
  } catch (e) {
    if (!(e instanceof Cancelled)) throw e;
    samples = new Float32Array(0);
    wasCancelled = true;
  }
  cancelled.delete(id);
  const steps = sampler.timesteps.length;
  post({ type: 'done', id, samples, totalMs: performance.now() - t0, modelMs, steps, cancelled: wasCancelled }, [samples.buffer]);
}

scope.onmessage = (e) => {
  const msg = e.data;
  const fail = (id: number | null) => (err: unknown) =>
    post({ type: 'error', id, message: err instanceof Error ? err.message : String(err) });
  if (msg.type === 'init') init(msg).catch(fail(null));
  else if (msg.type === 'sample') sample(msg.id, msg).catch(fail(msg.id));
  else if (msg.type === 'cancel') cancelled.add(msg.id);
};
