/**
 * JSON a user's file holds, as hostile input to the validators (config.json, state.json, a safetensors header,
 * ONNX metadata): values nested 20,000 deep are refused with the reader's own short message (they were a
 * RangeError from JSON.stringify in the message), and keys that only Object.prototype has (`constructor`,
 * `toString`) are unknown keys. describeValue is the one helper that prints a user's value in a message.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkLoaderState } from '../src/data/loader.ts';
import { describeValue } from '../src/describe.ts';
import { scheduleConfig } from '../src/diffusion/schedule.ts';
import { parseSafetensors, SafetensorsError } from '../src/io/safetensors.ts';
import { lenetConfig } from '../src/models/classifier.ts';
import { unetConfig } from '../src/models/unet.ts';
import { CheckpointError, validateTrainState } from '../src/train/checkpoint.ts';
import { defaultTrainConfig, validateTrainConfig } from '../src/train/config.ts';

const DEPTH = 20_000;
const DEEP_ARRAY = '['.repeat(DEPTH) + ']'.repeat(DEPTH);
const DEEP_OBJECT = '{"a":'.repeat(DEPTH) + '1' + '}'.repeat(DEPTH);
const deepArray = (): unknown => JSON.parse(DEEP_ARRAY);
const deepObject = (): unknown => JSON.parse(DEEP_OBJECT);

/**
 * `value` as JSON text, where the strings "DEEP_ARRAY" and "DEEP_OBJECT" stand for the deep values (JSON.stringify
 * and structuredClone recurse too: the test builds the file's text as a hostile writer would).
 */
function parseWithDeep(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value).replaceAll('"DEEP_ARRAY"', DEEP_ARRAY).replaceAll('"DEEP_OBJECT"', DEEP_OBJECT));
}

/** `fn` throws its own error class with a one-line message of at most 300 characters, not a RangeError. */
function assertShortRejection(fn: () => unknown, cls: new (...a: never[]) => Error, pattern: RegExp, where: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof Error, `${where}: expected a ${cls.name}, got ${String(caught)}`);
  assert.equal(Object.getPrototypeOf(caught), cls.prototype, `${where}: ${caught.name}: ${caught.message.slice(0, 200)}`);
  const msg = caught.message;
  assert.ok(msg.length <= 300 && !msg.includes('\n'), `${where}: one short line, got ${msg.length} characters`);
  assert.match(msg, pattern, where);
}

test('describeValue: compact JSON for small values, bounded depth and length for any value', () => {
  assert.equal(describeValue(3), '3');
  assert.equal(describeValue('abc'), '"abc"');
  assert.equal(describeValue(null), 'null');
  assert.equal(describeValue(undefined), 'undefined');
  assert.equal(describeValue([1, 2, 3]), '[1,2,3]');
  assert.equal(describeValue({ a: 1, b: [1, 2] }), '{"a":1,"b":[1,2]}');
  assert.equal(describeValue([1, [2, [3, [4]]]]), '[1,[2,[…]]]');
  assert.equal(describeValue(deepArray()), '[[[…]]]');
  assert.equal(describeValue(deepObject()), '{"a":{"a":{…}}}');
  assert.equal(describeValue('x'.repeat(100_000)), `"${'x'.repeat(60)}"… (100000 characters)`);
  const long = describeValue(new Array(1_000_000).fill(0));
  assert.ok(long.length <= 61 && long.startsWith('[0,0,0,') && long.endsWith('…'), long);
  assert.equal(describeValue(new Float32Array(4)), 'a Float32Array');
  // Object.create(null) and inherited properties: only own keys are printed
  assert.equal(describeValue(Object.assign(Object.create({ inherited: 1 }), { own: 2 })), '{"own":2}');
});

test('config.json: a value nested 20,000 deep anywhere is refused in one short line', () => {
  type Config = Record<string, Record<string, unknown>>;
  const cases: [string, (c: Config) => void, RegExp][] = [
    ['preset', (c) => ((c as Record<string, unknown>).preset = 'DEEP_ARRAY'), /^config: 'preset' must be a string, got \[\[\[…\]\]\]$/],
    ['model.dropout', (c) => (c.model!.dropout = 'DEEP_ARRAY'), /^U-Net config: dropout must be in \[0, 1\), got \[\[\[…\]\]\]$/],
    ['model.channelMults', (c) => (c.model!.channelMults = 'DEEP_ARRAY'), /^U-Net config: channelMults\[0\] must be an integer in \[1, \d+\], got \[\[\[…\]\]\]$/],
    ['optim.lr', (c) => (c.optim!.lr = 'DEEP_OBJECT'), /^config: 'optim\.lr' must be a number, got \{"a":\{"a":\{…\}\}\}$/],
    ['diffusion.schedule.kind', (c) => ((c.diffusion!.schedule as Record<string, unknown>).kind = 'DEEP_ARRAY'), /^schedule config: unknown kind \[\[\[…\]\]\]/],
    ['diffusion.schedule.T', (c) => ((c.diffusion!.schedule as Record<string, unknown>).T = 'DEEP_ARRAY'), /^schedule config \(linear\): 'T' must be a number, got \[\[\[…\]\]\]$/],
  ];
  for (const [where, set, pattern] of cases) {
    const c = JSON.parse(JSON.stringify(defaultTrainConfig('tiny'))) as Config;
    set(c);
    assertShortRejection(() => validateTrainConfig(parseWithDeep(c)), Error, pattern, where);
  }
});

test('config.json: keys that only Object.prototype has are unknown keys', () => {
  const base = () => JSON.parse(JSON.stringify(defaultTrainConfig('tiny'))) as Record<string, Record<string, unknown>>;
  for (const key of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
    // JSON.parse makes "__proto__" an own key, as a file would
    const top = JSON.parse(JSON.stringify(base()).replace(/^\{/, `{"${key}":1,`));
    assert.throws(() => validateTrainConfig(top), new RegExp(`^Error: config: unknown key '${key}'`), `top-level ${key}`);
    const model = JSON.parse(JSON.stringify(base()).replace(/"model":\{/, `"model":{"${key}":1,`));
    assert.throws(() => validateTrainConfig(model), new RegExp(`^Error: unknown U-Net config key '${key}'`), `model.${key}`);
    const optim = JSON.parse(JSON.stringify(base()).replace(/"optim":\{/, `"optim":{"${key}":1,`));
    assert.throws(() => validateTrainConfig(optim), new RegExp(`^Error: config: unknown key 'optim\\.${key}'`), `optim.${key}`);
    assert.throws(() => scheduleConfig(JSON.parse(`{"kind":"linear","T":100,"${key}":1}`)), new RegExp(`unknown key '${key}'`), `schedule.${key}`);
    assert.throws(() => unetConfig(JSON.parse(`{"${key}":1}`)), new RegExp(`^Error: unknown U-Net config key '${key}'`));
  }
  // a preset name that is an Object.prototype key is no preset: the default model, not Object's constructor
  const c = base() as Record<string, unknown>;
  c.preset = 'constructor';
  delete c.model;
  assert.equal(validateTrainConfig(c).model.imageSize, defaultTrainConfig().model.imageSize);
  assert.throws(() => defaultTrainConfig('constructor'), /^Error: unknown model config 'constructor'/);
});

test('state.json: step or loader fields nested 20,000 deep are refused, naming the file', () => {
  const file = 'run/checkpoint/state.json';
  const ok = { step: 2, loader: { epoch: 0, position: 16, n: 32 }, elapsedSec: 1.25, images: 16 };
  assert.deepEqual(validateTrainState(JSON.parse(JSON.stringify(ok)), file), ok);
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ ...ok, step: 'DEEP_ARRAY' }, /^run\/checkpoint\/state\.json: 'step' must be a non-negative integer, got \[\[\[…\]\]\]$/],
    [{ ...ok, elapsedSec: 'DEEP_OBJECT' }, /^run\/checkpoint\/state\.json: 'elapsedSec' must be a finite number >= 0, got \{"a":\{"a":\{…\}\}\}$/],
    [{ ...ok, loader: { ...ok.loader, epoch: 'DEEP_ARRAY' } }, /^run\/checkpoint\/state\.json: 'loader': bad epoch \[\[\[…\]\]\] \(expected a non-negative integer\)$/],
    [{ ...ok, loader: 'DEEP_ARRAY' }, /^run\/checkpoint\/state\.json: 'loader': expected an object \{epoch, position, n\}, got \[\[\[…\]\]\]$/],
  ];
  for (const [s, pattern] of cases) assertShortRejection(() => validateTrainState(parseWithDeep(s), file), CheckpointError, pattern, JSON.stringify(s));
  assert.throws(() => checkLoaderState(JSON.parse('{"epoch":0,"position":0,"n":1,"constructor":1}')), /^Error: unknown key 'constructor'$/);
});

test('safetensors: a shape, dtype, data_offsets or metadata value nested 20,000 deep is refused in one short line', () => {
  /** A file whose header is `header` (as text, with the deep values) and 4 data bytes. */
  const file = (header: unknown): Uint8Array => {
    const json = new TextEncoder().encode(JSON.stringify(header).replaceAll('"DEEP_ARRAY"', DEEP_ARRAY).replaceAll('"DEEP_OBJECT"', DEEP_OBJECT));
    const out = new Uint8Array(8 + json.length + 4);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    return out;
  };
  const entry = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
  assert.equal(parseSafetensors(file({ w: entry })).tensors.w!.data.length, 1);
  const cases: [unknown, RegExp][] = [
    [{ w: { ...entry, shape: 'DEEP_ARRAY' } }, /^safetensors: tensor 'w': shape \[\[\[…\]\]\] must hold non-negative integers$/],
    [{ w: { ...entry, shape: [1, 'DEEP_ARRAY'] } }, /^safetensors: tensor 'w': shape \[1,\[\[…\]\]\] must hold non-negative integers$/],
    [{ w: { ...entry, shape: 'DEEP_OBJECT' } }, /^safetensors: tensor 'w': shape must be an array, got \{"a":\{"a":\{…\}\}\}$/],
    [{ w: { ...entry, dtype: 'DEEP_OBJECT' } }, /^safetensors: tensor 'w': unknown dtype \{"a":\{"a":\{…\}\}\}$/],
    [{ w: { ...entry, data_offsets: 'DEEP_ARRAY' } }, /^safetensors: tensor 'w': data_offsets must be \[begin, end\] non-negative integers, got \[\[\[…\]\]\]$/],
    [{ __metadata__: { k: 'DEEP_ARRAY' }, w: entry }, /^safetensors: metadata 'k' must be a string, got \[\[\[…\]\]\]$/],
  ];
  for (const [header, pattern] of cases) assertShortRejection(() => parseSafetensors(file(header)), SafetensorsError, pattern, JSON.stringify(header));
});

test('the FID classifier config (lenetConfig): deep values, inherited keys and non-objects are refused in one short line', () => {
  const cases: [unknown, RegExp][] = [
    [parseWithDeep({ inChannels: 'DEEP_ARRAY' }), /^LeNet: inputs must have 1 or 3 channels and a side that is a multiple of 4 in \[12, 64\], got inChannels \[\[\[…\]\]\], imageSize 28$/],
    [parseWithDeep({ conv1: 'DEEP_OBJECT' }), /^LeNet config: conv1 must be a positive integer, got \{"a":\{"a":\{…\}\}\}$/],
    [JSON.parse('{"constructor":1}'), /^unknown LeNet config key 'constructor'/],
    [null, /^LeNet config must be an object, got null$/],
  ];
  for (const [c, pattern] of cases) assertShortRejection(() => lenetConfig(c as never), Error, pattern, describeValue(c));
  assert.equal(lenetConfig({}).featureDim, 128);
});
