/**
 * U-Net benchmark for the reference config `mnist-28` (or another preset: --config) at batch 64: training img/s
 * (forward + backward + AdamW, ε-prediction L_simple, one compiled step) and denoising img-steps/s (one U-Net
 * evaluation per image per step, no gradients), and the training process's peak RSS.
 *
 * Each side runs in a child process of its own per task, created once and kept warm (bench/unet-side.ts for ours;
 * with `--peer`, bench/peer/torch_unet.py --serve, Debian's python3-torch). Setup (compiling, 2 warm-up steps) is
 * timed apart. Then `--rounds` rounds of equal phases of `--phase-seconds`, ours then PyTorch's (ABAB...), first
 * for training, then for denoising: load that changes on a shared machine hits both phases of a round alike, and
 * the figure to trust is the median of the per-round ratios (with min and max). Each phase also reports its CPU
 * time over wall time per thread (`cpu_per_thread`: ~1 when the side had its cores, less when other jobs took
 * them); `ratio_clean` is the median over the rounds in which both sides had at least `--min-cpu` (0.9), listed in
 * `clean_rounds`. Per round one line on stderr; one JSON object as the last line of stdout. With `--profile`, our training step also runs `--steps` steps under
 * onnxruntime's profiler (after the timed rounds and the RSS reading) and the JSON gets its kernel time per op type.
 *
 *   npm run bench:unet -- [--peer] [--rounds 5] [--phase-seconds 10] [--threads 2] [--batch 64]
 *                         [--only train|denoise] [--profile --steps 4] [--config rgb-32 --res-blocks 2] [--workers 2]
 *
 * `--workers N`: our denoising side splits the batch across N worker threads with a 1-thread session each
 * (src/node/denoiser-workers.ts) instead of one session with --threads threads; our training side becomes N
 * processes of batch/N on 1 thread each, stepping at the same time without averaging their gradients (what a
 * data-parallel step could reach; the trainer does not do this). Their rates and peak RSS are summed.
 *
 * For measuring a change (a lever), `--b-root DIR` (another checkout, e.g. a git worktree of the base commit) and/or
 * `--b-runtime JSON` (extra RuntimeOptions, e.g. '{"memPattern":false}') put a second ddpm-ts side "b" in PyTorch's
 * place: the ratios are then ours / b, interleaved the same way.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UNET_CONFIGS } from '../src/models/unet.ts';
import { PYTHON, TORCH_UNET, checkTorch } from './peer/python.ts';
import { roundRatios, spread } from './rounds.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
/** A bad flag: one line, exit code 2. */
function usage(msg: string): never {
  console.error(`error: ${msg}`);
  process.exit(2);
}
function parseFlags() {
  try {
    return parseArgs({
      options: {
        peer: { type: 'boolean', default: false },
        rounds: { type: 'string', default: '5' },
        'phase-seconds': { type: 'string', default: '10' },
        threads: { type: 'string', default: String(os.availableParallelism()) },
        batch: { type: 'string', default: '64' },
        only: { type: 'string' },
        profile: { type: 'boolean', default: false },
        steps: { type: 'string', default: '4' },
        config: { type: 'string', default: 'mnist-28' },
        'res-blocks': { type: 'string' },
        runtime: { type: 'string', default: '{}' },
        'b-root': { type: 'string' },
        'b-runtime': { type: 'string' },
        workers: { type: 'string', default: '0' },
        'min-cpu': { type: 'string', default: '0.9' },
      },
    }).values;
  } catch (e) {
    return usage((e as Error).message);
  }
}
const a = parseFlags();
const positive = (name: string, v: string, int: boolean): number => {
  const n = Number(v);
  if (!(n > 0 && (!int || Number.isInteger(n)))) usage(`--${name} must be a positive ${int ? 'integer' : 'number'}, got '${v}'`);
  return n;
};
const rounds = positive('rounds', a.rounds!, true);
const phaseSeconds = positive('phase-seconds', a['phase-seconds']!, false);
const threads = positive('threads', a.threads!, true);
const batch = positive('batch', a.batch!, true);
const profileSteps = positive('steps', a.steps!, true);
const workers = a.workers === '0' ? 0 : positive('workers', a.workers!, true);
const minCpu = positive('min-cpu', a['min-cpu']!, false);
if (a['res-blocks'] !== undefined) positive('res-blocks', a['res-blocks'], true);
if (!Object.hasOwn(UNET_CONFIGS, a.config!)) usage(`--config: unknown preset '${a.config}' (known: ${Object.keys(UNET_CONFIGS).join(', ')})`);
if (a.only !== undefined && a.only !== 'train' && a.only !== 'denoise') usage(`--only must be train or denoise, got '${a.only}'`);
if (a.peer && (a.config !== 'mnist-28' || a['res-blocks'] !== undefined)) usage('--peer: the PyTorch peer is mnist-28 only');
if (a.profile && workers > 1) usage('--profile profiles the one-session training step: leave out --workers');
const abRun = a['b-root'] !== undefined || a['b-runtime'] !== undefined;
if (a.peer && abRun) usage('--peer and --b-root/--b-runtime: one other side at a time');
for (const k of ['runtime', 'b-runtime'] as const) {
  try {
    if (a[k] !== undefined) JSON.parse(a[k]);
  } catch {
    usage(`--${k} must be JSON (RuntimeOptions), got '${a[k]}'`);
  }
}
if (a.peer) checkTorch('--peer');
type Task = 'train' | 'denoise';
const tasks: Task[] = a.only ? [a.only as Task] : ['train', 'denoise'];

/** A child process that answers one JSON line per command line (bench/unet-side.ts, torch_unet.py --serve). */
class Side {
  private readonly lines: AsyncIterator<string>;
  private constructor(readonly name: string, private readonly proc: ChildProcess) {
    this.lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  }

  static async start(name: string, file: string, args: string[], cwd = path.join(here, '..')): Promise<{ side: Side; ready: Record<string, unknown> }> {
    const proc = spawn(file, args, { stdio: ['pipe', 'pipe', 'inherit'], cwd });
    const side = new Side(name, proc);
    return { side, ready: await side.next() };
  }

  private async next(): Promise<Record<string, unknown>> {
    for (;;) {
      const r = await this.lines.next();
      if (r.done) throw new Error(`${this.name}: the process ended (exit code ${this.proc.exitCode ?? 'none yet'})`);
      if (!r.value.startsWith('{')) { process.stderr.write(`${this.name}: ${r.value}\n`); continue; } // stray output
      const o = JSON.parse(r.value) as Record<string, unknown>;
      if (o.error) throw new Error(`${this.name}: ${o.error}`);
      return o;
    }
  }

  async command(line: string): Promise<Record<string, unknown>> {
    this.proc.stdin!.write(`${line}\n`);
    return this.next();
  }

  async quit(): Promise<void> {
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.stdin!.end('quit\n');
    await exited;
  }
}

/**
 * Several side processes run as one (`--workers N` for training): every command goes to all at once; rates, CPU
 * times and peak RSS add up, a phase lasts as long as the slowest.
 */
class SideGroup {
  constructor(private readonly members: Side[]) {}

  async command(line: string): Promise<Record<string, unknown>> {
    const rs = await Promise.all(this.members.map((m) => m.command(line)));
    const total = (k: string) => rs.reduce((acc, r) => acc + (r[k] as number), 0);
    return { per_s: total('per_s'), cpu_s: total('cpu_s'), peak_rss_mb: total('peak_rss_mb'), seconds: Math.max(...rs.map((r) => r.seconds as number)) };
  }

  async quit(): Promise<void> {
    await Promise.all(this.members.map((m) => m.quit()));
  }
}

type Who = 'ours' | 'pytorch' | 'b';
async function startSide(who: Who, task: Task): Promise<{ side: Side | SideGroup; ready: Record<string, unknown> }> {
  if (who === 'ours' && task === 'train' && workers > 1) {
    // the batch split across processes of 1 thread each, stepping independently: no gradient averaging, so this is
    // what a data-parallel step could reach, not what the trainer does
    const parts = await Promise.all(Array.from({ length: workers }, (_, i) => oneSide(who, task, i)));
    return { side: new SideGroup(parts.map((p) => p.side)), ready: { ...parts[0]!.ready, setup_s: Math.max(...parts.map((p) => p.ready.setup_s as number)) } };
  }
  return oneSide(who, task);
}

function oneSide(who: Who, task: Task, part?: number) {
  if (who === 'pytorch') return Side.start(`pytorch ${task}`, PYTHON, [TORCH_UNET, '--serve', task, '--threads', String(threads), '--batch', String(batch)]);
  const extra = a['res-blocks'] !== undefined ? ['--res-blocks', a['res-blocks']] : [];
  const root = who === 'b' && a['b-root'] !== undefined ? path.resolve(a['b-root']) : path.join(here, '..');
  const runtime = who === 'b' ? (a['b-runtime'] ?? a.runtime!) : a.runtime!;
  const split = part !== undefined ? { threads: 1, batch: Math.floor((batch * (part + 1)) / workers) - Math.floor((batch * part) / workers) } : { threads, batch };
  return Side.start(`${who} ${task}${part !== undefined ? ` ${part + 1}/${workers}` : ''}`, process.execPath, [
    '--import', 'tsx', path.join(root, 'bench', 'unet-side.ts'), '--mode', task, '--threads', String(split.threads), '--batch', String(split.batch), '--config', a.config!,
    '--runtime', runtime, ...(who === 'ours' && task === 'denoise' ? ['--workers', String(workers)] : []), ...extra,
  ], root);
}

const round2 = (v: number) => +v.toFixed(2);
const unit: Record<Task, string> = { train: 'img/s', denoise: 'img-steps/s' };
const loadStart = os.loadavg().map(round2);
const sides: Who[] = a.peer ? ['ours', 'pytorch'] : abRun ? ['ours', 'b'] : ['ours'];
const other = sides[1]; // the denominator of the ratios
const results: Record<string, unknown> = {};
let profile: unknown = null;
let params = 0;
let torchVersion: unknown;
for (const task of tasks) {
  // 1. start each side (one at a time, so that setup times are not mixed), warm
  const started: Record<string, Side | SideGroup> = {};
  const setup: Record<string, number> = {};
  for (const who of sides) {
    const { side, ready } = await startSide(who, task);
    started[who] = side;
    setup[who] = ready.setup_s as number;
    if (who === 'ours') params = ready.params as number;
    else if (who === 'pytorch') torchVersion = ready.torch;
  }
  // 2. the rounds: ours, pytorch, ours, pytorch, ...
  const rates: Record<string, number[]> = Object.fromEntries(sides.map((w) => [w, []]));
  // CPU time over wall time per phase, over --threads: near 1 when the side had its cores, lower when it was starved
  const cpuShare: Record<string, number[]> = Object.fromEntries(sides.map((w) => [w, []]));
  const rss: Record<string, number> = {};
  for (let r = 0; r < rounds; r++) {
    for (const who of sides) {
      const res = await started[who]!.command(`run ${phaseSeconds}`);
      rates[who]!.push(res.per_s as number);
      cpuShare[who]!.push((res.cpu_s as number) / (res.seconds as number) / threads);
      rss[who] = res.peak_rss_mb as number;
    }
    const line = sides.map((w) => `${w} ${rates[w]![r]!.toFixed(1)} (cpu ${cpuShare[w]![r]!.toFixed(2)})`).join(', ');
    const ratio = other ? `, ratio ${(rates.ours![r]! / rates[other]![r]!).toFixed(3)}` : '';
    process.stderr.write(`${task} round ${r + 1}/${rounds}: ${line} ${unit[task]}${ratio} (load ${os.loadavg()[0]!.toFixed(2)})\n`);
  }
  if (task === 'train' && a.profile) profile = (await started.ours!.command(`profile ${profileSteps}`)).profile;
  for (const who of sides) await started[who]!.quit();
  // 3. per task: each side's per-phase rates and their median, setup time, (training) peak RSS; the ratios
  const key = task === 'train' ? 'train_img_per_s' : 'denoise_img_steps_per_s';
  const bySide = (who: string) => ({
    setup_s: setup[who],
    [key]: { ...spread(rates[who]!, 2), per_round: rates[who]! },
    cpu_per_thread: spread(cpuShare[who]!, 2),
    ...(task === 'train' ? { peak_rss_mb: rss[who] } : {}),
  });
  // rounds in which every side had its cores (CPU per thread >= --min-cpu): on a shared machine, the ratio to trust
  const clean = rates.ours!.map((_, r) => r).filter((r) => sides.every((w) => cpuShare[w]![r]! >= minCpu));
  results[task] = {
    ours: bySide('ours'),
    ...(other
      ? {
          [other]: bySide(other),
          ratio: roundRatios(rates.ours!, rates[other]!),
          clean_rounds: clean.map((r) => r + 1),
          ...(clean.length ? { ratio_clean: roundRatios(clean.map((r) => rates.ours![r]!), clean.map((r) => rates[other]![r]!)) } : {}),
        }
      : {}),
  };
}

let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: here, encoding: 'utf8' }).trim();
} catch {
  // not a git checkout
}
console.log(JSON.stringify({
  bench: 'unet',
  config: a.config,
  ...(a['res-blocks'] !== undefined ? { num_res_blocks: Number(a['res-blocks']) } : {}),
  params,
  batch,
  threads,
  rounds,
  phase_seconds: phaseSeconds,
  date: new Date().toISOString(),
  commit,
  machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}`,
  load_avg_start: loadStart,
  load_avg_end: os.loadavg().map(round2),
  ...(a.runtime !== '{}' ? { runtime: JSON.parse(a.runtime!) } : {}),
  ...(workers ? { denoise_workers: workers } : {}),
  ...(abRun ? { b: { root: a['b-root'] ?? '.', runtime: JSON.parse(a['b-runtime'] ?? a.runtime!) } } : {}),
  ...(a.peer ? { torch: torchVersion } : {}),
  ...results,
  ...(profile ? { train_profile_by_op: profile } : {}),
}));
