/**
 * The worker thread of one served model (model-thread.ts starts it): its onnxruntime session, opened as `ddpm sample`
 * opens one (the same ONNX bytes and session options but for spinning and the memory pattern, so the same outputs), and run here because onnxruntime-node
 * runs a session synchronously on the thread that calls it: on the main thread a call of a second would stop the
 * server answering anyone, even a 429.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Denoiser } from '../models/denoiser.ts';
import type { UNetConfig } from '../models/unet.ts';
import { nodeRuntime, ort } from '../node/ort.ts';
import { checkDenoiserRuns } from '../pipeline/pipeline.ts';

interface Init {
  unet: UNetConfig;
  bytes: Uint8Array;
  threads?: number;
  ep?: string;
}

interface Call {
  id: number;
  x: Float32Array;
  t: Int32Array;
  y: Int32Array | null;
  shape: number[];
}

const port = parentPort!;
const init = workerData as Init;
try {
  // onnxruntime's threads sleep between ops instead of spinning: the event loop keeps a core to answer on (on the
// 2-core development machine this also gave 6.1 img/s at 8 clients against 3.9 with spinning, DDIM-5, load ~4.8).
// No memory pattern: onnxruntime would keep one per batch size, and a server sees every size from 1 to 2 x max-batch.
const d = await Denoiser.fromOnnx(ort, init.unet, init.bytes, { ...nodeRuntime({ threads: init.threads, ep: init.ep }), spinning: false, memPattern: false });
  await checkDenoiserRuns(d);
  port.on('message', (c: Call) => {
    void (async () => {
      try {
        const out = c.y ? await d.predictClass(c.x, c.t, c.y, c.shape) : await d.predict(c.x, c.t, c.shape);
        port.postMessage({ id: c.id, out }, [out.buffer as ArrayBuffer]);
      } catch (e) {
        port.postMessage({ id: c.id, error: (e as Error).message });
      }
    })();
  });
  port.postMessage({ ready: true });
} catch (e) {
  port.postMessage({ error: (e as Error).message });
}
