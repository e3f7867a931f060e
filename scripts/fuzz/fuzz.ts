/**
 * `npm run fuzz -- --minutes N [--seed S] [--target name[,name]] [--jobs J]`: structure-aware fuzzing of the
 * readers a user's file reaches (targets.ts), in child processes (worker.ts) so that a native crash, an abort
 * or a hang is caught and its input kept.
 *
 * The parent watches each worker: a heartbeat file holds the index of the input being run (written before it
 * runs); an index that stays for more than 5 s is a hang (the worker is killed), a worker that dies is a crash
 * at that index. RSS: the worker reads its peak RSS (a high-watermark) after every input; the input at which it
 * crosses max(512 MB, 10x the input's size), or at which the parent sees the current RSS pass a hard cap (3x),
 * is rerun alone in a fresh process, and only a peak that repeats there is a failure (the watermark of a busy
 * worker also holds garbage of earlier inputs). Inputs are a pure function of (seed corpus, seed, index), so
 * the parent rebuilds the input and keeps it in test/fuzz-regressions/<target>/<sha1-12>.<ext> (at most 3 per
 * distinct failure). A worker that dies is replaced, starting after the input.
 * At the end a JSON summary goes to stdout: inputs per target, failures by kind, max RSS, slowest input.
 *
 * Other modes: --inputs K (K inputs per target instead of a time budget; what CI runs), --replay DIR (run the
 * kept inputs of DIR/<target>/ instead of generated ones), --list (targets and their entry points).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, writeFileSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildCorpus, makeInput, readCorpus, shortHash, type SeedFile } from './corpus.ts';
import { TARGETS, targetByName, type Target } from './targets.ts';
import { PHASE, type WorkerArgs, type WorkerMessage, type WorkerStats } from './protocol.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));
export const DEFAULT_SAVE_DIR = path.join(ROOT, 'test', 'fuzz-regressions');

export interface FuzzOptions {
  /** target names (default: all) */
  targets?: readonly string[];
  seed?: number;
  /** wall-clock budget for the whole run, shared equally by the targets */
  minutes?: number;
  /** inputs per target, or per target name (a deterministic run) */
  inputs?: number | Readonly<Record<string, number>>;
  /** workers running at once (default 1) */
  jobs?: number;
  /** where failing inputs are kept (default test/fuzz-regressions); null: keep nothing */
  saveDir?: string | null;
  /** run the files of <replay>/<target>/ instead of generated inputs */
  replay?: string;
  /** an input running longer is a hang (default 5000) */
  hangMs?: number;
  /** RSS bound: max(this, 10 x input size) (default 512 MB) */
  rssFloorMB?: number;
  /** the parent kills a worker whose current RSS passes this (default 3 x rssFloorMB) */
  hardRssMB?: number;
  /** progress lines (default: stderr); null: quiet */
  log?: ((line: string) => void) | null;
  progressSec?: number;
  /** failing inputs kept per distinct failure (default 3) */
  keepPerSignature?: number;
}

export interface Failure {
  target: string;
  kind: string;
  /** generated input index, or -1 for a replayed file */
  index: number;
  /** the kept or replayed input */
  file?: string;
  error: string;
  message: string;
}

export interface FailureGroup extends Failure {
  signature: string;
  count: number;
  files: string[];
}

export interface TargetSummary {
  entry: string;
  inputs: number;
  accepted: number;
  rejected: number;
  failures: Record<string, number>;
  maxRssMB: number;
  /** the input with that peak */
  maxRssInput: string;
  slowest: { ms: number; input: string };
  seconds: number;
  perSecond: number;
  workers: number;
  /** inputs whose RSS crossed the bound in a busy worker but not when rerun alone in a fresh process */
  rssUnconfirmed: number;
  /** the first of those, with their peak alone */
  rssAlone: { input: string; mb: number }[];
  /** reader error classes of rejected inputs */
  errors: Record<string, number>;
}

export interface Summary {
  date: string;
  machine: string;
  node: string;
  seed: number;
  mode: 'generated' | 'replay';
  seconds: number;
  targets: Record<string, TargetSummary>;
  total: { inputs: number; failures: Record<string, number>; maxRssMB: number; maxRssInput: string; slowest: { ms: number; target: string; input: string } };
  /** distinct failures (same target, kind and normalised message), with how often each occurred */
  failures: FailureGroup[];
  /** replay mode: every file with its result ('ok' or the failure kind) */
  replayed?: { target: string; file: string; result: string; message?: string }[];
}

const FAILURE_KINDS = ['crash', 'hang', 'rss', 'unexpected-error', 'accepted-invalid', 'harness'] as const;

function signatureOf(f: Failure): string {
  const msg = f.message
    .replace(/(\/[\w.@+-]+)+/g, '<path>')
    .replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/gi, 'N')
    .replace(/\[[^\]]*\]/g, '[…]')
    .slice(0, 100);
  return `${f.target}|${f.kind}|${f.error}|${msg}`;
}

function machine(): string {
  const cpus = os.cpus();
  return `${cpus[0]?.model ?? 'unknown CPU'} (${cpus.length} cores), ${(os.totalmem() / 2 ** 30).toFixed(0)} GB, ${os.platform()} ${os.release()}`;
}

/** Current RSS of a process (Linux /proc); undefined elsewhere. */
function currentRss(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

interface WorkerResult {
  stats: WorkerStats | null;
  /** last heartbeat */
  index: number;
  phase: number;
  /** why it ended abnormally */
  abnormal: null | { kind: 'crash' | 'hang' | 'rss' | 'harness'; message: string };
  fails: Extract<WorkerMessage, { type: 'fail' }>[];
  /** where a finished worker says to go on from */
  next?: number;
}

/** Run one worker to its end (finished, crashed, killed for a hang or for RSS). */
function runWorker(args: WorkerArgs, o: Required<Pick<FuzzOptions, 'hangMs' | 'hardRssMB'>>, live: { index: number }): Promise<WorkerResult> {
  writeFileSync(args.heartbeat, new Uint8Array(new Float64Array([-1, -1]).buffer));
  const flags = ['--import', 'tsx', '--max-old-space-size=4096', '--expose-gc'];
  const child = spawn(process.execPath, [...flags, WORKER, JSON.stringify(args)], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    // glibc: blocks over 128 KB are mmap'd and go back to the system when freed, so a worker's RSS falls after a
    // large input instead of keeping its high-water mark in the heap (the next input's peak is then its own)
    env: { ...process.env, UV_THREADPOOL_SIZE: '2', MALLOC_MMAP_THRESHOLD_: '131072' },
  });
  let stderrTail = '';
  child.stderr!.on('data', (d: Buffer) => (stderrTail = (stderrTail + d.toString()).slice(-2000)));
  const result: WorkerResult = { stats: null, index: -1, phase: -1, abnormal: null, fails: [] };
  let done = false;
  child.on('message', (m: WorkerMessage) => {
    if (m.type === 'fail') result.fails.push(m);
    else {
      result.stats = m.stats;
      if (m.type === 'done') (done = true), (result.next = m.next);
    }
  });
  const hb = openSync(args.heartbeat, 'r');
  const rec = new Float64Array(2);
  let seen = { index: -2, phase: -2, at: Date.now() };
  const startupMs = 120_000;
  const timer = setInterval(() => {
    readSync(hb, rec, 0, 16, 0);
    const [index, phase] = [rec[0]!, rec[1]!];
    if (index !== seen.index || phase !== seen.phase) seen = { index, phase, at: Date.now() };
    if (index >= 0) live.index = index;
    const stuck = Date.now() - seen.at;
    if (result.abnormal) return;
    if (phase === PHASE.running && stuck > o.hangMs) {
      result.abnormal = { kind: 'hang', message: `no progress for ${(stuck / 1000).toFixed(1)} s on one input (killed)` };
      child.kill('SIGKILL');
    } else if (phase === PHASE.generating && stuck > o.hangMs) {
      result.abnormal = { kind: 'harness', message: `input generation stuck for ${(stuck / 1000).toFixed(1)} s` };
      child.kill('SIGKILL');
    } else if (phase === -1 && stuck > startupMs) {
      result.abnormal = { kind: 'harness', message: `worker did not start within ${startupMs / 1000} s` };
      child.kill('SIGKILL');
    }
    const rss = child.pid !== undefined ? currentRss(child.pid) : undefined;
    if (rss !== undefined && rss > o.hardRssMB * 2 ** 20 && phase === PHASE.running) {
      result.abnormal = { kind: 'rss', message: `RSS ${(rss / 2 ** 20).toFixed(0)} MB passed the ${o.hardRssMB} MB cap (killed)` };
      child.kill('SIGKILL');
    }
  }, 100);
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearInterval(timer);
      readSync(hb, rec, 0, 16, 0);
      closeSync(hb);
      result.index = rec[0]!;
      result.phase = rec[1]!;
      if (!done && !result.abnormal) {
        // the error line (a stack's first line) says more than the stack's last lines
        const lines = stderrTail.trim().split('\n');
        const tail = [...lines.filter((l) => /Error|error:|Abort|FATAL/.test(l)).slice(0, 1), ...lines.slice(-1)].join(' | ');
        result.abnormal =
          code === 70 || result.phase === PHASE.generating || result.phase === -1
            ? { kind: 'harness', message: `worker failed (exit ${code ?? signal}): ${tail}` }
            : { kind: 'crash', message: `worker died (${signal ? `signal ${signal}` : `exit code ${code}`})${tail ? `: ${tail}` : ''}` };
      }
      resolve(result);
    });
  });
}

interface Plan {
  target: Target;
  seeds: SeedFile[];
  files?: string[];
  end: number;
  budgetMs: number;
}

/** Fuzz (or replay) the given targets; resolves to the summary. Never throws for a reader failure. */
export async function runFuzz(opts: FuzzOptions = {}): Promise<Summary> {
  const t0 = Date.now();
  const seed = opts.seed ?? 1;
  const jobs = Math.max(1, opts.jobs ?? 1);
  const hangMs = opts.hangMs ?? 5000;
  const rssFloorMB = opts.rssFloorMB ?? 512;
  const hardRssMB = opts.hardRssMB ?? 3 * rssFloorMB;
  const keep = opts.keepPerSignature ?? 3;
  const saveDir = opts.saveDir === undefined ? DEFAULT_SAVE_DIR : opts.saveDir;
  const log = opts.log === undefined ? (l: string) => process.stderr.write(`${l}\n`) : opts.log;
  const tmp = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'ddpm-fuzz-'));
  const replay = opts.replay !== undefined;
  if (!replay && opts.minutes === undefined && opts.inputs === undefined) throw new Error('fuzz: give --minutes or --inputs (or --replay)');

  try {
    // 1. Plans: which inputs each target runs.
    let targets = (opts.targets ?? TARGETS.map((t) => t.name)).map(targetByName);
    const plans: Plan[] = [];
    if (replay) {
      for (const t of targets) {
        const dir = path.join(opts.replay!, t.name);
        if (!existsSync(dir)) continue;
        const files = (await fsp.readdir(dir)).filter((f) => !f.startsWith('.') && !f.endsWith('.md')).sort().map((f) => path.join(dir, f));
        if (files.length > 0) plans.push({ target: t, seeds: [], files, end: files.length, budgetMs: Infinity });
      }
      targets = plans.map((p) => p.target);
    } else {
      const corpus = path.join(tmp, 'corpus');
      await buildCorpus(corpus, targets);
      const rounds = Math.ceil(targets.length / jobs);
      const budgetMs = opts.minutes !== undefined ? (opts.minutes * 60_000) / rounds : Infinity;
      const count = (t: Target) => (typeof opts.inputs === 'number' ? opts.inputs : opts.inputs?.[t.name]) ?? Number.MAX_SAFE_INTEGER;
      for (const t of targets) plans.push({ target: t, seeds: await readCorpus(corpus, t.name), end: count(t), budgetMs });
    }

    // 2. Run the plans, `jobs` at a time; each target restarts its worker after a crash, hang or RSS kill.
    const summaries: Record<string, TargetSummary> = {};
    const allFailures: Failure[] = [];
    const replayed: NonNullable<Summary['replayed']> = [];
    const live = new Map<string, { index: number; start: number; started: number }>();
    const progress = log && setInterval(() => {
      const el = ((Date.now() - t0) / 1000).toFixed(0);
      const parts = [...live].map(([n, l]) => `${n} ${l.index + 1} (${((l.index + 1 - l.start) / ((Date.now() - l.started) / 1000)).toFixed(0)}/s)`);
      log(`[${el}s] ${parts.join(' · ')} · failures ${allFailures.length}`);
    }, (opts.progressSec ?? 10) * 1000);

    const runPlan = async (plan: Plan) => {
      const t = plan.target;
      const s: TargetSummary = {
        entry: t.entry, inputs: 0, accepted: 0, rejected: 0, failures: {}, maxRssMB: 0, maxRssInput: '', slowest: { ms: 0, input: '' },
        seconds: 0, perSecond: 0, workers: 0, rssUnconfirmed: 0, rssAlone: [], errors: {},
      };
      const started = Date.now();
      const deadline = Math.min(started + plan.budgetMs, Number.MAX_SAFE_INTEGER); // finite: it goes through JSON
      const wdir = path.join(tmp, `w-${t.name}`);
      await fsp.mkdir(wdir, { recursive: true });
      const tracker = { index: -1, start: 0, started };
      live.set(t.name, tracker);
      const inputName = (i: number) => (plan.files ? path.relative(ROOT, plan.files[i]!) : `#${i}`);
      const record = async (f: Omit<Failure, 'target' | 'file'>, hash?: string) => {
        const failure: Failure = { ...f, target: t.name };
        if (plan.files) failure.file = inputName(f.index);
        else if (saveDir && f.kind !== 'harness') {
          const input = makeInput(t, plan.seeds, seed, f.index);
          const h = shortHash(input);
          if (hash && hash !== h) failure.message += ` (regenerated input ${h} differs from the worker's ${hash})`;
          const sig = signatureOf(failure);
          const kept = allFailures.filter((x) => signatureOf(x) === sig && x.file).length;
          if (kept < keep) {
            const dir = path.join(saveDir, t.name);
            await fsp.mkdir(dir, { recursive: true });
            failure.file = path.relative(ROOT, path.join(dir, `${h}.${t.ext}`));
            await fsp.writeFile(path.join(ROOT, failure.file), input);
          }
        }
        s.failures[f.kind] = (s.failures[f.kind] ?? 0) + 1;
        allFailures.push(failure);
        if (log) log(`FAIL ${t.name} ${f.kind} ${inputName(f.index)}${failure.file && !plan.files ? ` -> ${failure.file}` : ''}: ${f.error} ${f.message}`);
      };

      // An input whose RSS crossed the bound in a worker that had run other inputs is rerun alone in a fresh
      // process (garbage collected first): only a peak that repeats there is a failure, and that run's peak counts.
      const confirmRss = async (index: number): Promise<{ confirmed: false | 'rss' | 'crash' | 'hang'; mb: number; message: string }> => {
        const input = plan.files ? new Uint8Array(await fsp.readFile(plan.files[index]!)) : makeInput(t, plan.seeds, seed, index);
        const cdir = path.join(wdir, 'confirm');
        await fsp.mkdir(cdir, { recursive: true });
        const file = path.join(cdir, `input.${t.ext}`);
        await fsp.writeFile(file, input);
        const r = await runWorker(
          { target: t.name, seed, files: [file], start: 0, end: 1, deadline: Number.MAX_SAFE_INTEGER, heartbeat: path.join(cdir, 'heartbeat'),
            tmp: cdir, hangMs, rssFloorBytes: rssFloorMB * 2 ** 20, gcBefore: true },
          { hangMs, hardRssMB }, { index: -1 },
        );
        const f = r.fails.find((x) => x.kind === 'rss');
        const a = r.abnormal;
        if (a?.kind === 'rss') return { confirmed: 'rss', mb: hardRssMB, message: `${a.message}, alone in a fresh process` };
        if (a?.kind === 'crash' || a?.kind === 'hang') return { confirmed: a.kind, mb: 0, message: `${a.message}, alone in a fresh process` };
        if (f) return { confirmed: 'rss', mb: Number(/peak RSS (\d+)/.exec(f.message)?.[1] ?? 0), message: `${f.message}, alone in a fresh process` };
        return { confirmed: false, mb: (r.stats?.maxRssBytes ?? 0) / 2 ** 20, message: '' };
      };
      const handleRss = async (index: number, hash?: string) => {
        const c = await confirmRss(index);
        if (c.mb > s.maxRssMB) (s.maxRssMB = c.mb), (s.maxRssInput = `${inputName(index)} (alone)`);
        if (c.confirmed) await record({ kind: c.confirmed, index, error: 'none', message: c.message }, hash);
        else {
          s.rssUnconfirmed++;
          if (s.rssAlone.length < 10) s.rssAlone.push({ input: inputName(index), mb: Math.round(c.mb) });
        }
      };

      let next = 0;
      let abnormalRuns = 0;
      while (next < plan.end && Date.now() < deadline) {
        tracker.start = next;
        tracker.started = Date.now();
        s.workers++;
        const args: WorkerArgs = {
          target: t.name, seed, corpus: plan.files ? undefined : path.join(tmp, 'corpus'), files: plan.files,
          start: next, end: plan.end, deadline, heartbeat: path.join(wdir, 'heartbeat'), tmp: wdir, hangMs,
          rssFloorBytes: rssFloorMB * 2 ** 20,
        };
        const r = await runWorker(args, { hangMs, hardRssMB }, tracker);
        const st = r.stats;
        for (const f of r.fails) {
          if (f.kind === 'rss') await handleRss(f.index, f.hash);
          else await record({ kind: f.kind, index: f.index, error: f.error, message: f.message }, f.hash);
        }
        if (st) {
          s.accepted += st.accepted;
          s.rejected += st.rejected;
          if (st.maxRssBytes / 2 ** 20 > s.maxRssMB) (s.maxRssMB = st.maxRssBytes / 2 ** 20), (s.maxRssInput = inputName(st.maxRssIndex));
          if (st.slowestMs > s.slowest.ms) s.slowest = { ms: st.slowestMs, input: inputName(st.slowestIndex) };
          for (const [k, v] of Object.entries(st.errors)) s.errors[k] = (s.errors[k] ?? 0) + v;
        }
        if (!r.abnormal) {
          s.inputs += st?.inputs ?? 0;
          next = r.next ?? plan.end; // past the end, or after an input that raised the watermark
          continue;
        }
        // the worker died or was killed on input r.index: count the inputs it got through, record, go on after it
        const at = r.index >= 0 ? r.index : next;
        s.inputs += Math.max(0, at - next + 1);
        if (r.abnormal.kind === 'rss') await handleRss(at);
        else await record({ kind: r.abnormal.kind, index: at, error: 'none', message: r.abnormal.message });
        if (r.abnormal.kind === 'harness' || ++abnormalRuns > 100) break;
        next = at + 1;
      }
      s.seconds = (Date.now() - started) / 1000;
      s.perSecond = s.inputs / Math.max(s.seconds, 1e-9);
      summaries[t.name] = s;
      live.delete(t.name);
      if (plan.files) {
        plan.files.forEach((_, i) => {
          const f = allFailures.find((x) => x.target === t.name && x.index === i);
          replayed.push({ target: t.name, file: inputName(i), result: f ? f.kind : 'ok', ...(f ? { message: `${f.error} ${f.message}` } : {}) });
        });
      }
      if (log) log(`${t.name}: ${s.inputs} inputs in ${s.seconds.toFixed(1)} s (${s.perSecond.toFixed(0)}/s), max RSS ${s.maxRssMB.toFixed(0)} MB, failures ${JSON.stringify(s.failures)}`);
    };

    const queue = [...plans];
    await Promise.all(Array.from({ length: Math.min(jobs, queue.length) }, async () => {
      for (let p = queue.shift(); p; p = queue.shift()) await runPlan(p);
    }));
    if (progress) clearInterval(progress);

    // 3. Summary.
    const total: Summary['total'] = { inputs: 0, failures: {}, maxRssMB: 0, maxRssInput: '', slowest: { ms: 0, target: '', input: '' } };
    for (const [name, s] of Object.entries(summaries)) {
      total.inputs += s.inputs;
      for (const [k, v] of Object.entries(s.failures)) total.failures[k] = (total.failures[k] ?? 0) + v;
      if (s.maxRssMB > total.maxRssMB) (total.maxRssMB = s.maxRssMB), (total.maxRssInput = `${name} ${s.maxRssInput}`);
      if (s.slowest.ms > total.slowest.ms) total.slowest = { ms: s.slowest.ms, target: name, input: s.slowest.input };
    }
    for (const k of FAILURE_KINDS) total.failures[k] ??= 0;
    const groups = new Map<string, FailureGroup>();
    for (const f of allFailures) {
      const sig = signatureOf(f);
      const g = groups.get(sig) ?? { ...f, signature: sig, count: 0, files: [] };
      g.count++;
      if (f.file && g.files.length < 10) g.files.push(f.file);
      groups.set(sig, g);
    }
    const round = (x: number) => Math.round(x * 10) / 10;
    for (const s of Object.values(summaries)) {
      s.maxRssMB = round(s.maxRssMB);
      s.seconds = round(s.seconds);
      s.perSecond = round(s.perSecond);
      s.slowest.ms = round(s.slowest.ms);
    }
    total.maxRssMB = round(total.maxRssMB);
    total.slowest.ms = round(total.slowest.ms);
    return {
      date: new Date(t0).toISOString(), machine: machine(), node: process.version, seed, mode: replay ? 'replay' : 'generated',
      seconds: round((Date.now() - t0) / 1000), targets: summaries, total, failures: [...groups.values()],
      ...(replay ? { replayed } : {}),
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function cli(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      minutes: { type: 'string' }, inputs: { type: 'string' }, seed: { type: 'string' }, target: { type: 'string', multiple: true },
      jobs: { type: 'string' }, 'save-dir': { type: 'string' }, 'no-save': { type: 'boolean' }, replay: { type: 'string' },
      json: { type: 'string' }, quiet: { type: 'boolean' }, list: { type: 'boolean' }, help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*?|^ \* ?/gm, '') + '\n');
    return 0;
  }
  if (values.list) {
    for (const t of TARGETS) process.stdout.write(`${t.name.padEnd(12)} ${t.entry}\n`);
    return 0;
  }
  const num = (name: string, v: string | undefined, min: number, int: boolean): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || (int && !Number.isSafeInteger(n))) throw new Error(`--${name}: expected ${int ? 'an integer' : 'a number'} >= ${min}, got '${v}'`);
    return n;
  };
  const summary = await runFuzz({
    minutes: num('minutes', values.minutes, 0, false),
    inputs: num('inputs', values.inputs, 1, true),
    seed: num('seed', values.seed, 0, true),
    jobs: num('jobs', values.jobs, 1, true),
    targets: values.target?.flatMap((t) => t.split(',')),
    saveDir: values['no-save'] ? null : values['save-dir'] !== undefined ? path.resolve(values['save-dir']) : undefined,
    replay: values.replay,
    log: values.quiet ? null : undefined,
  });
  const text = JSON.stringify(summary, null, 2);
  process.stdout.write(`${text}\n`);
  if (values.json) writeFileSync(values.json, `${text}\n`);
  return summary.failures.length === 0 ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  cli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`fuzz: ${(e as Error).message}\n`);
      process.exit(2);
    },
  );
}
