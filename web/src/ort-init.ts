/**
 * onnxruntime-web in a worker, as both workers (sampling: worker.ts; training: train-worker.ts) set it up: the
 * bundle imported from its own URL (so its pthread workers start), wasm threads when the page is cross-origin
 * isolated, and WebGPU when asked for (or `auto`) and an adapter exists.
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

export async function setupOrt(opts: { ortUrl: string; wasmUrl: string; backend: BackendChoice; threads: number }): Promise<OrtSetup> {
  const ort = (await import(/* @vite-ignore */ opts.ortUrl)) as typeof Ort;
  ort.env.wasm.wasmPaths = { wasm: opts.wasmUrl };
  const notes: string[] = [];
  let threads = Math.max(1, Math.floor(opts.threads));
  if (threads > 1 && !self.crossOriginIsolated) {
    notes.push('not cross-origin isolated: 1 thread');
    threads = 1;
  }
  ort.env.wasm.numThreads = threads;
  let backend: 'webgpu' | 'wasm' = 'wasm';
  if (opts.backend === 'wasm') notes.push('wasm requested');
  else {
    const why = await webgpuUsable();
    if (why === null) backend = 'webgpu';
    else notes.push(`WebGPU unavailable (${why})`);
  }
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
