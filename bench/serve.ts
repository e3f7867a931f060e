/**
 * `ddpm serve` under load, on loopback: closed-loop clients (each sends its next request when the last is answered)
 * at several concurrencies, every request n = 1 DDIM-20 on mnist-28 with its own seed; images/s, latency p50 / p95 /
 * p99, mean images per model call (from the server's /metrics), the server's peak RSS. Next to it, in the same run,
 * the offline throughput of `ddpm sample --n 64` at the same steps. Then overload: 512 clients against a queue of
 * --max-queue images (size it to what the server makes within --request-timeout); every request must be answered
 * (200, or 429 within 50 ms from when the server reads it; a refused client waits Retry-After plus up to a second of
 * jitter), none may hang (no answer within the time limit + 60 s), RSS must stay under 1 GB. With --replicas R, R servers run and the
 * clients spread their requests round robin over them, as an HTTP load balancer would.
 *
 *   npm run bench:serve [-- --seconds 15 --concurrency 1,8,32,128 --overload 512 --max-queue 128 --request-timeout 300
 *                          --replicas 1 --threads 2 --json out.json]
 *
 * Prints a Markdown table and, last, one JSON line.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BIN, ROOT, percentile, postJson, scrape, startServer, stopServer, total, type ServerProcess } from './serve-harness.ts';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const seconds = Number(flag('seconds', '15'));
const levels = flag('concurrency', '1,8,32,128').split(',').map(Number);
const overload = Number(flag('overload', '512'));
const replicas = Number(flag('replicas', '1'));
const steps = Number(flag('steps', '20'));
const threads = flag('threads', String(Math.max(1, Math.floor(os.availableParallelism() / replicas))));
const maxQueue = flag('max-queue', '128');
const requestTimeout = Number(flag('request-timeout', '300'));
const jsonOut = flag('json', '');

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const commit = (() => {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})();

/** 1. `ddpm sample --n 64` at the same steps: its own img/s line. */
async function offline(): Promise<number> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ddpm-bench-serve-'));
  try {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', BIN, 'sample', '--n', '64', '--sampler', 'ddim', '--steps', String(steps), '--threads', String(os.availableParallelism()), '--out', path.join(dir, 'x.png')], { cwd: ROOT });
    const m = /: ([\d.]+) img\/s/.exec(stdout);
    if (!m) throw new Error(`no img/s in: ${stdout}`);
    return Number(m[1]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface Level {
  concurrency: number;
  requests: number;
  ok: number;
  rejected: number;
  /** 503: past the server's time limit (an answer, but not one the overload target allows) */
  timedOut: number;
  errors: number;
  hung: number;
  imagesPerSec: number;
  p50: number;
  p95: number;
  p99: number;
  /** 429s: their latency p99 and max (ms) at the client, and the share the server answered within 50 ms */
  rejectP99: number;
  rejectMax: number;
  rejectServerWithin50ms: number;
  meanBatch: number;
  peakRssMb: number;
}

/** 2. `concurrency` closed-loop clients for `seconds` against the servers. */
async function run(servers: ServerProcess[], concurrency: number, secs: number): Promise<Level> {
  const before = await Promise.all(servers.map(scrape));
  let peakRss = 0;
  const sampleRss = async () => {
    for (const m of await Promise.all(servers.map(scrape))) peakRss = Math.max(peakRss, total(m, 'process_resident_memory_bytes'));
  };
  const rssTimer = setInterval(() => void sampleRss().catch(() => {}), 1000);
  const ok: number[] = [];
  const rejected: number[] = [];
  let timedOut = 0;
  let errors = 0;
  let hung = 0;
  let next = 0;
  const t0 = performance.now();
  const end = t0 + secs * 1000;
  const client = async () => {
    while (performance.now() < end) {
      const k = next++;
      const s = servers[k % servers.length]!;
      try {
        const r = await postJson(s, '/v1/images/generations', { n: 1, sampler: 'ddim', steps, seed: k }, { timeoutMs: (requestTimeout + 60) * 1000 }); // past it: hung
        if (r.status === 200) ok.push(r.ms);
        else if (r.status === 429) {
          rejected.push(r.ms);
          // as a client should: Retry-After, plus up to a second of jitter so the refused do not come back all at once
          await new Promise((res) => setTimeout(res, 1000 * (Number(r.headers['retry-after'] ?? 1) + Math.random())));
        } else if (r.status === 503) timedOut++;
        else errors++;
      } catch (e) {
        if (/no answer/.test((e as Error).message)) hung++;
        else errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  const elapsed = (performance.now() - t0) / 1000;
  clearInterval(rssTimer);
  await sampleRss();
  const after = await Promise.all(servers.map(scrape));
  const sum = (ms: Map<string, number>[], name: string) => ms.reduce((a, m) => a + total(m, name), 0);
  const calls = sum(after, 'ddpm_model_call_batch_size_count') - sum(before, 'ddpm_model_call_batch_size_count');
  const images = sum(after, 'ddpm_model_call_batch_size_sum') - sum(before, 'ddpm_model_call_batch_size_sum');
  const route = 'ddpm_http_request_duration_seconds_bucket{le="%",route="/v1/images/generations",status="429"}';
  const refused = (le: string) => sum(after, route.replace('%', le)) - sum(before, route.replace('%', le));
  ok.sort((a, b) => a - b);
  rejected.sort((a, b) => a - b);
  return {
    concurrency,
    requests: ok.length + rejected.length + timedOut + errors + hung,
    ok: ok.length,
    rejected: rejected.length,
    timedOut,
    errors,
    hung,
    imagesPerSec: ok.length / elapsed,
    p50: percentile(ok, 50),
    p95: percentile(ok, 95),
    p99: percentile(ok, 99),
    rejectP99: percentile(rejected, 99),
    rejectMax: rejected.at(-1) ?? NaN,
    rejectServerWithin50ms: refused('0.05') / refused('+Inf'),
    meanBatch: images / calls,
    peakRssMb: peakRss / 2 ** 20,
  };
}

const ms = (x: number) => (Number.isFinite(x) ? `${(x / 1000).toFixed(2)} s` : '-');

async function main(): Promise<void> {
  const loadBefore = loadavg();
  console.error(`offline: ddpm sample --n 64 --sampler ddim --steps ${steps} (load average ${loadBefore})`);
  const offlineIps = await offline();
  console.error(`offline: ${offlineIps.toFixed(2)} img/s; starting ${replicas} server(s), --threads ${threads} each`);
  const servers = await Promise.all(
    Array.from({ length: replicas }, () => startServer(['--model', 'mnist-28', '--threads', threads, '--max-queue', maxQueue, '--max-n', '64', '--max-steps', '1000', '--request-timeout', String(requestTimeout)])),
  );
  const results: Level[] = [];
  try {
    // a short warm-up (JIT, onnxruntime's arenas), not measured
    await run(servers, 8, Math.min(3, seconds));
    for (const c of [...levels, overload]) {
      console.error(`concurrency ${c}: ${seconds} s (load average ${loadavg()})`);
      results.push(await run(servers, c, seconds));
    }
  } finally {
    for (const s of servers) await stopServer(s);
  }
  const loadAfter = loadavg();

  // 3. the table, the targets
  const rows = results.map((r) =>
    `| ${r.concurrency}${r.concurrency === overload ? ' (overload)' : ''} | ${r.imagesPerSec.toFixed(2)} | ${(r.imagesPerSec / offlineIps).toFixed(2)}x | ${ms(r.p50)} | ${ms(r.p95)} | ${ms(r.p99)} | ${r.meanBatch.toFixed(1)} | ${r.ok} / ${r.rejected} / ${r.timedOut} / ${r.errors + r.hung} | ${Number.isFinite(r.rejectP99) ? `${r.rejectP99.toFixed(0)} ms / ${(100 * r.rejectServerWithin50ms).toFixed(1)}%` : '-'} | ${r.peakRssMb.toFixed(0)} MB |`,
  );
  const c32 = results.find((r) => r.concurrency === 32);
  const over = results.find((r) => r.concurrency === overload)!;
  const checks = {
    throughputAt32: c32 ? c32.imagesPerSec / offlineIps >= 0.8 : null,
    p99Within2xP50At32: c32 ? c32.p99 <= 2 * c32.p50 : null,
    overloadAllAnswered: over.errors === 0 && over.hung === 0 && over.timedOut === 0,
    // from when the server reads a request to its answer (the client's time adds both processes' waits for a core)
    overload429Within50ms: over.rejected === 0 || over.rejectServerWithin50ms >= 0.99,
    rssUnder1GB: results.every((r) => r.peakRssMb < 1024),
  };
  const date = new Date().toISOString().slice(0, 10);
  console.log(`\n\`npm run bench:serve -- ${args.join(' ')}\` · ${date} · commit ${commit} · ${os.cpus()[0]?.model ?? 'cpu'} x ${os.availableParallelism()} · Node ${process.version}`);
  console.log(`${replicas} replica(s), --threads ${threads}, --max-queue ${maxQueue}, --request-timeout ${requestTimeout}; n = 1 DDIM-${steps} on mnist-28; load average ${loadBefore} before, ${loadAfter} after`);
  console.log(`offline \`ddpm sample --n 64 --sampler ddim --steps ${steps}\`: ${offlineIps.toFixed(2)} img/s\n`);
  console.log('| concurrency | img/s | vs offline | p50 | p95 | p99 | images/call | 200 / 429 / 503 / failed | 429: client p99 / server <= 50 ms | peak RSS |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  console.log(`\ntargets: ${Object.entries(checks).map(([k, v]) => `${k} ${v === null ? 'n/a' : v ? 'PASS' : 'FAIL'}`).join(', ')}`);
  const json = { date, commit, replicas, threads: Number(threads), steps, maxQueue: Number(maxQueue), requestTimeout, seconds, offlineImagesPerSec: offlineIps, loadBefore, loadAfter, results, checks };
  if (jsonOut) await writeFile(jsonOut, `${JSON.stringify(json, null, 2)}\n`);
  console.log(JSON.stringify(json));
}

await main();
