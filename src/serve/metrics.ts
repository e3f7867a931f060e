/**
 * Prometheus metrics of `ddpm serve` (prom-client, one registry per server): requests by route and status, their
 * latency, images queued and in flight, model calls and their batch sizes, images made; and prom-client's process
 * metrics (resident memory, handles, event-loop lag).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ContinuousBatcher } from './batcher.ts';

export interface ServeMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly latency: Histogram<'route' | 'status'>;
  readonly modelCalls: Counter<'model'>;
  readonly batchSize: Histogram<'model'>;
  readonly callSeconds: Histogram<'model'>;
  readonly images: Counter<'model' | 'kind'>;
  readonly cancelled: Counter<'reason'>;
}

export function serveMetrics(batchers: ReadonlyMap<string, ContinuousBatcher>): ServeMetrics {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  const perModel = (read: (b: ContinuousBatcher) => number) =>
    function (this: Gauge<'model'>) {
      for (const [model, b] of batchers) this.set({ model }, read(b));
    };
  new Gauge({ name: 'ddpm_queue_images', help: 'Images accepted that wait for their first model call', labelNames: ['model'], registers, collect: perModel((b) => b.waiting) });
  new Gauge({ name: 'ddpm_images_in_flight', help: 'Images between their first model call and their last', labelNames: ['model'], registers, collect: perModel((b) => b.inFlight) });
  return {
    registry,
    requests: new Counter({ name: 'ddpm_http_requests_total', help: 'HTTP requests answered, by route and status', labelNames: ['route', 'method', 'status'], registers }),
    latency: new Histogram({
      name: 'ddpm_http_request_duration_seconds',
      help: 'Time from a request to its answer (from when the server reads it), by route and status',
      labelNames: ['route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    }),
    modelCalls: new Counter({ name: 'ddpm_model_calls_total', help: 'Model calls made', labelNames: ['model'], registers }),
    batchSize: new Histogram({ name: 'ddpm_model_call_batch_size', help: 'Images per model call (a guided image counts once)', labelNames: ['model'], buckets: [1, 2, 4, 8, 16, 32, 48, 64, 128, 256], registers }),
    callSeconds: new Histogram({ name: 'ddpm_model_call_duration_seconds', help: 'Time of one model call', labelNames: ['model'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers }),
    images: new Counter({ name: 'ddpm_images_generated_total', help: 'Images made, by model and kind (generation, inpaint, sdedit)', labelNames: ['model', 'kind'], registers }),
    cancelled: new Counter({ name: 'ddpm_requests_cancelled_total', help: 'Requests stopped before their images were done, by reason', labelNames: ['reason'], registers }),
  };
}
