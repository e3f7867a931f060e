/**
 * The sampling worker: holds the library's DDPMPipeline (src/pipeline/pipeline.ts) on onnxruntime-web and posts
 * x_t and x̂_0 after every step. Running here keeps the page responsive while the model computes.
 */
import type * as Ort from 'onnxruntime-web';
import type { OrtModule } from '../../src/engine/runtime.ts';
import { DDPMPipeline } from '../../src/pipeline/pipeline.ts';
import type { FromWorker, SampleRequest, ToWorker } from './protocol.ts';

// Typed view of the worker scope (the page's tsconfig has the DOM lib, not WebWorker).
const scope = self as unknown as {
  postMessage(msg: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
};
type GpuNavigator = { gpu?: { requestAdapter(): Promise<unknown> } };

let pipe: DDPMPipeline | null = null;
const running = new Map<number, AbortController>();

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
  // the configs come from the file's metadata; the pipeline runs the model once (WebGPU compiles its shaders, wasm sizes its buffers)
  const open = (ep: 'webgpu' | 'wasm') => DDPMPipeline.fromPretrained(bytes, { ort: ort as unknown as OrtModule, executionProvider: ep, threads });
  if (backend === 'webgpu') {
    try {
      pipe = await open('webgpu');
    } catch (e) {
      notes.push(`WebGPU failed (${e instanceof Error ? e.message : String(e)})`);
      backend = 'wasm';
    }
  }
  pipe ??= await open('wasm');
  post({ type: 'ready', backend, threads: backend === 'wasm' ? threads : 1, note: notes.join('; '), loadMs: performance.now() - t0 });
}

async function sample(id: number, req: SampleRequest): Promise<void> {
  if (!pipe) throw new Error('the model is not loaded yet');
  const controller = new AbortController();
  running.set(id, controller);
  let stepMs = 0;
  let last = performance.now();
  const t0 = last;
  let samples: Float32Array = new Float32Array(0);
  let steps = 0;
  try {
    const out = await pipe.generate({
      n: req.n,
      sampler: req.sampler,
      steps: req.steps,
      eta: req.sampler === 'ddim' ? req.eta : undefined,
      seed: req.seed,
      batchSize: req.n, // one batch: every step redraws all the images
      signal: controller.signal,
      onStep: async (s) => {
        const dt = performance.now() - last;
        stepMs += dt;
        const xt = s.xt.slice();
        const predX0 = s.predX0.slice();
        post({ type: 'step', id, step: s.step, total: s.total, t: s.t, xt, predX0, stepMs: dt }, [xt.buffer, predX0.buffer]);
        await yieldToEvents();
        last = performance.now();
      },
    });
    samples = out.samples;
    steps = out.timesteps.length;
  } catch (e) {
    if (!controller.signal.aborted) throw e;
  } finally {
    running.delete(id);
  }
  post({ type: 'done', id, samples, totalMs: performance.now() - t0, stepMs, steps, cancelled: controller.signal.aborted }, [samples.buffer]);
}

scope.onmessage = (e) => {
  const msg = e.data;
  const fail = (id: number | null) => (err: unknown) =>
    post({ type: 'error', id, message: err instanceof Error ? err.message : String(err) });
  if (msg.type === 'init') init(msg).catch(fail(null));
  else if (msg.type === 'sample') sample(msg.id, msg).catch(fail(msg.id));
  else if (msg.type === 'cancel') running.get(msg.id)?.abort();
};
