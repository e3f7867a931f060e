/** state.json is validated on load (types, ranges, exact keys) and every error names the file. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { uint8Dataset } from '../src/data/loader.ts';
import { CheckpointError, loadCheckpoint, readConfig, validateTrainState } from '../src/train/checkpoint.ts';
import { Trainer } from '../src/train/trainer.ts';
import { tinyCheckpoint } from './cli-helpers.ts';

let dir: string;
let ckpt: string;
let good: Record<string, unknown>;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-state-'));
  ckpt = await tinyCheckpoint(dir, 2);
  good = JSON.parse(await readFile(path.join(ckpt, 'state.json'), 'utf8'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('validateTrainState accepts what the trainer writes and a run that has not checkpointed its loader yet', () => {
  assert.deepEqual(good, { step: 2, loader: { epoch: 0, position: 16, n: 32 }, elapsedSec: good.elapsedSec, images: 16 });
  assert.deepEqual(validateTrainState(good, 'state.json'), good);
  assert.deepEqual(validateTrainState({ ...good, loader: null }, 'state.json').loader, null);
});

test('every malformed state.json is refused with a message naming the file and the field', async () => {
  const file = path.join(ckpt, 'state.json');
  const cases: [unknown, RegExp][] = [
    [{ ...good, images: '16' }, /'images' must be a non-negative integer, got "16"/], // used to concatenate on resume
    [{ ...good, images: -8 }, /'images' must be a non-negative integer/],
    [{ ...good, step: 2.5 }, /'step' must be a non-negative integer, got 2.5/],
    [{ ...good, step: 1e300 }, /'step' must be a non-negative integer/],
    [{ ...good, elapsedSec: 'soon' }, /'elapsedSec' must be a finite number >= 0/],
    [{ ...good, elapsedSec: -1 }, /'elapsedSec' must be a finite number >= 0/],
    [{ ...good, extra: 1 }, /unknown key 'extra'/],
    [{ step: 2, loader: null, images: 16 }, /missing 'elapsedSec'/],
    [{ ...good, loader: 'epoch 0' }, /'loader': expected an object \{epoch, position, n\}, got "epoch 0"/],
    [{ ...good, loader: { epoch: 0, position: 16 } }, /'loader': bad n undefined/],
    [{ ...good, loader: { epoch: -1, position: 16, n: 32 } }, /'loader': bad epoch -1/],
    [{ ...good, loader: { epoch: 0, position: 33, n: 32 } }, /'loader': position 33 out of range \[0, 32\]/],
    [{ ...good, loader: { epoch: 0, position: 0, n: 32, seed: 1 } }, /'loader': unknown key 'seed'/],
    [[2], /expected an object, got \[2\]/],
  ];
  try {
    for (const [state, pattern] of cases) {
      await writeFile(file, JSON.stringify(state));
      const err = await loadCheckpoint(ckpt).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof CheckpointError, `${JSON.stringify(state)}: expected a CheckpointError, got ${String(err)}`);
      assert.ok(err.message.startsWith(`${file}: `), err.message);
      assert.match(err.message, pattern);
    }
  } finally {
    await writeFile(file, JSON.stringify(good));
  }
  assert.equal((await loadCheckpoint(ckpt))?.state.step, 2);
});

test('a loader state saved for another dataset size is refused before anything is compiled, naming state.json', async () => {
  const config = await readConfig(ckpt);
  const other = uint8Dataset(new Uint8Array(24 * 64), { n: 24, channels: 1, height: 8, width: 8 });
  await assert.rejects(
    Trainer.create(ort as never, config, dir, other, { threads: 1, resume: true }),
    (e: Error) => e instanceof CheckpointError && e.message === `${path.join(ckpt, 'state.json')}: LoaderState: saved for 32 images, dataset has 24`,
  );
});
