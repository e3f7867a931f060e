/**
 * `ddpm serve` on real loopback ports, over real HTTP (issue 29): every route and status; pixel equality with
 * `ddpm sample` / `inpaint` / `edit` while requests of different samplers, steps and guidance share model calls;
 * tokens; limits (body, pixels, n, requests and images a minute, the queue); cancellation of a client gone; the
 * time limit; drain on SIGTERM. Two servers run as child processes: A with tokens and the shipped models, B on
 * one model without tokens, for the queue, the time limit and the drain.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { decodeImage, encodePng } from '../src/io/image.ts';
import { callModel, type SamplingProcess } from '../src/diffusion/samplers.ts';
import { parseTokens, RateLimiter } from '../src/serve/auth.ts';
import { Cancelled, ContinuousBatcher } from '../src/serve/batcher.ts';
import { assertUserError, runCli } from './cli-helpers.ts';

const BIN = path.resolve(import.meta.dirname, '..', 'src', 'cli', 'bin.ts');
const TOKENS = ['token-main-0123456789abcdef', 'token-rate-0123456789abcdef', 'token-errs-0123456789abcdef'];
const [MAIN, RATE, ERRS] = TOKENS as [string, string, string];

interface Server {
  proc: ChildProcess;
  url: string;
  stderr: string[];
  exit: Promise<number | null>;
}

/** `ddpm serve --port 0 ...args` in a child process, once it prints its address. */
async function startServer(args: string[]): Promise<Server> {
  const proc = spawn(process.execPath, ['--import', 'tsx', BIN, 'serve', '--port', '0', '--threads', '2', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  proc.stderr!.on('data', (b: Buffer) => stderr.push(b.toString()));
  const exit = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/\S+)\n/.exec(out);
      if (m) resolve(m[1]!);
    });
    void exit.then((code) => reject(new Error(`ddpm serve exited ${code} before listening:\n${stderr.join('')}`)));
  });
  return { proc, url, stderr, exit };
}

let dir: string;
let A: Server;
let B: Server;
let digitPng: Uint8Array;
let maskPng: Uint8Array;
let sketchJpeg: Uint8Array;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-serve-'));
  await writeFile(path.join(dir, 'tokens.txt'), `# test tokens\n${TOKENS.join('\n')}\n\n`);
  const digit = Uint8Array.from({ length: 28 * 28 }, (_, i) => (Math.abs((i % 28) - 14) < 3 && i > 4 * 28 && i < 24 * 28 ? 255 : 0));
  digitPng = await encodePng({ data: digit, width: 28, height: 28, channels: 1 });
  maskPng = await encodePng({ data: Uint8Array.from({ length: 28 * 28 }, (_, i) => (i >= 14 * 28 ? 255 : 0)), width: 28, height: 28, channels: 1 });
  const ring = Uint8Array.from({ length: 40 * 32 * 3 }, (_, k) => (Math.abs(Math.hypot((Math.floor(k / 3) % 40) - 20, Math.floor(k / 120) - 16) - 9) < 2 ? 230 : 20));
  sketchJpeg = new Uint8Array(await sharp(ring, { raw: { width: 40, height: 32, channels: 3 } }).jpeg().toBuffer());
  for (const [name, bytes] of [['digit.png', digitPng], ['mask.png', maskPng], ['sketch.jpg', sketchJpeg]] as const) await writeFile(path.join(dir, name), bytes);
  [A, B] = await Promise.all([
    startServer([
      '--tokens', path.join(dir, 'tokens.txt'), '--max-n', '8', '--max-body-mb', '0.25', '--max-image-pixels', '10000',
      '--rate-requests', '60', '--rate-images', '24',
    ]),
    startServer(['--model', 'mnist-28', '--max-queue', '6', '--max-n', '6', '--request-timeout', '10', '--drain-seconds', '60']),
  ]);
});

after(async () => {
  for (const s of [A, B]) if (s && s.proc.exitCode === null) s.proc.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

type Json = Record<string, unknown>;

async function call(s: Server, route: string, init: { token?: string; body?: unknown; form?: FormData; method?: string; signal?: AbortSignal; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  let body: string | FormData | undefined;
  if (init.form) body = init.form;
  else if (init.body !== undefined) {
    body = typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
    headers['content-type'] ??= 'application/json';
  }
  const t0 = performance.now();
  const res = await fetch(`${s.url}${route}`, { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers, body, signal: init.signal });
  const text = await res.text();
  const ms = performance.now() - t0;
  let json: Json = {};
  try {
    json = JSON.parse(text) as Json;
  } catch {
    /* /metrics is text */
  }
  return { status: res.status, headers: res.headers, json, text, ms };
}

/** The answer is an error of `status` in the documented shape, naming `param`, with no stack trace. */
function assertError(r: Awaited<ReturnType<typeof call>>, status: number, code?: string, param?: string | null): void {
  assert.equal(r.status, status, r.text);
  const e = r.json.error as { code: string; message: string; param: string | null };
  assert.ok(e && typeof e.message === 'string' && e.message.length > 0, r.text);
  if (code !== undefined) assert.equal(e.code, code, r.text);
  if (param !== undefined) assert.equal(e.param, param, r.text);
  assert.doesNotMatch(r.text, /\n\s+at |\.ts:\d+/, 'no stack trace');
}

const gen = (s: Server, body: Json, token = MAIN, signal?: AbortSignal) => call(s, '/v1/images/generations', { token, body, signal });

/** Pixels of base64 PNGs. */
async function pixels(b64s: string[]): Promise<Uint8Array[]> {
  return Promise.all(b64s.map(async (b) => (await decodeImage(Buffer.from(b, 'base64'), { channels: 1 })).data));
}

/** Pixels of a command's --out-dir PNGs, in order. */
async function dirPixels(d: string): Promise<Uint8Array[]> {
  const files = (await readdir(d)).filter((f) => f.endsWith('.png')).sort();
  return Promise.all(files.map(async (f) => (await decodeImage(path.join(d, f), { channels: 1 })).data));
}

function assertSamePixels(got: Uint8Array[], want: Uint8Array[], what: string): void {
  assert.equal(got.length, want.length, `${what}: number of images`);
  got.forEach((g, i) => {
    let diff = 0;
    let first = -1;
    for (let j = 0; j < g.length; j++) if (g[j] !== want[i]![j]) (diff++, first < 0 && (first = j));
    assert.equal(diff, 0, `${what}: image ${i} differs from the command's in ${diff} pixels (first at ${first}: ${g[first]} vs ${want[i]![first]})`);
  });
}

/** A metric's value from the Prometheus text (the first line that starts with `prefix`; 0 before its first value). */
function metric(text: string, prefix: string): number {
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

test('GET /healthz, /openapi.json and /metrics need no token; GET /v1/models lists the shipped models', async () => {
  const h = await call(A, '/healthz');
  assert.equal(h.status, 200);
  assert.deepEqual(h.json, { status: 'ok', models: ['mnist-28', 'mnist-28-cond'] });
  const doc = await call(A, '/openapi.json');
  assert.equal(doc.status, 200);
  const paths = doc.json.paths as Record<string, Record<string, { requestBody?: unknown }>>;
  for (const p of ['/healthz', '/v1/models', '/v1/images/generations', '/v1/images/edits', '/metrics']) assert.ok(paths[p], `OpenAPI has ${p}`);
  assert.ok(paths['/v1/images/generations']!.post!.requestBody, 'the body schema is documented');
  const m = await call(A, '/v1/models', { token: MAIN });
  assert.equal(m.status, 200);
  const data = m.json.data as Json[];
  assert.deepEqual(data.map((d) => [d.id, d.image_size, d.channels]), [['mnist-28', 28, 1], ['mnist-28-cond', 28, 1]]);
  assert.equal(data[0]!.classes, null);
  assert.deepEqual(data[1]!.classes, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  const metrics = await call(A, '/metrics');
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers.get('content-type') ?? '', /text\/plain/);
  for (const name of ['ddpm_http_requests_total', 'ddpm_http_request_duration_seconds', 'ddpm_queue_images', 'ddpm_images_in_flight', 'ddpm_model_calls_total', 'ddpm_model_call_batch_size', 'ddpm_images_generated_total', 'process_resident_memory_bytes']) {
    assert.match(metrics.text, new RegExp(`^# TYPE ${name} `, 'm'), name);
  }
});

test('tokens: /v1/ needs a valid bearer token (401 with WWW-Authenticate), compared whole', async () => {
  for (const auth of [undefined, 'Bearer nope-nope-nope-nope-nope', `Bearer ${MAIN}x`, `Basic ${MAIN}`, `Bearer ${MAIN.slice(0, -1)}`]) {
    const r = await call(A, '/v1/models', { headers: auth ? { authorization: auth } : {} });
    assertError(r, 401, 'unauthorized', null);
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
  }
  assertError(await call(A, '/v1/images/generations', { body: { n: 1 } }), 401, 'unauthorized');
  // the token file: comments and blank lines skipped; short tokens and duplicates refused
  const set = parseTokens('# c\nabcdefghijklmnopqrstuvwxyz # trailing comment\n\n');
  assert.equal(set.size, 1);
  assert.match(set.check('Bearer abcdefghijklmnopqrstuvwxyz')!, /^[0-9a-f]{8}$/);
  assert.equal(set.check('Bearer abcdefghijklmnopqrstuvwxy'), null);
  assert.throws(() => parseTokens('short\n'), /at least 16/);
  assert.throws(() => parseTokens('abcdefghijklmnopqrstuvwxyz\nabcdefghijklmnopqrstuvwxyz\n'), /twice/);
});

test('image i equals image i of ddpm sample, pixel for pixel, while requests of different samplers, steps and guidance share calls', { timeout: 120_000 }, async () => {
  const before = await call(A, '/metrics');
  // 1. five requests at once: two on mnist-28 (DDIM-12 η = 1 and DPM-Solver++ 8), one DDPM-10 png grid, two on mnist-28-cond (guided and not)
  const reqs = [
    { body: { n: 3, sampler: 'ddim', steps: 12, seed: 5 }, cli: ['--n', '3', '--sampler', 'ddim', '--steps', '12', '--seed', '5'] },
    { body: { n: 2, sampler: 'dpm++', steps: 8, seed: 9 }, cli: ['--n', '2', '--sampler', 'dpm++', '--steps', '8', '--seed', '9'] },
    { body: { model: 'mnist-28-cond', n: 2, steps: 6, seed: 2, class: 7, guidance: 3 }, cli: ['--checkpoint', 'mnist-28-cond', '--n', '2', '--steps', '6', '--seed', '2', '--class', '7', '--guidance', '3'] },
    { body: { model: 'mnist-28-cond', n: 2, steps: 9, seed: 3, eta: 0 }, cli: ['--checkpoint', 'mnist-28-cond', '--n', '2', '--steps', '9', '--seed', '3', '--eta', '0'] },
  ];
  const grid = { n: 2, sampler: 'ddpm', steps: 10, seed: 1, response_format: 'png' };
  const [gridRes, ...res] = await Promise.all([gen(A, grid), ...reqs.map((r) => gen(A, r.body))]);
  for (const r of [gridRes!, ...res]) assert.equal(r.status, 200, r.text);
  // 2. the same images from the command, one after the other
  for (const [i, r] of reqs.entries()) {
    const out = path.join(dir, `sample-${i}`);
    const c = await runCli(['sample', ...r.cli, '--threads', '2', '--out', `${out}.png`, '--out-dir', out]);
    assert.equal(c.code, 0, c.stderr);
    const data = res[i]!.json.data as { b64_json: string; seed: number; index: number }[];
    assert.deepEqual(data.map((d) => [d.seed, d.index]), data.map((_, k) => [r.body.seed, k]));
    assertSamePixels(await pixels(data.map((d) => d.b64_json)), await dirPixels(out), `request ${JSON.stringify(r.body)}`);
  }
  const c = await runCli(['sample', '--n', '2', '--sampler', 'ddpm', '--steps', '10', '--seed', '1', '--threads', '2', '--out', path.join(dir, 'grid.png')]);
  assert.equal(c.code, 0, c.stderr);
  const gridData = gridRes!.json.data as { b64_json: string }[];
  assert.equal(gridData.length, 1);
  assert.deepEqual(new Uint8Array(Buffer.from(gridData[0]!.b64_json, 'base64')), new Uint8Array(await readFile(path.join(dir, 'grid.png'))), 'the png grid is the bytes of ddpm sample --out');
  // 3. they shared calls: some call held images of several requests (more than the largest request's 3)
  const after = await call(A, '/metrics');
  const calls = (t: string, le: string) => metric(t, `ddpm_model_call_batch_size_bucket{le="${le}",model="mnist-28"}`);
  const total = (t: string) => metric(t, 'ddpm_model_call_batch_size_count{model="mnist-28"}');
  const [n, small] = [total(after.text) - total(before.text), calls(after.text, '4') - calls(before.text, '4')];
  assert.ok(n > small, `a call of mnist-28 held more than 4 images (${small} of ${n} calls held 4 or fewer)`);
  assert.ok(metric(after.text, 'ddpm_images_generated_total{model="mnist-28",kind="generation"}') >= 7);
});

test('POST /v1/images/edits: inpainting (JSON) equals ddpm inpaint, SDEdit (multipart, a JPEG) equals ddpm edit', { timeout: 120_000 }, async () => {
  // 1. RePaint with resampling, n = 2, as one grid (what ddpm inpaint --out writes)
  const body = { image: b64(digitPng), mask: `data:image/png;base64,${b64(maskPng)}`, n: 2, steps: 10, seed: 4, jump: 3, resample: 2, response_format: 'png' };
  const form = new FormData();
  form.append('image', new Blob([Buffer.from(sketchJpeg)], { type: 'image/jpeg' }), 'sketch.jpg');
  for (const [k, v] of Object.entries({ strength: '0.5', steps: '10', seed: '6', sampler: 'dpm++' })) form.append(k, v);
  const [inp, sde] = await Promise.all([call(A, '/v1/images/edits', { token: MAIN, body }), call(A, '/v1/images/edits', { token: MAIN, form })]);
  assert.equal(inp.status, 200, inp.text);
  assert.equal(sde.status, 200, sde.text);
  const ci = await runCli(['inpaint', '--image', path.join(dir, 'digit.png'), '--mask', path.join(dir, 'mask.png'), '--n', '2', '--steps', '10', '--seed', '4', '--jump', '3', '--resample', '2', '--threads', '2', '--out', path.join(dir, 'inpaint.png')]);
  assert.equal(ci.code, 0, ci.stderr);
  assert.deepEqual(new Uint8Array(Buffer.from((inp.json.data as { b64_json: string }[])[0]!.b64_json, 'base64')), new Uint8Array(await readFile(path.join(dir, 'inpaint.png'))));
  const ce = await runCli(['edit', '--image', path.join(dir, 'sketch.jpg'), '--strength', '0.5', '--steps', '10', '--seed', '6', '--sampler', 'dpm++', '--threads', '2', '--out', path.join(dir, 'edit.png')]);
  assert.equal(ce.code, 0, ce.stderr);
  assertSamePixels(await pixels([(sde.json.data as { b64_json: string }[])[0]!.b64_json]), [(await decodeImage(path.join(dir, 'edit.png'), { channels: 1 })).data], 'SDEdit');
});

test('400, 404, 413 and 422: JSON errors naming the field, never a 500', async () => {
  const g = (body: unknown, headers?: Record<string, string>) => call(A, '/v1/images/generations', { token: ERRS, body, headers });
  const e = (body: unknown) => call(A, '/v1/images/edits', { token: ERRS, body });
  // 400: malformed or invalid against the schema
  assertError(await g('{"n": 1,'), 400, 'invalid_json', null);
  assertError(await g({ n: 'three' }), 400, 'invalid_request', 'n');
  assertError(await g({ n: 1.5 }), 400, 'invalid_request', 'n');
  assertError(await g({ n: 9 }), 400, 'invalid_request', 'n'); // --max-n 8
  assertError(await g({ steps: 1 }), 400, 'invalid_request', 'steps');
  assertError(await g({ steps: 1001 }), 400, 'invalid_request', 'steps');
  assertError(await g({ sampler: 'euler' }), 400, 'invalid_request', 'sampler');
  assertError(await g({ eta: 2 }), 400, 'invalid_request', 'eta');
  assertError(await g({ seed: -1 }), 400, 'invalid_request', 'seed');
  assertError(await g({ guidance: 1e9, class: 1 }), 400, 'invalid_request', 'guidance');
  assertError(await g({ prompt: 'a cat' }), 400, 'invalid_request', 'prompt');
  assertError(await g('{"__proto__": {"n": 1}}'), 400);
  assertError(await g({ constructor: 1 }), 400, 'invalid_request', 'constructor');
  assertError(await g([1, 2]), 400, 'invalid_request');
  assertError(await g('null'), 400);
  assertError(await g('x', { 'content-type': 'text/plain' }), 400, 'unsupported_media_type');
  assertError(await call(A, '/v1/models?limit=1', { token: ERRS }), 400, 'invalid_request', 'limit');
  assertError(await e({ mask: b64(maskPng) }), 400, 'invalid_request', 'image');
  // 404: no such model or route
  assertError(await g({ model: 'sd-xl', n: 1 }), 404, 'model_not_found', 'model');
  assertError(await call(A, '/v1/images/variations', { token: ERRS, body: {} }), 404, 'not_found', null);
  assertError(await call(A, '/v1/models', { token: ERRS, method: 'DELETE' }), 404, 'not_found');
  // 413: the body, or an image's declared pixels (--max-image-pixels 10000)
  assertError(await e({ image: 'A'.repeat(300_000) }), 413, 'body_too_large');
  const big = await sharp({ create: { width: 200, height: 200, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png().toBuffer();
  assertError(await e({ image: b64(big) }), 413, 'image_too_large', 'image');
  // 422: valid JSON the model cannot do
  assertError(await g({ sampler: 'ddpm', eta: 0.5, n: 1 }), 422, 'invalid_value', 'eta');
  assertError(await g({ model: 'mnist-28', class: 3, n: 1 }), 422, 'invalid_value', 'class');
  assertError(await g({ model: 'mnist-28-cond', class: 'ten', n: 1 }), 422, 'invalid_value', 'class');
  assertError(await g({ guidance: 2, n: 1 }), 422, 'invalid_value', 'guidance');
  assertError(await g({}), 422, 'over_limit', 'n'); // n defaults to ddpm sample's 64, over --max-n 8
  assertError(await e({ image: b64(new TextEncoder().encode('hello, not an image')) }), 422, 'invalid_image', 'image');
  assertError(await e({ image: '!!!!' }), 422, 'invalid_image', 'image');
  assertError(await e({ image: b64(digitPng), mask: b64(new TextEncoder().encode('GIF89a, not a PNG')) }), 422, 'invalid_image', 'mask');
  const small = await encodePng({ data: new Uint8Array(14 * 14), width: 14, height: 14, channels: 1 });
  assertError(await e({ image: b64(digitPng), mask: b64(small) }), 422, 'invalid_image', 'mask');
  assertError(await e({ image: b64(digitPng), strength: 0 }), 422, 'invalid_value', 'strength');
  assertError(await e({ image: b64(digitPng), mask: b64(maskPng), strength: 0.5 }), 422, 'invalid_value', 'strength');
  assertError(await e({ image: b64(digitPng), jump: 2 }), 422, 'invalid_value', 'jump');
  assertError(await e({ image: b64(digitPng), mask: b64(maskPng), steps: 10, jump: 10, resample: 3 }), 422, 'invalid_value', 'jump');
  assertError(await e({ image: b64(digitPng), mask: b64(maskPng), steps: 500, jump: 5, resample: 10 }), 422, 'over_limit', 'resample');
  const m = await call(A, '/metrics');
  assert.doesNotMatch(m.text, /ddpm_http_requests_total\{[^}]*status="5\d\d"/, 'no 5xx answered');
});

test('rate limits per token: requests and images a minute, 429 with Retry-After; other tokens unaffected', async () => {
  // 24 images a minute: three requests of 8 pass, the fourth is refused
  const answers = [];
  for (let i = 0; i < 4; i++) answers.push(await gen(A, { n: 8, steps: 2, seed: 0 }, RATE));
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 429], answers.map((a) => a.text.slice(0, 200)).join('\n'));
  assertError(answers[3]!, 429, 'rate_limited', 'n');
  assert.ok(Number(answers[3]!.headers.get('retry-after')) >= 1, 'Retry-After');
  let r = await call(A, '/v1/models', { token: RATE });
  let k = 0;
  for (; r.status === 200 && k < 80; k++) r = await call(A, '/v1/models', { token: RATE });
  assertError(r, 429, 'rate_limited', null);
  assert.ok(k + 5 <= 70, `about the 61st request in a minute is refused (here the ${k + 6}th)`);
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
  assert.equal((await call(A, '/v1/models', { token: ERRS })).status, 200, 'another token is not limited');
  // the buckets themselves: a minute's worth, refilled continuously
  const lim = new RateLimiter(60);
  assert.equal(lim.take('a', 60, 0), 0);
  assert.equal(lim.take('a', 1, 0), 1);
  assert.equal(lim.take('a', 1, 1000), 0);
  assert.equal(lim.take('b', 61, 0), Infinity);
});

test('a client that disconnects frees its images at the next call', { timeout: 60_000 }, async () => {
  const ac = new AbortController();
  const pending = gen(A, { n: 2, sampler: 'ddpm', steps: 1000, seed: 0 }, MAIN, ac.signal).catch((e: Error) => e);
  const inFlight = async () => metric((await call(A, '/metrics')).text, 'ddpm_images_in_flight{model="mnist-28"}');
  for (let i = 0; i < 200 && (await inFlight()) < 2; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await inFlight(), 2, 'the images are running');
  ac.abort();
  assert.ok((await pending) instanceof Error);
  for (let i = 0; i < 100 && (await inFlight()) > 0; i++) await new Promise((r) => setTimeout(r, 50));
  const m = (await call(A, '/metrics')).text;
  assert.equal(metric(m, 'ddpm_images_in_flight{model="mnist-28"}'), 0);
  assert.equal(metric(m, 'ddpm_requests_cancelled_total{reason="client"}'), 1);
  await new Promise((r) => setTimeout(r, 500)); // the call that was running when it left may still end
  const calls = metric((await call(A, '/metrics')).text, 'ddpm_model_calls_total{model="mnist-28"}');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(metric((await call(A, '/metrics')).text, 'ddpm_model_calls_total{model="mnist-28"}'), calls, 'no more calls for it');
});

test('server B: a full queue is 429 at once, the time limit is 503, SIGTERM drains and exits 0', { timeout: 120_000 }, async () => {
  // 1. the time limit (--request-timeout 10): 1000 DDPM steps take longer
  const slow = await gen(B, { n: 1, sampler: 'ddpm', steps: 1000 }, '');
  assertError(slow, 503, 'timeout');
  // 2. --max-queue 6: a request of 6 fills it; the next is refused at once (within 50 ms of a loaded server: 1 s here)
  const full = gen(B, { n: 6, sampler: 'ddim', steps: 12, seed: 1 }, '');
  const inFlight = async () => metric((await call(B, '/metrics')).text, 'ddpm_images_in_flight{model="mnist-28"}');
  for (let i = 0; i < 200 && (await inFlight()) < 6; i++) await new Promise((r) => setTimeout(r, 25));
  const refused = await gen(B, { n: 1, steps: 2 }, '');
  assertError(refused, 429, 'queue_full', null);
  assert.ok(refused.ms < 1000, `answered in ${refused.ms.toFixed(0)} ms`);
  assert.equal(refused.headers.get('retry-after'), '1');
  assert.equal((await full).status, 200);
  // 3. SIGTERM while a request runs: it finishes (200), a new one gets 503, /healthz too, the process exits 0
  const running = gen(B, { n: 2, sampler: 'ddim', steps: 30, seed: 2 }, '');
  for (let i = 0; i < 200 && (await inFlight()) < 2; i++) await new Promise((r) => setTimeout(r, 25));
  B.proc.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  assertError(await gen(B, { n: 1, steps: 2 }, ''), 503, 'draining');
  assert.equal((await call(B, '/healthz')).status, 503);
  const done = await running;
  assert.equal(done.status, 200, done.text);
  assert.equal((done.json.data as unknown[]).length, 2);
  assert.equal(await B.exit, 0, B.stderr.join(''));
  assert.match(B.stderr.join(''), /SIGTERM: draining/);
  // 4. the log: one JSON line per request, with its id, model, n, steps, status and time; never an image
  const lines = B.stderr.join('').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Json);
  const line = lines.find((l) => l.msg === 'request' && l.status === 200 && l.route === '/v1/images/generations')!;
  for (const k of ['reqId', 'model', 'n', 'steps', 'status', 'ms']) assert.ok(k in line, `log line has ${k}: ${JSON.stringify(line)}`);
  assert.doesNotMatch(B.stderr.join(''), /iVBORw0KGgo/, 'no PNG in the log');
});

test('access: without --tokens only loopback; a bad --model or token file is one line', async () => {
  assertUserError(await runCli(['serve', '--host', '0.0.0.0', '--port', '0']), /--host 0\.0\.0\.0 is not a loopback address: give --tokens FILE/);
  const insecure = await runCli(['serve', '--host', '0.0.0.0', '--insecure-no-auth', '--model', 'x=/nonexistent/model']);
  assert.match(insecure.stderr, /^warning: serving on 0\.0\.0\.0 without authentication \(--insecure-no-auth\)/m);
  await writeFile(path.join(dir, 'short.txt'), 'abc\n');
  assertUserError(await runCli(['serve', '--tokens', path.join(dir, 'short.txt')]), /short\.txt:1: a token must have at least 16 characters/);
  assertUserError(await runCli(['serve', '--model', 'x=/nonexistent/model']), /--model x: no such file or directory/);
  assertUserError(await runCli(['serve', '--model', 'a b=mnist-28']), /NAME must be/);
  // the log of server A never holds a token
  assert.ok(!A.stderr.join('').includes(MAIN) && !A.stderr.join('').includes(RATE), 'no token in the log');
});

/** A process of `steps` model calls on a 1x1x1 image that returns the outputs it got. */
function* counting(steps: number): SamplingProcess<never> {
  const seen: number[] = [];
  for (let k = 0; k < steps; k++) seen.push((yield* callModel(new Float32Array(1), 999 - k, [1, 1, 1, 1]))[0]!);
  return Float32Array.from(seen);
}

test('the batcher: round robin (a 1-image request is not starved by a 64-image one), guided rows, cancellation', async () => {
  const calls: { rows: number; t: number[]; y: number[] | null }[] = [];
  const b = new ContinuousBatcher({
    imageShape: [1, 1, 1],
    outChannels: 1,
    numClasses: 10,
    maxBatch: 4,
    model: async (x, t, y, shape) => {
      calls.push({ rows: shape[0]!, t: [...t], y: y && [...y] });
      return Float32Array.from(y!, (v) => v); // each row's output is its label
    },
  });
  // 1. fairness: 64 images of 10 steps, then one image; 4 images a call
  const big = b.submit(Array.from({ length: 64 }, () => ({ process: counting(10) })));
  const small = b.submit([{ process: counting(10) }]);
  const order: string[] = [];
  const doneAt = (name: string) => () => order.push(`${name}@${calls.length}`);
  await Promise.all([big.result.then(doneAt('big')), small.result.then(doneAt('small'))]);
  assert.equal(order[0], 'small@11', `the small request joined at the second call and finished 10 calls later (${order.join(', ')})`);
  assert.equal(calls.length, Math.ceil((64 * 10 + 10) / 4));
  assert.ok(calls.every((c) => c.rows <= 4));
  // 2. guidance: rows [c, ∅] for s ∉ {0, 1}, combined as ε_∅ + s(ε_c − ε_∅); [∅] for s = 0 or none, [c] for s = 1
  calls.length = 0;
  const outs = await Promise.all(
    [{ label: 3, scale: 2 }, { label: 3, scale: 0 }, { label: 3, scale: 1 }, undefined].map((guidance) => b.submit([{ process: counting(1), guidance }]).result),
  );
  assert.deepEqual(outs.map((o) => o[0]![0]), [10 + 2 * (3 - 10), 10, 3, 10]);
  assert.deepEqual(calls.map((c) => c.y!.sort((a, b) => a - b)), [[3, 3, 10, 10, 10]], 'one call of five rows: [3, ∅], [∅], [3], [∅]');
  // 3. cancellation: the images leave before the next call, the result rejects, nothing is left pending
  const t = b.submit([{ process: counting(1000) }, { process: counting(1000) }]);
  await new Promise((r) => setTimeout(r, 20));
  t.cancel();
  await assert.rejects(t.result, Cancelled);
  assert.equal(b.pending, 0);
  await b.idle();
});
