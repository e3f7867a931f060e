/**
 * The PyTorch DDP trainer (issue 31, python/ddpm_torch): a ddpm-ts run continues on many processes and comes back,
 * equal to `ddpm train`, not similar. On the tiny preset (1x8x8, T = 100, batch 8) over a folder of 24 PNGs:
 * - the format: Python reads a checkpoint and writes back ddpm-ts's bytes (directory and one-file), MNIST alike;
 * - the draws: train.py's port of the data order and of Rng gives the very batches, timesteps, noise, dropout and
 *   labels `ddpm train` feeds (recorded from its TrainingRun);
 * - the math: given those inputs from a file, k steps of train.py (one process) and of ddpm-ts agree on losses,
 *   weights, Adam moments and EMA, for L_simple, L_hybrid (+ min-SNR, dropout, cosine schedule) and a
 *   class-conditional model (label dropout, class-lr-scale, weight decay, lr decay);
 * - the run: two processes (torchrun, gloo on loopback) agree with one at the same global batch;
 * - the round trip: ddpm train, then torch, then ddpm train --resume equals ddpm train alone (step, lr, data order),
 *   and the result samples and exports;
 * - bad input: weights of another architecture, a missing optimizer file, a process that dies: one line, and the
 *   checkpoint stays as it was.
 * Skipped, with the reason, when /usr/bin/python3 cannot import torch.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadTrainData } from '../src/cli/train-data.ts';
import type { Dataset } from '../src/data/loader.ts';
import { loadMnist } from '../src/data/mnist.ts';
import { learningRate } from '../src/engine/optim.ts';
import type { ParamValue } from '../src/engine/tree.ts';
import { encodePng } from '../src/io/image.ts';
import { parseSafetensors, serializeSafetensors, type TensorInput } from '../src/io/safetensors.ts';
import { loadCheckpoint, type CheckpointContents } from '../src/train/checkpoint.ts';
import { packCheckpoint } from '../src/train/checkpoint-file.ts';
import { applyOptions, defaultTrainConfig, withClasses, type TrainConfig } from '../src/train/config.ts';
import { Trainer } from '../src/train/trainer.ts';
import { exportDataset } from '../scripts/export-dataset.ts';
import { runCli } from './cli-helpers.ts';
import { assertClose } from './helpers.ts';

const PYTHON = '/usr/bin/python3';
const ROOT = path.resolve(import.meta.dirname, '..');
const TRAIN_PY = path.join(ROOT, 'python', 'ddpm_torch', 'train.py');
const LAUNCH_PY = path.join(ROOT, 'python', 'ddpm_torch', 'launch.py');
const HAS_TORCH = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0;
const skip = HAS_TORCH ? false : `${PYTHON} cannot import torch: install Debian's python3-torch and libopenblas0-pthread (scripts/ensure-torch.sh)`;

// Tolerances (float32; measured on this machine, docs/scale-out.md). Losses and moments agree to rounding. Weights
// and the EMA too, except the attention's key bias (the middle third of each `*.qkv.bias`): softmax is invariant to
// it, so its exact gradient is zero and float32 noise of ~1e-10 drives it, in ddpm-ts and torch differently, and
// Adam's m̂/√v̂ turns noise into steps of up to lr. It is held to a fraction of one step's lr instead.
const TOL = {
  loss: { rtol: 1e-5, atol: 1e-6 },
  weights: 5e-7,
  m: 1e-7,
  v: 1e-9,
  /** the attention key bias, as a fraction of the lr */
  keyBiasPerLr: 0.05,
};
const LR = 1e-3;
const K = 3; // steps compared

let dir: string;
let folder: string;

/** 3 classes of 8 8x8 grey PNGs, each class its own pattern (as cli-guidance.test.ts). */
async function classFolder(root: string): Promise<void> {
  for (const [k, cls] of ['bar', 'circle', 'dot'].entries()) {
    await mkdir(path.join(root, cls), { recursive: true });
    for (let i = 0; i < 8; i++) {
      const d = new Uint8Array(64);
      for (let p = 0; p < 64; p++) d[p] = ((p * (i + 1) + 3 * k) % (k + 3)) * 50;
      await writeFile(path.join(root, cls, `${i}.png`), await encodePng({ data: d, width: 8, height: 8, channels: 1 }));
    }
  }
}

function baseFlags(extra: Record<string, string> = {}): Record<string, string> {
  return {
    data: folder, 'image-size': '8', channels: '1', 'batch-size': '8', T: '100', lr: String(LR), warmup: '5',
    'sample-every': '0', 'log-every': '1', 'checkpoint-every': '100', ...extra,
  };
}

async function configAndData(extra: Record<string, string>): Promise<{ config: TrainConfig; data: Dataset }> {
  const config = applyOptions(defaultTrainConfig('tiny'), baseFlags(extra));
  const data = await loadTrainData(config, undefined, () => {});
  return { config: withClasses(config, data.classNames), data };
}

interface Py {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a Python program (asynchronously: the test runner stays responsive). */
function python(args: string[], env: Record<string, string> = {}): Promise<Py> {
  return new Promise((resolve) => {
    const p = spawn(PYTHON, args, { cwd: ROOT, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONPATH: path.join(ROOT, 'python'), ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const trainPy = (args: string[], env?: Record<string, string>) => python([TRAIN_PY, '--threads', '1', ...args], env);

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** train.py on n processes through torchrun (launch.py: torchrun with the fix Debian's torch 1.13 needs). */
async function torchrun(n: number, args: string[], env?: Record<string, string>): Promise<Py> {
  const rdzv = ['--nproc_per_node', String(n), '--master_addr', '127.0.0.1', '--master_port', String(await freePort()), '--monitor_interval', '1'];
  return python([LAUNCH_PY, ...rdzv, TRAIN_PY, '--threads', '1', ...args], env);
}

function ok(r: Py, what: string): void {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stderr}\n${r.stdout}`);
}

/** The lines of ours on stderr (torchrun adds its own report around them). */
function ourLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('ddpm_torch.train:'));
}

/** The attention key bias: the middle third of a `*.qkv.bias` (q, k, v are its thirds), whose exact gradient is zero. */
const isKeyBias = (k: string, i: number, n: number) => k.endsWith('.qkv.bias') && i >= n / 3 && i < (2 * n) / 3;

/** max |a − b| over every tensor of two weight sets with the same names (the key bias apart), and where. */
function maxDiff(a: Record<string, ParamValue> | Map<string, ParamValue>, b: Record<string, ParamValue> | Map<string, ParamValue>, filter = (_k: string) => true) {
  const get = (m: typeof a, k: string) => (m instanceof Map ? m.get(k) : m[k]);
  const out = { diff: 0, at: '', keyBias: 0 };
  for (const k of a instanceof Map ? a.keys() : Object.keys(a)) {
    if (!filter(k)) continue;
    const x = get(a, k)!.data;
    const y = get(b, k);
    assert.ok(y && y.data.length === x.length, `'${k}' is missing or mis-sized`);
    for (let i = 0; i < x.length; i++) {
      const d = Number.isNaN(x[i]! - y.data[i]!) ? Infinity : Math.abs(x[i]! - y.data[i]!);
      if (isKeyBias(k, i, x.length)) out.keyBias = Math.max(out.keyBias, d);
      else if (d > out.diff) [out.diff, out.at] = [d, `${k}[${i}]: ${x[i]} vs ${y.data[i]}`];
    }
  }
  return out;
}

/** Two checkpoints agree: config and state exactly, weights, EMA and moments as TOL says; returns the differences. */
function assertSameCheckpoint(got: CheckpointContents, want: CheckpointContents, what: string): string {
  assert.deepEqual({ ...got.state, elapsedSec: 0 }, { ...want.state, elapsedSec: 0 }, `${what}: state (step, loader, images)`);
  assert.deepEqual(got.config, want.config, `${what}: config`);
  assert.deepEqual(got.optimizer.get('step')!.data, want.optimizer.get('step')!.data, `${what}: the update count`);
  const p = maxDiff(got.params, want.params);
  const e = maxDiff(got.ema, want.ema);
  const m = maxDiff(got.optimizer, want.optimizer, (k) => k.startsWith('m:'));
  const v = maxDiff(got.optimizer, want.optimizer, (k) => k.startsWith('v:'));
  for (const [name, d, tol] of [['weights', p, TOL.weights], ['EMA', e, TOL.weights], ['first moments', m, TOL.m], ['second moments', v, TOL.v]] as const) {
    assert.ok(d.diff <= tol, `${what}: ${name} differ by ${d.diff} > ${tol} (${d.at})`);
  }
  for (const [name, d] of [['weights', p], ['EMA', e]] as const) {
    assert.ok(d.keyBias <= TOL.keyBiasPerLr * LR, `${what}: the attention key bias of the ${name} differs by ${d.keyBias} > ${TOL.keyBiasPerLr}·lr`);
  }
  const x = (n: number) => n.toExponential(1);
  return `max |Δ| weights ${x(p.diff)} (key bias ${x(p.keyBias)}), EMA ${x(e.diff)} (${x(e.keyBias)}), m ${x(m.diff)}, v ${x(v.diff)}`;
}

/** Losses of a run's log.jsonl by step. */
async function logLosses(runDir: string): Promise<Map<number, { loss: number; lr: number }>> {
  const lines = (await readFile(path.join(runDir, 'log.jsonl'), 'utf8')).trim().split('\n');
  return new Map(lines.map((l) => JSON.parse(l) as { step: number; loss: number; lr: number }).map((r) => [r.step, { loss: r.loss, lr: r.lr }]));
}

interface Case {
  /** ddpm-ts's checkpoint after 2 steps (a run directory), where both sides start */
  start: string;
  /** the inputs ddpm-ts fed at steps 2..2+K−1 (safetensors: x0/<n>, t/<n>, noise/<n>, y/<n>, dropout<i>/<n>) */
  feeds: string;
  /** the run's images for --data-file */
  data: string;
  /** ddpm-ts's losses of steps 3..2+K and its checkpoint at step 2+K */
  losses: number[];
  after: CheckpointContents;
}

/**
 * ddpm-ts (the Trainer `ddpm train` drives): 2 steps and a checkpoint (the start), then K more steps, recording the
 * inputs its TrainingRun feeds the compiled step.
 */
async function tsCase(name: string, extra: Record<string, string>): Promise<Case> {
  const { config, data } = await configAndData({ ...extra, steps: '2' });
  const out = path.join(dir, `${name}-ts`);
  const losses: number[] = [];
  const tr = await Trainer.create(ort as never, config, out, data, { threads: 1, events: { onStep: (_s, l) => losses.push(l) } });
  try {
    await tr.train();
    const start = path.join(dir, `${name}-start`);
    await cp(out, start, { recursive: true, filter: (src) => path.basename(src) !== '.lock' }); // the lock is this process's
    const feeds: Record<string, TensorInput> = {};
    const run = tr.run;
    const stepInputs = run.stepInputs.bind(run);
    run.stepInputs = (step, x0, labels) => {
      const f = stepInputs(step, x0, labels);
      for (const [k, v] of Object.entries(f)) {
        const info = run.step.fn.info.inputs.find((i) => i.name === k)!;
        feeds[`${k}/${step}`] = { shape: info.shape as number[], data: v.slice() };
      }
      return f;
    };
    config.run.steps = 2 + K;
    losses.length = 0;
    await tr.train();
    const feedsFile = path.join(dir, `${name}-feeds.safetensors`);
    await writeFile(feedsFile, serializeSafetensors(feeds));
    const dataFile = path.join(dir, `${name}-data.safetensors`);
    await writeFile(dataFile, await exportDataset(config, () => {}));
    return { start, feeds: feedsFile, data: dataFile, losses, after: (await loadCheckpoint(path.join(out, 'checkpoint')))! };
  } finally {
    await tr.release();
  }
}

const CASES: Record<string, Record<string, string>> = {
  // L_simple, ε-prediction, linear schedule, random flips
  simple: { hflip: 'true' },
  // L_hybrid (learned variances) with min-SNR-γ on the cosine schedule, dropout in the residual blocks
  hybrid: { loss: 'hybrid', schedule: 'cosine', 'min-snr-gamma': '5', dropout: '0.1' },
  // class-conditional: label dropout, the class embedding's own lr, weight decay, a cosine lr decay from step 3
  cond: { 'class-cond': 'true', 'p-uncond': '0.4', 'class-lr-scale': '3', 'weight-decay': '0.01', 'lr-decay': 'cosine', 'decay-start': '3', 'decay-steps': '4', 'min-lr': '1e-4' },
};
const cases: Record<string, Case> = {};

before(async () => {
  if (!HAS_TORCH) return;
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-torch-'));
  folder = path.join(dir, 'shapes');
  await classFolder(folder);
  for (const [name, extra] of Object.entries(CASES)) cases[name] = await tsCase(name, extra);
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('format: Python writes back the bytes ddpm-ts wrote (checkpoint directory, one-file checkpoint); MNIST reads alike', { skip }, async () => {
  const ckpt = path.join(cases.cond!.start, 'checkpoint');
  const file = path.join(dir, 'one.safetensors');
  ok(await python(['-m', 'ddpm_torch.checkpoint', 'pack', ckpt, file]), 'pack');
  assert.ok(Buffer.from(packCheckpoint((await loadCheckpoint(ckpt))!)).equals(await readFile(file)), 'the one-file checkpoint differs from packCheckpoint');
  const back = path.join(dir, 'unpacked');
  ok(await python(['-m', 'ddpm_torch.checkpoint', 'unpack', file, back]), 'unpack');
  for (const name of await readdir(ckpt)) assert.ok((await readFile(path.join(ckpt, name))).equals(await readFile(path.join(back, name))), `${name} differs`);
  const m = loadMnist('train');
  const r = await python(['-c', 'import hashlib; from ddpm_torch.data import read_mnist; d = read_mnist(); print(hashlib.sha256(d.images.tobytes()).hexdigest(), hashlib.sha256(d.labels.tobytes()).hexdigest())']);
  ok(r, 'read_mnist');
  const { createHash } = await import('node:crypto');
  assert.equal(r.stdout.trim(), `${createHash('sha256').update(m.images).digest('hex')} ${createHash('sha256').update(m.labels).digest('hex')}`);
});

test('draws: train.py feeds the batches, timesteps, noise, dropout uniforms and labels ddpm train feeds', { skip }, async () => {
  for (const [name, c] of Object.entries(cases)) {
    const dump = path.join(dir, `${name}-dump.safetensors`);
    ok(await trainPy(['--resume', c.start, '--steps', String(2 + K), '--data-file', c.data, '--dump-feeds', dump]), `${name}: --dump-feeds`);
    const ours = parseSafetensors(await readFile(dump)).tensors;
    const theirs = parseSafetensors(await readFile(c.feeds)).tensors;
    for (const [k, v] of Object.entries(theirs)) {
      const o = ours[k];
      assert.ok(o, `${name}: train.py has no '${k}'`);
      if (k.startsWith('noise/')) assertClose(o.data as Float32Array, v.data as Float32Array, { atol: 0 }, `${name}: ${k} (Box–Muller: libm against V8)`);
      else assert.deepEqual(Array.from(o.data as ArrayLike<number | bigint>), Array.from(v.data as ArrayLike<number | bigint>), `${name}: ${k}`);
    }
  }
});

test('same math: K steps of train.py (one process, inputs from a file) equal K steps of ddpm-ts', { skip }, async (t) => {
  for (const [name, c] of Object.entries(cases)) {
    const run = path.join(dir, `${name}-py`);
    await cp(c.start, run, { recursive: true });
    ok(await trainPy(['--resume', run, '--steps', String(2 + K), '--data-file', c.data, '--feed', c.feeds, '--log-every', '1']), `${name}: train.py`);
    const log = await logLosses(run);
    assertClose(Array.from({ length: K }, (_, i) => log.get(3 + i)!.loss), c.losses, TOL.loss, `${name}: losses of steps 3..${2 + K}`);
    t.diagnostic(`${name}: ${assertSameCheckpoint((await loadCheckpoint(path.join(run, 'checkpoint')))!, c.after, name)} (lr ${LR})`);
  }
});

test('same run: torchrun with 2 processes (gloo, loopback) equals one process at the same global batch', { skip }, async (t) => {
  // one process: the same-math run above; its inputs came from a file, but they are train.py's own draws bit for bit
  // (the draws test), so it is the one-process run of these steps
  const c = cases.simple!;
  const one = (await loadCheckpoint(path.join(dir, 'simple-py', 'checkpoint')))!;
  const two = path.join(dir, 'simple-two');
  await cp(c.start, two, { recursive: true });
  const r = await torchrun(2, ['--resume', two, '--steps', String(2 + K), '--data-file', c.data, '--log-every', '1']);
  ok(r, 'torchrun, 2 processes');
  assert.match(r.stdout, /2 processes \(gloo, cpu\), global batch 8 \(4 per process\)/);
  t.diagnostic(`2 processes against 1: ${assertSameCheckpoint((await loadCheckpoint(path.join(two, 'checkpoint')))!, one, '2 processes against 1')}`);
});

test('round trip: ddpm train 2 steps, torch 2 steps (2 processes), ddpm train --resume 2 steps equals ddpm train 6 steps; it samples and exports', { skip }, async (t) => {
  const flags = (o: Record<string, string>) => Object.entries(baseFlags(o)).flatMap(([k, v]) => [`--${k}`, v]);
  const rt = path.join(dir, 'rt');
  const cli = (args: string[]) => runCli(['train', '--config', 'tiny', '--out', rt, '--threads', '1', ...args]);
  let r = await cli(flags({ steps: '2' }));
  assert.equal(r.code, 0, r.stderr);
  // no --data-file: train.py has the folder decoded by ddpm-ts (scripts/export-dataset.ts)
  const py = await torchrun(2, ['--resume', rt, '--steps', '4']);
  ok(py, 'torchrun');
  assert.match(py.stdout, /^resuming .* from step 2; 2 processes/m);
  r = await cli(['--resume', '--steps', '6']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^resuming tiny .* from step 4;/m);
  const alone = path.join(dir, 'alone');
  r = await runCli(['train', '--config', 'tiny', '--out', alone, '--threads', '1', ...flags({ steps: '6' })]);
  assert.equal(r.code, 0, r.stderr);
  const got = (await loadCheckpoint(path.join(rt, 'checkpoint')))!;
  const want = (await loadCheckpoint(path.join(alone, 'checkpoint')))!;
  t.diagnostic(`ddpm-ts → torch → ddpm-ts against ddpm-ts: ${assertSameCheckpoint(got, want, 'the round trip')}`);
  // the lr schedule (warmup over 5 steps) and the data order continue: the same lr and loss at every step
  const [a, b] = [await logLosses(rt), await logLosses(alone)];
  assert.deepEqual([...a.keys()].sort(), [1, 2, 3, 4, 5, 6]);
  for (let s = 1; s <= 6; s++) {
    assert.equal(Math.fround(a.get(s)!.lr), Math.fround(learningRate(want.config.optim, s - 1)), `lr at step ${s}`);
    assertClose(a.get(s)!.loss, b.get(s)!.loss, TOL.loss, `loss at step ${s}`);
  }
  // everything ddpm does with a checkpoint
  const png = path.join(dir, 'rt.png');
  r = await runCli(['sample', '--checkpoint', rt, '--n', '4', '--steps', '5', '--out', png, '--threads', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await stat(png)).size > 0);
  r = await runCli(['export', '--checkpoint', rt, '--out', path.join(dir, 'rt.onnx'), '--threads', '1']);
  assert.equal(r.code, 0, r.stderr);
});

/** Every file of a checkpoint directory, and what else the run directory holds. */
async function snapshot(run: string): Promise<Record<string, string>> {
  const out: Record<string, string> = { ls: (await readdir(run)).sort().join(',') };
  for (const f of await readdir(path.join(run, 'checkpoint'))) out[f] = (await readFile(path.join(run, 'checkpoint', f))).toString('base64');
  return out;
}

test('bad input: weights of another architecture, a missing optimizer file: one line, nothing written', { skip }, async () => {
  const c = cases.simple!;
  // 1. a torch state_dict of another model (base 16, not 8) saved over params.safetensors
  const arch = path.join(dir, 'bad-arch');
  await cp(c.start, arch, { recursive: true });
  const params = path.join(arch, 'checkpoint', 'params.safetensors');
  let r = await python(['-c', [
    'import sys; from ddpm_torch import safetensors; from ddpm_torch.unet import UNet',
    'sd = UNet(cin=1, ch=16, mults=(1, 2), nres=1, attn_res=(4,), res=8, groups=4).state_dict()',
    "open(sys.argv[1], 'wb').write(safetensors.serialize({k: v.numpy() for k, v in sd.items()}, {'format': 'ddpm-ts', 'kind': 'params'}))",
  ].join('\n'), params]);
  ok(r, 'writing torch weights');
  let before = await snapshot(arch);
  r = await trainPy(['--resume', arch, '--steps', '5', '--data-file', c.data]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line, got:\n${r.stderr}`);
  assert.match(r.stderr.trim(), /params\.safetensors: 'temb\.0\.weight' has shape \[64, 16\], the model of config\.json \(tiny, 1x8x8, base 8\) needs \[32, 8\]: weights of another architecture$/);
  assert.deepEqual(await snapshot(arch), before, 'the run directory changed');
  // 2. no optimizer.safetensors
  const noOpt = path.join(dir, 'no-opt');
  await cp(c.start, noOpt, { recursive: true });
  await rm(path.join(noOpt, 'checkpoint', 'optimizer.safetensors'));
  before = await snapshot(noOpt);
  r = await trainPy(['--resume', noOpt, '--steps', '5', '--data-file', c.data]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line, got:\n${r.stderr}`);
  assert.match(r.stderr, /optimizer\.safetensors is missing: a run continues only with its optimiser state \(to start a new run from these weights: --init-from/);
  assert.deepEqual(await snapshot(noOpt), before, 'the run directory changed');
});

test('bad input: a process that dies mid-run: one line, and the last checkpoint is whole and resumes', { skip }, async () => {
  const c = cases.simple!;
  const run = path.join(dir, 'dies');
  await cp(c.start, run, { recursive: true });
  // checkpoints at steps 3 and 4; rank 1 is SIGKILLed as step 5 begins (step index 4)
  const r = await torchrun(2, ['--resume', run, '--steps', '8', '--checkpoint-every', '1', '--data-file', c.data], { DDPM_TORCH_TEST_DIE: '1:4' });
  assert.notEqual(r.code, 0);
  const lines = ourLines(r.stderr);
  assert.equal(lines.length, 1, `one line of ours, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^ddpm_torch\.train: lost a process of the run at step 4 \(.*\); the checkpoint of step 4 is intact in .*checkpoint: resume with the same command$/);
  assert.deepEqual((await readdir(run)).sort(), ['checkpoint', 'log.jsonl'], 'no lock, no half-written checkpoint left');
  assert.equal((await loadCheckpoint(path.join(run, 'checkpoint')))!.state.step, 4);
  const again = await runCli(['train', '--resume', '--out', run, '--steps', '5', '--threads', '1']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^resuming tiny .* from step 4;/m);
});
