/**
 * The sampling worker: holds the library's DDPMPipeline (src/pipeline/pipeline.ts) on onnxruntime-web and posts
 * x_t and x̂_0 after every step; for the Edit panel it runs the library's inpainting (src/diffusion/inpaint.ts) and
 * SDEdit (src/diffusion/edit.ts) with the pipeline's model and sampler, as `ddpm inpaint` and `ddpm edit` do.
 * Running here keeps the page responsive while the model computes.
 */
import { sdedit } from '../../src/diffusion/edit.ts';
import { inpaint } from '../../src/diffusion/inpaint.ts';
import type { OrtModule } from '../../src/engine/runtime.ts';
import { DDPMPipeline, pipelineSampler } from '../../src/pipeline/pipeline.ts';
import { PerExampleRng, Rng } from '../../src/rng.ts';
import { setupOrt, yieldToEvents } from './ort-init.ts';
import type { FromWorker, InpaintRequest, SampleRequest, SdeditRequest, ToWorker } from './protocol.ts';

// Typed view of the worker scope (the page's tsconfig has the DOM lib, not WebWorker).
const scope = self as unknown as {
  postMessage(msg: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
};

let pipe: DDPMPipeline | null = null;
const running = new Map<number, AbortController>();

const post = (msg: FromWorker, transfer: Transferable[] = []): void => scope.postMessage(msg, transfer);

let runtime: { ort: OrtModule; backend: 'webgpu' | 'wasm'; threads: number } | null = null;

/** A pipeline for ONNX `bytes` on the chosen backend, WebGPU falling back to wasm (noted). */
async function openPipeline(bytes: Uint8Array, notes: string[]): Promise<DDPMPipeline> {
  const rt = runtime!;
  // the configs come from the file's metadata; the pipeline runs the model once (WebGPU compiles its shaders, wasm sizes its buffers)
  const open = (ep: 'webgpu' | 'wasm') => DDPMPipeline.fromPretrained(bytes, { ort: rt.ort, executionProvider: ep, threads: rt.threads });
  if (rt.backend === 'webgpu') {
    try {
      return await open('webgpu');
    } catch (e) {
      notes.push(`WebGPU failed (${e instanceof Error ? e.message : String(e)})`);
      rt.backend = 'wasm';
    }
  }
  return open('wasm');
}

async function init(msg: Extract<ToWorker, { type: 'init' }>): Promise<void> {
  const t0 = performance.now();
  const { ort, threads, notes, backend } = await setupOrt(msg);
  runtime = { ort: ort as unknown as OrtModule, backend, threads };
  const res = await fetch(msg.modelUrl);
  if (!res.ok) throw new Error(`could not fetch ${msg.modelUrl}: HTTP ${res.status}`);
  pipe = await openPipeline(new Uint8Array(await res.arrayBuffer()), notes);
  post({ type: 'ready', backend: runtime.backend, threads: runtime.backend === 'wasm' ? threads : 1, note: notes.join('; '), loadMs: performance.now() - t0 });
}

/** Replace the model (the Train view's EMA weights, exported): later runs use it. */
async function load(msg: Extract<ToWorker, { type: 'load' }>): Promise<void> {
  if (!runtime) throw new Error('the worker is not initialised yet');
  if (running.size > 0) throw new Error('a run is going: stop it before loading another model');
  const t0 = performance.now();
  const notes: string[] = [];
  const next = await openPipeline(msg.bytes, notes);
  await pipe?.release();
  pipe = next;
  post({ type: 'loaded', id: msg.id, backend: runtime.backend, note: notes.join('; '), loadMs: performance.now() - t0 });
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
      // a class: classifier-free guidance on a doubled batch (src/diffusion/guidance.ts); "any": the model as it is
      ...(req.classLabel !== null ? { classLabels: req.classLabel, guidanceScale: req.guidance } : {}),
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

/** `x` repeated `n` times. */
function repeat(x: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n * x.length);
  for (let i = 0; i < n; i++) out.set(x, i * x.length);
  return out;
}

/**
 * Inpainting or SDEdit of `req.n` copies of one image in one batch; copy i draws from `Rng(seed).fold(i)`, so the
 * results are those of `ddpm inpaint|edit --n --seed` with the same sampler flags (up to the backends' float rounding).
 */
async function edit(id: number, req: ({ type: 'inpaint' } & InpaintRequest) | ({ type: 'sdedit' } & SdeditRequest)): Promise<void> {
  if (!pipe) throw new Error('the model is not loaded yet');
  const [c, s] = [pipe.unet.inChannels, pipe.unet.imageSize];
  if (req.image.length !== c * s * s) throw new Error(`the image has ${req.image.length} values, the model takes ${c}x${s}x${s}`);
  const n = req.n;
  const sampler = pipelineSampler(pipe.diffusion, { sampler: req.sampler, steps: req.steps, eta: req.sampler === 'ddim' ? req.eta : undefined });
  const root = new Rng(req.seed);
  const rng = new PerExampleRng(Array.from({ length: n }, (_, i) => root.fold(i)));
  const image = { data: repeat(req.image, n), shape: [n, c, s, s] };
  const controller = new AbortController();
  running.set(id, controller);
  let stepMs = 0;
  let calls = 0;
  let last = performance.now();
  const t0 = last;
  // after every move: x to the page, then a cancel gets its chance (throwing from onStep stops the library's loop)
  const onStep = async (m: { step: number; total: number; t: number; x: Float32Array; call: boolean }): Promise<void> => {
    const dt = performance.now() - last;
    stepMs += dt;
    if (m.call) calls++;
    const x = m.x.slice();
    post({ type: 'edit-step', id, step: m.step, total: m.total, t: m.t, x, stepMs: dt }, [x.buffer]);
    await yieldToEvents();
    controller.signal.throwIfAborted();
    last = performance.now();
  };
  let samples: Float32Array = new Float32Array(0);
  try {
    samples =
      req.type === 'inpaint'
        ? await inpaint(sampler, pipe.denoiser.predict, image, repeat(req.mask, n), rng, {
            jumpLength: req.jump,
            jumpNSample: req.resample,
            onStep: (m) => onStep({ ...m, call: m.direction === 'reverse' }),
          })
        : await sdedit(sampler, pipe.denoiser.predict, image, rng, {
            strength: req.strength,
            onStep: (m) => onStep({ step: m.step, total: m.total, t: m.t, x: m.prevSample, call: true }),
          });
  } catch (e) {
    if (!controller.signal.aborted) throw e;
  } finally {
    running.delete(id);
  }
  post({ type: 'done', id, samples, totalMs: performance.now() - t0, stepMs, steps: calls, cancelled: controller.signal.aborted }, [samples.buffer]);
}

scope.onmessage = (e) => {
  const msg = e.data;
  const fail = (id: number | null) => (err: unknown) =>
    post({ type: 'error', id, message: err instanceof Error ? err.message : String(err) });
  if (msg.type === 'init') init(msg).catch(fail(null));
  else if (msg.type === 'sample') sample(msg.id, msg).catch(fail(msg.id));
  else if (msg.type === 'inpaint' || msg.type === 'sdedit') edit(msg.id, msg).catch(fail(msg.id));
  else if (msg.type === 'load') load(msg).catch(fail(msg.id));
  else if (msg.type === 'cancel') running.get(msg.id)?.abort();
};
