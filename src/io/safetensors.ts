// The safetensors format (Hugging Face), read and written without node:* imports so the browser shares it.
//
// Layout of a file:
//   bytes [0, 8)        N, the header length, unsigned 64-bit little endian
//   bytes [8, 8+N)      the header: UTF-8 JSON object
//                         { "__metadata__"?: {string: string},
//                           name: { "dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end] }, ... }
//                       padded with spaces (0x20) so that 8+N is a multiple of 8
//   bytes [8+N, EOF)    the byte buffer; data_offsets are relative to its start; tensors are row-major, little
//                       endian, and must cover the buffer exactly (no holes, no overlaps, no trailing bytes).
//
// Writing follows the reference implementation (huggingface/safetensors, `tensor.rs` `prepare`) byte for byte:
// tensors are laid out by descending dtype (so each starts aligned to its element size) then by name, the header
// is compact JSON with "__metadata__" first and tensors in data order, padded with spaces to a multiple of 8.
// Its golden `test_serialization` is pinned in test/io-safetensors.test.ts.

import { describeValue } from '../describe.ts';
import { KIND_NAMES, SNIFF_BYTES, sniffBytes } from './sniff.ts';

export type Dtype =
  | 'BOOL' | 'U8' | 'I8' | 'F8_E5M2' | 'F8_E4M3'
  | 'I16' | 'U16' | 'F16' | 'BF16'
  | 'I32' | 'U32' | 'F32'
  | 'F64' | 'I64' | 'U64';

export type TensorData =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

/** A tensor as stored in a file. F16/BF16/F8 are kept as raw bits (Uint16Array / Uint8Array); BOOL as 0/1 bytes. */
export interface SafeTensor {
  dtype: Dtype;
  shape: number[];
  data: TensorData;
}

/** Input to serializeSafetensors; dtype may be left out when the array type implies it (Float32Array -> F32 ...). */
export interface TensorInput {
  dtype?: Dtype;
  shape: readonly number[];
  data: TensorData;
}

export interface ParsedSafetensors {
  tensors: Record<string, SafeTensor>;
  /** The "__metadata__" object; {} when the file has none. */
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(`safetensors: ${message}`);
    this.name = 'SafetensorsError';
  }
}

type TypedArrayCtor = {
  new (buffer: ArrayBuffer, byteOffset: number, length: number): TensorData;
  new (length: number): TensorData;
  readonly BYTES_PER_ELEMENT: number;
};

// Order = the reference implementation's `enum Dtype` declaration order ("increasing alignment"); the writer sorts
// by this rank descending. `ctor` is the typed array that holds the raw elements.
const DTYPES: Record<Dtype, { rank: number; size: number; ctor: TypedArrayCtor }> = {
  BOOL: { rank: 0, size: 1, ctor: Uint8Array },
  U8: { rank: 1, size: 1, ctor: Uint8Array },
  I8: { rank: 2, size: 1, ctor: Int8Array },
  F8_E5M2: { rank: 3, size: 1, ctor: Uint8Array },
  F8_E4M3: { rank: 4, size: 1, ctor: Uint8Array },
  I16: { rank: 5, size: 2, ctor: Int16Array },
  U16: { rank: 6, size: 2, ctor: Uint16Array },
  F16: { rank: 7, size: 2, ctor: Uint16Array },
  BF16: { rank: 8, size: 2, ctor: Uint16Array },
  I32: { rank: 9, size: 4, ctor: Int32Array },
  U32: { rank: 10, size: 4, ctor: Uint32Array },
  F32: { rank: 11, size: 4, ctor: Float32Array },
  F64: { rank: 12, size: 8, ctor: Float64Array },
  I64: { rank: 13, size: 8, ctor: BigInt64Array as unknown as TypedArrayCtor },
  U64: { rank: 14, size: 8, ctor: BigUint64Array as unknown as TypedArrayCtor },
};

/** Same limit as the reference reader: a header over 100 MB is rejected. */
export const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndian(): void {
  // Typed arrays use the platform's byte order; safetensors is little endian. Every platform Node and the major
  // browsers run on is little endian, so we refuse rather than carry an untested byte-swapping path.
  if (!LITTLE_ENDIAN) throw new SafetensorsError('big-endian platforms are not supported');
}

export function isDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, s);
}

/** Bytes per element of a dtype. */
export function dtypeSize(dtype: Dtype): number {
  return DTYPES[dtype].size;
}

function inferDtype(data: TensorData): Dtype {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Float64Array) return 'F64';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof Uint32Array) return 'U32';
  if (data instanceof Int16Array) return 'I16';
  if (data instanceof Uint16Array) return 'U16';
  if (data instanceof Int8Array) return 'I8';
  if (data instanceof Uint8Array) return 'U8';
  if (data instanceof BigInt64Array) return 'I64';
  if (data instanceof BigUint64Array) return 'U64';
  throw new SafetensorsError('tensor data must be a typed array');
}

// Plain assignment of a key such as "__proto__" (legal in JSON) would change the object's prototype instead.
function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: unknown, where: string): number[] {
  if (!Array.isArray(shape)) throw new SafetensorsError(`${where}: shape must be an array, got ${describeValue(shape)}`);
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new SafetensorsError(`${where}: shape ${describeValue(shape)} must hold non-negative integers`);
    }
  }
  if (!Number.isSafeInteger(numel(shape))) throw new SafetensorsError(`${where}: shape ${describeValue(shape)} overflows`);
  return shape as number[];
}

// Rust orders names as UTF-8 bytes, which is Unicode code point order; JS `<` compares UTF-16 code units, which
// differs for characters above U+FFFF. Compare code points so both writers agree.
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done || cb.done) return ca.done ? (cb.done ? 0 : -1) : 1;
    const d = ca.value.codePointAt(0)! - cb.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/**
 * Serialise tensors (and optional string metadata) to safetensors bytes. Output is deterministic: it depends only
 * on the names, dtypes, shapes and values, never on insertion order. `metadata` undefined -> no "__metadata__".
 */
export function serializeSafetensors(
  tensors: Record<string, TensorInput>,
  metadata?: Record<string, string>,
): Uint8Array {
  requireLittleEndian();
  // 1. Validate and sort: descending dtype rank, then name (reference `prepare`).
  const entries = Object.keys(tensors).map((name) => {
    if (name === METADATA_KEY) throw new SafetensorsError(`"${METADATA_KEY}" is reserved and cannot name a tensor`);
    const t = tensors[name];
    const where = `tensor '${name}'`;
    const dtype = t.dtype ?? inferDtype(t.data);
    if (!isDtype(dtype)) throw new SafetensorsError(`${where}: unknown dtype ${describeValue(dtype)}`);
    const info = DTYPES[dtype];
    if (!(t.data instanceof (info.ctor as unknown as new (n: number) => TensorData))) {
      throw new SafetensorsError(`${where}: dtype ${dtype} needs a ${info.ctor.name}, got ${t.data.constructor.name}`);
    }
    const shape = checkShape([...t.shape], where);
    if (t.data.length !== numel(shape)) {
      throw new SafetensorsError(`${where}: shape [${shape}] has ${numel(shape)} elements but data has ${t.data.length}`);
    }
    return { name, dtype, shape, data: t.data };
  });
  entries.sort((a, b) => DTYPES[b.dtype].rank - DTYPES[a.dtype].rank || compareCodePoints(a.name, b.name));

  // 2. Header JSON, built by hand: a JS object would move integer-like keys ("0", "1") to the front.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort(compareCodePoints);
    const kv = keys.map((k) => {
      const v = metadata[k];
      if (typeof v !== 'string') throw new SafetensorsError(`metadata '${k}' must be a string, got ${typeof v}`);
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${kv.join(',')}}`);
  }
  let offset = 0;
  for (const e of entries) {
    const end = offset + e.data.byteLength;
    parts.push(
      `${JSON.stringify(e.name)}:{"dtype":"${e.dtype}","shape":[${e.shape.join(',')}],"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerLen = Math.ceil(json.length / 8) * 8; // pad so the buffer starts 8-byte aligned
  if (headerLen > MAX_HEADER_BYTES) throw new SafetensorsError(`header of ${headerLen} bytes exceeds ${MAX_HEADER_BYTES}`);

  // 3. Assemble: length, padded header, data in sorted order.
  const out = new Uint8Array(8 + headerLen + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLen, true); // low word; the high word stays 0 (headerLen < 2^32)
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  let pos = 8 + headerLen;
  for (const e of entries) {
    out.set(new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength), pos);
    pos += e.data.byteLength;
  }
  return out;
}

interface HeaderEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

/** Header of a safetensors file: where each tensor lives, validated against the buffer size. */
export interface SafetensorsHeader {
  /** Byte offset of the data buffer in the file (8 + N). */
  dataStart: number;
  /** Tensors in data order, offsets relative to dataStart. */
  entries: HeaderEntry[];
  metadata: Record<string, string>;
}

/** A header length that makes no sense, from a file of another kind (an image, an ONNX model): say which. */
function otherKind(bytes: Uint8Array, fileLength: number): SafetensorsError | undefined {
  const kind = sniffBytes(bytes.subarray(0, SNIFF_BYTES), fileLength);
  return kind === 'unknown' || kind === 'safetensors' ? undefined : new SafetensorsError(`${KIND_NAMES[kind]}, not a safetensors file`);
}

/**
 * Parse and validate the header of a complete safetensors file. Throws SafetensorsError naming the problem:
 * truncated file, bad length, invalid UTF-8 or JSON, unknown dtype, bad shape, offsets out of range, overlapping or
 * leaving holes, byte length not matching shape*dtype, trailing bytes.
 * @param bytes the file, or only its first 8 + N bytes (length and header) when `fileLength` is given
 * @param fileLength the length of the whole file (default bytes.length), against which the offsets are checked
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileLength = bytes.length): SafetensorsHeader {
  // 1. Header length.
  if (fileLength < 8 || bytes.length < 8) {
    throw otherKind(bytes, fileLength) ?? new SafetensorsError(`file of ${fileLength} bytes is too small to hold the 8-byte header length (truncated?)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (n > MAX_HEADER_BYTES) throw otherKind(bytes, fileLength) ?? new SafetensorsError(`header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt file?)`);
  if (8 + n > fileLength) {
    throw otherKind(bytes, fileLength) ?? new SafetensorsError(`header length ${n} runs past the end of the ${fileLength}-byte file (truncated?)`);
  }
  if (8 + n > bytes.length) throw new SafetensorsError(`only ${bytes.length} bytes of the ${8 + n}-byte header were given`);
  const dataStart = 8 + n;
  const bufferLen = fileLength - dataStart;

  // 2. Header JSON.
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, dataStart));
  } catch {
    throw new SafetensorsError('header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(`header is not valid JSON (${(err as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new SafetensorsError('header must be a JSON object');
  }

  // 3. Entries.
  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new SafetensorsError(`"${METADATA_KEY}" must be an object of strings`);
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new SafetensorsError(`metadata '${k}' must be a string, got ${describeValue(v)}`);
        setOwn(metadata, k, v);
      }
      continue;
    }
    const where = `tensor '${name}'`;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new SafetensorsError(`${where}: entry must be an object`);
    }
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (!isDtype(dtype)) throw new SafetensorsError(`${where}: unknown dtype ${describeValue(dtype)}`);
    const dims = checkShape(shape, where);
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)
    ) {
      throw new SafetensorsError(`${where}: data_offsets must be [begin, end] non-negative integers, got ${describeValue(offsets)}`);
    }
    const [begin, end] = offsets as number[];
    if (begin > end) throw new SafetensorsError(`${where}: data_offsets [${begin},${end}] has begin > end`);
    if (end > bufferLen) {
      throw new SafetensorsError(
        `${where}: data_offsets [${begin},${end}] out of range, the data buffer has ${bufferLen} bytes (truncated?)`,
      );
    }
    const expected = numel(dims) * DTYPES[dtype].size;
    if (end - begin !== expected) {
      throw new SafetensorsError(
        `${where}: ${dtype} shape [${dims}] needs ${expected} bytes but data_offsets [${begin},${end}] span ${end - begin}`,
      );
    }
    entries.push({ name, dtype, shape: dims, begin, end });
  }

  // 4. The tensors must tile the buffer: sorted by offsets, each begins where the previous ended.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (e.begin < pos) {
      const p = entries[i - 1];
      throw new SafetensorsError(
        `tensor '${e.name}' data_offsets [${e.begin},${e.end}] overlap tensor '${p.name}' [${p.begin},${p.end}]`,
      );
    }
    if (e.begin > pos) {
      throw new SafetensorsError(`tensor '${e.name}' data_offsets [${e.begin},${e.end}] leave a hole at bytes [${pos},${e.begin})`);
    }
    pos = e.end;
  }
  if (pos !== bufferLen) {
    throw new SafetensorsError(`tensors cover ${pos} bytes of the ${bufferLen}-byte data buffer (trailing bytes)`);
  }
  return { dataStart, entries, metadata };
}

/** Parse a complete safetensors file. Tensor data is copied into fresh, aligned typed arrays. */
export function parseSafetensors(bytes: Uint8Array): ParsedSafetensors {
  requireLittleEndian();
  const { dataStart, entries, metadata } = parseSafetensorsHeader(bytes);
  const tensors: Record<string, SafeTensor> = {};
  for (const e of entries) {
    const info = DTYPES[e.dtype];
    // a copy in its own, aligned ArrayBuffer (new Uint8Array(view) copies; a Node Buffer's slice() would be a view)
    const copy = new Uint8Array(bytes.subarray(dataStart + e.begin, dataStart + e.end));
    const data = new info.ctor(copy.buffer, 0, (e.end - e.begin) / info.size);
    setOwn(tensors, e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}
