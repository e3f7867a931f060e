/**
 * A denoiser whose batch is split across worker threads, each with its own single-threaded onnxruntime session
 * of the same ONNX bytes: images are independent, so the halves need no communication beyond the split and
 * the concatenation. On the 2-core development machine, at batch 64, two 1-thread workers gave 1.40–1.71× the
 * img-steps/s of one 2-thread session while other jobs took CPU (a 2-thread session waits at every op for a thread
 * that lost its core), and about 1.08× on the quiet machine (555 against 513, one phase each; issue 17).
 *
 * Same `predict` as {@link Denoiser} (a class-conditional model is run with the label ∅, its unconditional
 * prediction). Node only (worker_threads).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** What the split needs of a U-Net config (models/unet.ts's UNetConfig has it; this layer does not import models). */
export interface DenoiserShape {
  inChannels: number;
  imageSize: number;
  numClasses: number;
}

// CommonJS, run with `eval`: no loader or file of its own is needed, under tsx and from dist/ alike.
const WORKER_SCRIPT = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortEntry);
ort.env.logLevel = 'fatal';
ort.InferenceSession.create(workerData.bytes, {
  executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential',
}).then((session) => {
  parentPort.postMessage({ ready: true });
  parentPort.on('message', async ({ x, dims, t, y }) => {
    try {
      const feeds = { x: new ort.Tensor('float32', x, dims), t: new ort.Tensor('float32', t, [t.length]) };
      if (y) feeds.y = new ort.Tensor('int64', y, [y.length]);
      const out = (await session.run(feeds)).out.data;
      parentPort.postMessage({ out }, [out.buffer]);
    } catch (e) {
      parentPort.postMessage({ error: String((e && e.message) || e) });
    }
  });
}, (e) => parentPort.postMessage({ error: String((e && e.message) || e) }));
`;

type Reply = { ready?: true; out?: Float32Array; error?: string };

function nextReply(w: Worker): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Reply) => {
      w.off('error', onError);
      if (m.error) reject(new Error(`denoiser worker: ${m.error}`));
      else resolve(m);
    };
    const onError = (e: Error) => {
      w.off('message', onMessage);
      reject(e);
    };
    w.once('message', onMessage);
    w.once('error', onError);
  });
}

export class WorkerDenoiser {
  private busy = false;

  private constructor(
    readonly cfg: DenoiserShape,
    private readonly workers: Worker[],
  ) {}

  /** Start `workers` threads (default 2), each opening a 1-thread session of the denoiser's ONNX bytes. */
  static async create(cfg: DenoiserShape, bytes: Uint8Array, workers = 2): Promise<WorkerDenoiser> {
    if (!(Number.isInteger(workers) && workers >= 1)) throw new Error(`WorkerDenoiser: workers must be an integer >= 1, got ${workers}`);
    const ortEntry = createRequire(import.meta.url).resolve('onnxruntime-node');
    const ws = Array.from({ length: workers }, () => new Worker(WORKER_SCRIPT, { eval: true, workerData: { ortEntry, bytes } }));
    try {
      await Promise.all(ws.map(nextReply));
    } catch (e) {
      await Promise.all(ws.map((w) => w.terminate()));
      throw e;
    }
    return new WorkerDenoiser(cfg, ws);
  }

  /** Model output for x_t [B, C, H, W] and timesteps t [B]: contiguous chunks of the batch, one per worker. */
  readonly predict = async (xt: Float32Array, t: Int32Array | Float32Array): Promise<Float32Array> => {
    const { inChannels: C, imageSize: S, numClasses: K } = this.cfg;
    const per = C * S * S;
    const B = t.length;
    if (xt.length !== B * per) throw new Error(`denoiser: ${xt.length} values and ${B} timesteps do not form a batch`);
    if (this.busy) throw new Error('WorkerDenoiser: one predict at a time (await the previous call)');
    this.busy = true;
    const n = Math.min(this.workers.length, B);
    const out = new Float32Array(xt.length);
    try {
      await Promise.all(this.workers.slice(0, n).map(async (w, i) => {
      const lo = Math.floor((B * i) / n);
      const hi = Math.floor((B * (i + 1)) / n);
      const reply = nextReply(w);
      w.postMessage({
        x: xt.slice(lo * per, hi * per),
        dims: [hi - lo, C, S, S],
        t: Float32Array.from(t.subarray(lo, hi)),
        y: K > 0 ? new BigInt64Array(hi - lo).fill(BigInt(K)) : undefined,
      });
      out.set((await reply).out!, lo * per);
      }));
    } finally {
      this.busy = false;
    }
    return out;
  };

  async release(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
