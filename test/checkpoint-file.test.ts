// A checkpoint as one safetensors file (src/train/checkpoint-file.ts): what the page downloads and uploads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { parseSafetensors, serializeSafetensors } from '../src/io/safetensors.ts';
import { packCheckpoint, unpackCheckpoint } from '../src/train/checkpoint-file.ts';
import { applyOptions, defaultTrainConfig, type TrainConfig } from '../src/train/config.ts';
import { TrainingRun } from '../src/train/run.ts';
import { assertUserError, runCli, squares } from './cli-helpers.ts';

function tinyConfig(extra: Record<string, string> = {}): TrainConfig {
  return applyOptions(defaultTrainConfig('tiny'), { 'batch-size': '8', T: '100', lr: '1e-3', ...extra });
}

async function steps(run: TrainingRun, n: number): Promise<number[]> {
  const losses: number[] = [];
  for (let i = 0; i < n; i++) losses.push((await run.next()).loss);
  return losses;
}

test('checkpoint file: 5 steps == 3 steps, pack, unpack, 2 steps (losses, weights, EMA and moments bit for bit)', async () => {
  const cfg = tinyConfig();
  const full = await TrainingRun.create(ort as never, cfg, squares(), {}, { threads: 1 });
  const fullLosses = await steps(full, 5);
  const first = await TrainingRun.create(ort as never, cfg, squares(), {}, { threads: 1 });
  const firstLosses = await steps(first, 3);
  const bytes = packCheckpoint(first.contents());
  assert.deepEqual(packCheckpoint(first.contents()), bytes, 'packing is deterministic');
  await first.release();
  const c = unpackCheckpoint(bytes);
  assert.equal(c.state!.step, 3);
  const second = await TrainingRun.create(ort as never, c.config, squares(), { params: c.params, ema: c.ema, optimizer: c.optimizer, state: c.state }, { threads: 1 });
  const secondLosses = await steps(second, 2);
  assert.deepEqual([...firstLosses, ...secondLosses], fullLosses);
  const a = full.contents();
  const b = second.contents();
  for (const [k, v] of Object.entries(a.params)) assert.deepEqual(b.params[k]!.data, v.data, `params ${k}`);
  for (const [k, v] of Object.entries(a.ema)) assert.deepEqual(b.ema[k]!.data, v.data, `ema ${k}`);
  for (const [k, v] of a.optimizer) assert.deepEqual(b.optimizer.get(k)!.data, v.data, `optimizer ${k}`);
  assert.deepEqual(b.state.loader, a.state.loader);
  await full.release();
  await second.release();
});

test('checkpoint file: the EMA weights under the model names, so ddpm sample reads it as the checkpoint directory', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ddpm-ckfile-'));
  try {
    const cfg = tinyConfig();
    const run = await TrainingRun.create(ort as never, cfg, squares(), {}, { threads: 1 });
    await steps(run, 2);
    const file = path.join(dir, 'tiny.safetensors');
    await writeFile(file, packCheckpoint(run.contents()));
    await run.release();
    const { tensors, metadata } = parseSafetensors(new Uint8Array(await readFile(file)));
    assert.equal(metadata.format, 'ddpm-ts checkpoint');
    assert.ok('cin.weight' in tensors && 'params/cin.weight' in tensors && 'optimizer/step' in tensors, Object.keys(tensors).slice(0, 5).join());
    const out = path.join(dir, 's.png');
    const r = await runCli(['sample', '--checkpoint', file, '--n', '2', '--steps', '3', '--out', out, '--threads', '1']);
    assert.equal(r.code, 0, r.stderr);
    // not a checkpoint file: one line naming it
    const other = path.join(dir, 'other.safetensors');
    await writeFile(other, serializeSafetensors({ w: { shape: [1], data: new Float32Array(1) } }));
    assertUserError(await runCli(['sample', '--checkpoint', other, '--out', out]), /other\.safetensors: not a ddpm-ts checkpoint file/);
    await writeFile(other, new Uint8Array([1, 2, 3]));
    assertUserError(await runCli(['sample', '--checkpoint', other, '--out', out]), /other\.safetensors: safetensors: /);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('checkpoint file: a config, tensor or state that does not fit is refused with the reason', async () => {
  const run = await TrainingRun.create(ort as never, tinyConfig(), squares(), {}, { threads: 1 });
  await steps(run, 1);
  const c = run.contents();
  await run.release();
  const { tensors, metadata } = parseSafetensors(packCheckpoint(c));
  const repack = (t: typeof tensors, m: Record<string, string>) => serializeSafetensors(t, m);
  const { ['cin.weight']: _, ...noConv } = tensors;
  assert.throws(() => unpackCheckpoint(repack(noConv, metadata)), /missing tensor 'cin\.weight'/);
  assert.throws(() => unpackCheckpoint(repack({ ...tensors, extra: tensors['cin.bias']! }, metadata)), /unexpected tensor 'extra'/);
  assert.throws(() => unpackCheckpoint(repack(tensors, { ...metadata, config: '{' })), /metadata 'config' is not JSON/);
  assert.throws(() => unpackCheckpoint(repack(tensors, { ...metadata, state: '{"step":-1}' })), /state: /);
  const wide = JSON.parse(metadata.config!) as TrainConfig;
  wide.model.baseChannels = 16;
  assert.throws(() => unpackCheckpoint(repack(tensors, { ...metadata, config: JSON.stringify(wide) })), /has shape \[.*\], the model needs/);
  // a model-only file (EMA + config) reads as a model
  const modelOnly = Object.fromEntries(Object.entries(tensors).filter(([k]) => !k.includes('/')));
  const { state: _s, ...meta } = metadata;
  const m = unpackCheckpoint(repack(modelOnly, meta));
  assert.equal(m.params, undefined);
  assert.equal(m.optimizer, undefined);
});
