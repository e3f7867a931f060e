/**
 * The sampling worker: holds the library's DDPMPipeline (src/pipeline/pipeline.ts) on onnxruntime-web and posts
 * x_t and x̂_0 after every step; for the Edit panel it runs the library's inpainting (src/diffusion/inpaint.ts) and
 * SDEdit (src/diffusion/edit.ts) with the pipeline's model and sampler, as `ddpm inpaint` and `ddpm edit` do.
 * Running here keeps the page responsive while the model computes.
 *
 * With a class-conditional model and its unconditional companion (model.json's `any`), the companion is loaded
 * first: it samples "any" class and runs the Edit panel; the conditional model loads when a class is first asked for.
 */
import { sdedit } from '../../src/diffusion/edit.ts';
import { inpaint } from '../../src/diffusion/inpaint.ts';
import type { OrtModule } from '../../src/engine/runtime.ts';
import { Denoiser } from '../../src/models/denoiser.ts';
import { DDPMPipeline, checkDenoiserRuns, pipelineSampler } from '../../src/pipeline/pipeline.ts';
import { PerExampleRng, Rng } from '../../src/rng.ts';
import { readDenoiserFile } from '../../src/sample/onnx-file.ts';
import { setupOrt, yieldToEvents } from './ort-init.ts';
import type { FromWorker, InpaintRequest, LoadParts, SampleRequest, SdeditRequest, ToWorker } from './protocol.ts';

// Typed view of the worker scope (the page's tsconfig has the DOM lib, not WebWorker).
const scope = self as unknown as {
  postMessage(msg: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
};

/** the model of "any" and of the Edit panel (the unconditional companion when there is one) */
let pipe: DDPMPipeline | null = null;
/** the class-conditional model when it is not `pipe`: its URL, and its pipeline once asked for */
let cond: { url: string; pipe: Promise<DDPMPipeline> | null } | null = null;
const running = new Map<number, AbortController>();

const post = (msg: FromWorker, transfer: Transferable[] = []): void => scope.postMessage(msg, transfer);

let runtime: { ort: OrtModule; backend: 'webgpu' | 'wasm'; threads: number } | null = null;

async function fetchModel(url: string): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`could not fetch ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * What DDPMPipeline.fromPretrained does (the configs from the file's metadata, one model call at batch 1, which
 * makes WebGPU compile its shaders and wasm size its buffers), timed in its two parts.
 */
async function timedPipeline(bytes: Uint8Array, ep: 'webgpu' | 'wasm', times: Partial<LoadParts>): Promise<DDPMPipeline> {
  const rt = runtime!;
  const meta = readDenoiserFile(bytes);
  const t0 = performance.now();
  const denoiser = await Denoiser.fromOnnx(rt.ort, meta.unet, bytes, { executionProvider: ep, threads: rt.threads });
  const t1 = performance.now();
  try {
    await checkDenoiserRuns(denoiser);
  } catch (e) {
    await denoiser.release();
    throw e;
  }
  times.sessionMs = t1 - t0;
  times.firstCallMs = performance.now() - t1;
  return new DDPMPipeline(denoiser, meta.diffusion, { step: meta.step, version: meta.version }, meta.classNames);
}

/** A pipeline for ONNX `bytes` on the chosen backend, WebGPU falling back to wasm (noted). */
async function openPipeline(bytes: Uint8Array, notes: string[], times: Partial<LoadParts> = {}): Promise<DDPMPipeline> {
  const rt = runtime!;
  if (rt.backend === 'webgpu') {
    try {
      return await timedPipeline(bytes, 'webgpu', times);
    } catch (e) {
      notes.push(`WebGPU failed (${e instanceof Error ? e.message : String(e)})`);
      rt.backend = 'wasm';
    }
  }
  return timedPipeline(bytes, 'wasm', times);
}

async function init(msg: Extract<ToWorker, { type: 'init' }>): Promise<void> {
  const t0 = performance.now();
  // the first model's bytes come while onnxruntime-web loads
  const first = fetchModel(msg.anyModelUrl ?? msg.modelUrl);
  first.catch(() => {}); // awaited below; a failure there is the one reported
  const { ort, threads, notes, backend } = await setupOrt(msg);
  runtime = { ort: ort as unknown as OrtModule, backend, threads };
  const bytes = await first;
  const parts: Partial<LoadParts> = { fetchMs: performance.now() - t0 };
  pipe = await openPipeline(bytes, notes, parts);
  cond = msg.anyModelUrl ? { url: msg.modelUrl, pipe: null } : null;
  post({ type: 'ready', backend: runtime.backend, threads: runtime.backend === 'wasm' ? threads : 1, note: notes.join('; '), loadMs: performance.now() - t0, parts: parts as LoadParts });
}

/** The class-conditional model's pipeline, loaded on first use (a failed load is tried again next time). */
function condPipeline(): Promise<DDPMPipeline> {
  if (!cond) return Promise.resolve(pipe!);
  const c = cond;
  c.pipe ??= fetchModel(c.url)
    .then((bytes) => openPipeline(bytes, []))
    .catch((e) => {
      c.pipe = null;
      throw e;
    });
  return c.pipe;
}

/** Replace the model (the Train view's EMA weights, exported): later runs use it. */
async function load(msg: Extract<ToWorker, { type: 'load' }>): Promise<void> {
  if (!runtime) throw new Error('the worker is not initialised yet');
  if (running.size > 0) throw new Error('a run is going: stop it before loading another model');
  const t0 = performance.now();
  const notes: string[] = [];
  const next = await openPipeline(msg.bytes, notes);
  await pipe?.release();
  const condPipe = cond?.pipe;
  cond = null;
  await condPipe?.then((p) => p.release(), () => {});
  pipe = next;
  post({ type: 'loaded', id: msg.id, backend: runtime.backend, note: notes.join('; '), loadMs: performance.now() - t0 });
}

async function sample(id: number, req: SampleRequest): Promise<void> {
  if (!pipe) throw new Error('the model is not loaded yet');
  const controller = new AbortController();
  running.set(id, controller);
  const t0 = performance.now();
  let modelLoadMs: number | undefined;
  let stepMs = 0;
  let last = t0;
  let samples: Float32Array = new Float32Array(0);
  let steps = 0;
  try {
    let model = pipe;
    if (req.classLabel !== null) {
      const loading = cond !== null && cond.pipe === null;
      model = await condPipeline();
      if (loading) {
        modelLoadMs = performance.now() - t0;
        last = performance.now();
      }
    }
    const out = await model.generate({
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
  post({ type: 'done', id, samples, totalMs: performance.now() - t0, stepMs, steps, cancelled: controller.signal.aborted, modelLoadMs }, [samples.buffer]);
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
