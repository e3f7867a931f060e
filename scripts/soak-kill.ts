/**
 * SIGKILL soak of the checkpoint protocol (issue 12). A tiny model trains in a child `ddpm train` process that
 * writes a checkpoint after every step; the child is killed with SIGKILL at random moments and resumed with
 * `ddpm train --resume`. Kills come from a timer (anywhere: start-up, training step, checkpoint write) or from the
 * test-only hook in src/io/atomic.ts (DDPM_TEST_CKPT_FAULT), which kills the child just before a random file
 * operation of the checkpoint protocol. After every kill:
 *   1. the newest complete checkpoint, as a reader resolves it (read-only, what `ddpm sample` reads), must be
 *      bit-exact against an uninterrupted run at the same step (weights, EMA, Adam moments, config, and state.json's
 *      step/loader/images; not elapsedSec) and not older than the last checkpoint the child reported written;
 *   2. the next `ddpm train --resume` must start from that same step (writer-side recovery agrees with the reader).
 * Seeded (the kill plan; where a timer kill lands also depends on timing); prints one line per kill, then a JSON
 * summary (kills, recoveries, where the kills landed, mismatches). Exit code 1 on any mismatch.
 *
 *   npm run soak:kill -- --kills 100 [--seed 1] [--steps 40] [--json summary.json]
 *
 * test/soak-kill.test.ts runs a short version in CI.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { resolveCheckpointDir } from '../src/io/atomic.ts';
import { loadDataset } from '../src/cli/train.ts';
import { nodeRuntime, ort } from '../src/node/ort.ts';
import { Rng } from '../src/rng.ts';
import { applyOptions, defaultTrainConfig } from '../src/train/config.ts';
import { Trainer } from '../src/train/trainer.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// the CLI from source (bin/ddpm.js runs the compiled copy in dist/, which may be stale here)
const DDPM = ['--import', 'tsx', path.join(ROOT, 'src', 'cli', 'bin.ts')];

/** 8 grayscale 8x8 PNGs (bright squares at different places): the soak's data set, 2 batches of 4 per epoch. */
export async function writeSoakImages(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  for (let i = 0; i < 8; i++) {
    const px = Buffer.alloc(64);
    for (let y = i % 5; y < (i % 5) + 3; y++) for (let x = (i * 3) % 5; x < ((i * 3) % 5) + 3; x++) px[y * 8 + x] = 255;
    await sharp(px, { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(path.join(dir, `im${i}.png`));
  }
}

/** `ddpm train` flags of the soak run (as a flag -> value map, the form applyOptions takes). */
export function soakFlags(data: string, steps: number): Record<string, string> {
  return {
    data, 'image-size': '8', channels: '1', 'batch-size': '4', T: '100', lr: '1e-3',
    steps: String(steps), 'checkpoint-every': '1', 'log-every': '1000', 'sample-every': '0',
  };
}

export function soakArgs(out: string, data: string, steps: number, resume: boolean): string[] {
  const flags = Object.entries(soakFlags(data, steps)).flatMap(([k, v]) => [`--${k}`, v]);
  return ['train', '--out', out, '--config', 'tiny', ...flags, '--threads', '1', ...(resume ? ['--resume'] : [])];
}

/** What must be identical between two checkpoints at the same step (everything but the elapsed time). */
export interface Fingerprint {
  step: number;
  /** state.json without elapsedSec */
  state: string;
  config: string;
  params: string;
  ema: string;
  optimizer: string;
}

export function fingerprint(dir: string): Fingerprint {
  const sha = (name: string) => createHash('sha256').update(readFileSync(path.join(dir, name))).digest('hex');
  const { elapsedSec: _e, ...state } = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as { step: number; elapsedSec: number };
  return {
    step: state.step,
    state: JSON.stringify(state),
    config: sha('config.json'),
    params: sha('params.safetensors'),
    ema: sha('ema.safetensors'),
    optimizer: sha('optimizer.safetensors'),
  };
}

/** Fields of `got` that differ from `want`. */
export function fingerprintDiff(got: Fingerprint, want: Fingerprint): string[] {
  return (Object.keys(want) as (keyof Fingerprint)[]).filter((k) => got[k] !== want[k]);
}

/** The uninterrupted run: the soak's config, in this process, fingerprinted after every step's checkpoint. */
export async function referenceRun(dir: string, data: string, steps: number): Promise<Map<number, Fingerprint>> {
  const config = applyOptions(defaultTrainConfig('tiny'), soakFlags(data, steps)); // what `ddpm train --config tiny` builds
  const fps = new Map<number, Fingerprint>();
  const trainer = await Trainer.create(ort, config, dir, await loadDataset(config), {
    ...nodeRuntime({ threads: 1 }),
    // synchronous reads: the trainer goes on (and replaces the checkpoint) only after this returns
    events: { onCheckpoint: (d, step) => void fps.set(step, fingerprint(d)) },
  });
  try {
    await trainer.train();
  } finally {
    await trainer.release();
  }
  return fps;
}

export interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** the step the child said it starts from ("training/resuming ... from step N"), null if killed before */
  startStep: number | null;
  /** highest step of a "checkpoint: ... (step N)" line, i.e. of a checkpoint the child finished writing */
  reported: number;
  /** the last checkpoint operation the child started (from the fault hook's trace), null if none */
  lastOp: string | null;
  /** the banner (start step) was seen before the kill */
  started: boolean;
}

export interface RunOptions {
  /** DDPM_TEST_CKPT_FAULT for the child: k kills it before checkpoint operation k; 0 (default) only traces */
  fault?: number;
  killAfterStartMs?: number;
  killAfterSpawnMs?: number;
  timeoutMs?: number;
}

/**
 * Run `ddpm <args>` with the fault hook's trace on (DDPM_TEST_CKPT_FAULT=`fault`, "0" = trace only); SIGKILL it
 * `killAfterStartMs` after its start banner, or `killAfterSpawnMs` after spawning, if given.
 */
export function runDdpm(args: string[], opts: RunOptions = {}): Promise<ChildRun> {
  return runNode([...DDPM, ...args], opts);
}

/** `node <nodeArgs>` in the repository root, as runDdpm. */
export function runNode(nodeArgs: string[], opts: RunOptions = {}): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgs, {
      cwd: ROOT,
      env: { ...process.env, DDPM_TEST_CKPT_FAULT: String(opts.fault ?? 0) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let started = false;
    const timers: NodeJS.Timeout[] = [];
    const kill = () => child.kill('SIGKILL');
    if (opts.killAfterSpawnMs !== undefined) timers.push(setTimeout(kill, opts.killAfterSpawnMs));
    timers.push(setTimeout(() => {
      kill();
      reject(new Error(`node ${nodeArgs.join(' ')}: no exit after ${opts.timeoutMs ?? 120000} ms`));
    }, opts.timeoutMs ?? 120000));
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      if (!started && /^(training|resuming) .* from step \d+/m.test(stdout)) {
        started = true;
        if (opts.killAfterStartMs !== undefined) timers.push(setTimeout(kill, opts.killAfterStartMs));
      }
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => void (stderr += s));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      timers.forEach(clearTimeout);
      const start = /^(?:training|resuming) .* from step (\d+)/m.exec(stdout);
      const reported = Math.max(0, ...[...stdout.matchAll(/^checkpoint: .* \(step (\d+)\)$/gm)].map((m) => Number(m[1])));
      const ops = [...stderr.matchAll(/^ckpt-op \d+ (\S+) (.*)$/gm)];
      const last = ops.at(-1);
      const lastOp = last ? (/^(write|fsync)$/.test(last[1]!) ? `${last[1]} ${path.basename(last[2]!)}` : last[1]!) : null;
      resolve({ code, signal, stdout, stderr, startStep: start ? Number(start[1]) : null, reported, lastOp, started });
    });
  });
}

/** Which of checkpoint, checkpoint.new, checkpoint.old exist, e.g. "checkpoint+new" or "new+old". */
export async function diskState(ckpt: string): Promise<string> {
  const names: string[] = [];
  for (const [suffix, name] of [['', 'checkpoint'], ['.new', 'new'], ['.old', 'old']] as const) {
    if (await fsp.stat(ckpt + suffix).then(() => true, () => false)) names.push(name);
  }
  return names.length ? names.join('+') : 'none';
}

export interface SoakOptions {
  kills: number;
  seed: number;
  /** steps of one run; a run that finishes is checked and started again from scratch */
  steps: number;
  /** the longest wait after the start banner for a timer kill, ms */
  maxDelayMs: number;
  log: (line: string) => void;
}

export interface SoakSummary {
  kills: number;
  /** kills after which the run directory needed repair (a sibling .new/.old left behind) */
  recoveries: number;
  /** kills that left no checkpoint/ but .new + .old (the state that lost a checkpoint before issue 12) */
  swapStates: number;
  /** resumes whose start step was checked against the reader's resolution */
  resumes: number;
  /** checkpoint states compared bit for bit with the uninterrupted run */
  statesChecked: number;
  /** runs trained to the end (and checked there) */
  runsCompleted: number;
  /** kills that landed inside a checkpoint write or its recovery (between its first and last file operation) */
  insideWrite: number;
  /** where the kills landed: "timer: in/after <op>" (last protocol operation started), "hook: before <op>" */
  landed: Record<string, number>;
  /** disk state right after each kill */
  diskStates: Record<string, number>;
  mismatches: string[];
  seed: number;
  steps: number;
  wallSec: number;
}

export async function runSoak(o: SoakOptions): Promise<SoakSummary> {
  const t0 = performance.now();
  const work = await fsp.mkdtemp(path.join(tmpdir(), 'ddpm-soak-'));
  const data = path.join(work, 'data');
  const out = path.join(work, 'run');
  const ckpt = path.join(out, 'checkpoint');
  const rng = new Rng(o.seed);
  const s: SoakSummary = {
    kills: 0, insideWrite: 0, recoveries: 0, swapStates: 0, resumes: 0, statesChecked: 0, runsCompleted: 0,
    landed: {}, diskStates: {}, mismatches: [], seed: o.seed, steps: o.steps, wallSec: 0,
  };
  const bump = (m: Record<string, number>, k: string) => void (m[k] = (m[k] ?? 0) + 1);
  try {
    await writeSoakImages(data);
    o.log(`reference: ${o.steps} uninterrupted steps`);
    const ref = await referenceRun(path.join(work, 'reference'), data, o.steps);

    /** Check the newest complete checkpoint against the reference; returns its step (0 when there is none). */
    const check = async (what: string, atLeast: number): Promise<number> => {
      const dir = await resolveCheckpointDir(ckpt);
      if (dir === null) {
        if (atLeast > 0) s.mismatches.push(`${what}: no checkpoint, but step ${atLeast} was reported written (lost)`);
        return 0;
      }
      const got = fingerprint(dir);
      s.statesChecked++;
      const want = ref.get(got.step);
      if (!want) s.mismatches.push(`${what}: step ${got.step} is not a step of the reference run`);
      else {
        const diff = fingerprintDiff(got, want);
        if (diff.length) s.mismatches.push(`${what}: step ${got.step} differs from the uninterrupted run in ${diff.join(', ')}`);
      }
      if (got.step < atLeast) s.mismatches.push(`${what}: newest complete checkpoint is step ${got.step}, but step ${atLeast} was reported written (lost)`);
      return got.step; // the caller resyncs to it, so one loss is reported once
    };

    let expectedStart = 0; // where the next --resume must start
    let confirmed = 0; // newest step known to be durably written in this run
    let kill = 0;
    while (kill < o.kills) {
      // 1. a kill: every third at a random operation of the protocol (hook), a few during start-up, else a timer
      const mode = kill % 3 === 1 ? 'hook' : kill % 10 === 9 ? 'startup' : 'timer';
      const fault = mode === 'hook' ? 1 + rng.integer(17 * 6) : 0; // within the next ~6 checkpoint writes
      const child = await runDdpm(soakArgs(out, data, o.steps, true), {
        fault,
        killAfterStartMs: mode === 'timer' ? Math.round(rng.uniform() * o.maxDelayMs) : undefined,
        killAfterSpawnMs: mode === 'startup' ? Math.round(rng.uniform() * 1500) : undefined,
      });
      if (child.startStep !== null) {
        s.resumes++;
        if (child.startStep !== expectedStart) {
          s.mismatches.push(`kill ${kill + 1}: --resume started from step ${child.startStep}, the reader resolved step ${expectedStart}`);
        }
      }
      confirmed = Math.max(confirmed, child.reported);
      if (child.signal !== 'SIGKILL') {
        // the run finished before the kill came: check its end, start a fresh run
        if (child.code !== 0) throw new Error(`ddpm train failed (exit ${child.code}):\n${child.stderr.slice(-2000)}`);
        const step = await check(`run end`, o.steps);
        if (step !== o.steps) s.mismatches.push(`run end: finished at step ${step}, expected ${o.steps}`);
        s.runsCompleted++;
        o.log(`run ${s.runsCompleted} completed at step ${step} (checked); starting a new run`);
        await fsp.rm(out, { recursive: true, force: true });
        expectedStart = 0;
        confirmed = 0;
        continue;
      }
      kill++;
      s.kills++;
      // 2. where it landed
      const where = mode === 'hook'
        ? `hook: before ${child.lastOp}`
        : !child.started && !child.lastOp?.startsWith('recover')
          ? 'timer: start-up'
          : child.lastOp === null || child.lastOp === 'done' ? 'timer: training step (between writes)' : `timer: in/after ${child.lastOp}`;
      bump(s.landed, where);
      if ((where.startsWith('hook: before ') && where !== 'hook: before mkdir-new' && where !== 'hook: before done') || where.startsWith('timer: in/after ')) {
        s.insideWrite++;
      }
      const disk = await diskState(ckpt);
      bump(s.diskStates, disk);
      if (disk.includes('new') || disk.includes('old')) s.recoveries++;
      if (disk === 'new+old' || disk === 'old') s.swapStates++;
      // 3. the reader's view, checked bit for bit; the next --resume must start there
      expectedStart = await check(`kill ${kill}`, confirmed);
      confirmed = expectedStart;
      o.log(`kill ${kill}/${o.kills}  ${where.padEnd(42)} disk ${disk.padEnd(16)} newest complete step ${expectedStart} (reported ${child.reported})` +
        `  mismatches ${s.mismatches.length}`);
    }
    // 4. finish the last run without a kill
    const last = await runDdpm(soakArgs(out, data, o.steps, true));
    if (last.code !== 0) throw new Error(`ddpm train failed (exit ${last.code}):\n${last.stderr.slice(-2000)}`);
    if (last.startStep !== expectedStart) s.mismatches.push(`final resume started from step ${last.startStep}, expected ${expectedStart}`);
    s.resumes++;
    await check('final run end', o.steps);
    s.runsCompleted++;
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
    s.wallSec = Math.round((performance.now() - t0) / 100) / 10;
  }
  return s;
}

function parseArgs(argv: string[]): SoakOptions & { json?: string } {
  const o: SoakOptions & { json?: string } = { kills: 100, seed: 1, steps: 40, maxDelayMs: 400, log: (l) => console.log(l) };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, v] = [argv[i], argv[i + 1]];
    const int = () => {
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${flag}: expected a positive integer, got '${v}'`);
      return n;
    };
    if (flag === '--kills') o.kills = int();
    else if (flag === '--seed') o.seed = int();
    else if (flag === '--steps') o.steps = int();
    else if (flag === '--max-delay-ms') o.maxDelayMs = int();
    else if (flag === '--json' && v) o.json = v;
    else throw new Error(`unknown or incomplete flag '${flag}' (--kills N, --seed S, --steps N, --max-delay-ms M, --json FILE)`);
  }
  return o;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const opts = parseArgs(process.argv.slice(2));
  const summary = await runSoak(opts);
  const json = JSON.stringify({ ...summary, date: new Date().toISOString(), node: process.version }, null, 2);
  console.log(json);
  if (opts.json) await fsp.writeFile(opts.json, json + '\n');
  process.exitCode = summary.mismatches.length ? 1 : 0;
}
