/**
 * `ddpm serve`'s HTTP service (Fastify): every request's images go to its model's continuous batcher (batcher.ts),
 * so all requests share model calls. Routes:
 *   GET  /healthz                 200 once the models are loaded (503 while draining); no token needed
 *   GET  /v1/models               the models served
 *   POST /v1/images/generations   `ddpm sample`, image for image (requests.ts)
 *   POST /v1/images/edits         `ddpm inpaint` (with a mask) or `ddpm edit` (SDEdit), JSON or multipart
 *   GET  /metrics                 Prometheus text (metrics.ts)
 *   GET  /openapi.json            the OpenAPI document of the schemas (schemas.ts)
 * With tokens, every /v1/ route needs `Authorization: Bearer <token>` (auth.ts). Limits: body size, n, steps,
 * uploaded pixels, images a minute and requests a minute per client, a bounded queue (429 with Retry-After at
 * once), a time limit per request. Errors are {"error": {"code", "message", "param"}} (errors.ts); nothing a client
 * sends gives a 500 or a stack trace. Uploaded and generated images stay in memory: never on disk, never in a log.
 * The log is Fastify's (pino, JSON): one line per request with its id, token id, model, n, steps, status and time.
 */
import { randomUUID } from 'node:crypto';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import sharp from 'sharp';
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { encodePng, makeGrid } from '../io/image.ts';
import { resultImage } from '../io/model-image.ts';
import type { LoadedModel } from '../pipeline/load.ts';
import type { TokenSet } from './auth.ts';
import { RateLimiter } from './auth.ts';
import { Cancelled, ContinuousBatcher, type BatchModel } from './batcher.ts';
import { ApiError } from './errors.ts';
import { serveMetrics, type ServeMetrics } from './metrics.ts';
import { editPlan, generationPlan, requestedImages, type EditBody, type GenerationBody, type Plan, type RequestLimits } from './requests.ts';
import { editBodySchema, generationBodySchema, imagesResponse, modelsResponse, noQuery } from './schemas.ts';

/** A model to serve: its name in requests, its configs and its model calls (model-thread.ts runs them off the event loop). */
export interface ServedModel {
  readonly id: string;
  readonly model: LoadedModel;
  readonly run: BatchModel;
}

/** The server's settings (`ddpm serve`'s flags); see the command's --help for each. */
export interface ServeOptions extends RequestLimits {
  readonly models: readonly ServedModel[];
  /** null: no authentication (the command allows it on loopback only) */
  readonly tokens: TokenSet | null;
  /** images per model call */
  readonly maxBatch: number;
  /** images accepted and not done, over all models; beyond it 429 at once */
  readonly maxQueue: number;
  readonly maxBodyBytes: number;
  /** per client (token, or address without tokens); 0 = no limit */
  readonly rateRequests: number;
  readonly rateImages: number;
  /** a request's time limit, from its arrival to its answer (503 timeout) */
  readonly requestTimeoutSec: number;
  readonly logger?: FastifyServerOptions['logger'];
  /** for the OpenAPI document */
  readonly version?: string;
}

export interface DdpmServer {
  readonly app: FastifyInstance;
  readonly metrics: ServeMetrics;
  /**
   * Stop taking requests (503 draining from now on), let those in flight finish for up to `seconds`, answer what is
   * left with 503, close the listener. Resolves when every request is answered.
   */
  drain(seconds: number): Promise<void>;
}

/** What the log line and the metrics say about a request. */
interface RequestInfo {
  token: string | null;
  /** rate-limit key: the token's id, or the client's address */
  client: string;
  model?: string;
  kind?: Plan['kind'];
  n?: number;
  steps?: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    ddpm: RequestInfo;
  }
}

const NUMERIC_FIELDS = new Set(['n', 'steps', 'eta', 'seed', 'guidance', 'strength', 'jump', 'resample']);

/** A multipart body as the JSON one: files came as base64 (onFile below), numbers as text. */
function multipartAsJson(req: FastifyRequest): void {
  if (!req.isMultipart() || req.body === null || typeof req.body !== 'object') return;
  const body = req.body as Record<string, unknown>;
  for (const [k, v] of Object.entries(body)) {
    if (typeof v === 'string' && NUMERIC_FIELDS.has(k) && /^\s*-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$/i.test(v)) body[k] = Number(v);
  }
}

/** Any error as the ApiError the client gets. */
function toApiError(err: FastifyError): ApiError {
  if (err instanceof ApiError) return err;
  if (err.validation && err.validation.length > 0) {
    const v = err.validation[0]!;
    const params = v.params as Record<string, unknown>;
    const extra = typeof params.additionalProperty === 'string' ? params.additionalProperty : undefined;
    const missing = typeof params.missingProperty === 'string' ? params.missingProperty : undefined;
    const param = extra ?? missing ?? (v.instancePath.replace(/^\//, '').split('/')[0] || null);
    const where = err.validationContext === 'querystring' ? 'query parameter' : 'field';
    const message = extra ? `unknown ${where} '${extra}'` : missing ? `missing ${where} '${missing}'` : `${param ?? err.validationContext}: ${v.message ?? 'invalid'}`;
    return new ApiError(400, 'invalid_request', message, param, { cause: err });
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_FILES_LIMIT':
    case 'FST_FIELDS_LIMIT':
    case 'FST_PARTS_LIMIT':
      return new ApiError(413, 'body_too_large', err.message, null, { cause: err });
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError(400, 'invalid_json', err.message, null, { cause: err });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(400, 'unsupported_media_type', 'send application/json (or multipart/form-data to /v1/images/edits)', null, { cause: err });
  }
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    return new ApiError(status === 415 ? 400 : status, err instanceof SyntaxError ? 'invalid_json' : 'invalid_request', err.message.slice(0, 300), null, { cause: err });
  }
  return new ApiError(500, 'internal_error', 'internal error', null, { cause: err });
}

/** Images (each [C, H, W] in [−1, 1]) as the answer's data: one PNG each, or one grid. */
async function imagesData(plan: Plan, images: Float32Array[], shape: readonly [number, number, number], format: 'b64_json' | 'png' | undefined) {
  const b64 = async (img: Parameters<typeof encodePng>[0]) => Buffer.from(await encodePng(img)).toString('base64');
  const [c, h, w] = shape;
  if (format === 'png') {
    const n = images.length;
    const all = new Float32Array(n * c * h * w);
    images.forEach((x, i) => all.set(x, i * x.length));
    // as the commands write --out: ddpm sample's grid of ceil(sqrt(n)) columns; the editing commands' one result alone
    const grid = plan.kind === 'generation' ? makeGrid(all, [n, c, h, w], { nrow: Math.ceil(Math.sqrt(n)) }) : resultImage(all, [n, c, h, w]);
    return [{ b64_json: await b64(grid), seed: plan.seed }];
  }
  return Promise.all(images.map(async (x, index) => ({ b64_json: await b64(makeGrid(x, [1, c, h, w], { nrow: 1, padding: 0 })), seed: plan.seed, index })));
}

export async function createServer(opts: ServeOptions): Promise<DdpmServer> {
  if (opts.models.length === 0) throw new Error('no model to serve');
  // libvips keeps recent operations (their images too) in a cache of up to 50 MB: a server holds no user's image
  // past its request
  sharp.cache(false);
  const models = new Map(opts.models.map((m) => [m.id, m]));
  const batchers = new Map<string, ContinuousBatcher>();
  const metricsRef: { m?: ServeMetrics } = {};
  for (const m of opts.models) {
    const { inChannels: c, outChannels, imageSize: s, numClasses } = m.model.unet;
    batchers.set(
      m.id,
      new ContinuousBatcher({
        model: m.run,
        imageShape: [c, s, s],
        outChannels,
        numClasses,
        maxBatch: opts.maxBatch,
        onCall: (images, _rows, sec) => {
          metricsRef.m?.modelCalls.inc({ model: m.id });
          metricsRef.m?.batchSize.observe({ model: m.id }, images);
          metricsRef.m?.callSeconds.observe({ model: m.id }, sec);
        },
      }),
    );
  }
  const metrics = serveMetrics(batchers);
  metricsRef.m = metrics;
  const requestLimiter = new RateLimiter(opts.rateRequests);
  const imageLimiter = new RateLimiter(opts.rateImages);
  let draining = false;

  const app = Fastify({
    logger: opts.logger ?? false,
    logController: new LogController({ disableRequestLogging: true }), // one line per request, written below, without headers or bodies
    bodyLimit: opts.maxBodyBytes,
    requestTimeout: 60_000, // to receive a request: a client that trickles its body is cut off
    genReqId: () => randomUUID(),
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  });

  // 1. plugins: the OpenAPI document, multipart bodies (files kept in memory, as base64 like the JSON body)
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'ddpm serve', version: opts.version ?? '0', description: 'DDPM sampling and editing over HTTP; every request shares model calls with the others (continuous batching).' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  await app.register(multipart, {
    attachFieldsToBody: 'keyValues',
    limits: { fileSize: opts.maxBodyBytes, fieldSize: opts.maxBodyBytes, files: 2, fields: 16, parts: 18, fieldNameSize: 100, headerPairs: 100 },
    async onFile(part) {
      (part as unknown as { value: string }).value = (await part.toBuffer()).toString('base64');
    },
  });

  // JSON only (and multipart for edits): Fastify's text/plain parser would turn a body into a string
  app.removeContentTypeParser('text/plain');

  // 2. every request: draining, then the token and the request rate for /v1/
  app.decorateRequest('ddpm', null as unknown as RequestInfo);
  app.addHook('onRequest', async (req, reply) => {
    req.ddpm = { token: null, client: `ip:${req.ip}` };
    reply.header('x-request-id', req.id);
    if (draining) {
      reply.header('connection', 'close');
      throw new ApiError(503, 'draining', 'the server is shutting down; retry on another replica', null, { retryAfter: 1 });
    }
    if (!req.url.startsWith('/v1/')) return;
    if (opts.tokens) {
      const id = opts.tokens.check(req.headers.authorization);
      if (id === null) {
        reply.header('www-authenticate', 'Bearer realm="ddpm"');
        throw new ApiError(401, 'unauthorized', req.headers.authorization ? 'the token is not valid' : 'send Authorization: Bearer <token>');
      }
      req.ddpm.token = id;
      req.ddpm.client = `token:${id}`;
    }
    const wait = requestLimiter.take(req.ddpm.client, 1);
    if (wait > 0) throw new ApiError(429, 'rate_limited', `over ${opts.rateRequests} requests a minute`, null, { retryAfter: wait });
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const status = String(reply.statusCode);
    metrics.requests.inc({ route, method: req.method, status });
    metrics.latency.observe({ route, status }, reply.elapsedTime / 1000);
    const { token, model, kind, n, steps } = req.ddpm ?? {};
    req.log.info({ method: req.method, route, token, model, kind, n, steps, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });
  app.addHook('onRequestAbort', async (req) => {
    req.log.info({ route: req.routeOptions.url, token: req.ddpm?.token, model: req.ddpm?.model, n: req.ddpm?.n }, 'client gone');
  });
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const api = toApiError(err);
    if (api.status >= 500 && api.code === 'internal_error') req.log.error({ err }, 'internal error');
    if (api.retryAfter !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(Math.min(api.retryAfter, 3600)))));
    return reply.code(api.status).send(api.toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    const where = `${req.method} ${req.url.length > 120 ? `${req.url.slice(0, 120)}...` : req.url}`;
    return reply.code(404).send(new ApiError(404, 'not_found', `no route ${where}`).toJSON());
  });

  // 3. the model a request names (default: mnist-28, or mnist-28-cond with a class, else the first one served)
  const modelFor = (name: string | undefined, wantsClass: boolean): ServedModel => {
    if (name !== undefined) {
      const m = models.get(name);
      if (!m) throw new ApiError(404, 'model_not_found', `no model '${name.slice(0, 100)}' here; served: ${[...models.keys()].join(', ')}`, 'model');
      return m;
    }
    const dflt = wantsClass ? 'mnist-28-cond' : 'mnist-28';
    const all = [...models.values()];
    return models.get(dflt) ?? (wantsClass ? all.find((m) => m.model.unet.numClasses > 0) : undefined) ?? all[0]!;
  };

  /** Images accepted and not done, over all models. */
  const pendingImages = () => {
    let pending = 0;
    for (const b of batchers.values()) pending += b.pending;
    return pending;
  };
  const queueFull = (n: number) => {
    const pending = pendingImages();
    if (pending + n > opts.maxQueue) {
      throw new ApiError(429, 'queue_full', `the server has ${pending} images to make (at most ${opts.maxQueue}); retry later`, null, { retryAfter: 1 });
    }
  };

  /**
   * Admit a request of `n` images (the queue first, before any work, so that an overloaded server refuses at once;
   * then its plan; then this client's images a minute), run it in its model's batcher, answer with its images.
   */
  const run = async (req: FastifyRequest, reply: FastifyReply, served: ServedModel, n: number, makePlan: () => Plan | Promise<Plan>, format: 'b64_json' | 'png' | undefined) => {
    Object.assign(req.ddpm, { n });
    queueFull(n);
    const plan = await makePlan();
    Object.assign(req.ddpm, { kind: plan.kind, steps: plan.steps });
    const wait = imageLimiter.take(req.ddpm.client, plan.n);
    if (wait > 0) {
      const msg = wait === Infinity ? `n ${plan.n} is over the ${opts.rateImages} images a minute allowed` : `over ${opts.rateImages} images a minute`;
      throw new ApiError(429, 'rate_limited', msg, 'n', { retryAfter: wait === Infinity ? 60 : wait });
    }
    queueFull(plan.n); // again: an edit's images were decoded meanwhile
    // 2. the images, in model calls shared with every other request; a client gone or the time limit stops them
    //    (request.signal would not do: it aborts once Node has read the body, as IncomingMessage then closes)
    const ticket = batchers.get(served.id)!.submit(plan.tasks);
    const stop = (reason: 'client' | 'timeout') => {
      metrics.cancelled.inc({ reason });
      ticket.cancel(new Cancelled(reason));
    };
    const onClose = () => {
      if (!reply.raw.writableFinished) stop('client');
    };
    reply.raw.on('close', onClose);
    const timer = setTimeout(() => stop('timeout'), Math.max(0, opts.requestTimeoutSec * 1000 - reply.elapsedTime));
    let images: Float32Array[];
    try {
      images = await ticket.result;
    } catch (e) {
      if (e instanceof Cancelled && e.message === 'client') return reply; // nobody to answer
      if (e instanceof Cancelled && e.message === 'timeout') throw new ApiError(503, 'timeout', `the request ran past this server's limit of ${opts.requestTimeoutSec} s`, null, { retryAfter: 1, cause: e });
      if (e instanceof Cancelled) throw new ApiError(503, 'draining', 'the server is shutting down; retry on another replica', null, { retryAfter: 1, cause: e });
      throw e;
    } finally {
      clearTimeout(timer);
      reply.raw.off('close', onClose);
    }
    metrics.images.inc({ model: served.id, kind: plan.kind }, plan.n);
    if (reply.raw.destroyed) return reply;
    // 3. the PNGs
    const { inChannels: c, imageSize: s } = served.model.unet;
    return { created: Math.floor(Date.now() / 1000), data: await imagesData(plan, images, [c, s, s], format) };
  };

  // 4. the routes
  const limits: RequestLimits = { maxN: opts.maxN, maxSteps: opts.maxSteps, maxImagePixels: opts.maxImagePixels };
  const security = [{ bearer: [] }];
  app.get('/healthz', { schema: { querystring: noQuery, description: 'liveness and readiness: 200 once the models are loaded, 503 while draining' } }, async () => ({
    status: 'ok',
    models: [...models.keys()],
  }));
  app.get('/v1/models', { schema: { querystring: noQuery, response: modelsResponse, security } }, async () => ({
    object: 'list',
    data: opts.models.map(({ id, model: m }) => ({
      id,
      object: 'model',
      image_size: m.unet.imageSize,
      channels: m.unet.inChannels,
      classes: m.unet.numClasses > 0 ? (m.classNames ?? Array.from({ length: m.unet.numClasses }, (_, i) => String(i))) : null,
      timesteps: m.diffusion.schedule.T,
      prediction: m.diffusion.meanType,
      variance: m.diffusion.varType,
      step: m.step ?? null,
    })),
  }));
  app.post(
    '/v1/images/generations',
    { schema: { body: generationBodySchema(opts), querystring: noQuery, response: imagesResponse, security }, preValidation: async (req) => multipartAsJson(req) },
    async (req, reply) => {
      const body = req.body as GenerationBody;
      const served = modelFor(body.model, body.class !== undefined);
      req.ddpm.model = served.id;
      return run(req, reply, served, requestedImages(body, 'generation', limits), () => generationPlan(served.model, body, limits), body.response_format);
    },
  );
  app.post(
    '/v1/images/edits',
    {
      schema: { body: editBodySchema(opts), querystring: noQuery, response: imagesResponse, security, consumes: ['application/json', 'multipart/form-data'] },
      preValidation: async (req) => multipartAsJson(req),
    },
    async (req, reply) => {
      const body = req.body as EditBody;
      const served = modelFor(body.model, false);
      req.ddpm.model = served.id;
      return run(req, reply, served, requestedImages(body, 'edit', limits), () => editPlan(served.model, body, limits), body.response_format);
    },
  );
  app.get('/metrics', { schema: { querystring: noQuery, description: 'Prometheus text' } }, async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  app.get('/openapi.json', { schema: { querystring: noQuery, hide: true } }, async () => app.swagger());

  // 5. draining: 503 for anything new, the rest finishes (or is cut at the deadline), then the listener closes
  const drain = async (seconds: number) => {
    draining = true;
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      Promise.all([...batchers.values()].map((b) => b.idle())).then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), seconds * 1000))),
    ]);
    clearTimeout(timer);
    if (late) for (const b of batchers.values()) b.cancelAll(new Cancelled('draining'));
    await app.close();
  };
  return { app, metrics, drain };
}
