import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  parseSafetensors,
  serializeSafetensors,
  SafetensorsError,
  type TensorInput,
} from '../src/io/safetensors.ts';
import { readSafetensorsFile, writeSafetensorsFile } from '../src/io/safetensors-file.ts';

const f32 = (...v: number[]) => new Float32Array(v);

/** A file with an arbitrary (possibly invalid) header object and data bytes, padded like the reference writer. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + data.length).fill(0x20, 8, 8 + padded);
  new DataView(out.buffer).setUint32(0, padded, true);
  out.set(json, 8);
  out.set(data, 8 + padded);
  return out;
}

function expectError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SafetensorsError, `expected SafetensorsError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

test('byte-exact against the reference implementation goldens (safetensors tensor.rs tests)', () => {
  // test_serialization: {"attn.0": F32 [1,2,3] = 0..5}; the 64-byte header needs no padding.
  const out = serializeSafetensors({ 'attn.0': { dtype: 'F32', shape: [1, 2, 3], data: f32(0, 1, 2, 3, 4, 5) } });
  // prettier-ignore
  const golden = [
    64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
    116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
    58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
    101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
    0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
  ];
  assert.deepEqual(Array.from(out), golden);

  // test_serialization_forced_alignement: 65-byte JSON padded with 7 spaces to 72.
  const out2 = serializeSafetensors({ attn0: { dtype: 'F32', shape: [1, 1, 2, 3], data: f32(0, 1, 2, 3, 4, 5) } });
  const text = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}';
  assert.equal(text.length, 65);
  assert.deepEqual(Array.from(out2.subarray(0, 8)), [72, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(new TextDecoder().decode(out2.subarray(8, 80)), text + ' '.repeat(7));
  assert.equal(out2.length, 8 + 72 + 24);

  // test_empty: no tensors, with and without metadata.
  assert.deepEqual(Array.from(serializeSafetensors({})), [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
  const meta = serializeSafetensors({}, { framework: 'pt' });
  assert.equal(new TextDecoder().decode(meta.subarray(8)), '{"__metadata__":{"framework":"pt"}}     ');
  assert.equal(meta[0], 40);
});

test('layout: descending dtype then name, each tensor aligned to its element size, insertion order irrelevant', () => {
  const tensors: Record<string, TensorInput> = {
    b: { shape: [3], data: new Uint8Array([1, 2, 3]) },
    a: { shape: [1], data: new Float64Array([Math.PI]) },
    '10': { shape: [2], data: f32(1, 2) },
    '2': { shape: [2], data: f32(3, 4) },
    step: { shape: [], data: new BigInt64Array([123456789012345n]) },
  };
  const bytes = serializeSafetensors(tensors, { z: '1', a: '2' });
  const reversed = serializeSafetensors(Object.fromEntries(Object.entries(tensors).reverse()), { a: '2', z: '1' });
  assert.deepEqual(bytes, reversed);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = new TextDecoder().decode(bytes.subarray(8, 8 + n)).trimEnd();
  assert.equal(
    header,
    '{"__metadata__":{"a":"2","z":"1"},' +
      '"step":{"dtype":"I64","shape":[],"data_offsets":[0,8]},' +
      '"a":{"dtype":"F64","shape":[1],"data_offsets":[8,16]},' +
      '"10":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},' +
      '"2":{"dtype":"F32","shape":[2],"data_offsets":[24,32]},' +
      '"b":{"dtype":"U8","shape":[3],"data_offsets":[32,35]}}',
  );
  assert.equal((8 + n) % 8, 0);
});

test('round trip of every supported dtype, scalars and empty tensors', () => {
  const tensors: Record<string, TensorInput> = {
    f32: { shape: [2, 3], data: f32(0.5, -1, 3.25, Number.NaN, Infinity, -0) },
    f64: { shape: [2], data: new Float64Array([1e-300, -2.5]) },
    i32: { shape: [3], data: new Int32Array([-2147483648, 0, 2147483647]) },
    i64: { shape: [2], data: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]) },
    u64: { shape: [1], data: new BigUint64Array([2n ** 64n - 1n]) },
    u8: { shape: [2, 2], data: new Uint8Array([0, 1, 254, 255]) },
    i8: { shape: [2], data: new Int8Array([-128, 127]) },
    i16: { shape: [1], data: new Int16Array([-300]) },
    u16: { shape: [1], data: new Uint16Array([65535]) },
    u32: { shape: [1], data: new Uint32Array([4294967295]) },
    f16: { dtype: 'F16', shape: [2], data: new Uint16Array([0x3c00, 0xc000]) },
    bf16: { dtype: 'BF16', shape: [1], data: new Uint16Array([0x3f80]) },
    mask: { dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) },
    scalar: { shape: [], data: f32(7) },
    empty: { shape: [0, 4], data: new Float32Array(0) },
  };
  const meta = { config: JSON.stringify({ lr: 2e-4, ch: [1, 2] }), note: 'ünïcödé ✓ 𝔁' };
  const parsed = parseSafetensors(serializeSafetensors(tensors, meta));
  assert.deepEqual(parsed.metadata, meta);
  assert.deepEqual(Object.keys(parsed.tensors).sort(), Object.keys(tensors).sort());
  for (const [name, t] of Object.entries(tensors)) {
    const got = parsed.tensors[name];
    assert.deepEqual(got.shape, t.shape, name);
    assert.equal(got.data.constructor, t.data.constructor, name);
    assert.deepEqual(got.data, t.data, name);
  }
  assert.equal(parsed.tensors.f16.dtype, 'F16');
  assert.equal(parsed.tensors.mask.dtype, 'BOOL');
  assert.equal(parsed.tensors.u8.dtype, 'U8');
  // A parsed file re-serialises to the same bytes.
  const again = serializeSafetensors(parsed.tensors, parsed.metadata);
  assert.deepEqual(again, serializeSafetensors(tensors, meta));
  // Parsed data does not alias the input (copied, aligned).
  const bytes = serializeSafetensors({ x: { shape: [1], data: f32(1) } });
  const p = parseSafetensors(bytes);
  bytes.fill(0);
  assert.equal(p.tensors.x.data[0], 1);
});

test('parse reads a file whose input is an unaligned view', () => {
  const bytes = serializeSafetensors({ w: { shape: [2], data: f32(1.5, -2) } });
  const shifted = new Uint8Array(bytes.length + 3);
  shifted.set(bytes, 3);
  assert.deepEqual(parseSafetensors(shifted.subarray(3)).tensors.w.data, f32(1.5, -2));
});

test('parse reads a Node Buffer (whose slice() is a view, not a copy), e.g. from zlib or fs', () => {
  const bytes = serializeSafetensors({ a: { shape: [2], data: f32(7, 8) }, w: { shape: [3], data: f32(1.5, -2, 3) } });
  const buf = Buffer.concat([Buffer.alloc(5), Buffer.from(bytes)]).subarray(5); // a Buffer at an offset in its ArrayBuffer
  const p = parseSafetensors(buf);
  assert.deepEqual(p.tensors.a.data, f32(7, 8));
  assert.deepEqual(p.tensors.w.data, f32(1.5, -2, 3));
});

test('serialize rejects inconsistent input', () => {
  expectError(() => serializeSafetensors({ w: { shape: [2, 2], data: f32(1, 2, 3) } }), /shape \[2,2\] has 4 elements but data has 3/);
  expectError(() => serializeSafetensors({ w: { dtype: 'I64', shape: [1], data: f32(1) } }), /I64 needs a BigInt64Array, got Float32Array/);
  expectError(() => serializeSafetensors({ __metadata__: { shape: [1], data: f32(1) } }), /reserved/);
  expectError(() => serializeSafetensors({ w: { shape: [-1], data: f32() } }), /non-negative integers/);
  expectError(() => serializeSafetensors({}, { k: 3 as unknown as string }), /metadata 'k' must be a string/);
});

test('parse errors: truncation, bad header, bad offsets, mismatched shapes', () => {
  const good = serializeSafetensors({ a: { shape: [2], data: f32(1, 2) }, b: { shape: [2], data: f32(3, 4) } });
  const entry = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
  const data16 = new Uint8Array(16);

  expectError(() => parseSafetensors(good.subarray(0, 5)), /too small to hold the 8-byte header length/);
  expectError(() => parseSafetensors(good.subarray(0, 40)), /runs past the end of the 40-byte file \(truncated\?\)/);
  expectError(() => parseSafetensors(good.subarray(0, good.length - 4)), /tensor 'b'.*out of range, the data buffer has 12 bytes \(truncated\?\)/);
  const huge = good.slice();
  new DataView(huge.buffer).setUint32(4, 1, true);
  expectError(() => parseSafetensors(huge), /exceeds the 100000000-byte limit/);
  expectError(() => parseSafetensors(rawFile(null, data16, '{"a": ')), /header is not valid JSON/);
  expectError(() => parseSafetensors(rawFile(null, data16, '[1,2]')), /header must be a JSON object/);
  const badUtf8 = rawFile({});
  badUtf8[9] = 0xff;
  expectError(() => parseSafetensors(badUtf8), /not valid UTF-8/);
  expectError(() => parseSafetensors(rawFile({ a: entry('F31', [4], [0, 16]) }, data16)), /tensor 'a': unknown dtype "F31"/);
  expectError(() => parseSafetensors(rawFile({ a: entry('F32', [2.5], [0, 16]) }, data16)), /non-negative integers/);
  expectError(() => parseSafetensors(rawFile({ a: entry('F32', [4], [0]) }, data16)), /data_offsets must be \[begin, end\]/);
  expectError(() => parseSafetensors(rawFile({ a: entry('F32', [4], [16, 0]) }, data16)), /begin > end/);
  expectError(() => parseSafetensors(rawFile({ a: entry('F32', [3], [0, 16]) }, data16)), /F32 shape \[3\] needs 12 bytes but data_offsets \[0,16\] span 16/);
  expectError(
    () => parseSafetensors(rawFile({ a: entry('F32', [3], [0, 12]), b: entry('F32', [1], [8, 12]) }, new Uint8Array(12))),
    /tensor 'b' data_offsets \[8,12\] overlap tensor 'a' \[0,12\]/,
  );
  expectError(
    () => parseSafetensors(rawFile({ a: entry('F32', [1], [0, 4]), b: entry('F32', [2], [8, 16]) }, data16)),
    /tensor 'b' .* leave a hole at bytes \[4,8\)/,
  );
  expectError(() => parseSafetensors(rawFile({ a: entry('F32', [2], [0, 8]) }, data16)), /cover 8 bytes of the 16-byte data buffer \(trailing bytes\)/);
  expectError(() => parseSafetensors(rawFile({ __metadata__: { k: 1 } })), /metadata 'k' must be a string/);
  expectError(() => parseSafetensors(rawFile({ a: [1] }, data16)), /tensor 'a': entry must be an object/);
});

test('names such as __proto__ stay ordinary keys', () => {
  const text = '{"__proto__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}';
  const bytes = rawFile(null, new Uint8Array([42]), text);
  const p = parseSafetensors(bytes);
  assert.equal(Object.getPrototypeOf(p.tensors), Object.prototype);
  assert.deepEqual(Object.keys(p.tensors), ['__proto__']);
  assert.equal(p.tensors['__proto__'].data[0], 42);
});

test('file helpers write atomically and name the file on errors', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-st-'));
  try {
    const file = path.join(dir, 'model.safetensors');
    await writeSafetensorsFile(file, { w: { shape: [2], data: f32(1, 2) } }, { step: '10' }, { fsync: false });
    const back = await readSafetensorsFile(file);
    assert.deepEqual(back.tensors.w.data, f32(1, 2));
    assert.deepEqual(back.metadata, { step: '10' });
    assert.deepEqual(readdirSync(dir), ['model.safetensors']);
    writeFileSync(file, new Uint8Array([1, 2, 3]));
    await assert.rejects(readSafetensorsFile(file), (err: Error) => err instanceof SafetensorsError && err.message.includes(file));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
