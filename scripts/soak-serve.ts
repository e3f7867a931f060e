/**
 * Soak test of `ddpm serve`: for --minutes M, good clients (generations of every sampler, guided and not, inpainting
 * and SDEdit as JSON and multipart), bad clients (malformed and invalid bodies, wrong tokens, oversized bodies and
 * images, unknown routes) and clients that disconnect mid-request, all at once, against one server on loopback.
 * Passes when no answer is a 5xx and no good request fails, the server's RSS is flat (the last third of the run
 * within 20% / 64 MB of the second third), its handles at rest are what they were at rest after the warm-up, and
 * SIGTERM ends it with exit code 0. Exit code 1 otherwise.
 *
 *   npm run soak:serve -- --minutes 10 [--good 4 --bad 2 --disconnect 2 --seed 1]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { encodePng } from '../src/io/image.ts';
import { Rng } from '../src/rng.ts';
import { percentile, postJson, request, scrape, startServer, stopServer, total, type ServerProcess } from '../bench/serve-harness.ts';

const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const minutes = flag('minutes', 5);
const good = flag('good', 4);
const bad = flag('bad', 2);
const disconnect = flag('disconnect', 2);
const seed = flag('seed', 1);
const TOKEN = 'soak-token-0123456789abcdef';

const counts = new Map<string, number>();
const count = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
const failures: string[] = [];
const fail = (what: string) => {
  if (failures.length < 50) failures.push(what);
  count('failure');
};

async function inputs() {
  const digit = Uint8Array.from({ length: 28 * 28 }, (_, i) => (Math.abs((i % 28) - 14) < 3 && i > 4 * 28 && i < 24 * 28 ? 255 : 0));
  const png = Buffer.from(await encodePng({ data: digit, width: 28, height: 28, channels: 1 }));
  const mask = Buffer.from(await encodePng({ data: Uint8Array.from({ length: 784 }, (_, i) => (i >= 392 ? 255 : 0)), width: 28, height: 28, channels: 1 }));
  return { png, mask };
}

type Inputs = Awaited<ReturnType<typeof inputs>>;

/** A valid request: a generation (any sampler, guided or not) or an edit (inpainting or SDEdit, JSON or multipart). */
async function goodRequest(s: ServerProcess, r: Rng, inp: Inputs): Promise<void> {
  const kind = r.integer(5);
  const sampler = (['ddim', 'ddpm', 'dpm++'] as const)[r.integer(3)];
  const base = { n: 1 + r.integer(3), sampler, steps: 2 + r.integer(9), seed: r.integer(1000) };
  let a;
  if (kind <= 1) a = await postJson(s, '/v1/images/generations', base, { token: TOKEN, timeoutMs: 600_000 });
  else if (kind === 2) a = await postJson(s, '/v1/images/generations', { ...base, model: 'mnist-28-cond', class: r.integer(10), guidance: r.integer(5) }, { token: TOKEN, timeoutMs: 600_000 });
  else if (kind === 3) {
    a = await postJson(s, '/v1/images/edits', { ...base, image: inp.png.toString('base64'), mask: inp.mask.toString('base64'), jump: 1 + r.integer(base.steps - 1), resample: 1 + r.integer(2) }, { token: TOKEN, timeoutMs: 600_000 });
  } else {
    const boundary = `----soak${r.integer(1e9)}`;
    const part = (name: string, value: string | Buffer, file = false) =>
      Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"${file ? '; filename="x.png"\r\nContent-Type: image/png' : ''}\r\n\r\n`),
        Buffer.isBuffer(value) ? value : Buffer.from(value),
        Buffer.from('\r\n'),
      ]);
    const body = Buffer.concat([part('image', inp.png, true), part('strength', String(0.3 + 0.7 * r.uniform())), part('steps', String(base.steps)), part('seed', String(base.seed)), Buffer.from(`--${boundary}--\r\n`)]);
    a = await request(s, '/v1/images/edits', { body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, authorization: `Bearer ${TOKEN}` }, timeoutMs: 600_000 });
  }
  count(`good ${a.status}`);
  if (a.status !== 200 && a.status !== 429) fail(`good request kind ${kind}: ${a.status} ${a.body.slice(0, 200)}`);
}

/** An invalid request: each must be a 4xx with the error object. */
function badRequest(r: Rng, inp: Inputs): { route: string; body?: string | Buffer; headers: Record<string, string>; method?: string } {
  const json = { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` };
  const cases = [
    () => ({ route: '/v1/images/generations', body: '{"n": 1,', headers: json }),
    () => ({ route: '/v1/images/generations', body: JSON.stringify({ n: 'x' }), headers: json }),
    () => ({ route: '/v1/images/generations', body: JSON.stringify({ n: 1e9 }), headers: json }),
    () => ({ route: '/v1/images/generations', body: JSON.stringify({ n: 1, steps: 1, prompt: 'x' }), headers: json }),
    () => ({ route: '/v1/images/generations', body: JSON.stringify({ n: 1, model: 'nope' }), headers: json }),
    () => ({ route: '/v1/images/generations', body: JSON.stringify({ n: 1, sampler: 'ddpm', eta: 0.3 }), headers: json }),
    () => ({ route: '/v1/images/generations', body: JSON.stringify({ n: 1, class: 3 }), headers: { ...json, authorization: 'Bearer wrong-token-wrong-token' } }),
    () => ({ route: '/v1/images/generations', body: JSON.stringify({ n: 1 }), headers: { 'content-type': 'application/json' } }),
    () => ({ route: '/v1/images/generations', body: 'x'.repeat(100), headers: { ...json, 'content-type': 'text/plain' } }),
    () => ({ route: '/v1/images/edits', body: JSON.stringify({ image: 'A'.repeat(2_000_000) }), headers: json }),
    () => ({ route: '/v1/images/edits', body: JSON.stringify({ image: inp.png.subarray(0, 10 + r.integer(inp.png.length / 2 - 10)).toString('base64') }), headers: json }), // cut inside IDAT
    () => ({ route: '/v1/images/edits', body: JSON.stringify({ image: inp.png.toString('base64'), mask: inp.png.subarray(0, 30).toString('base64') }), headers: json }),
    () => ({ route: '/v1/images/edits', body: JSON.stringify({ image: inp.png.toString('base64'), strength: 0 }), headers: json }),
    () => ({ route: '/v1/images/edits', body: '--x\r\nContent-Disposition: form-data; name="image"\r\n\r\nabc\r\n--x--\r\n', headers: { authorization: json.authorization, 'content-type': 'multipart/form-data; boundary=x' } }),
    () => ({ route: `/v1/${'a'.repeat(r.integer(3000))}`, headers: json, method: 'GET' }),
    () => ({ route: '/v1/models?x=1', headers: json, method: 'GET' }),
  ];
  return cases[r.integer(cases.length)]!();
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ddpm-soak-serve-'));
  await writeFile(path.join(dir, 'tokens.txt'), `${TOKEN}\n`);
  const inp = await inputs();
  const s = await startServer(['--tokens', path.join(dir, 'tokens.txt'), '--max-queue', '64', '--max-n', '4', '--max-steps', '200', '--max-body-mb', '1', '--threads', String(Math.max(1, os.availableParallelism()))]);
  const root = new Rng(seed);
  const end = performance.now() + minutes * 60_000;
  const samples: { t: number; rss: number; heap: number; handles: number }[] = [];
  const atRest = async () => {
    s.agent.destroy(); // our keep-alive sockets are the server's handles too
    await new Promise((r) => setTimeout(r, 1000));
    const m = await scrape(s);
    return { handles: total(m, 'nodejs_active_handles_total'), rss: total(m, 'process_resident_memory_bytes'), pending: total(m, 'ddpm_queue_images') + total(m, 'ddpm_images_in_flight') };
  };
  let code = 0;
  try {
    // 1. a warm-up, then the server at rest
    for (let i = 0; i < 3; i++) await goodRequest(s, root.fold(1_000_000 + i), inp);
    const rest0 = await atRest();
    console.error(`soak: ${minutes} min, ${good} good, ${bad} bad, ${disconnect} disconnecting clients; at rest: RSS ${(rest0.rss / 2 ** 20).toFixed(0)} MB, ${rest0.handles} handles`);
    // 2. the mix
    const worker = async (kind: 'good' | 'bad' | 'disconnect', w: number) => {
      const r = root.fold(w);
      while (performance.now() < end) {
        try {
          if (kind === 'good') await goodRequest(s, r, inp);
          else if (kind === 'bad') {
            const b = badRequest(r, inp);
            const a = await request(s, b.route, { body: b.body, headers: b.headers, method: b.method, timeoutMs: 60_000 });
            count(`bad ${a.status}`);
            let shaped = false;
            try {
              shaped = typeof (JSON.parse(a.body) as { error?: { code?: unknown } }).error?.code === 'string';
            } catch {
              /* not JSON */
            }
            if (a.status < 400 || a.status >= 500 || !shaped) fail(`bad request ${b.route.slice(0, 40)}: ${a.status} ${a.body.slice(0, 200)}`);
          } else {
            const ac = new AbortController();
            setTimeout(() => ac.abort(), 50 + r.integer(2000));
            const steps = [20, 25, 40, 50, 100][r.integer(5)]; // DDIM's fixed stride: numbers T = 1000 divides well
            const a = await postJson(s, '/v1/images/generations', { n: 1 + r.integer(4), sampler: 'ddim', steps, seed: r.integer(1000) }, { token: TOKEN, signal: ac.signal }).catch(() => null);
            count(a ? `disconnect-late ${a.status}` : 'disconnected');
            if (a && a.status !== 200) fail(`disconnecting client got ${a.status} ${a.body.slice(0, 200)}`);
          }
        } catch (e) {
          fail(`${kind} client: ${(e as Error).message}`);
        }
      }
    };
    const sampler = setInterval(() => {
      void scrape(s)
        .then((m) => samples.push({ t: performance.now(), rss: total(m, 'process_resident_memory_bytes'), heap: total(m, 'nodejs_heap_size_used_bytes'), handles: total(m, 'nodejs_active_handles_total') }))
        .catch(() => {});
    }, 5000);
    await Promise.all([
      ...Array.from({ length: good }, (_, i) => worker('good', i)),
      ...Array.from({ length: bad }, (_, i) => worker('bad', 100 + i)),
      ...Array.from({ length: disconnect }, (_, i) => worker('disconnect', 200 + i)),
    ]);
    clearInterval(sampler);
    // 3. at rest again: nothing pending, handles and RSS
    let rest1 = await atRest();
    for (let i = 0; i < 30 && rest1.pending > 0; i++) rest1 = await atRest();
    const m = await scrape(s);
    const fivexx = [...m].filter(([k]) => /^ddpm_http_requests_total\{.*status="5\d\d"/.test(k)).reduce((a, [, v]) => a + v, 0);
    const third = Math.floor(samples.length / 3);
    const med = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
    const rssMid = med(samples.slice(third, 2 * third).map((x) => x.rss));
    const rssEnd = med(samples.slice(2 * third).map((x) => x.rss));
    const rssFlat = samples.length < 6 || rssEnd <= Math.max(rssMid * 1.2, rssMid + 64 * 2 ** 20);
    const handlesOk = rest1.handles <= rest0.handles + 2;
    const exit = await stopServer(s);
    const ok = fivexx === 0 && failures.length === 0 && rssFlat && handlesOk && rest1.pending === 0 && exit === 0;
    const summary = {
      minutes,
      requests: Object.fromEntries([...counts].sort()),
      served5xx: fivexx,
      failures,
      rssMb: { atRestStart: rest0.rss / 2 ** 20, middleThird: rssMid / 2 ** 20, lastThird: rssEnd / 2 ** 20, peak: Math.max(...samples.map((x) => x.rss)) / 2 ** 20, atRestEnd: rest1.rss / 2 ** 20 },
      heapUsedMb: { middleThird: med(samples.slice(third, 2 * third).map((x) => x.heap)) / 2 ** 20, lastThird: med(samples.slice(2 * third).map((x) => x.heap)) / 2 ** 20 },
      handlesAtRest: { start: rest0.handles, end: rest1.handles },
      pendingAtEnd: rest1.pending,
      exitCode: exit,
      loadAverage: os.loadavg().map((x) => x.toFixed(2)).join(' '),
      ok,
    };
    console.log(JSON.stringify(summary, null, 2));
    code = ok ? 0 : 1;
  } finally {
    if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
  process.exit(code);
}

await main();
