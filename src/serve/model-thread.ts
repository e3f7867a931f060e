/**
 * A served model on a worker thread of its own (model-worker.ts): the batcher's {@link BatchModel}, answered off the
 * event loop, so the server keeps answering requests (a 429 at once, a client gone) while a model call runs.
 */
import { Worker } from 'node:worker_threads';
import { exportDenoiserOnnx } from '../models/denoiser-compile.ts';
import type { LoadedModel } from '../pipeline/load.ts';
import type { BatchModel } from './batcher.ts';

/** model-worker: the source under tsx (tests, scripts, a checkout), dist/ once built. */
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER_ENTRY = new URL(`./model-worker${FROM_SOURCE ? '.ts' : '.js'}`, import.meta.url).href;
/** A worker thread does not inherit tsx's module hooks: the source registers them there first. */
const TSX_API = FROM_SOURCE ? import.meta.resolve('tsx/esm/api') : null;
const BOOT = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  await import(workerData.entry);
})().catch((e) => require('node:worker_threads').parentPort.postMessage({ error: String((e && e.message) || e) }));
`;

type Reply = { ready?: true; id?: number; out?: Float32Array; error?: string };

export class ModelThread {
  private next = 0;
  private readonly waiting = new Map<number, { resolve: (out: Float32Array) => void; reject: (e: Error) => void }>();
  private failed: Error | null = null;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: Reply) => {
      const w = m.id === undefined ? undefined : this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id!);
      if (m.error !== undefined) w.reject(new Error(m.error));
      else w.resolve(m.out!);
    });
    const fail = (e: Error) => {
      this.failed = e;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the model's worker thread exited (${code})`)));
  }

  /**
   * Open `m` in a new worker thread: an exported model's bytes, or a checkpoint's weights exported as `ddpm sample`
   * compiles them (exportDenoiserOnnx), on onnxruntime-node with `threads` and `ep`; run once at batch 1 there.
   * Rejects with onnxruntime's message when the session cannot be opened or run.
   */
  static async start(m: LoadedModel, runtime: { threads?: number; ep?: string }): Promise<ModelThread> {
    const bytes = m.onnxBytes ?? exportDenoiserOnnx(m.unet, m.weights!).bytes;
    const worker = new Worker(BOOT, { eval: true, workerData: { entry: WORKER_ENTRY, tsx: TSX_API, unet: m.unet, bytes, threads: runtime.threads, ep: runtime.ep } });
    const first = await new Promise<Reply>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the model's worker thread exited (${code}) before it was ready`)));
    });
    if (first.error !== undefined) {
      await worker.terminate();
      throw new Error(first.error);
    }
    return new ModelThread(worker);
  }

  /** One model call (see BatchModel); the arrays are handed over to the worker, not copied. */
  readonly run: BatchModel = (x, t, y, shape) => {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.next++;
    return new Promise<Float32Array>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      const transfer = [x.buffer, t.buffer, ...(y ? [y.buffer] : [])] as ArrayBuffer[];
      this.worker.postMessage({ id, x, t, y, shape: [...shape] }, transfer);
    });
  };

  async release(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}
