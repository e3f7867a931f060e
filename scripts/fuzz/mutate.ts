/**
 * Mutators for the fuzz suite: a seeded RNG, byte-level edits, and structure-aware edits of JSON, PNG chunks,
 * JPEG segments, safetensors and IDX headers. Every mutator is a pure function of (seed bytes, rng), so the
 * parent process can regenerate the exact input a crashed or hung worker was running from its index alone.
 * Outputs are bounded (MAX_INPUT_BYTES) so a mutator never becomes the thing that eats the memory.
 */
import { constants as zlibConstants, deflateRawSync } from 'node:zlib';

// CRC-32 (ISO-HDLC, as PNG uses); zlib.crc32 needs Node >= 20.15.
const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** Largest input a mutator returns (a bomb is small on disk; what it declares is the test). */
export const MAX_INPUT_BYTES = 4 << 20;

// ---------------------------------------------------------------------------------------------
// RNG: sfc32 seeded from a string hash (cyrb128), so input i of target x under seed s is always the same.

function cyrb128(str: string): [number, number, number, number] {
  let h1 = 1779033703, h2 = 3144134277, h3 = 1013904242, h4 = 2773480762;
  for (let i = 0; i < str.length; i++) {
    const k = str.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  return [(h1 ^ h2 ^ h3 ^ h4) >>> 0, (h2 ^ h1) >>> 0, (h3 ^ h1) >>> 0, (h4 ^ h1) >>> 0];
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(key: string) {
    [this.a, this.b, this.c, this.d] = cyrb128(key);
    for (let i = 0; i < 12; i++) this.u32();
  }
  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }
  float(): number {
    return this.u32() / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.float() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  /** Small counts are likelier: 1 with p 1/2, 2 with 1/4, ... up to max. */
  count(max: number): number {
    let n = 1;
    while (n < max && this.chance(0.5)) n++;
    return n;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

/** The key of input `index` of `target` under `seed`. */
export function inputRng(seed: number, target: string, index: number): Rng {
  return new Rng(`${seed}:${target}:${index}`);
}

// ---------------------------------------------------------------------------------------------
// Interesting values

/** Sizes and counts that break naive readers: zero, one, powers of two and their neighbours, overflow edges. */
export const INTERESTING_INTS: readonly number[] = [
  0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 28, 31, 32, 63, 64, 127, 128, 255, 256, 1023, 1024, 1025, 4096, 16383, 16384,
  65535, 65536, 1048576, 8388608, 29360128, 1048576000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1,
  2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 63, 2 ** 64, -1, -2, -128, -(2 ** 31), -(2 ** 53),
];

const INTERESTING_FLOATS: readonly number[] = [0.5, -0.5, 1.5, 1e-300, -1e-300, 1e300, -1e300, 1e9, 3.14159, -0.0, 1e-7];

export function interestingNumber(rng: Rng): number {
  return rng.chance(0.8) ? rng.pick(INTERESTING_INTS) : rng.pick(INTERESTING_FLOATS);
}

// ---------------------------------------------------------------------------------------------
// Byte-level mutation

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
export { concatBytes };

function clampSize(b: Uint8Array): Uint8Array {
  return b.length > MAX_INPUT_BYTES ? b.subarray(0, MAX_INPUT_BYTES) : b;
}

/**
 * One byte-level edit of `b` (a copy is returned): flip, set, interesting 16/32-bit value, insert, delete,
 * duplicate, truncate, append, or splice with `other` (another seed). `region` limits where edits land.
 */
export function mutateBytesOnce(b: Uint8Array, rng: Rng, other?: Uint8Array, region?: [number, number]): Uint8Array {
  const [lo, hi] = region ?? [0, b.length];
  const pos = () => (hi > lo ? lo + rng.int(hi - lo) : Math.min(lo, b.length));
  const out = b.slice();
  switch (rng.int(11)) {
    case 0: { // bit flip
      if (out.length === 0) return rng.bytes(1);
      const p = Math.min(pos(), out.length - 1);
      out[p]! ^= 1 << rng.int(8);
      return out;
    }
    case 1: { // random byte
      if (out.length === 0) return rng.bytes(1);
      out[Math.min(pos(), out.length - 1)] = rng.u32() & 0xff;
      return out;
    }
    case 2: { // interesting byte
      if (out.length === 0) return rng.bytes(1);
      out[Math.min(pos(), out.length - 1)] = rng.pick([0, 1, 0x7f, 0x80, 0xff, 0x20, 0x22, 0x7b]);
      return out;
    }
    case 3: { // interesting 16/32-bit value, either endianness
      if (out.length < 4) return out;
      const p = Math.min(pos(), out.length - 4);
      const v = rng.pick(INTERESTING_INTS);
      const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
      if (rng.chance(0.5)) dv.setUint32(p, v >>> 0, rng.chance(0.5));
      else dv.setUint16(p, v & 0xffff, rng.chance(0.5));
      return out;
    }
    case 4: { // insert random bytes
      const p = pos();
      return clampSize(concatBytes([b.subarray(0, p), rng.bytes(rng.range(1, 16)), b.subarray(p)]));
    }
    case 5: { // delete a range
      const p = pos();
      const n = rng.range(1, Math.max(1, Math.min(64, b.length - p)));
      return concatBytes([b.subarray(0, p), b.subarray(p + n)]);
    }
    case 6: { // duplicate a range in place (repeat up to 64 times)
      const p = pos();
      const n = rng.range(1, Math.max(1, Math.min(256, b.length - p)));
      const chunk = b.subarray(p, p + n);
      return clampSize(concatBytes([b.subarray(0, p + n), ...Array<Uint8Array>(rng.count(6) ** 2).fill(chunk), b.subarray(p + n)]));
    }
    case 7: // truncate
      return b.subarray(0, pos()).slice();
    case 8: // append junk
      return clampSize(concatBytes([b, rng.bytes(rng.range(1, 64))]));
    case 9: { // splice with another seed
      if (!other || other.length === 0) return out;
      const p = pos();
      const q = rng.int(other.length);
      return clampSize(concatBytes([b.subarray(0, p), other.subarray(q, q + rng.range(1, 4096))]));
    }
    default: { // overwrite a run with one value
      if (out.length === 0) return out;
      const p = Math.min(pos(), out.length - 1);
      out.fill(rng.pick([0, 0xff, 0x41]), p, p + rng.range(1, 32));
      return out;
    }
  }
}

/** 1-4 byte-level edits. */
export function mutateBytes(b: Uint8Array, rng: Rng, other?: Uint8Array, region?: [number, number]): Uint8Array {
  let out = b;
  for (let k = rng.count(4); k > 0; k--) out = mutateBytesOnce(out, rng, other, region);
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON-aware mutation. Values are parsed into a tree whose objects are entry lists (so duplicate keys and
// "__proto__" survive), edited, and written back by our own serialiser, which also emits raw tokens that
// JSON.stringify cannot (1e999, NaN, deep nesting as text).

export class Raw {
  constructor(readonly text: string) {}
}
export class Obj {
  constructor(public entries: [string, JNode][]) {}
}
export type JNode = null | boolean | number | string | JNode[] | Obj | Raw;

export function toTree(v: unknown): JNode {
  if (Array.isArray(v)) return v.map(toTree);
  if (v !== null && typeof v === 'object') return new Obj(Object.entries(v).map(([k, x]) => [k, toTree(x)]));
  return v as JNode;
}

export function stringifyTree(n: JNode, indent = ''): string {
  const nl = indent ? `\n${indent}` : '';
  if (n instanceof Raw) return n.text;
  if (n instanceof Obj) {
    if (n.entries.length === 0) return '{}';
    const inner = indent ? indent + '  ' : '';
    return `{${n.entries.map(([k, v]) => `${inner ? `\n${inner}` : ''}${JSON.stringify(k)}:${inner ? ' ' : ''}${stringifyTree(v, inner)}`).join(',')}${nl}}`;
  }
  if (Array.isArray(n)) return `[${n.map((x) => stringifyTree(x, '')).join(',')}]`;
  if (typeof n === 'number' && !Number.isFinite(n)) return Number.isNaN(n) ? 'NaN' : n > 0 ? '1e999' : '-1e999';
  return JSON.stringify(n);
}

type Slot = { get: () => JNode; set: (v: JNode) => void; parent: Obj | JNode[] | null; key: string | number };

function slots(root: { v: JNode }, limit = 2000): Slot[] {
  const out: Slot[] = [{ get: () => root.v, set: (v) => (root.v = v), parent: null, key: '' }];
  for (let i = 0; i < out.length && out.length < limit; i++) {
    const n = out[i]!.get();
    if (n instanceof Obj) {
      n.entries.forEach((e, j) => out.push({ get: () => e[1], set: (v) => (e[1] = v), parent: n, key: j }));
    } else if (Array.isArray(n)) {
      n.forEach((_, j) => out.push({ get: () => n[j]!, set: (v) => (n[j] = v), parent: n, key: j }));
    }
  }
  return out;
}

const ODD_KEYS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '', 'x', ' ', '__metadata__', 'T', 'step', 'n'];
const RAW_TOKENS = ['1e999', '-1e999', '1e-999', '-0', '1.0', '123456789012345678901234567890', '0.1e1', 'NaN', 'Infinity', '01', '0x10', '+1', 'undefined'];

function deepNest(depth: number, rng: Rng): Raw {
  return rng.chance(0.5) ? new Raw('['.repeat(depth) + '1' + ']'.repeat(depth)) : new Raw('{"a":'.repeat(depth) + '1' + '}'.repeat(depth));
}

/** Serialised size of a tree, roughly, counted without recursion and given up past `budget`. */
export function treeSize(root: JNode, budget = MAX_INPUT_BYTES): number {
  let size = 0;
  const stack: JNode[] = [root];
  while (stack.length > 0 && size <= budget) {
    const n = stack.pop()!;
    if (n instanceof Raw) size += n.text.length;
    else if (typeof n === 'string') size += n.length + 2;
    else if (n instanceof Obj) for (const [k, v] of n.entries) (size += k.length + 4), stack.push(v);
    else if (Array.isArray(n)) {
      size += 2 + n.length;
      for (let i = 0; i < n.length && i <= budget; i++) stack.push(n[i]!);
    }
    else size += 8;
  }
  return size;
}

/** `count` copies of `n`, fewer when they would pass the input size limit. */
function repeated(n: JNode, count: number): JNode[] {
  const each = Math.max(1, treeSize(n, 1 << 16));
  return Array.from({ length: Math.max(0, Math.min(count, Math.floor(MAX_INPUT_BYTES / 4 / each))) }, () => clone(n));
}

function clone(n: JNode): JNode {
  if (Array.isArray(n)) return n.map(clone);
  if (n instanceof Obj) return new Obj(n.entries.map(([k, v]) => [k, clone(v)]));
  return n;
}

const pickKey = (rng: Rng, keys: readonly string[]) => rng.pick(keys.length > 0 ? keys : ODD_KEYS);

/** A value of another type, or an edge value of the same type. */
function swapValue(n: JNode, rng: Rng, keys: readonly string[]): JNode {
  switch (rng.int(12)) {
    case 0: return interestingNumber(rng);
    case 1: return typeof n === 'number' ? rng.pick([n + 1, n - 1, n * 2, n * 1000, -n, n + 0.5, n * 2 ** 20, n / 3]) : interestingNumber(rng);
    case 2: return typeof n === 'number' ? String(n) : rng.pick(['', '0', '1', '-1', 'NaN', 'Infinity', '1e3', 'true', 'null', 'x'.repeat(rng.pick([1, 100, 65536]))]);
    case 3: return rng.pick([true, false, null]);
    case 4: return Array.isArray(n) ? new Obj(n.map((x, i) => [String(i), x])) : [n];
    case 5: return n instanceof Obj ? n.entries.map(([, v]) => v) : new Obj([[pickKey(rng, keys), n]]);
    case 6: return new Raw(rng.pick(RAW_TOKENS));
    case 7: return deepNest(rng.pick([2, 10, 100, 1000, 5000, 20000, 100000]), rng);
    case 8: return Array.isArray(n) && n.length > 0 ? n[0]! : [];
    case 9: return typeof n === 'number' ? Array.from({ length: rng.pick([0, 1, 2, 3, 8, 64, 1000, 10000]) }, () => rng.pick(INTERESTING_INTS)) : repeated(n, rng.pick([0, 1, 2, 3, 8, 64, 1000, 10000]));
    case 10: return new Obj([]);
    default: return 'x'.repeat(rng.pick([0, 1, 1000, 1 << 20]));
  }
}

/** One structural edit of a JSON tree (in place on `root.v`); `keys` are names known to the reader. */
export function mutateTreeOnce(root: { v: JNode }, rng: Rng, keys: readonly string[]): void {
  const all = slots(root);
  const s = rng.pick(all);
  const n = s.get();
  const op = rng.int(8);
  if (op <= 2) {
    s.set(swapValue(n, rng, keys)); // type swaps, edge numbers, deep nesting, wrong arrays
  } else if (op === 3 && s.parent !== null) {
    // delete this entry
    if (s.parent instanceof Obj) s.parent.entries.splice(s.key as number, 1);
    else s.parent.splice(s.key as number, 1);
  } else if (op === 4 && n instanceof Obj) {
    // unknown / odd / duplicate key
    const k = rng.chance(0.5) ? rng.pick(ODD_KEYS) : rng.chance(0.5) && n.entries.length > 0 ? rng.pick(n.entries)[0] : pickKey(rng, keys);
    n.entries.splice(rng.int(n.entries.length + 1), 0, [k, swapValue(rng.chance(0.5) ? 1 : new Obj([]), rng, keys)]);
  } else if (op === 5 && Array.isArray(n)) {
    // wrong arrays: repeat, push a wrong type, empty
    const r = rng.int(3);
    if (r === 0 && n.length > 0) n.push(...repeated(rng.pick(n), rng.pick([1, 10, 1000])));
    else if (r === 1) n.push(swapValue(0, rng, keys));
    else n.length = 0;
  } else if (op === 6) {
    // copy another subtree here
    s.set(clone(rng.pick(all).get()));
  } else {
    s.set(swapValue(n, rng, keys));
  }
}

/** Keys that occur anywhere in the tree (reused as "known" names for insertions). */
export function treeKeys(n: JNode, out = new Set<string>()): string[] {
  if (n instanceof Obj) for (const [k, v] of n.entries) (out.add(k), treeKeys(v, out));
  else if (Array.isArray(n)) for (const v of n) treeKeys(v, out);
  return [...out];
}

/** Mutate JSON text: 1-4 tree edits, sometimes followed by text-level byte edits. */
export function mutateJsonText(text: string, rng: Rng): string {
  const bytewise = () => new TextDecoder().decode(mutateBytes(new TextEncoder().encode(text), rng));
  let out: string;
  try {
    // a deeply nested input (from an earlier edit) overflows these recursive walks: then edit its bytes instead
    const root = { v: toTree(JSON.parse(text)) };
    const keys = treeKeys(root.v);
    for (let k = rng.count(4); k > 0; k--) {
      mutateTreeOnce(root, rng, keys);
      if (treeSize(root.v) > MAX_INPUT_BYTES) return bytewise();
    }
    out = stringifyTree(root.v, rng.chance(0.5) ? '' : ' ');
  } catch (e) {
    if (e instanceof RangeError || e instanceof SyntaxError) return bytewise();
    throw e;
  }
  if (out.length > MAX_INPUT_BYTES) out = out.slice(0, MAX_INPUT_BYTES);
  if (rng.chance(0.15)) out = new TextDecoder().decode(mutateBytes(new TextEncoder().encode(out), rng));
  if (rng.chance(0.03)) out = '\uFEFF' + out;
  return out;
}

// ---------------------------------------------------------------------------------------------
// PNG: chunk-aware (IHDR fields with a recomputed CRC, chunk duplication, deletion, truncation, bombs)

interface Chunk {
  type: string;
  data: Uint8Array;
  /** keep this CRC instead of recomputing it (a corrupt chunk) */
  crc?: number;
}

const PNG_SIG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function parsePng(b: Uint8Array): Chunk[] | null {
  if (b.length < 8 || !PNG_SIG.every((x, i) => b[i] === x)) return null;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const chunks: Chunk[] = [];
  let p = 8;
  while (p + 12 <= b.length) {
    const len = dv.getUint32(p);
    if (p + 12 + len > b.length) return null;
    chunks.push({ type: String.fromCharCode(...b.subarray(p + 4, p + 8)), data: b.slice(p + 8, p + 8 + len) });
    p += 12 + len;
  }
  return chunks;
}

export function writePng(chunks: readonly Chunk[]): Uint8Array {
  const parts: Uint8Array[] = [PNG_SIG];
  for (const c of chunks) {
    const head = new Uint8Array(8);
    const dv = new DataView(head.buffer);
    dv.setUint32(0, c.data.length);
    for (let i = 0; i < 4; i++) head[4 + i] = c.type.charCodeAt(i) & 0xff;
    const crc = new Uint8Array(4);
    new DataView(crc.buffer).setUint32(0, c.crc ?? crc32(c.data, crc32(head.subarray(4, 8))));
    parts.push(head, c.data, crc);
  }
  return concatBytes(parts);
}

// A zlib stream of n zero bytes, built without materialising them: a raw-deflate piece of 2^k zeros ending in a
// full flush is byte-aligned and references nothing before it, so pieces concatenate; then an empty final block
// and the Adler-32 of n zeros (a = 1, b = n mod 65521). 256 MB of zeros is ~256 KB.
const zeroPieces = new Map<number, Uint8Array>();
function zeroPiece(k: number): Uint8Array {
  let p = zeroPieces.get(k);
  if (!p) {
    p = new Uint8Array(deflateRawSync(new Uint8Array(2 ** k), { level: 9, finishFlush: zlibConstants.Z_FULL_FLUSH }));
    zeroPieces.set(k, p);
  }
  return p;
}
export function zerosZlib(n: number): Uint8Array {
  const parts: Uint8Array[] = [new Uint8Array([0x78, 0xda])];
  const big = zeroPiece(20);
  for (let left = n; left > 0; ) {
    if (left >= 2 ** 20) {
      parts.push(big);
      left -= 2 ** 20;
    } else {
      const k = Math.floor(Math.log2(left));
      parts.push(zeroPiece(k));
      left -= 2 ** k;
    }
  }
  const adler = ((n % 65521) * 65536 + 1) >>> 0;
  parts.push(new Uint8Array([0x03, 0x00, adler >>> 24, (adler >>> 16) & 0xff, (adler >>> 8) & 0xff, adler & 0xff]));
  return concatBytes(parts);
}

const CHANNELS_OF: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/** Bytes of filtered scanlines an IHDR declares (all Adam7 passes when interlaced); NaN for an invalid IHDR. */
export function pngRawLength(ihdr: Uint8Array): number {
  const dv = new DataView(ihdr.buffer, ihdr.byteOffset, ihdr.byteLength);
  const w = dv.getUint32(0), h = dv.getUint32(4);
  const bits = ihdr[8]! * (CHANNELS_OF[ihdr[9]!] ?? NaN);
  const line = (cols: number) => 1 + Math.ceil((cols * bits) / 8);
  if (ihdr[12] !== 1) return h * line(w);
  let n = 0;
  for (const [x0, y0, dx, dy] of [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]] as const) {
    const cols = Math.ceil((w - x0) / dx), rows = Math.ceil((h - y0) / dy);
    if (cols > 0 && rows > 0) n += rows * line(cols);
  }
  return n;
}

const PNG_DIMS = [0, 1, 2, 7, 8, 16, 255, 256, 16383, 16384, 65535, 65536, 100000, 8388608, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];
const PNG_BOMBS: readonly [number, number][] = [[8388608, 16], [16, 8388608], [16384, 16384], [65535, 65535], [100000, 100000], [2 ** 31 - 1, 1], [5792, 5792], [8192, 4096], [4096, 8192], [8193, 4096], [33554432, 1], [1, 33554432]];
const PNG_ANCILLARY = ['tEXt', 'zTXt', 'iTXt', 'iCCP', 'eXIf', 'gAMA', 'cHRM', 'sRGB', 'pHYs', 'tRNS', 'PLTE', 'bKGD', 'sBIT', 'hIST', 'sPLT', 'tIME', 'acTL', 'fcTL', 'fdAT', 'IDAT', 'IEND', 'IHDR', 'abCD'];

function mutatePngChunks(chunks: Chunk[], rng: Rng): void {
  const ihdr = chunks.find((c) => c.type === 'IHDR' && c.data.length >= 13);
  switch (rng.int(10)) {
    case 0: case 1: { // IHDR width / height
      if (!ihdr) return;
      const dv = new DataView(ihdr.data.buffer, ihdr.data.byteOffset);
      if (rng.chance(0.4)) {
        const [w, h] = rng.pick(PNG_BOMBS);
        dv.setUint32(0, w >>> 0);
        dv.setUint32(4, h >>> 0);
      } else {
        dv.setUint32(rng.pick([0, 4]), rng.pick(PNG_DIMS) >>> 0);
      }
      if (rng.chance(0.6)) {
        // all-zero scanlines of exactly the declared size (or a little off), so the decoder gets through the data
        // and allocates the whole image: the worst case of a valid file. Capped at 2 GB of pixels (~2 MB of file).
        if (rng.chance(0.3)) ihdr.data.set([rng.pick([8, 16]), rng.pick([2, 4, 6]), 0, 0, rng.int(2)], 8); // the most bytes per pixel
        const raw = pngRawLength(ihdr.data);
        if (!(raw >= 0)) return;
        const n = Math.min(2 ** 31, Math.max(0, raw + (rng.chance(0.8) ? 0 : rng.pick([-1, 1, -4096, 4096]))));
        const i = chunks.findIndex((c) => c.type === 'IDAT');
        chunks.splice(Math.max(1, i), chunks.filter((c) => c.type === 'IDAT').length, { type: 'IDAT', data: zerosZlib(n) });
      }
      return;
    }
    case 2: { // bit depth, colour type, compression, filter, interlace
      if (!ihdr) return;
      const field = rng.range(8, 12);
      const values: Record<number, number[]> = { 8: [1, 2, 4, 8, 16, 0, 3, 255], 9: [0, 2, 3, 4, 6, 1, 5, 7, 255], 10: [0, 1, 255], 11: [0, 1, 255], 12: [0, 1, 2] };
      ihdr.data[field] = rng.pick(values[field]!);
      return;
    }
    case 3: { // duplicate a chunk
      const i = rng.int(chunks.length);
      chunks.splice(rng.int(chunks.length + 1), 0, { ...chunks[i]!, data: chunks[i]!.data.slice() });
      return;
    }
    case 4: // delete a chunk
      chunks.splice(rng.int(chunks.length), 1);
      return;
    case 5: { // swap two chunks
      const i = rng.int(chunks.length), j = rng.int(chunks.length);
      [chunks[i], chunks[j]] = [chunks[j]!, chunks[i]!];
      return;
    }
    case 6: { // insert an ancillary (or critical) chunk with junk or compressed junk
      const type = rng.pick(PNG_ANCILLARY);
      let data = rng.bytes(rng.pick([0, 1, 3, 4, 8, 13, 26, 100, 768, 4096]));
      if ((type === 'zTXt' || type === 'iCCP') && rng.chance(0.5)) data = concatBytes([new TextEncoder().encode('k\0\0'), zerosZlib(rng.pick([10, 1 << 20, 1 << 28]))]);
      if (type === 'eXIf' && rng.chance(0.7)) data = exifSegment(rng).data.subarray(6); // TIFF with an orientation tag
      chunks.splice(rng.range(1, Math.max(1, chunks.length - 1)), 0, { type, data });
      return;
    }
    case 7: { // corrupt data inside a chunk (CRC recomputed, so the decoder sees it)
      const c = rng.pick(chunks);
      if (c.data.length > 0) c.data = mutateBytesOnce(c.data, rng);
      return;
    }
    case 8: { // split IDAT into many small chunks
      const i = chunks.findIndex((c) => c.type === 'IDAT');
      if (i < 0) return;
      const d = chunks[i]!.data;
      const step = rng.pick([1, 2, 7, 64]);
      const parts: Chunk[] = [];
      for (let p = 0; p < d.length && parts.length < 20000; p += step) parts.push({ type: 'IDAT', data: d.subarray(p, p + step) });
      chunks.splice(i, 1, ...parts); // (past 20000 pieces the data is cut: a truncation too)
      return;
    }
    default: { // a wrong CRC
      const c = rng.pick(chunks);
      c.crc = rng.u32();
    }
  }
}

export function mutatePng(seed: Uint8Array, rng: Rng, other?: Uint8Array): Uint8Array {
  const chunks = parsePng(seed);
  if (!chunks || rng.chance(0.1)) return mutateBytes(seed, rng, other);
  for (let k = rng.count(3); k > 0 && chunks.length > 0; k--) mutatePngChunks(chunks, rng);
  let out = writePng(chunks);
  if (rng.chance(0.15)) out = out.subarray(0, rng.int(out.length + 1)); // truncation
  if (rng.chance(0.1)) out = mutateBytes(out, rng, other);
  return clampSize(out);
}

// ---------------------------------------------------------------------------------------------
// JPEG: marker-aware (SOF dimensions and components, DQT/DHT/SOS/DRI fields, EXIF, segment edits, truncation)

interface Segment {
  marker: number;
  /** payload without the length field; for SOS it is followed by `entropy` */
  data: Uint8Array;
  entropy?: Uint8Array;
  /** write this length field instead of the true one */
  badLength?: number;
}

const STANDALONE = (m: number) => m === 0xd8 || m === 0xd9 || m === 0x01 || (m >= 0xd0 && m <= 0xd7);

export function parseJpeg(b: Uint8Array): Segment[] | null {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return null;
  const segs: Segment[] = [{ marker: 0xd8, data: new Uint8Array(0) }];
  let p = 2;
  while (p + 1 < b.length) {
    if (b[p] !== 0xff) return null;
    const m = b[p + 1]!;
    p += 2;
    if (m === 0xff) { p--; continue; } // fill byte
    if (STANDALONE(m)) {
      segs.push({ marker: m, data: new Uint8Array(0) });
      if (m === 0xd9) break;
      continue;
    }
    if (p + 2 > b.length) return null;
    const len = (b[p]! << 8) | b[p + 1]!;
    if (len < 2 || p + len > b.length) return null;
    const seg: Segment = { marker: m, data: b.slice(p + 2, p + len) };
    p += len;
    if (m === 0xda) {
      // entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or a restart marker
      let q = p;
      while (q + 1 < b.length && !(b[q] === 0xff && b[q + 1] !== 0 && !(b[q + 1]! >= 0xd0 && b[q + 1]! <= 0xd7))) q++;
      seg.entropy = b.slice(p, q);
      p = q;
    }
    segs.push(seg);
  }
  return segs;
}

export function writeJpeg(segs: readonly Segment[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const s of segs) {
    if (STANDALONE(s.marker)) {
      parts.push(new Uint8Array([0xff, s.marker]));
      continue;
    }
    const len = s.badLength ?? Math.min(0xffff, s.data.length + 2);
    parts.push(new Uint8Array([0xff, s.marker, (len >> 8) & 0xff, len & 0xff]), s.data.subarray(0, 0xfffd));
    if (s.entropy) parts.push(s.entropy);
  }
  return concatBytes(parts);
}

const JPEG_DIMS = [0, 1, 2, 8, 9, 255, 256, 4096, 8192, 16383, 16384, 65500, 65535];
const JPEG_BOMBS: readonly [number, number][] = [[512, 65500], [65500, 512], [4096, 8192], [5792, 5792], [65500, 65500], [1, 65500], [65500, 1]];
const SOF_MARKERS = [0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc9, 0xca, 0xcb, 0xcd, 0xcf];

/** An APP1 Exif segment with an orientation tag and, sometimes, a lying IFD count or offset. */
function exifSegment(rng: Rng): Segment {
  const b = new Uint8Array(6 + 8 + 2 + 12 + 4);
  b.set(new TextEncoder().encode('Exif\0\0'), 0);
  const dv = new DataView(b.buffer);
  const le = rng.chance(0.5);
  b.set(le ? [0x49, 0x49] : [0x4d, 0x4d], 6);
  dv.setUint16(8, 42, le);
  dv.setUint32(10, rng.chance(0.8) ? 8 : rng.pick(INTERESTING_INTS) >>> 0, le); // IFD0 offset
  dv.setUint16(14, rng.chance(0.8) ? 1 : rng.pick([0, 2, 255, 65535]), le); // entry count
  dv.setUint16(16, 0x0112, le); // Orientation
  dv.setUint16(18, rng.chance(0.8) ? 3 : rng.pick([0, 1, 4, 12, 255]), le); // SHORT
  dv.setUint32(20, rng.chance(0.8) ? 1 : rng.pick(INTERESTING_INTS) >>> 0, le);
  dv.setUint16(24, rng.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 255, 65535]), le);
  return { marker: 0xe1, data: b };
}

function mutateJpegSegments(segs: Segment[], rng: Rng): void {
  const sof = segs.find((s) => SOF_MARKERS.includes(s.marker) && s.data.length >= 6);
  switch (rng.int(11)) {
    case 0: case 1: { // SOF height / width / precision
      if (!sof) return;
      const dv = new DataView(sof.data.buffer, sof.data.byteOffset);
      const f = rng.int(4);
      if (f === 0) sof.data[0] = rng.pick([8, 12, 16, 0, 2, 255]);
      else if (f === 3) {
        // [h, w]: random, or near the pixel limit with an extreme aspect ratio
        const [h, w] = rng.chance(0.5) ? rng.pick(JPEG_BOMBS) : [rng.pick(JPEG_DIMS), rng.pick(JPEG_DIMS)];
        dv.setUint16(1, h);
        dv.setUint16(3, w);
      }
      else dv.setUint16(f === 1 ? 1 : 3, rng.pick(JPEG_DIMS));
      return;
    }
    case 2: { // SOF components: count, sampling factors, quant table ids; or the SOF kind
      if (!sof) return;
      const r = rng.int(4);
      if (r === 0) sof.data[5] = rng.pick([0, 1, 2, 3, 4, 255]);
      else if (r === 1 && sof.data.length >= 9) sof.data[7 + 3 * rng.int(Math.max(1, Math.floor((sof.data.length - 6) / 3)))] = rng.u32() & 0xff;
      else if (r === 2 && sof.data.length >= 9) sof.data[8 + 3 * rng.int(Math.max(1, Math.floor((sof.data.length - 6) / 3)))] = rng.pick([0, 1, 2, 3, 4, 15, 255]);
      else sof.marker = rng.pick(SOF_MARKERS);
      return;
    }
    case 3: { // DQT / DHT / SOS / DRI field edits
      const cands = segs.filter((s) => [0xdb, 0xc4, 0xda, 0xdd].includes(s.marker) && s.data.length > 0);
      if (cands.length === 0) return;
      const s = rng.pick(cands);
      const i = rng.chance(0.5) ? rng.int(Math.min(s.data.length, 20)) : rng.int(s.data.length);
      s.data[i] = rng.chance(0.5) ? rng.pick([0, 1, 2, 3, 4, 15, 16, 63, 64, 255]) : rng.u32() & 0xff;
      return;
    }
    case 4: { // duplicate a segment
      const i = rng.range(1, Math.max(1, segs.length - 1));
      const s = segs[Math.min(i, segs.length - 1)]!;
      segs.splice(rng.range(1, segs.length), 0, { ...s, data: s.data.slice(), entropy: s.entropy?.slice() });
      return;
    }
    case 5: // delete a segment (not SOI)
      if (segs.length > 1) segs.splice(rng.range(1, segs.length - 1), 1);
      return;
    case 6: // EXIF with orientation (sharp rotates by it) and lying offsets
      segs.splice(1, 0, exifSegment(rng));
      return;
    case 7: { // a wrong segment length field
      const cands = segs.filter((s) => !STANDALONE(s.marker));
      if (cands.length > 0) rng.pick(cands).badLength = rng.pick([0, 1, 2, 3, 0xffff, rng.u32() & 0xffff]);
      return;
    }
    case 8: { // corrupt entropy-coded data
      const sos = segs.filter((s) => s.entropy && s.entropy.length > 0);
      if (sos.length === 0) return;
      const s = rng.pick(sos);
      s.entropy = mutateBytes(s.entropy!, rng);
      return;
    }
    case 9: { // DRI (restart interval) insert, or a restart marker in the entropy data
      if (rng.chance(0.5)) segs.splice(1, 0, { marker: 0xdd, data: new Uint8Array([rng.u32() & 0xff, rng.pick([0, 1, 255])]) });
      else {
        const s = segs.find((x) => x.entropy && x.entropy.length > 2);
        if (s) {
          const p = rng.int(s.entropy!.length);
          s.entropy = concatBytes([s.entropy!.subarray(0, p), new Uint8Array([0xff, 0xd0 + rng.int(8)]), s.entropy!.subarray(p)]);
        }
      }
      return;
    }
    default: { // a new segment of a random marker with junk
      segs.splice(rng.range(1, segs.length), 0, { marker: rng.pick([0xe0, 0xe2, 0xee, 0xfe, 0xc4, 0xdb, 0xcc, 0xdc, 0xde, 0xf0, 0xc8]), data: rng.bytes(rng.pick([0, 1, 2, 17, 64, 200])) });
    }
  }
}

export function mutateJpeg(seed: Uint8Array, rng: Rng, other?: Uint8Array): Uint8Array {
  const segs = parseJpeg(seed);
  if (!segs || rng.chance(0.1)) return mutateBytes(seed, rng, other);
  for (let k = rng.count(3); k > 0 && segs.length > 0; k--) mutateJpegSegments(segs, rng);
  let out = writeJpeg(segs);
  if (rng.chance(0.15)) out = out.subarray(0, rng.int(out.length + 1)); // truncation
  if (rng.chance(0.1)) out = mutateBytes(out, rng, other);
  return clampSize(out);
}

// ---------------------------------------------------------------------------------------------
// safetensors: header JSON fields (dtype, shape, data_offsets, metadata), the header length, data bytes

const DTYPE_NAMES = ['BOOL', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'F64', 'I64', 'U64', 'f32', 'F31', '', 'C64'];

function splitSafetensors(b: Uint8Array): { header: string; data: Uint8Array } | null {
  if (b.length < 8) return null;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = dv.getUint32(0, true);
  if (dv.getUint32(4, true) !== 0 || 8 + n > b.length) return null;
  return { header: new TextDecoder().decode(b.subarray(8, 8 + n)), data: b.subarray(8 + n) };
}

function joinSafetensors(header: Uint8Array, data: Uint8Array, rng: Rng): Uint8Array {
  let pad = rng.chance(0.8) ? (8 - (header.length % 8)) % 8 : 0;
  if (rng.chance(0.05)) pad += rng.range(1, 64);
  const out = new Uint8Array(8 + header.length + pad + data.length);
  const dv = new DataView(out.buffer);
  let n = header.length + pad;
  const lie = rng.chance(0.15);
  if (lie) n = rng.pick([0, 1, 2, n - 1, n + 1, n + 8, n + data.length, n + data.length + 1, 2 ** 31, 2 ** 32 - 1, 100_000_000, 100_000_001, 2 ** 53 - 1, 2 ** 64]);
  dv.setUint32(0, n % 2 ** 32 >>> 0, true);
  dv.setUint32(4, Math.min(2 ** 32 - 1, Math.floor(n / 2 ** 32)) >>> 0, true);
  out.set(header, 8);
  out.fill(0x20, 8 + header.length, 8 + header.length + pad);
  out.set(data, 8 + header.length + pad);
  return out;
}

/** Edit the fields of one tensor entry: dtype, shape, data_offsets (focused, since most random JSON edits miss them). */
function mutateTensorEntry(entry: Obj, rng: Rng): void {
  const get = (k: string) => entry.entries.find((e) => e[0] === k);
  const r = rng.int(3);
  if (r === 0) {
    const e = get('dtype');
    if (e) e[1] = rng.chance(0.85) ? rng.pick(DTYPE_NAMES) : swapValue(e[1], rng, []);
  } else if (r === 1) {
    const e = get('shape');
    if (!e || !Array.isArray(e[1])) return;
    const shape = e[1];
    const op = rng.int(5);
    if (op === 0) shape.push(rng.pick(INTERESTING_INTS));
    else if (op === 1) shape.pop();
    else if (op === 2 && shape.length > 0) shape[rng.int(shape.length)] = rng.pick(INTERESTING_INTS);
    else if (op === 3) e[1] = Array.from({ length: rng.pick([8, 37, 64, 1000]) }, () => rng.pick([1, 2, 65536, 2 ** 31]));
    else e[1] = swapValue(shape, rng, []);
  } else {
    const e = get('data_offsets');
    if (!e || !Array.isArray(e[1])) return;
    const off = e[1] as number[];
    const op = rng.int(5);
    if (op === 0) [off[0], off[1]] = [off[1]!, off[0]!];
    else if (op === 1) off[rng.int(2)]! += rng.pick([-8, -4, -1, 1, 4, 8]);
    else if (op === 2) off[rng.int(2)] = rng.pick(INTERESTING_INTS);
    else if (op === 3) off.push(rng.pick(INTERESTING_INTS));
    else e[1] = swapValue(off, rng, []);
  }
}

export function mutateSafetensors(seed: Uint8Array, rng: Rng, other?: Uint8Array): Uint8Array {
  const parts = splitSafetensors(seed);
  if (!parts || rng.chance(0.1)) return mutateBytes(seed, rng, other);
  let { header, data } = parts;
  const kind = rng.int(10);
  if (kind < 5) {
    // focused field edits on the parsed header
    let tree: JNode;
    try {
      tree = toTree(JSON.parse(header));
    } catch {
      return mutateBytes(seed, rng, other);
    }
    if (tree instanceof Obj) {
      const tensors = tree.entries.filter(([k, v]) => k !== '__metadata__' && v instanceof Obj);
      for (let k = rng.count(3); k > 0 && tensors.length > 0; k--) mutateTensorEntry(rng.pick(tensors)[1] as Obj, rng);
      if (rng.chance(0.3)) {
        const root = { v: tree as JNode };
        mutateTreeOnce(root, rng, ['dtype', 'shape', 'data_offsets', '__metadata__']);
        tree = root.v;
      }
    }
    header = stringifyTree(tree);
  } else if (kind < 7) {
    header = mutateJsonText(header.trimEnd(), rng); // general JSON edits (types, nesting, odd keys)
  } else if (kind < 9) {
    data = mutateBytes(data, rng); // flips in data (also changes the buffer length when inserting/deleting)
  } else {
    return mutateBytes(seed, rng, other, [0, Math.min(seed.length, 8 + header.length)]); // raw header bytes
  }
  return clampSize(joinSafetensors(new TextEncoder().encode(header), data, rng));
}

// ---------------------------------------------------------------------------------------------
// IDX: magic, element type, rank, dims, data length

export function mutateIdx(seed: Uint8Array, rng: Rng, other?: Uint8Array): Uint8Array {
  if (seed.length < 4 || rng.chance(0.1)) return mutateBytes(seed, rng, other);
  let out: Uint8Array = seed.slice();
  const rank = out[3]!;
  const op = rng.int(8);
  if (op === 0) {
    out[rng.int(2)] = rng.pick([1, 0x08, 0xff, 0x1f]); // magic
  } else if (op === 1) {
    out[2] = rng.pick([0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e, 0x00, 0x07, 0xff]); // element type
  } else if (op === 2) {
    out[3] = rng.pick([0, 1, 2, 3, 4, 8, 9, 37, 64, 255]); // rank, without fixing the dims
  } else if (op <= 4 && rank > 0 && out.length >= 4 + 4 * rank) {
    // a dim: interesting, or sized so that the product overflows / matches another length
    const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
    dv.setUint32(4 + 4 * rng.int(rank), rng.pick(INTERESTING_INTS) >>> 0, false);
  } else if (op === 5) {
    // a consistent header of a new rank: dims whose product equals the data length (or not)
    const r = rng.pick([1, 2, 3, 4, 8, 37, 255]);
    const dataLen = Math.max(0, out.length - 4 - 4 * rank);
    const dims = Array.from({ length: r }, (_, i) => (i === 0 ? dataLen : 1));
    if (rng.chance(0.5)) dims[rng.int(r)] = rng.pick([0, 2 ** 32 - 1, 65536]);
    const head = new Uint8Array(4 + 4 * r);
    head[2] = 0x08;
    head[3] = r;
    const dv = new DataView(head.buffer);
    dims.forEach((d, i) => dv.setUint32(4 + 4 * i, d >>> 0, false));
    out = concatBytes([head, out.subarray(4 + 4 * rank)]);
  } else if (op === 6) {
    out = out.subarray(0, rng.int(out.length + 1)).slice(); // truncate
  } else {
    out = mutateBytes(out, rng, other, [4 + 4 * rank, out.length]); // data bytes / length
  }
  if (rng.chance(0.1)) out = mutateBytes(out, rng, other);
  return out;
}
