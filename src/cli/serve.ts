/** `ddpm serve`: the models over HTTP, every request batched into shared model calls; the service is src/serve/. */
import { isIP } from 'node:net';
import { Command, Option } from 'commander';
import { MAX_BATCH_SIZE, MAX_DECODE_PIXELS, MAX_SAMPLES, MAX_T } from '../limits.ts';
import { ensureExecutionProvider } from '../node/ort.ts';
import { conciseOrtMessage } from '../engine/runtime.ts';
import { SHIPPED_MODEL_NAMES, describeModel, loadModel, packageVersion } from '../pipeline/load.ts';
import { readTokens, type TokenSet } from '../serve/auth.ts';
import { ModelThread } from '../serve/model-thread.ts';
import { createServer, type ServedModel } from '../serve/server.ts';
import { UserError, addExamples, addRuntimeOptions, checkModelFits, parseFloatArg, parseIntArg } from './common.ts';

interface ServeOptions {
  host: string;
  port: number;
  model: string[];
  tokens?: string;
  insecureNoAuth?: boolean;
  maxBatch: number;
  maxQueue: number;
  maxN: number;
  maxSteps: number;
  maxBodyMb: number;
  maxImagePixels: number;
  rateRequests: number;
  rateImages: number;
  requestTimeout: number;
  drainSeconds: number;
  logLevel: string;
  threads?: number;
  ep?: string;
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function serveCommand(): Command {
  const cmd = new Command('serve')
    .description('serve models over HTTP: sampling and editing requests share model calls (continuous batching)')
    .option('--host <value>', 'address to listen on; without --tokens only a loopback address', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', parseIntArg('--port', 0, 65535), 8080)
    .option('--model <value>', `NAME=PATH, repeatable: a checkpoint or run directory, a checkpoint file, a model directory or an .onnx, served as NAME (default: the shipped ${SHIPPED_MODEL_NAMES.join(' and ')})`, collect, [])
    .option('--tokens <file>', "bearer tokens, one a line ('#' comments): every /v1/ route then needs Authorization: Bearer <token>")
    .option('--insecure-no-auth', 'allow a non-loopback --host without --tokens (anyone who reaches the port can use it)')
    .option('--max-batch <n>', 'images per model call', parseIntArg('--max-batch', 1, MAX_BATCH_SIZE), 64)
    .option('--max-queue <n>', 'images accepted and not done, over all models; beyond it 429 at once', parseIntArg('--max-queue', 1, MAX_SAMPLES), 256)
    .option('--max-n <n>', 'images per request', parseIntArg('--max-n', 1, MAX_SAMPLES), 64)
    .option('--max-steps <n>', 'model calls one image may need (sampler steps; RePaint counts its reverse steps)', parseIntArg('--max-steps', 2, MAX_T), 1000)
    .option('--max-body-mb <x>', 'request body size in MB (JSON, or each multipart file)', parseFloatArg('--max-body-mb', 0.001, 1024), 8)
    .option('--max-image-pixels <n>', 'pixels an uploaded image may declare', parseIntArg('--max-image-pixels', 1, MAX_DECODE_PIXELS), 4_194_304)
    .option('--rate-requests <n>', 'requests a minute per token (per address without --tokens); 0 = no limit', parseIntArg('--rate-requests', 0), 0)
    .option('--rate-images <n>', 'images a minute per token (per address without --tokens); 0 = no limit', parseIntArg('--rate-images', 0), 0)
    .option('--request-timeout <x>', 'seconds a request may take, queue included (then 503)', parseFloatArg('--request-timeout', 0.001, 86_400), 300)
    .option('--drain-seconds <x>', 'on SIGTERM or SIGINT: seconds to finish the requests in flight before they get 503', parseFloatArg('--drain-seconds', 0, 86_400), 30)
    .addOption(new Option('--log-level <name>', 'JSON log lines on stderr (one per request)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent']).default('info'));
  addRuntimeOptions(cmd);
  addExamples(
    cmd,
    ['ddpm serve --port 8080', 'ddpm serve --host 0.0.0.0 --tokens tokens.txt --model digits=runs/x --model mnist-28', 'ddpm serve --port 0 --max-batch 32 --rate-images 600'],
    `Prints "listening on http://HOST:PORT" when ready. POST /v1/images/generations takes {model, n, sampler, steps, eta,
seed, class, guidance, response_format}; image i equals image i of ddpm sample with the same options. POST
/v1/images/edits inpaints (image + mask) or runs SDEdit (image + strength). GET /v1/models, /healthz, /metrics,
/openapi.json. SIGTERM or SIGINT drains: new requests get 503, those in flight finish, then it exits 0.`,
  );
  cmd.action(async (opts: ServeOptions) => {
    await runServe(opts);
  });
  return cmd;
}

/** 127.0.0.0/8, ::1 or localhost. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1' || h === '0:0:0:0:0:0:0:1';
}

/** --model NAME=PATH (or the shipped models), each name once. */
function modelSpecs(specs: readonly string[]): { id: string; path: string }[] {
  if (specs.length === 0) return SHIPPED_MODEL_NAMES.map((id) => ({ id, path: id }));
  const out: { id: string; path: string }[] = [];
  for (const s of specs) {
    const eq = s.indexOf('=');
    const [id, p] = eq > 0 ? [s.slice(0, eq), s.slice(eq + 1)] : [s, s];
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(id)) throw new UserError(`--model ${s}: NAME must be letters, digits, '.', '_' or '-' (at most 64), as in --model digits=runs/x`);
    if (p === '') throw new UserError(`--model ${s}: no PATH after '='`);
    if (out.some((o) => o.id === id)) throw new UserError(`--model ${id} is given twice`);
    out.push({ id, path: p });
  }
  return out;
}

async function runServe(opts: ServeOptions): Promise<void> {
  // 1. what needs no model: access, the execution provider
  const local = isLoopback(opts.host);
  if (!opts.tokens && !local && !opts.insecureNoAuth) {
    throw new UserError(`--host ${opts.host} is not a loopback address: give --tokens FILE (or --insecure-no-auth to serve without authentication)`);
  }
  const tokens: TokenSet | null = opts.tokens ? await readTokens(opts.tokens) : null;
  if (!tokens && !local) process.stderr.write(`warning: serving on ${opts.host} without authentication (--insecure-no-auth): anyone who reaches the port can use it\n`);
  const specs = modelSpecs(opts.model);
  await ensureExecutionProvider(opts.ep);

  // 2. the models, each read, checked and opened once, each on a thread of its own
  const served: ServedModel[] = [];
  const threads: ModelThread[] = [];
  const releaseAll = async () => {
    for (const t of threads.splice(0)) await t.release();
  };
  try {
    for (const { id, path } of specs) {
      const model = await loadModel(path, { label: `--model ${id}` });
      checkModelFits(model.unet, 'sample', (model.unet.numClasses > 0 ? 2 : 1) * opts.maxBatch, model.file);
      let thread: ModelThread;
      try {
        thread = await ModelThread.start(model, { threads: opts.threads, ep: opts.ep });
      } catch (e) {
        throw new UserError(`${model.file}: onnxruntime cannot run this model: ${conciseOrtMessage((e as Error).message)}`);
      }
      threads.push(thread);
      served.push({ id, model, run: thread.run });
      process.stderr.write(`model ${id}: ${model.file} (${describeModel(model)})\n`);
    }
  } catch (e) {
    await releaseAll();
    throw e;
  }

  // 3. the server
  const server = await createServer({
    models: served,
    tokens,
    maxBatch: opts.maxBatch,
    maxQueue: opts.maxQueue,
    maxN: opts.maxN,
    maxSteps: opts.maxSteps,
    maxBodyBytes: Math.round(opts.maxBodyMb * 2 ** 20),
    maxImagePixels: opts.maxImagePixels,
    rateRequests: opts.rateRequests,
    rateImages: opts.rateImages,
    requestTimeoutSec: opts.requestTimeout,
    logger: opts.logLevel === 'silent' ? false : { level: opts.logLevel, stream: process.stderr },
    version: packageVersion(),
  });
  try {
    await server.app.listen({ host: opts.host, port: opts.port });
  } catch (e) {
    await releaseAll();
    const err = e as NodeJS.ErrnoException;
    throw new UserError(`cannot listen on ${opts.host}:${opts.port}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.code === 'EACCES' ? 'permission denied' : err.message}`);
  }
  const addr = server.app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const host = opts.host.includes(':') && !opts.host.startsWith('[') ? `[${opts.host}]` : opts.host;
  process.stdout.write(`listening on http://${host}:${port}\n`);

  // 4. until SIGTERM / SIGINT: drain, release the sessions, exit 0 (a second signal exits at once)
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) process.exit(signal === 'SIGINT' ? 130 : 143);
      stopping = true;
      process.stderr.write(`${signal}: draining (new requests get 503; up to ${opts.drainSeconds} s for those in flight)\n`);
      void server
        .drain(opts.drainSeconds)
        .catch((e: unknown) => process.stderr.write(`warning: while draining: ${(e as Error).message}\n`))
        .then(async () => {
          await releaseAll();
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          process.stderr.write('stopped\n');
          resolve();
        });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
