/**
 * The page: loads the model's config, starts the sampling worker (which loads the ONNX denoiser on
 * WebGPU or wasm), draws every reverse step it reports, and runs the Edit panel (edit.ts: inpainting and
 * SDEdit in the same worker) and the forward-process panel.
 *
 * URL parameters: ep=auto|webgpu|wasm (backend, default auto), threads=N (wasm threads, default
 * min(4, cores)), and n, sampler, steps, eta, seed to prefill the form (and, for a class-conditional model, class
 * (a class name, or any) and guidance).
 */
import { validateDiffusionConfig } from '../../src/diffusion/config.ts';
import { MAX_GUIDANCE_SCALE } from '../../src/limits.ts';
import { unetConfig } from '../../src/models/unet.ts';
import { EditPanel, type EditDebug } from './edit.ts';
import { ForwardPanel } from './forward.ts';
import { drawGrid, gridLayout } from './image.ts';
import type { BackendChoice, FromWorker, SampleRequest, SamplerKind, StartupTimes, ToWorker, WebModelInfo } from './protocol.ts';
import { Runs, type RunMessage } from './runs.ts';
import { TrainPanel, type TrainDebug } from './train.ts';

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const url = (p: string): string => new URL(p, document.baseURI).href;

/** The last finished samples (B, C, H, W) in [-1, 1] and the Edit panel's state, for tests and the devtools console. */
const debugHandle = {
  lastSamples: null as Float32Array | null,
  lastShape: [] as number[],
  edit: null as EditDebug | null,
  train: null as TrainDebug | null,
  startup: { readyAt: null, loadMs: null, parts: null, firstClickAt: null, firstImagesAt: null } as StartupTimes,
};
(globalThis as { ddpm?: typeof debugHandle }).ddpm = debugHandle;

function showError(msg: string): void {
  console.error(msg);
  const el = $('error');
  el.hidden = false;
  el.textContent = msg;
}

function backendChoice(): BackendChoice {
  const ep = params.get('ep') ?? 'auto';
  if (ep === 'auto' || ep === 'webgpu' || ep === 'wasm') return ep;
  showError(`unknown ep=${ep} (use auto, webgpu or wasm); using auto`);
  return 'auto';
}

// ---------------------------------------------------------------------------------------------
// Generate

const form = {
  n: $<HTMLInputElement>('n'),
  sampler: $<HTMLSelectElement>('sampler'),
  steps: $<HTMLInputElement>('steps'),
  eta: $<HTMLInputElement>('eta'),
  seed: $<HTMLInputElement>('seed'),
  classLabel: $<HTMLSelectElement>('class'),
  guidance: $<HTMLInputElement>('guidance'),
  generate: $<HTMLButtonElement>('generate-btn'),
  stop: $<HTMLButtonElement>('stop-btn'),
};
for (const k of ['n', 'sampler', 'steps', 'eta', 'seed', 'guidance'] as const) {
  const v = params.get(k);
  if (v !== null) form[k].value = v;
}
const syncEta = () => (form.eta.disabled = form.sampler.value !== 'ddim');
form.sampler.onchange = syncEta;
syncEta();
const syncGuidance = () => (form.guidance.disabled = form.classLabel.value === 'any');
form.classLabel.onchange = syncGuidance;

/**
 * A class-conditional model: the class choice ("any", then each class by name; "digit" when the classes are the
 * digits) and the guidance scale appear; URL parameter class=<name> preselects one.
 */
function setupClasses(names: readonly string[]): void {
  if (names.length === 0) return;
  $('class-controls').hidden = false;
  $('class-label').textContent = names.every((c, i) => c === String(i)) && names.length === 10 ? 'digit' : 'class';
  for (const [i, c] of names.entries()) form.classLabel.add(new Option(c, String(i)));
  const want = params.get('class');
  if (want !== null) {
    const i = names.indexOf(want);
    if (i >= 0) form.classLabel.value = String(i);
    else if (want !== 'any') showError(`unknown class=${want} (the model has ${names.join(', ')}); using any`);
  }
  syncGuidance();
}

function readRequest(T: number, numClasses: number): SampleRequest {
  const int = (el: HTMLInputElement, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.round(Number(el.value) || 0)));
  const cls = numClasses > 0 && form.classLabel.value !== 'any' ? Number(form.classLabel.value) : null;
  const req: SampleRequest = {
    n: int(form.n, 1, 64),
    sampler: form.sampler.value as SamplerKind,
    steps: int(form.steps, 2, T),
    eta: Math.min(1, Math.max(0, Number(form.eta.value) || 0)),
    seed: int(form.seed, 0, 2 ** 32 - 1),
    classLabel: cls !== null && Number.isInteger(cls) && cls >= 0 && cls < numClasses ? cls : null,
    guidance: Math.min(MAX_GUIDANCE_SCALE, Math.max(0, Number(form.guidance.value) || 0)),
  };
  form.n.value = String(req.n);
  form.steps.value = String(req.steps);
  form.eta.value = String(req.eta);
  form.seed.value = String(req.seed);
  form.guidance.value = String(req.guidance);
  return req;
}

/** Wire the sampling `worker` (started before model.json came, so its script loads meanwhile) to the page and send it init. */
function startWorker(info: WebModelInfo, worker: Worker): void {
  const send = (msg: ToWorker) => worker.postMessage(msg);
  const runs = new Runs(send);
  const m = info.unet;
  const xtCanvas = $<HTMLCanvasElement>('xt-canvas');
  const x0Canvas = $<HTMLCanvasElement>('x0-canvas');
  let runId: number | null = null;
  let shape: number[] = [];
  let scale = 1;
  runs.onChange(() => (form.generate.disabled = !runs.idle));
  debugHandle.edit = new EditPanel(info, runs).debug;

  worker.onerror = (e) => showError(`sampling worker failed: ${e.message || 'could not start'}`);
  worker.onmessage = (e: MessageEvent<FromWorker>) => {
    const msg = e.data;
    if (msg.type === 'ready') {
      const iso = crossOriginIsolated ? 'cross-origin isolated' : 'not cross-origin isolated';
      const threads = msg.backend === 'wasm' ? ` · ${msg.threads} thread${msg.threads === 1 ? '' : 's'}` : '';
      const p = msg.parts;
      const parts = `fetch ${p.fetchMs.toFixed(0)}, session ${p.sessionMs.toFixed(0)}, first call ${p.firstCallMs.toFixed(0)}`;
      $('backend').textContent = `backend: ${msg.backend}${threads} · ${iso}${msg.note ? ` · ${msg.note}` : ''} · model loaded in ${msg.loadMs.toFixed(0)} ms (${parts})`;
      Object.assign(debugHandle.startup, { readyAt: performance.now(), loadMs: msg.loadMs, parts: msg.parts });
      document.body.dataset.backend = msg.backend;
      document.body.dataset.model = 'ready';
      runs.setReady();
    } else if (msg.type === 'error' && msg.id === null) {
      document.body.dataset.model = 'error';
      showError(`could not load the model: ${msg.message}`);
    } else runs.dispatch(msg);
  };

  /** The Generate panel's messages. */
  const onGenerate = (msg: RunMessage) => {
    if (msg.type === 'step') {
      drawGrid(xtCanvas, msg.xt, shape, scale);
      drawGrid(x0Canvas, msg.predX0, shape, scale);
      $('xt-caption').innerHTML = `x<sub>t</sub>, t = ${msg.t}`;
      $<HTMLProgressElement>('progress').value = (msg.step + 1) / msg.total;
      $('step-info').textContent = `step ${msg.step + 1}/${msg.total} · t = ${msg.t} · ${msg.stepMs.toFixed(1)} ms`;
    } else if (msg.type === 'done') {
      runId = null;
      form.stop.disabled = true;
      document.body.dataset.sampling = msg.cancelled ? 'cancelled' : 'done';
      if (msg.cancelled) {
        $('step-info').textContent += ' · stopped';
        return;
      }
      drawGrid(xtCanvas, msg.samples, shape, scale);
      debugHandle.lastSamples = msg.samples;
      debugHandle.lastShape = shape;
      $('xt-caption').innerHTML = 'x<sub>0</sub> (final samples)';
      debugHandle.startup.firstImagesAt ??= performance.now();
      const perStep = msg.stepMs / msg.steps;
      const el = $('timings');
      el.textContent =
        `model + sampler: ${perStep.toFixed(1)} ms/step (batch ${shape[0]}) · total: ${msg.totalMs.toFixed(0)} ms for ${msg.steps} steps ` +
        `· ${((1000 * shape[0]!) / msg.totalMs).toFixed(2)} images/s` +
        (msg.modelLoadMs !== undefined ? ` · of which ${msg.modelLoadMs.toFixed(0)} ms loading the class-conditional model` : '');
      el.dataset.modelMsPerStep = perStep.toFixed(2);
      el.dataset.totalMs = msg.totalMs.toFixed(1);
    } else if (msg.type === 'error') {
      runId = null;
      form.stop.disabled = true;
      document.body.dataset.sampling = 'error';
      showError(`sampling failed: ${msg.message}`);
    }
  };

  $<HTMLFormElement>('gen-form').onsubmit = (e) => {
    e.preventDefault();
    if (!runs.idle) return;
    debugHandle.startup.firstClickAt ??= performance.now();
    const req = readRequest(info.diffusion.schedule.T, m.numClasses);
    shape = [req.n, m.inChannels, m.imageSize, m.imageSize]; // (B, C, H, W)
    const { cols, pad } = gridLayout(req.n);
    scale = Math.max(1, Math.floor(300 / (cols * (m.imageSize + pad) + pad)));
    document.body.dataset.sampling = 'running';
    $<HTMLProgressElement>('progress').value = 0;
    $('timings').textContent = 'model + sampler: – ms/step · total: – ms';
    runId = runs.start((id) => ({ type: 'sample', id, ...req }), onGenerate);
    form.stop.disabled = false;
  };
  form.stop.onclick = () => runId !== null && runs.cancel(runId);

  const anyModelUrl = info.any ? url(`model/${info.any.file}`) : undefined;
  send({ type: 'init', modelUrl: url('model/model.onnx'), anyModelUrl, ...ortUrls(), wasmOnly: wasmOnlyUrls(), backend: backendChoice(), threads: threadCount() });

  // the Train view's "Use in Generate": its EMA weights become the model of later runs here
  trainPanel.useModel = (bytes, step) => {
    if (!runs.idle) return showError('Use in Generate: wait for the current run to end');
    runs.start(
      (id) => ({ type: 'load', id, bytes }),
      (msg) => {
        if (msg.type === 'error') return showError(`could not load the trained model: ${msg.message}`);
        if (msg.type !== 'loaded') return;
        Object.assign(info, { name: 'trained in this tab', step, source: 'the Train view', classNames: [], any: undefined, ...trainPanel.last });
        $('model-info').textContent = describe(info);
        $('class-controls').hidden = true;
        document.body.dataset.model = 'trained';
      },
    );
  };
}

const ortUrls = () => ({ ortUrl: url('ort/ort.bundle.min.mjs'), wasmUrl: url('ort/ort-wasm-simd-threaded.jsep.wasm') });
/** onnxruntime-web's wasm-only build: what the sampling worker loads when the backend is wasm (ort-init.ts) */
const wasmOnlyUrls = () => ({ ortUrl: url('ort/ort.wasm.bundle.min.mjs'), wasmUrl: url('ort/ort-wasm-simd-threaded.wasm') });
const threadCount = () => Math.max(1, Number(params.get('threads')) || Math.min(4, navigator.hardwareConcurrency || 1));

/** The Train view (train.ts): its own worker, started on first use; "Use in Generate" is wired once the sampling worker runs. */
const trainPanel = {
  useModel: null as ((bytes: Uint8Array, step: number) => void) | null,
  last: null as Pick<WebModelInfo, 'unet' | 'diffusion'> | null,
};

// ---------------------------------------------------------------------------------------------

function describe(info: WebModelInfo): string {
  const m = info.unet;
  const d = info.diffusion;
  const target = { epsilon: 'ε', x0: 'x₀', v: 'v' }[d.meanType];
  const trained = (step: number | null) => (step === null ? 'training step unknown' : `trained ${step} step${step === 1 ? '' : 's'}`);
  const a = info.any;
  return (
    `model: ${info.name} U-Net (${m.imageSize}×${m.imageSize}×${m.inChannels}, ${m.baseChannels} base channels × [${m.channelMults}]) · ` +
    `predicts ${target} · ${d.schedule.kind} β schedule, T = ${d.schedule.T} · variance ${d.varType} · ${trained(info.step)}` +
    `${m.numClasses > 0 ? ` · class-conditional, ${m.numClasses} classes (classifier-free guidance)` : ''} (${info.source})` +
    (a ? ` · any ${info.classNames.length === 10 ? 'digit' : 'class'} and Edit: the unconditional ${a.name} (${trained(a.step)}, ${a.source})` : '')
  );
}

async function main(): Promise<void> {
  const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
  let info: WebModelInfo | null = null;
  try {
    const res = await fetch(url('model/model.json'));
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const raw = (await res.json()) as WebModelInfo;
    const unet = unetConfig(raw.unet);
    // (a model.json written before classes existed has no classNames)
    const classNames = raw.classNames?.length ? raw.classNames : Array.from({ length: unet.numClasses }, (_, i) => String(i));
    const any = raw.any ? { ...raw.any, unet: unetConfig(raw.any.unet) } : undefined;
    info = { ...raw, unet, diffusion: validateDiffusionConfig(raw.diffusion), classNames, any };
    $('model-info').textContent = describe(info);
    setupClasses(info.classNames);
  } catch (e) {
    document.body.dataset.model = 'error';
    $('backend').textContent = 'backend: –';
    showError(`could not load model/model.json: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (info) startWorker(info, worker);
  else worker.terminate();
  new ForwardPanel(info?.diffusion.schedule ?? null);
  const train = new TrainPanel({
    ...ortUrls(),
    dataUrl: url('model/mnist-train.safetensors.gz'),
    backend: backendChoice(),
    threads: threadCount(),
    showError,
    useModel: (bytes, step, unet, diffusion) => {
      trainPanel.last = { unet, diffusion };
      if (trainPanel.useModel) trainPanel.useModel(bytes, step);
      else showError('Use in Generate: the Generate view has no worker (its model did not load)');
    },
  });
  debugHandle.train = train.debug;
}

main();
