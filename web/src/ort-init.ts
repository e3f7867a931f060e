/**
 * onnxruntime-web in a worker, as both workers (sampling: worker.ts; training: train-worker.ts) set it up: the
 * bundle imported from its own URL (so its pthread workers start), wasm threads when the page is cross-origin
 * isolated, and WebGPU when asked for (or `auto`) and an adapter exists.
 *
 * The backend is decided before the bundle is imported: with `wasmOnly` given and no WebGPU, the worker loads
 * onnxruntime-web's wasm-only build (`ort.wasm.bundle.min.mjs` + `ort-wasm-simd-threaded.wasm`, 14 MB) instead of
 * the JSEP build that WebGPU needs (28 MB, asyncify-instrumented): in headless Chromium on the 2-core machine its
 * session was made in about half the time and its first batch-16 call in about a third (docs/web-speed.md).
 */
import type * as Ort from 'onnxruntime-web';
import type { BackendChoice } from './protocol.ts';

type GpuNavigator = { gpu?: { requestAdapter(): Promise<unknown> } };

const ADAPTER_TIMEOUT_MS = 10_000;

export interface OrtSetup {
  ort: typeof Ort;
  /** the backend to try first (WebGPU falls back to wasm when a session cannot be made) */
  backend: 'webgpu' | 'wasm';
  /** wasm threads */
  threads: number;
  /** why the choice differs from the request, for the page's backend line */
  notes: string[];
}

async function webgpuUsable(): Promise<string | null> {
  const gpu = (navigator as GpuNavigator).gpu;
  if (!gpu) return 'no navigator.gpu';
  // a browser without a usable GPU may never answer: give up after ADAPTER_TIMEOUT_MS
  const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ADAPTER_TIMEOUT_MS));
  const adapter = await Promise.race([gpu.requestAdapter().catch(() => null), timeout]);
  if (adapter === 'timeout') return `no WebGPU adapter within ${ADAPTER_TIMEOUT_MS / 1000} s`;
  return adapter ? null : 'no WebGPU adapter';
}

/** Where one onnxruntime-web build lives: its ESM bundle and its `.wasm`. */
export interface OrtBuild {
  ortUrl: string;
  wasmUrl: string;
}

/**
 * onnxruntime-web for `opts.backend`: `opts` is the build with WebGPU (JSEP), `opts.wasmOnly` (optional) the
 * smaller build imported instead when the backend is wasm.
 */
export async function setupOrt(opts: OrtBuild & { backend: BackendChoice; threads: number; wasmOnly?: OrtBuild }): Promise<OrtSetup> {
  const notes: string[] = [];
  let backend: 'webgpu' | 'wasm' = 'wasm';
  if (opts.backend === 'wasm') notes.push('wasm requested');
  else {
    const why = await webgpuUsable();
    if (why === null) backend = 'webgpu';
    else notes.push(`WebGPU unavailable (${why})`);
  }
  const build = backend === 'wasm' && opts.wasmOnly ? opts.wasmOnly : opts;
  const ort = (await import(/* @vite-ignore */ build.ortUrl)) as typeof Ort;
  ort.env.wasm.wasmPaths = { wasm: build.wasmUrl };
  let threads = Math.max(1, Math.floor(opts.threads));
  if (threads > 1 && !self.crossOriginIsolated) {
    notes.push('not cross-origin isolated: 1 thread');
    threads = 1;
  }
  ort.env.wasm.numThreads = threads;
  return { ort, backend, threads, notes };
}

/** Let queued messages (a cancel, a pause) run between steps: a MessageChannel round trip, unlike setTimeout never clamped. */
export function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      ch.port1.close();
      resolve();
    };
    ch.port2.postMessage(null);
  });
}
