/**
 * A run a user can watch (issue 14): progress lines by time as well as by steps, with the time left; a checkpoint
 * and a sample grid at the end of every run, whatever stopped it; SIGINT/SIGTERM in a real child process write
 * both and exit 130/143, and a second signal quits at once.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { secondsLeft } from '../src/cli/train.ts';
import * as ort from 'onnxruntime-node';
import { applyOptions, defaultTrainConfig } from '../src/train/config.ts';
import { FIRST_LOG_SEC, Trainer, type StepLog } from '../src/train/trainer.ts';
import { runCli, squares } from './cli-helpers.ts';

const ROOT = path.join(import.meta.dirname, '..');
let dir: string;
let images: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-train-watch-'));
  images = path.join(dir, 'images');
  await mkdir(images);
  for (let i = 0; i < 8; i++) {
    const px = Buffer.alloc(64);
    for (let k = 0; k < 64; k++) px[k] = ((k % 8) + i) % 3 === 0 ? 255 : 0;
    await sharp(px, { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(path.join(images, `im${i}.png`));
  }
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

// tiny 8x8 grey model; small, quick sample grids (the default --sample-every 1000 is longer than these runs)
const base = ['--config', 'tiny', '--image-size', '8', '--channels', '1', '--batch-size', '4', '--T', '100', '--sample-count', '4', '--sample-steps', '2', '--threads', '1'];

const stepLines = (stdout: string) => stdout.split('\n').filter((l) => /^step \d+/.test(l));
const readLog = async (out: string) =>
  (await readFile(path.join(out, 'log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { step: number; windowSteps: number; elapsedSec: number });
const savedStep = async (out: string) => (JSON.parse(await readFile(path.join(out, 'checkpoint', 'state.json'), 'utf8')) as { step: number }).step;

test('log events by time and by steps, on a clock the test turns: the first within FIRST_LOG_SEC, then every logSeconds; the budget', async () => {
  const run = async (flags: Record<string, string>, name: string) => {
    const cfg = applyOptions(defaultTrainConfig('tiny'), { 'batch-size': '4', T: '100', 'sample-count': '4', 'sample-steps': '2', 'checkpoint-every': '1000', ...flags });
    let t = 0; // ms; every step takes one second
    const logs: StepLog[] = [];
    const grids: number[] = [];
    const tr = await Trainer.create(ort as never, cfg, path.join(dir, name), squares(), {
      threads: 1,
      clock: () => t,
      events: { onStep: () => (t += 1000), onLog: (l) => logs.push(l), onSample: (_f, step) => grids.push(step) },
    });
    const res = await tr.train();
    await tr.release();
    return { res, logs: logs.map((l) => [l.step, l.windowSteps, l.elapsedSec]), grids };
  };
  assert.equal(FIRST_LOG_SEC, 5);
  // default --log-seconds 30, --log-every far away, --minutes 0.75: lines at 5 s, 35 s, and the end (45 s); the
  // elapsed time in each is read just before the clock moves in onStep, so it lags one step
  const a = await run({ 'log-every': '1000000', minutes: '0.75' }, 'clock-a');
  assert.deepEqual(a.res, { steps: 45, stopped: 'budget' });
  assert.deepEqual(a.logs, [[5, 5, 4], [35, 30, 34], [45, 10, 44]]);
  assert.deepEqual(a.grids, [45], 'one grid, at the end');
  // by steps as well, whichever comes first; --log-seconds 0 logs by steps only
  const b = await run({ 'log-every': '3', 'log-seconds': '2', steps: '7' }, 'clock-b');
  assert.deepEqual(b.logs.map(([step, n]) => [step, n]), [[2, 2], [3, 1], [5, 2], [6, 1], [7, 1]]);
  const c = await run({ 'log-every': '3', 'log-seconds': '0', steps: '7', 'sample-every': '0' }, 'clock-c');
  assert.deepEqual(c.logs.map(([step, n]) => [step, n]), [[3, 3], [6, 3], [7, 1]]);
  assert.deepEqual(c.grids, []);
});

test('--snapshot-minutes M keeps a copy of the checkpoint every M minutes of training time (snapshot-<k·M>min)', async () => {
  const cfg = applyOptions(defaultTrainConfig('tiny'), { 'batch-size': '4', T: '100', 'checkpoint-every': '1000', 'sample-every': '0', 'snapshot-minutes': '0.05', minutes: '0.26' });
  let t = 0; // ms; every step takes one second: marks at 3, 6, 9, 12 and 15 s
  const out = path.join(dir, 'snapshots');
  const snaps: [string, number][] = [];
  const tr = await Trainer.create(ort as never, cfg, out, squares(), {
    threads: 1,
    clock: () => t,
    events: { onStep: () => (t += 1000), onCheckpoint: (d, step) => snaps.push([path.basename(d), step]) },
  });
  await tr.train();
  await tr.release();
  const names = ['snapshot-0.05min', 'snapshot-0.1min', 'snapshot-0.15min', 'snapshot-0.2min', 'snapshot-0.25min'];
  assert.deepEqual(snaps.filter(([d]) => d.startsWith('snapshot')).map(([d]) => d), names);
  // each is the state after the step that crossed its mark (the clock lags one step: see the test above)
  assert.deepEqual(snaps.filter(([d]) => d.startsWith('snapshot')).map(([, step]) => step), [4, 7, 10, 13, 16]);
  const steps = await Promise.all(names.map(async (d) => (JSON.parse(await readFile(path.join(out, d, 'state.json'), 'utf8')) as { step: number }).step));
  assert.deepEqual(steps, [4, 7, 10, 13, 16]);
  assert.deepEqual((await readdir(out)).filter((d) => d.startsWith('snapshot')).sort(), [...names].sort());
});

test('a --minutes run whose last step ends just before a snapshot mark still writes that snapshot, and its resume does not write it again', async () => {
  // --minutes 0.05 = --snapshot-minutes 0.05 = 3 s; every step takes one second and the clock lags one step, so the
  // last step (3) reads 2 s and the 3-second mark passes after it (in a real run: during its grid and checkpoint)
  const cfg = applyOptions(defaultTrainConfig('tiny'), { 'batch-size': '4', T: '100', 'checkpoint-every': '1000', 'sample-every': '0', 'snapshot-minutes': '0.05', minutes: '0.05' });
  let t = 0;
  const out = path.join(dir, 'snapshot-at-end');
  const snaps: [string, number][] = [];
  const opts = { threads: 1, clock: () => t, events: { onStep: () => (t += 1000), onCheckpoint: (d: string, step: number) => snaps.push([path.basename(d), step]) } };
  let tr = await Trainer.create(ort as never, cfg, out, squares(), opts);
  assert.deepEqual(await tr.train(), { steps: 3, stopped: 'budget' });
  await tr.release();
  assert.deepEqual(snaps, [['snapshot-0.05min', 3], ['checkpoint', 3]]);
  const state = async (d: string) => JSON.parse(await readFile(path.join(out, d, 'state.json'), 'utf8')) as { step: number; elapsedSec: number };
  assert.deepEqual(await state('checkpoint'), { ...(await state('checkpoint')), step: 3, elapsedSec: 3 });
  // resumed for 3 s more: the next mark (6 s) only; snapshot-0.05min keeps step 3
  snaps.length = 0;
  t = 0;
  tr = await Trainer.create(ort as never, applyOptions(cfg, { minutes: '0.1' }), out, squares(), { ...opts, resume: true });
  assert.deepEqual(await tr.train(), { steps: 6, stopped: 'budget' });
  await tr.release();
  assert.deepEqual(snaps, [['snapshot-0.1min', 6], ['checkpoint', 6]]);
  assert.equal((await state('snapshot-0.05min')).step, 3);
});

test('a --minutes run logs by time (long before --log-every steps) with the time left, and ends with a checkpoint and one grid', async () => {
  const out = path.join(dir, 'minutes');
  const r = await runCli(['train', '--data', images, '--out', out, ...base, '--minutes', '0.02', '--log-every', '100000', '--log-seconds', '0.3']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /; until 0\.02 min; out /);
  const lines = stepLines(r.stdout);
  assert.ok(lines.length >= 2, `progress lines by time:\n${r.stdout}`);
  for (const l of lines.slice(0, -1)) assert.match(l, /elapsed \d+s {2}left \ds$/, l);
  const m = /^done: (\d+) steps \(--minutes 0\.02 reached; \d+ steps? in \d+s here, [\d.,]+ steps\/min at batch 4\); checkpoint in /m.exec(r.stdout);
  assert.ok(m, r.stdout);
  const steps = Number(m[1]);
  assert.ok(steps < 100000);
  // log.jsonl: one line per printed progress line; the windows add up to the run, the last one ends it
  const log = await readLog(out);
  assert.equal(log.length, lines.length);
  assert.equal(log.reduce((n, l) => n + l.windowSteps, 0), steps);
  assert.equal(log.at(-1)!.step, steps);
  // the end of the run: its checkpoint, then the grid of its last step (written once)
  assert.equal(await savedStep(out), steps);
  const grid = `step_${String(steps).padStart(7, '0')}.png`;
  assert.deepEqual(await readdir(path.join(out, 'samples')), [grid]);
  assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('samples: ')).length, 1);
  assert.ok(r.stdout.indexOf('checkpoint: ') < r.stdout.indexOf('samples: '), 'the checkpoint first');
});

test('a grid the last step already wrote is not written again; --sample-every 0 writes none; a resumed run at its end adds nothing', async () => {
  const out = path.join(dir, 'every2');
  const r = await runCli(['train', '--data', images, '--out', out, ...base, '--steps', '4', '--sample-every', '2', '--log-every', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await readdir(path.join(out, 'samples'))).sort(), ['step_0000002.png', 'step_0000004.png']);
  assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('samples: ')).length, 2);
  assert.deepEqual((await readLog(out)).map((l) => [l.step, l.windowSteps]), [[1, 1], [2, 1], [3, 1], [4, 1]]);
  // resumed with nothing left to do: no new grid, no extra log line
  const again = await runCli(['train', '--out', out, '--resume', '--steps', '4', '--threads', '1']);
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stdout, /samples: /);
  assert.equal((await readLog(out)).length, 4);
  const none = path.join(dir, 'none');
  assert.equal((await runCli(['train', '--data', images, '--out', none, ...base, '--steps', '3', '--sample-every', '0'])).code, 0);
  assert.equal(existsSync(path.join(none, 'samples')), false);
});

test('the time left: the rest of --minutes or of --steps at the measured speed, whichever is first', () => {
  const cfg = (flags: Record<string, string>) => applyOptions(defaultTrainConfig('tiny'), { 'batch-size': '10', ...flags });
  assert.equal(secondsLeft(cfg({ minutes: '2' }), 50, 30, 100), 90);
  assert.equal(secondsLeft(cfg({ steps: '100' }), 50, 30, 100), 5); // 50 steps x 10 images at 100 img/s
  assert.equal(secondsLeft(cfg({ steps: '100', minutes: '0.05' }), 50, 0, 100), 3);
  assert.equal(secondsLeft(cfg({ minutes: '1' }), 10, 75, 100), 0);
  assert.equal(secondsLeft(cfg({}), 50, 30, 100), Infinity);
});

/** `ddpm train` in a child process, as a user runs it; resolves with its exit code and output. */
function spawnTrain(args: string[], onStdout: (text: string, child: ReturnType<typeof spawn>) => void, onStderr?: (text: string, child: ReturnType<typeof spawn>) => void) {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'cli', 'bin.ts'), 'train', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => onStdout((stdout += d.toString()), child));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    onStderr?.(stderr, child);
  });
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

test('Ctrl-C after the first progress line: checkpoint and grid, exit 130; the run resumes', async () => {
  const out = path.join(dir, 'sigint');
  let sent = false;
  // --steps 0: until stopped; --log-every high, so the first line comes from the clock
  const r = await spawnTrain(['--data', images, '--out', out, ...base, '--log-every', '1000000', '--log-seconds', '0.5'], (text, child) => {
    if (!sent && stepLines(text).length > 0) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  assert.equal(r.code, 130, `exit code (signal ${r.signal})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.match(r.stderr, /SIGINT: finishing this step, then writing a checkpoint and a sample grid \(Ctrl-C again to quit at once\)/);
  // a run without an end says so when it starts, and its last line says how to sample it
  assert.match(r.stderr, /^note: no --steps or --minutes: training until Ctrl-C, which writes a checkpoint and a sample grid before it exits$/m);
  assert.match(r.stdout, /\nnext: ddpm sample --checkpoint \S*sigint --n 16 --out sigint\.png\n$/);
  const m = /^done: (\d+) steps \(SIGINT(; [^)]*)?\); checkpoint in /m.exec(r.stdout);
  assert.ok(m, r.stdout);
  const steps = Number(m[1]);
  assert.equal(await savedStep(out), steps);
  assert.ok(existsSync(path.join(out, 'samples', `step_${String(steps).padStart(7, '0')}.png`)), 'the final grid');
  assert.doesNotMatch(r.stderr, /error/);
  const log = await readLog(out);
  assert.ok(log[0]!.windowSteps < 1000000 && log[0]!.step < 1000000, 'the first line came by time');
  assert.equal(log.at(-1)!.step, steps);
  // the checkpoint resumes
  const res = await runCli(['train', '--out', out, '--resume', '--steps', String(steps + 2), '--threads', '1', '--log-every', '1']);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, new RegExp(`^resuming tiny \\(1x8x8, .*\\) on .* from step ${steps};`, 'm'));
  assert.equal(await savedStep(out), steps + 2);
});

test('SIGTERM exits 143 after saving; a second signal quits at once with its own code', async () => {
  const out = path.join(dir, 'sigterm');
  let sent = false;
  const r = await spawnTrain(['--data', images, '--out', out, ...base, '--log-every', '1000000', '--log-seconds', '0.2'], (text, child) => {
    if (!sent && stepLines(text).length > 0) {
      sent = true;
      child.kill('SIGTERM');
    }
  });
  assert.equal(r.code, 143, `exit code (signal ${r.signal})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.match(r.stdout, /^done: \d+ steps \(SIGTERM(; [^)]*)?\); checkpoint in /m);
  // two signals back to back, before the run could finish its step, checkpoint and grid: the second one ends the
  // process at once with its own code (which one the kernel hands over first is its business: both codes are right)
  const twice = path.join(dir, 'twice');
  let sentTwice = false;
  const q = await spawnTrain(['--data', images, '--out', twice, ...base], (text, child) => {
    if (!sentTwice && /^training tiny /m.test(text)) {
      sentTwice = true;
      child.kill('SIGTERM');
      child.kill('SIGINT');
    }
  });
  assert.ok(q.code === 130 || q.code === 143, `exit code ${q.code} (signal ${q.signal})\nstdout:\n${q.stdout}\nstderr:\n${q.stderr}`);
  assert.equal(q.stderr.match(/finishing this step/g)?.length, 1, q.stderr);
  assert.doesNotMatch(q.stdout, /^done: /m);
});
