/**
 * What kind of file this is, from its first bytes (magic numbers), so that a reader handed the wrong kind of file
 * says so ("digit.png is a PNG image, not a safetensors file") instead of failing deep in its parser ("header
 * length 727905341920923800 exceeds ..."). Pure (no node:*): the parsers use it on bytes they already hold;
 * ./sniff-file.ts reads a path's first bytes for the commands. A kind is only claimed on a clear signature;
 * anything else is 'unknown' and left to the reader's own checks.
 */

export type FileKind =
  | 'directory'
  | 'empty'
  | 'png'
  | 'jpeg'
  | 'webp'
  | 'gif'
  | 'safetensors'
  | 'onnx'
  | 'json'
  | 'gzip'
  | 'zip'
  | 'unknown';

/** Bytes enough for every signature below (safetensors needs 9; ONNX's first fields a few more). */
export const SNIFF_BYTES = 64;

/** "a PNG image", for messages. */
export const KIND_NAMES: Record<FileKind, string> = {
  directory: 'a directory',
  empty: 'an empty file',
  png: 'a PNG image',
  jpeg: 'a JPEG image',
  webp: 'a WebP image',
  gif: 'a GIF image',
  safetensors: 'a safetensors file',
  onnx: 'an ONNX model',
  json: 'a JSON file',
  gzip: 'a gzip file',
  zip: 'a zip archive',
  unknown: 'a file of unknown kind',
};

const startsWith = (b: Uint8Array, sig: readonly number[], at = 0) => b.length >= at + sig.length && sig.every((v, i) => b[at + i] === v);
const ascii = (s: string) => Array.from(s, (c) => c.charCodeAt(0));

/** A protobuf varint at `pos`: its value (up to 2^53) and the position after it, or null when malformed. */
function varint(b: Uint8Array, pos: number): { value: number; next: number } | null {
  let value = 0;
  for (let shift = 0, i = pos; i < b.length && shift < 53; i++, shift += 7) {
    value += (b[i]! & 0x7f) * 2 ** shift;
    if (b[i]! < 0x80) return { value, next: i + 1 };
  }
  return null;
}

/**
 * An ONNX ModelProto as every exporter writes it: field 1 (ir_version, a varint from 1 to 30), then one of the
 * ModelProto's other fields (opset_import 8, producer_name 2, producer_version 3, domain 4, model_version 5,
 * doc_string 6, graph 7, metadata_props 14, ...) as a length-delimited or varint field.
 */
function looksLikeOnnx(b: Uint8Array): boolean {
  if (b[0] !== 0x08) return false;
  const ir = varint(b, 1);
  if (ir === null || ir.value < 1 || ir.value > 30 || ir.next >= b.length) return false;
  const tag = b[ir.next]!;
  const field = tag >> 3;
  const wire = tag & 7;
  return field >= 2 && field <= 20 && (wire === 2 || (field === 5 && wire === 0));
}

/**
 * A safetensors file: an 8-byte little-endian header length N that fits in the file, then a JSON object ('{').
 * @param size the whole file's length (default b.length, when `b` is the whole file)
 */
function looksLikeSafetensors(b: Uint8Array, size: number): boolean {
  if (b.length < 9 || b[8] !== 0x7b) return false;
  const view = new DataView(b.buffer, b.byteOffset, 8);
  const n = view.getUint32(4, true) * 2 ** 32 + view.getUint32(0, true);
  return n >= 2 && 8 + n <= size;
}

/**
 * The kind of a file from its first bytes (at least SNIFF_BYTES of them when the file has that many).
 * @param size the file's length, when `head` is only its beginning
 */
export function sniffBytes(head: Uint8Array, size = head.length): FileKind {
  if (size === 0) return 'empty';
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (startsWith(head, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(head, ascii('RIFF')) && startsWith(head, ascii('WEBP'), 8)) return 'webp';
  if (startsWith(head, ascii('GIF87a')) || startsWith(head, ascii('GIF89a'))) return 'gif';
  if (startsWith(head, [0x1f, 0x8b])) return 'gzip';
  if (startsWith(head, [0x50, 0x4b, 0x03, 0x04])) return 'zip';
  // before JSON: a safetensors header length may begin with '{' (123) too
  if (looksLikeSafetensors(head, size)) return 'safetensors';
  let i = startsWith(head, [0xef, 0xbb, 0xbf]) ? 3 : 0; // UTF-8 byte order mark
  while (i < head.length && (head[i] === 0x20 || head[i] === 0x09 || head[i] === 0x0a || head[i] === 0x0d)) i++;
  if (head[i] === 0x7b || head[i] === 0x5b) return 'json';
  if (looksLikeOnnx(head)) return 'onnx';
  return 'unknown';
}

/**
 * The one-line complaint about a file of the wrong kind, e.g. "digit.png is a PNG image, not a safetensors file
 * (--decode reads what ddpm invert --image wrote)".
 * @param what how the message names the file: "--decode digit.png", "digit.png"
 * @param expected what the reader wanted, with its article: "a safetensors file", "an image (PNG, JPEG or WebP)"
 */
export function wrongKindMessage(what: string, kind: FileKind, expected: string, hint?: string): string {
  return `${what} is ${KIND_NAMES[kind]}, not ${expected}${hint ? ` (${hint})` : ''}`;
}
