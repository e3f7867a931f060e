// The kind of a path (a directory, or a file's kind from its first bytes): Node file helpers around ./sniff.ts.

import { promises as fsp } from 'node:fs';
import { UserError } from '../errors.ts';
import { SNIFF_BYTES, sniffBytes, wrongKindMessage, type FileKind } from './sniff.ts';

export { KIND_NAMES, sniffBytes, wrongKindMessage, type FileKind } from './sniff.ts';

/**
 * What `p` is: 'directory', or a file's kind from its first bytes; null when there is nothing at `p`. A file that
 * exists but cannot be opened (no permission, a FIFO: never opened) is 'unknown', left to the reader's own error.
 */
export async function sniffPath(p: string): Promise<FileKind | null> {
  let st;
  try {
    st = await fsp.stat(p);
  } catch {
    return null;
  }
  if (st.isDirectory()) return 'directory';
  if (!st.isFile()) return 'unknown';
  if (st.size === 0) return 'empty';
  let fh;
  try {
    fh = await fsp.open(p, 'r');
  } catch {
    return 'unknown';
  }
  try {
    const head = new Uint8Array(Math.min(SNIFF_BYTES, st.size));
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return sniffBytes(head.subarray(0, bytesRead), st.size);
  } catch {
    return 'unknown';
  } finally {
    await fh.close();
  }
}

/**
 * Refuse, as one UserError line, a path whose kind is known and not one of `accept`: "--decode digit.png is a PNG
 * image, not a safetensors file (...)". Nothing at `p`, or a kind the sniffer does not know, passes (the reader
 * then says what it finds); returns the kind.
 * @param what how the message names the path, e.g. "--decode digit.png"
 */
export async function expectKind(p: string, what: string, accept: readonly FileKind[], expected: string, hint?: string): Promise<FileKind | null> {
  const kind = await sniffPath(p);
  if (kind !== null && kind !== 'unknown' && !accept.includes(kind)) throw new UserError(wrongKindMessage(what, kind, expected, hint));
  return kind;
}
