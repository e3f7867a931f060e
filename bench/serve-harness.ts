/**
 * What bench/serve.ts and scripts/soak-serve.ts share: `ddpm serve` started as a child process on a loopback port,
 * a keep-alive HTTP client (node:http, one agent per server so concurrency is what the caller asks for), and the
 * server's Prometheus text read back.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = path.join(ROOT, 'src', 'cli', 'bin.ts');

export interface ServerProcess {
  readonly proc: ChildProcess;
  readonly url: URL;
  readonly agent: http.Agent;
  readonly stderr: string[];
  readonly exit: Promise<number | null>;
}

/** `ddpm serve --port 0 ...args`, resolved once it prints "listening on ...". */
export async function startServer(args: string[], maxSockets = 1024): Promise<ServerProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', BIN, 'serve', '--port', '0', '--log-level', 'warn', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  proc.stderr!.on('data', (b: Buffer) => {
    stderr.push(b.toString());
    if (stderr.length > 2000) stderr.splice(0, 1000);
  });
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
  return { proc, url: new URL(url), agent: new http.Agent({ keepAlive: true, maxSockets }), stderr, exit };
}

export interface Answer {
  status: number;
  /** ms from the request to the end of the answer */
  ms: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/**
 * One request; rejects on a network error, or after `timeoutMs` (a hang), or when `signal` aborts (the socket is
 * destroyed: the server sees a client gone).
 */
export function request(
  s: ServerProcess,
  route: string,
  opts: { method?: string; body?: string | Buffer; headers?: Record<string, string>; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<Answer> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: s.url.hostname, port: s.url.port, path: route, method: opts.method ?? (opts.body === undefined ? 'GET' : 'POST'), agent: s.agent, headers: opts.headers, signal: opts.signal },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`no answer in ${opts.timeoutMs} ms`)));
    req.end(opts.body);
  });
}

/** POST a JSON body. */
export function postJson(s: ServerProcess, route: string, body: unknown, opts: { timeoutMs?: number; signal?: AbortSignal; token?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  return request(s, route, { body: JSON.stringify(body), headers, timeoutMs: opts.timeoutMs, signal: opts.signal });
}

/** The server's metrics as name{labels} → value. */
export async function scrape(s: ServerProcess): Promise<Map<string, number>> {
  const r = await request(s, '/metrics');
  const out = new Map<string, number>();
  for (const line of r.body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** The sum of every series of `name` (over labels) in a scrape. */
export function total(m: Map<string, number>, name: string): number {
  let sum = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) sum += v;
  return sum;
}

/** The p-th percentile (0..100) of sorted values (nearest rank). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** SIGTERM, then wait for the exit (SIGKILL after `ms`). */
export async function stopServer(s: ServerProcess, ms = 60_000): Promise<number | null> {
  s.agent.destroy();
  s.proc.kill('SIGTERM');
  const timer = setTimeout(() => s.proc.kill('SIGKILL'), ms);
  const code = await s.exit;
  clearTimeout(timer);
  return code;
}
